// An optional HTTP endpoint serving GET /metrics (Prometheus text) and GET /health.
// Runs on its own thread; Beast stays inside the library (pimpl).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <qrt/error.hpp>
#include <qrt/metrics.hpp>
#include <string>

namespace qrt::metrics {

/// The most bytes a request's line and headers may take together; past it the request is
/// answered 431 and its connection closed, so a client cannot make the server buffer more.
inline constexpr std::size_t max_request_head_bytes = 8 * 1024;
/// The most bytes a request's body may take (these endpoints read none); past it the request is
/// answered 413 and its connection closed.
inline constexpr std::size_t max_request_body_bytes = 64 * 1024;

/// Where a metrics_server listens and what /health answers.
struct server_options {
  std::string address = "127.0.0.1";  ///< the address to bind
  std::uint16_t port = 0;             ///< 0: the system picks one; see metrics_server::port()
  /// Body for GET /health (JSON) and whether it is healthy (200) or not (503). Empty: 404.
  std::function<std::pair<bool, std::string>()> health;
  /// How long a connection may take to send a whole request (and to take the answer) before it
  /// is dropped, so idle or deliberately slow clients cannot hold the server's descriptors. The
  /// wait for a request's first byte counts, so it also bounds how long a kept-alive connection
  /// may sit idle between requests. Must be positive (start() refuses anything else with
  /// configuration_error).
  std::chrono::milliseconds request_timeout{10'000};
  /// How many connections are held at once (each holds a descriptor of the process until its
  /// client leaves or times out). At least 1. A connection is idle while it waits for the first
  /// byte of a request (its first, or its next on a kept-alive connection) and busy from that byte
  /// until its answer is written. With max_connections held, a new connection takes the place of
  /// the one idle longest, which is closed; only when every one is busy is the new connection
  /// closed as soon as it is accepted. So idle keep-alive clients (a scraper between scrapes, or
  /// one client opening many connections) cannot lock later clients out of /metrics and
  /// /health, and a request under way is never cut by a newcomer.
  std::size_t max_connections = 64;
};

/// An HTTP endpoint serving a registry's exposition on GET /metrics and, optionally, GET /health.
/// A request it cannot parse is answered 400 (431 for a request line and headers past
/// max_request_head_bytes, 413 for a body past max_request_body_bytes) and its connection closed;
/// a method other than GET or HEAD is answered 405, a path other than /metrics or /health 404.
class metrics_server {
 public:
  /// Binds and starts serving `source`, which must outlive the server. Fails with
  /// connection_failed naming the address when it cannot bind.
  static result<std::unique_ptr<metrics_server>> start(const registry& source,
                                                       server_options options = {});
  ~metrics_server();  ///< stops and joins the thread

  /// The port it listens on (the chosen one when options.port was 0), and listened on once stopped.
  std::uint16_t port() const noexcept;
  /// Stops serving, joins the thread and closes the listening socket and every connection still
  /// open (a client waiting on one sees it end). Idempotent.
  void stop();

  struct impl;

 private:
  explicit metrics_server(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace qrt::metrics
