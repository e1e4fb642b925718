#include "net/http.hpp"

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <deque>
#include <mutex>
#include <optional>
#include <sstream>
#include <tuple>

#include "core/connection_meter.hpp"
#include "core/post_releasing.hpp"

namespace qrt::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string endpoint::host_header() const {
  const bool default_port = (tls && port == 443) || (!tls && port == 80);
  const bool ipv6 = host.find(':') != std::string::npos;
  std::string h = ipv6 ? "[" + host + "]" : host;
  return default_port ? h : h + ":" + std::to_string(port);
}

std::string endpoint::to_string() const {
  return std::string(tls ? "https://" : "http://") + host_header();
}

std::string redact_userinfo(std::string_view url) {
  const auto scheme = url.find("://");
  const std::size_t authority = scheme == std::string_view::npos ? 0 : scheme + 3;
  // The last '@' ends the user info even when the password holds '/', '?' or '#': redacting
  // too much is harmless in a message, too little is not.
  const auto at = url.rfind('@');
  if (at == std::string_view::npos || at < authority) return std::string(url);
  return std::string(url.substr(0, authority)) + "***@" + std::string(url.substr(at + 1));
}

bool is_loopback_host(std::string_view host) {
  if (beast::iequals(host, "localhost")) return true;
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(std::string(host), ec);
  return !ec && address.is_loopback();
}

result<endpoint> parse_endpoint(std::string_view url) {
  const std::string shown = redact_userinfo(url);
  endpoint ep;
  std::string_view rest;
  if (url.rfind("https://", 0) == 0) {
    ep.tls = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else {
    return fail(errc::configuration_error,
                "endpoint '" + shown + "' must start with https:// or http://");
  }
  if (rest.find('@') != std::string_view::npos) {
    return fail(
        errc::configuration_error,
        "endpoint '" + shown + "' must not carry user info: credentials are configured separately");
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#") != std::string_view::npos) {
    return fail(errc::configuration_error,
                "endpoint '" + shown + "' must be scheme://host[:port] without a path");
  }
  std::string_view host = rest;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) {
      return fail(errc::configuration_error, "endpoint '" + shown + "' has a bad IPv6 host");
    }
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') {
        return fail(errc::configuration_error, "endpoint '" + shown + "' is malformed");
      }
      port = rest.substr(close + 2);
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) {
    return fail(errc::configuration_error, "endpoint '" + shown + "' has no host");
  }
  const bool ipv6 = !rest.empty() && rest.front() == '[';
  if (ipv6) {
    // Brackets hold an IPv6 address (with an optional zone after '%'), nothing else: printed
    // back, a bracketed name would lose its brackets and no longer name the same endpoint.
    boost::system::error_code ec;
    const std::string_view address = host.substr(0, host.find('%'));
    asio::ip::make_address_v6(std::string(address), ec);
    if (ec || address.size() + 1 == host.size()) {
      return fail(errc::configuration_error,
                  "endpoint '" + shown + "' has a bad IPv6 host (brackets hold an IPv6 address)");
    }
  }
  if (port.empty() && rest.size() > host.size() + (ipv6 ? 2 : 0)) {
    return fail(errc::configuration_error, "endpoint '" + shown + "' has an empty port");
  }
  for (const char ch : host) {
    // Names, IPv4 and IPv6 literals (with a zone): nothing that could break the Host header.
    const auto c = static_cast<unsigned char>(ch);
    const bool allowed =
        std::isalnum(c) || c == '-' || c == '.' || c == '_' || (ipv6 && (c == ':' || c == '%'));
    if (!allowed) {
      // Not echoed: the offending character (a CR, LF or NUL) would garble the message.
      return fail(errc::configuration_error,
                  "endpoint host may only have letters, digits, '.', '-', '_' (an IPv6 address "
                  "in brackets)");
    }
  }
  ep.host = std::string(host);
  ep.port = ep.tls ? 443 : 80;
  if (!port.empty()) {
    unsigned value = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || p != port.data() + port.size() || value == 0 || value > 65535) {
      return fail(errc::configuration_error,
                  "endpoint '" + shown + "' has an invalid port '" + std::string(port) + "'");
    }
    ep.port = static_cast<std::uint16_t>(value);
  }
  return ep;
}

