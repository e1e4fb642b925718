// HTTP/1.1 client with a keep-alive connection pool per endpoint (Boost.Beast, OpenSSL for
// https). Internal to qrt (target qrt_net): the SQS provider's API calls and the metadata
// endpoints (AWS IMDS/ECS, Azure managed identity) share it. Beast and OpenSSL stay out of this
// header and out of include/qrt.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <qrt/error.hpp>
#include <string>
#include <utility>
#include <vector>

namespace qrt::net {

struct endpoint {
  bool tls = false;
  std::string host;
  std::uint16_t port = 0;
  /// The Host header: "host" or "host:port" when the port is not the scheme's default.
  std::string host_header() const;
  std::string to_string() const;
};

/// "https://sqs.eu-west-1.amazonaws.com", "http://127.0.0.1:4566/". Paths, queries, user info
/// are refused: requests always go to the root.
result<endpoint> parse_endpoint(std::string_view url);

using header_list = std::vector<std::pair<std::string, std::string>>;

struct http_request {
  std::string method = "POST";
  std::string target = "/";
  header_list headers;  ///< Host is added by the pool
  std::string body;
};

struct http_response {
  unsigned status = 0;
  header_list headers;
  std::string body;
  /// Case-insensitive lookup; empty when absent.
  std::string header(std::string_view name) const;
};

struct http_settings {
  std::chrono::milliseconds connect_timeout{5'000};
  std::size_t max_idle_connections = 16;
  bool verify_tls = true;
  std::string ca_file;
  std::size_t max_response_bytes = 64u << 20;
  /// Connections open at once (busy, idle or connecting); 0: no limit. At the cap a call waits,
  /// first come first served, for a connection to be given back or closed.
  std::size_t max_connections = 0;
};

/// Connections to one endpoint. Each call takes an idle connection or, below max_connections,
/// opens a new one; at the cap it waits in line (until its timeout) for one to come free. A
/// connection goes back to the pool when the server keeps it alive. A call on a reused
/// connection that the server had already closed is retried once on a fresh connection.
/// Thread-safe.
class http_pool {
 public:
  http_pool(boost::asio::any_io_executor executor, endpoint ep, http_settings settings);
  ~http_pool();
  http_pool(const http_pool&) = delete;
  http_pool& operator=(const http_pool&) = delete;

  /// Sends one request and reads the whole answer within `timeout` (connecting included).
  /// Network failures are errc::connection_failed, an expired timeout errc::timeout, a
  /// closed pool errc::closed.
  boost::asio::awaitable<result<http_response>> send(http_request request,
                                                     std::chrono::milliseconds timeout);

  /// Drops idle connections and refuses new calls.
  void close();

  const endpoint& target() const noexcept;
  std::size_t idle_connections() const;
  /// Connections that exist now: busy, idle or being opened.
  std::size_t open_connections() const;
  std::uint64_t connections_opened() const noexcept;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace qrt::net
