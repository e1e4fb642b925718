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
#include <qrt/provider.hpp>
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
/// are refused: requests always go to the root. Errors quote the URL with any user info
/// replaced (see redact_userinfo), never a password.
result<endpoint> parse_endpoint(std::string_view url);

/// The URL with the user info of its authority ("user:pw@") replaced by "***@", for messages.
std::string redact_userinfo(std::string_view url);

/// True for "localhost" and loopback addresses (127.0.0.0/8, ::1): traffic that never leaves
/// the machine.
bool is_loopback_host(std::string_view host);

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

/// Largest response head (status line and headers) the client reads.
inline constexpr std::size_t max_response_head_bytes = 64 * 1024;

/// Parses one complete HTTP/1.1 response from `bytes` (head and body, Content-Length or chunked)
/// with the limits the pool applies to every answer: a head over max_response_head_bytes or a
/// body over `max_body_bytes` is refused, as is anything that is not HTTP. Pure: the pool reads
/// from the socket with the same parser settings.
result<http_response> parse_http_response(std::string_view bytes, std::size_t max_body_bytes);

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

  /// Fails (errc::configuration_error) when the TLS set-up could not be loaded (the system
  /// trust store or `ca_file`); send() then fails the same way. Never throws.
  result<void> ready() const;

  /// Sends one request and reads the whole answer within `timeout` (connecting included).
  /// Network failures are errc::connection_failed, an expired timeout errc::timeout, a
  /// closed pool errc::closed, an answer that is not HTTP or exceeds the head or body limit
  /// errc::protocol_error, a header or target that cannot be sent (CR, LF, NUL, over 16 KiB)
  /// errc::invalid_argument. Never throws.
  /// `reached_server`, when given, is set when a failure leaves it unknown whether the server
  /// acted on the request: the whole request was written, and then the connection broke, the
  /// answer did not come in time or could not be read. A request that is not idempotent may
  /// then have taken effect. Left alone otherwise, also when the write itself failed or timed
  /// out partway (a partial request is never acted on).
  boost::asio::awaitable<result<http_response>> send(http_request request,
                                                     std::chrono::milliseconds timeout,
                                                     bool* reached_server = nullptr);

  /// Drops idle connections and refuses new calls.
  void close();

  const endpoint& target() const noexcept;
  std::size_t idle_connections() const;
  /// Connections that exist now: busy, idle or being opened.
  std::size_t open_connections() const;
  /// Calls waiting in line at max_connections now.
  std::size_t waiting_calls() const;
  std::uint64_t connections_opened() const noexcept;
  /// Bytes written and read, connections opened, failures and recoveries so far. A keep-alive
  /// connection the server had closed, replaced on the call's second try, is not a failure.
  connection_stats traffic() const noexcept;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace qrt::net