std::string http_response::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (beast::iequals(k, name)) return v;
  }
  return {};
}

namespace {

using response_parser = http::response_parser<http::string_body>;

/// The most a connection's read buffer may hold. The parser moves body bytes out as they come
/// and the head limit bounds the head, but nothing in the parser bounds a chunk-size line or
/// the trailer: without this, a server sending one that never ends had the buffer grow until
/// the call's deadline.
constexpr std::size_t max_unparsed_bytes = 2 * max_response_head_bytes;

// One set of limits for every answer, read from a socket or parsed from bytes.
void apply_limits(response_parser& parser, std::size_t max_body_bytes) {
  parser.header_limit(static_cast<std::uint32_t>(max_response_head_bytes));
  parser.body_limit(max_body_bytes);
}

http_response to_response(http::response<http::string_body>&& res) {
  http_response out;
  out.status = res.result_int();
  for (const auto& field : res) {
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  out.body = std::move(res.body());
  return out;
}

bool is_http_parse_error(const boost::system::error_code& ec) {
  // end_of_stream and partial_message mean the connection ended, not that the bytes were bad.
  return ec.category() == http::make_error_code(http::error::bad_version).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

// An answer the parser refused, as an error that names the problem.
error refused_answer(const boost::system::error_code& ec, const std::string& from,
                     std::size_t max_body_bytes) {
  if (ec == http::error::body_limit) {
    return fail(errc::protocol_error, "the answer from " + from + " has a body over " +
                                          std::to_string(max_body_bytes) + " bytes");
  }
  if (ec == http::error::buffer_overflow) {
    return fail(errc::protocol_error, "the answer from " + from +
                                          " has a chunk-size line or trailer over " +
                                          std::to_string(max_unparsed_bytes) + " bytes");
  }
  if (ec == http::error::header_limit) {
    return fail(errc::protocol_error, "the answer from " + from + " has a head over " +
                                          std::to_string(max_response_head_bytes) + " bytes");
  }
  return fail(errc::protocol_error,
              "the answer from " + from + " is not valid HTTP/1.1: " + ec.message());
}

// What a request may carry: no CR, LF or NUL (they would split or end the request), at most
// 16 KiB per field. `what` names the field, never its value (a header may hold a token).
constexpr std::size_t max_request_field_bytes = 16 * 1024;

result<void> check_request_text(const std::string& what, std::string_view text, bool token) {
  if (text.size() > max_request_field_bytes) {
    return fail(errc::invalid_argument, "HTTP request " + what + " is over " +
                                            std::to_string(max_request_field_bytes) + " bytes");
  }
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    const bool bad = token ? (c <= 0x20 || c == 0x7f) : ((c < 0x20 && c != '\t') || c == 0x7f);
    if (bad) {
      return fail(errc::invalid_argument,
                  "HTTP request " + what + " contains a character it cannot carry");
    }
  }
  return {};
}

result<void> check_request(const http_request& r) {
  if (r.method.empty()) return fail(errc::invalid_argument, "HTTP request method is empty");
  if (auto ok = check_request_text("method", r.method, true); !ok) return ok;
  if (r.target.empty() || r.target.front() != '/') {
    return fail(errc::invalid_argument, "HTTP request target must start with '/'");
  }
  if (auto ok = check_request_text("target", r.target, true); !ok) return ok;
  for (const auto& [name, value] : r.headers) {
    if (name.empty() || name.find(':') != std::string::npos) {
      return fail(errc::invalid_argument, "HTTP request header name is empty or has a ':'");
    }
    if (auto ok = check_request_text("header name", name, true); !ok) return ok;
    if (auto ok = check_request_text("header '" + name + "'", value, false); !ok) return ok;
  }
  return {};
}

}  // namespace

result<http_response> parse_http_response(std::string_view bytes, std::size_t max_body_bytes) {
  response_parser parser;
  apply_limits(parser, max_body_bytes);
  parser.eager(true);
  boost::system::error_code ec;
  std::size_t used = 0;
  while (used < bytes.size() && !parser.is_done()) {
    const auto n = parser.put(asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    used += n;
    if (ec == http::error::need_more) {
      // Eager parsing consumed all it could: the rest is not enough. Beast requires more bytes
      // than last time on the next put (it asserts, or reads past them, when given the same).
      ec = {};
      break;
    }
    if (ec) return refused_answer(ec, "the server", max_body_bytes);
  }
  if (!parser.is_done() && parser.got_some()) {
    // The end of the bytes is the end of the connection (a body read until close).
    parser.put_eof(ec);
    if (ec && ec != http::error::partial_message) {
      return refused_answer(ec, "the server", max_body_bytes);
    }
  }
  if (!parser.is_done()) return fail(errc::protocol_error, "the HTTP answer is incomplete");
  auto res = parser.release();
  // Beast reads any three digits; a status below 100 is not one HTTP defines.
  if (res.result_int() < 100) {
    return fail(errc::protocol_error,
                "the HTTP answer's status " + std::to_string(res.result_int()) + " is not 100-999");
  }
  return to_response(std::move(res));
}

namespace {

/// What a connection's read buffer holds from the start: Beast reads at most this much per
/// receive call (its own per-read cap) and otherwise only as much as the buffer's spare
/// capacity, at least 512 bytes. A buffer grown on demand stays near 512 bytes because the
/// parser consumes what it reads, so an 8 KB answer took 16 receive calls, each with its own
/// timer update and trip through the event loop; with the room reserved once per connection,
/// an answer of that size is one receive.
constexpr std::size_t connection_read_buffer_bytes = 64 * 1024;
static_assert(connection_read_buffer_bytes <= max_unparsed_bytes);

struct connection {
  connection() : buffer(max_unparsed_bytes) { buffer.reserve(connection_read_buffer_bytes); }
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;

  beast::tcp_stream& lowest() { return plain ? *plain : beast::get_lowest_layer(*secure); }

  /// False when the connection is no longer a clean, open one for the next call: the server
  /// sent bytes no request asked for (past the end of the last answer, or while it sat idle: a
  /// "408" before it closes), which the next call would take for its answer; or it closed the
  /// connection (its end of stream, or a reset), and a call would write its request into a
  /// connection no one reads, and could tell that from a request the server took and then
  /// dropped only by sending it again, which a request that is not idempotent (a send) must not.
  bool reusable() {
    // Over TLS, bytes past the answer may also wait decrypted inside OpenSSL.
    if (buffer.size() != 0 || (secure && SSL_pending(secure->native_handle()) > 0)) return false;
    char byte = 0;
    const auto got = ::recv(lowest().socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
  }
  /// Set once a call wrote its whole request on this connection.
  bool request_written = false;
};

/// A call waiting at max_connections for a connection (or the right to open one). It lives in
/// the waiting call's coroutine frame and the call waits on `timer`, which runs on the caller's
/// own executor: if the caller's io_context is destroyed while the call waits, the wait is
/// destroyed with it and the frame's clean-up takes the waiter out of line (or passes on a
/// connection it was granted) instead of leaving the cap one slot smaller for good.
struct connection_waiter {
  explicit connection_waiter(asio::any_io_executor caller) : timer(std::move(caller)) {}
  // All guarded by the pool's mutex.
  asio::steady_timer timer;  ///< expires at the call's deadline; cancelled to wake it early
  bool queued = true;        ///< in the pool's line of waiting calls
  bool woken = false;        ///< granted or the pool closed: nothing left to wait for
  bool granted = false;      ///< owns a connection slot now
  std::unique_ptr<connection> handed_over;  ///< an idle connection, or null: open one
};

/// Ends a waiter's wait early (mutex held).
void wake(connection_waiter& w) {
  w.queued = false;
  w.woken = true;
  w.timer.cancel();
}

}  // namespace

/// A request as it goes on the wire: the head (request line, fields, blank line) and the body.
struct outgoing_request {
  std::string head;
  std::string body;
};

/// True for a request whose head serialize() may write itself: the methods qrt's callers use,
/// and headers Beast's set() would keep as they are (names not repeated in any case and none
/// that Beast manages, values without surrounding blanks).
bool simple_request(const http_request& r) {
  if (r.method != "POST" && r.method != "GET" && r.method != "PUT") return false;
  for (std::size_t i = 0; i < r.headers.size(); ++i) {
    const auto& [name, value] = r.headers[i];
    if (beast::iequals(name, "Host") || beast::iequals(name, "Content-Length") ||
        beast::iequals(name, "Transfer-Encoding") || beast::iequals(name, "Connection")) {
      return false;
    }
    if (value.empty() || value.front() == ' ' || value.front() == '\t' || value.back() == ' ' ||
        value.back() == '\t') {
      return false;
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (beast::iequals(name, r.headers[j].first)) return false;
    }
  }
  return true;
}

/// The bytes Beast writes for the request (HTTP/1.1, Host first, keep-alive, Content-Length as
/// prepare_payload sets it). A simple request's head is written directly into one string:
/// Beast's fields (an allocation per field) and its serializer's buffer sequences were a
/// visible share of each request's CPU. Any other request goes through Beast as before.
outgoing_request serialize(http_request request, const std::string& host) {
  outgoing_request out;
  if (simple_request(request)) {
    // As prepare_payload: a length for a body, and for an empty one on POST and PUT.
    const bool length = !request.body.empty() || request.method != "GET";
    std::size_t size = request.method.size() + request.target.size() + host.size() + 40;
    for (const auto& [k, v] : request.headers) size += k.size() + v.size() + 4;
    out.head.reserve(size);
    out.head += request.method;
    out.head += ' ';
    out.head += request.target;
    out.head += " HTTP/1.1\r\nHost: ";
    out.head += host;
    out.head += "\r\n";
    for (const auto& [k, v] : request.headers) {
      out.head += k;
      out.head += ": ";
      out.head += v;
      out.head += "\r\n";
    }
    if (length) {
      char digits[24];
      const auto end = std::to_chars(digits, digits + sizeof digits, request.body.size()).ptr;
      out.head += "Content-Length: ";
      out.head.append(digits, end);
      out.head += "\r\n";
    }
    out.head += "\r\n";
    out.body = std::move(request.body);
    return out;
  }
  http::request<http::string_body> req;
  req.version(11);
  req.method_string(request.method);
  req.target(request.target);
  req.set(http::field::host, host);
  for (const auto& [k, v] : request.headers) req.set(k, v);
  req.keep_alive(true);
  req.body() = std::move(request.body);
  req.prepare_payload();
  std::ostringstream head;
  head << req.base();
  out.head = std::move(head).str();
  out.body = std::move(req.body());
  return out;
}

struct http_pool::impl : std::enable_shared_from_this<http_pool::impl> {
  asio::any_io_executor executor;
  endpoint ep;
  std::string host_header;  ///< ep.host_header(), sent with every request
  http_settings settings;
  std::optional<asio::ssl::context> ssl;
  mutable std::mutex mutex;
  std::vector<std::unique_ptr<connection>> idle;
  std::size_t open_count = 0;              ///< busy + idle + connecting; bounded by max_connections
  std::deque<connection_waiter*> waiting;  ///< calls at the cap, first come first served
  std::atomic<bool> closed{false};
  detail::connection_meter meter;    ///< traffic, failures, recoveries (connection_stats)
  std::optional<error> setup_error;  ///< set by the constructor when TLS could not be set up

  /// A call's right to one connection: the idle one it took, or null with a slot to open one.
  /// Every acquired slot ends in give_back() or drop().
  asio::awaitable<result<std::unique_ptr<connection>>> acquire(
      std::chrono::steady_clock::time_point deadline, std::chrono::milliseconds timeout) {
    const auto caller = co_await asio::this_coro::executor;
    std::optional<connection_waiter> waiter;  // only a call that has to wait needs one
    {
      std::lock_guard lock(mutex);
      if (closed) co_return closed_error();
      if (!idle.empty()) {
        auto c = std::move(idle.back());
        idle.pop_back();
        co_return std::move(c);
      }
      if (settings.max_connections == 0 || open_count < settings.max_connections) {
        ++open_count;
        co_return std::unique_ptr<connection>{};
      }
      waiter.emplace(caller);
      waiting.push_back(&*waiter);
    }
    connection_waiter& w = *waiter;
    // Runs when this frame goes without resuming below: the caller's io_context was destroyed
    // (or the call abandoned) mid-wait. The waiter leaves the line, and a slot already handed to
    // it goes on to the next call or back to the pool.
    struct leave_line {
      impl* pool;
      connection_waiter* waiter;
      bool resumed = false;
      ~leave_line() {
        if (resumed) return;
        std::lock_guard lock(pool->mutex);
        if (waiter->queued) {
          std::erase(pool->waiting, waiter);
        } else if (waiter->granted) {
          pool->pass_on(std::move(waiter->handed_over));
        }
      }
    } guard{this, &w};
    // The wait starts under the mutex, so a wake() that came first is not missed: the timer
    // then completes at once.
    auto initiation = [self = this, wp = &w, deadline](auto handler) {
      std::lock_guard lock(self->mutex);
      wp->timer.expires_at(wp->woken ? std::chrono::steady_clock::now() : deadline);
      wp->timer.async_wait(std::move(handler));
    };
    co_await asio::async_initiate<decltype(use_tuple), void(boost::system::error_code)>(initiation,
                                                                                        use_tuple);
    std::lock_guard lock(mutex);
    guard.resumed = true;
    if (w.granted) co_return std::move(w.handed_over);
    if (w.queued) {
      std::erase(waiting, &w);
      w.queued = false;
    }
    if (closed) co_return closed_error();
    co_return fail(errc::timeout, "no connection to " + ep.to_string() + " came free within " +
                                      std::to_string(timeout.count()) + " ms (max_connections " +
                                      std::to_string(settings.max_connections) + ")");
  }

  error closed_error() const {
    return fail(errc::closed, "the HTTP client for " + ep.to_string() + " is closed");
  }

  /// A slot ends: the first waiting call gets it, with `c` (a connection the server keeps open)
  /// or, when `c` is null, the right to open one; else `c` goes idle or is closed. Mutex held.
  void pass_on(std::unique_ptr<connection> c) {
    if (!closed && !waiting.empty()) {
      auto* w = waiting.front();
      waiting.pop_front();
      w->granted = true;
      w->handed_over = std::move(c);
      wake(*w);
      return;
    }
    if (c && !closed && idle.size() < settings.max_idle_connections) {
      idle.push_back(std::move(c));
      return;
    }
    --open_count;  // closed as `c` goes
  }

  /// A call is done with a connection the server keeps open.
  void give_back(std::unique_ptr<connection> c) {
    std::lock_guard lock(mutex);
    pass_on(std::move(c));
  }

  /// A call's slot ends without a reusable connection (failure, or the server closes it).
  void drop() {
    std::lock_guard lock(mutex);
    pass_on(nullptr);
  }

  asio::awaitable<result<std::unique_ptr<connection>>> open(
      std::chrono::steady_clock::time_point deadline) {
    auto c = std::make_unique<connection>();
    try {
      // Each connection's stream runs on its own strand: Beast's timeout handler closes the
      // socket on the stream's executor, and on a pool of threads that close could otherwise
      // run while the call, woken by the aborted operation on another thread, already tears the
      // connection down (a race on the socket the fault suite's network stall caught once under
      // UBSan). On the strand, the aborted operation completes only after the close is done.
      const auto stream_executor = asio::make_strand(executor);
      if (ssl) {
        c->secure.emplace(stream_executor, *ssl);
      } else {
        c->plain.emplace(stream_executor);
      }
    } catch (const std::exception& e) {
      // OpenSSL could not make a session object (out of memory, broken library state).
      co_return fail(errc::connection_failed,
                     "cannot set up a connection to " + ep.to_string() + ": " + e.what());
    }
    // Resolve, connect and handshake on the stream's strand (see exchange_on_strand).
    auto resolve_there = [&]() -> asio::awaitable<resolved> { return resolve(*c); };
    const resolved found = co_await on_strand_of<resolved>(*c, resolve_there);
    if (found.error) {
      co_return fail(errc::connection_failed,
                     "cannot resolve " + ep.to_string() + ": " + found.error.message());
    }
    auto connect_there = [&]() -> asio::awaitable<result<void>> {
      return connect(*c, found.endpoints, deadline);
    };
    auto connected = co_await on_strand_of<result<void>>(*c, connect_there);
    if (!connected) {
      meter.failed();
      co_return connected.error();
    }
    meter.opened();
    co_return std::move(c);
  }

  struct resolved {
    boost::system::error_code error;
    tcp::resolver::results_type endpoints;
  };

  asio::awaitable<resolved> resolve(connection& c) {
    tcp::resolver resolver(c.lowest().get_executor());
    auto [rec, results] =
        co_await resolver.async_resolve(ep.host, std::to_string(ep.port), use_tuple);
    co_return resolved{rec, std::move(results)};
  }

  asio::awaitable<result<void>> connect(connection& c, const tcp::resolver::results_type& results,
                                        std::chrono::steady_clock::time_point deadline) {
    auto& stream = c.lowest();
    const auto connect_deadline =
        std::min(deadline, std::chrono::steady_clock::now() + settings.connect_timeout);
    stream.expires_at(connect_deadline);
    auto [cec, connected] = co_await stream.async_connect(results, use_tuple);
    (void)connected;
    if (cec) {
      co_return fail(cec == beast::error::timeout ? errc::timeout : errc::connection_failed,
                     "cannot connect to " + ep.to_string() + ": " + cec.message());
    }
    boost::system::error_code oec;
    // Latency only: a socket that refuses TCP_NODELAY still works.
    stream.socket().set_option(tcp::no_delay(true), oec);
    if (ssl) {
      if (!SSL_set_tlsext_host_name(c.secure->native_handle(), ep.host.c_str())) {
        co_return fail(errc::connection_failed, "cannot set TLS server name for " + ep.to_string());
      }
      if (settings.verify_tls) {
        c.secure->set_verify_mode(asio::ssl::verify_peer, oec);
        if (!oec) {
          c.secure->set_verify_callback(asio::ssl::host_name_verification(ep.host), oec);
        }
      } else {
        c.secure->set_verify_mode(asio::ssl::verify_none, oec);
      }
      if (oec) {
        co_return fail(errc::connection_failed, "cannot set up TLS verification for " +
                                                    ep.to_string() + ": " + oec.message());
      }
      auto [hec] = co_await c.secure->async_handshake(asio::ssl::stream_base::client, use_tuple);
      if (hec) {
        co_return fail(errc::connection_failed,
                       "TLS handshake with " + ep.to_string() + " failed: " + hec.message());
      }
    }
    co_return result<void>{};
  }

  /// Writes the request and reads the answer, by `deadline`. Every operation on a stream starts
  /// on the stream's strand, where Beast's timeout handler closes the socket: started from the
  /// caller's thread, an operation could begin while that handler closes the socket on another
  /// thread (a race on the socket's reactor state; the fault suite's emulator kill found it
  /// under UBSan).
  asio::awaitable<boost::system::error_code> exchange_on_strand(
      connection& c, const outgoing_request& req, std::optional<response_parser>& parser,
      std::chrono::steady_clock::time_point deadline) {
    auto there = [this, &c, &req, &parser,
                  deadline]() -> asio::awaitable<boost::system::error_code> {
      c.lowest().expires_at(deadline);
      const auto ec = c.secure ? co_await exchange(*c.secure, c, req, parser)
                               : co_await exchange(*c.plain, c, req, parser);
      c.lowest().expires_never();  // idle in the pool, it must not time out
      co_return ec;
    };
    return on_strand_of<boost::system::error_code>(c, std::move(there));
  }

  /// Runs `op` on `c`'s strand and resumes the caller on its own executor. The strand belongs to
  /// the pool's executor, which need not be the caller's (a provider made by the blocking
  /// client, called from a processor on a runtime): the completion is handed back with
  /// post_releasing, so no copy of the caller's executor stays with the pool's thread.
  template <class T, class Op>
  static asio::awaitable<T> on_strand_of(connection& c, Op op) {
    auto initiation = [strand = c.lowest().get_executor(),
                       op = std::move(op)](auto handler) mutable {
      asio::any_io_executor caller = asio::get_associated_executor(handler);
      asio::co_spawn(strand, std::move(op),
                     [handler = std::move(handler), caller = std::move(caller)](
                         std::exception_ptr e, T value) mutable {
                       qrt::detail::post_releasing(
                           std::move(caller),
                           [handler = std::move(handler), e, value = std::move(value)]() mutable {
                             std::move(handler)(e, std::move(value));
                           });
                     });
    };
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, T)>(
        std::move(initiation), asio::use_awaitable);
  }

  template <class Stream>
  asio::awaitable<boost::system::error_code> exchange(Stream& stream, connection& c,
                                                      const outgoing_request& req,
                                                      std::optional<response_parser>& parser) {
    const std::array<asio::const_buffer, 2> bytes{asio::buffer(req.head), asio::buffer(req.body)};
    auto [wec, written] = co_await asio::async_write(stream, bytes, use_tuple);
    meter.sent(written);
    if (wec) co_return wec;
    c.request_written = true;
    auto [rec, read] = co_await http::async_read(stream, c.buffer, *parser, use_tuple);
    meter.received(read);
    // An interim answer (1xx: "100 Continue", "103 Early Hints") comes before the answer to
    // the request, which a client must be ready for though it asked for none; taken as the
    // answer, a request the server went on to carry out would be reported failed. 101 would
    // switch protocols, which qrt never asks for: it stays the answer (and an error).
    while (!rec && parser->get().result_int() / 100 == 1 && parser->get().result_int() != 101) {
      parser.emplace();
      apply_limits(*parser, settings.max_response_bytes);
      std::tie(rec, read) = co_await http::async_read(stream, c.buffer, *parser, use_tuple);
      meter.received(read);
    }
    co_return rec;
  }
};

http_pool::http_pool(asio::any_io_executor executor, endpoint ep, http_settings settings)
    : impl_(std::make_shared<impl>()) {
  impl_->executor = std::move(executor);
  impl_->ep = std::move(ep);
  impl_->host_header = impl_->ep.host_header();
  impl_->settings = std::move(settings);
  if (!impl_->ep.tls) return;
  try {
    impl_->ssl.emplace(asio::ssl::context::tls_client);
  } catch (const std::exception& e) {
    impl_->setup_error =
        fail(errc::configuration_error, std::string("cannot create a TLS context: ") + e.what());
    return;
  }
  boost::system::error_code ec;
  impl_->ssl->set_default_verify_paths(ec);
  if (ec) {
    impl_->setup_error = fail(errc::configuration_error,
                              "cannot load the system's trusted certificates: " + ec.message());
    return;
  }
  if (!impl_->settings.ca_file.empty()) {
    impl_->ssl->load_verify_file(impl_->settings.ca_file, ec);
    if (ec) {
      impl_->setup_error =
          fail(errc::configuration_error,
               "cannot load CA file '" + impl_->settings.ca_file + "': " + ec.message());
    }
  }
}

result<void> http_pool::ready() const {
  if (impl_->setup_error) return *impl_->setup_error;
  return {};
}

http_pool::~http_pool() {
  close();
}

void http_pool::close() {
  std::vector<std::unique_ptr<connection>> dropping;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->closed = true;
    impl_->open_count -= impl_->idle.size();
    dropping.swap(impl_->idle);
    for (auto* w : impl_->waiting) wake(*w);  // they report the pool closed
    impl_->waiting.clear();
  }
  // Destroying the streams closes the sockets; nothing is pending on idle connections.
}

const endpoint& http_pool::target() const noexcept {
  return impl_->ep;
}

std::size_t http_pool::idle_connections() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->idle.size();
}

std::size_t http_pool::open_connections() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->open_count;
}

std::size_t http_pool::waiting_calls() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->waiting.size();
}

std::uint64_t http_pool::connections_opened() const noexcept {
  return impl_->meter.read().connections_opened;
}

connection_stats http_pool::traffic() const noexcept {
  return impl_->meter.read();
}

asio::awaitable<result<http_response>> http_pool::send(http_request request,
                                                       std::chrono::milliseconds timeout,
                                                       bool* reached_server) {
  auto self = impl_;  // keeps the pool's state alive while the call runs
  if (self->closed) co_return self->closed_error();
  if (self->setup_error) co_return *self->setup_error;
  // Beast throws on fields it cannot hold; refuse them here as errors instead.
  if (auto ok = check_request(request); !ok) co_return ok.error();
  const auto deadline = std::chrono::steady_clock::now() + timeout;

  const outgoing_request req = serialize(std::move(request), self->host_header);

  auto acquired = co_await self->acquire(deadline, timeout);
  if (!acquired) co_return acquired.error();
  // From here this call holds one connection slot: it ends in give_back() or, on every other
  // way out, in drop() when `slot` goes (after `c`, so the socket is closed before another call
  // may open one in its place).
  struct slot_release {
    std::shared_ptr<impl> pool;
    ~slot_release() {
      if (pool) pool->drop();
    }
  } slot{self};
  std::unique_ptr<connection> c = std::move(*acquired);
  if (c && !c->reusable()) c.reset();  // the slot opens a fresh connection instead

  // At most two tries: a reused keep-alive connection may have been closed by the server just
  // before we used it, and failed our write; that says nothing about the server, so try a fresh
  // one. Once the whole request was written, it may have been carried out: no second try.
  for (int attempt = 0;; ++attempt) {
    const bool reused = c != nullptr;
    if (!c) {
      auto opened = co_await self->open(deadline);
      if (!opened) co_return opened.error();
      c = std::move(*opened);
    }
    c->request_written = false;
    std::optional<response_parser> parser;
    parser.emplace();
    apply_limits(*parser, self->settings.max_response_bytes);
    const boost::system::error_code ec =
        co_await self->exchange_on_strand(*c, req, parser, deadline);
    if (ec) {
      // A fresh try on a stale keep-alive connection (below, nothing read back) is made only
      // when the request was not written whole, so it cannot have been taken.
      const bool stale_retry = reused && attempt == 0 && !c->request_written &&
                               ec != beast::error::timeout && !is_http_parse_error(ec);
      // Only a request written whole can have been acted on: one cut off while it was being
      // written (the connection failed, or the deadline passed, mid-write) is incomplete, and
      // the server drops it unread.
      if (reached_server && c->request_written) *reached_server = true;
      if (ec == beast::error::timeout) {
        self->meter.failed();
        const std::string within = " within " + std::to_string(timeout.count()) + " ms";
        // Said apart: a request not written whole cannot have been acted on; an unanswered one
        // may have been.
        if (!c->request_written) {
          co_return fail(errc::timeout, "the request to " + self->ep.to_string() +
                                            " was not written whole" + within +
                                            " (the server cannot have acted on it)");
        }
        co_return fail(errc::timeout, "no answer from " + self->ep.to_string() + within);
      }
      if (is_http_parse_error(ec)) {
        co_return refused_answer(ec, self->ep.to_string(), self->settings.max_response_bytes);
      }
      if (stale_retry) {
        c.reset();  // the same slot opens a fresh connection
        continue;
      }
      self->meter.failed();
      co_return fail(errc::connection_failed,
                     "connection to " + self->ep.to_string() + " failed: " + ec.message());
    }
    auto res = parser->release();
    if (res.result_int() < 100) {  // as parse_http_response: not a status HTTP defines
      co_return fail(errc::protocol_error, "the answer from " + self->ep.to_string() +
                                               " has status " + std::to_string(res.result_int()));
    }
    const bool keep = res.keep_alive();
    http_response out = to_response(std::move(res));
    if (keep && !self->closed && c->buffer.size() == 0) {
      slot.pool.reset();
      self->give_back(std::move(c));
    }
    co_return out;
  }
}

}  // namespace qrt::net
