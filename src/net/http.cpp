#include "net/http.hpp"

#include <atomic>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <charconv>
#include <deque>
#include <mutex>
#include <optional>

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

result<endpoint> parse_endpoint(std::string_view url) {
  endpoint ep;
  std::string_view rest;
  if (url.rfind("https://", 0) == 0) {
    ep.tls = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else {
    return fail(errc::configuration_error,
                "endpoint '" + std::string(url) + "' must start with https:// or http://");
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos) {
    return fail(errc::configuration_error,
                "endpoint '" + std::string(url) + "' must be scheme://host[:port] without a path");
  }
  std::string_view host = rest;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) {
      return fail(errc::configuration_error,
                  "endpoint '" + std::string(url) + "' has a bad IPv6 host");
    }
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') {
        return fail(errc::configuration_error, "endpoint '" + std::string(url) + "' is malformed");
      }
      port = rest.substr(close + 2);
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) {
    return fail(errc::configuration_error, "endpoint '" + std::string(url) + "' has no host");
  }
  ep.host = std::string(host);
  ep.port = ep.tls ? 443 : 80;
  if (!port.empty()) {
    unsigned value = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || p != port.data() + port.size() || value == 0 || value > 65535) {
      return fail(
          errc::configuration_error,
          "endpoint '" + std::string(url) + "' has an invalid port '" + std::string(port) + "'");
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

struct connection {
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;

  beast::tcp_stream& lowest() { return plain ? *plain : beast::get_lowest_layer(*secure); }
};

/// A call waiting at max_connections for a connection (or the right to open one).
struct connection_waiter : std::enable_shared_from_this<connection_waiter> {
  explicit connection_waiter(asio::any_io_executor ex) : timer(std::move(ex)) {}
  asio::steady_timer timer;
  // Guarded by the pool's mutex.
  std::optional<asio::any_completion_handler<void()>> handler;
  asio::any_io_executor handler_executor;
  bool woken = false;                       ///< granted, timed out or pool closed
  bool granted = false;                     ///< owns a connection slot now
  std::unique_ptr<connection> handed_over;  ///< an idle connection, or null: open one
};
using waiter_ptr = std::shared_ptr<connection_waiter>;

/// Completes a waiter's suspended call, or marks it so it won't suspend (mutex held).
void wake(connection_waiter& w) {
  w.woken = true;
  if (w.handler) {
    auto h = std::move(*w.handler);
    w.handler.reset();
    asio::post(w.handler_executor, std::move(h));
  }
}

}  // namespace

struct http_pool::impl : std::enable_shared_from_this<http_pool::impl> {
  asio::any_io_executor executor;
  endpoint ep;
  http_settings settings;
  std::optional<asio::ssl::context> ssl;
  mutable std::mutex mutex;
  std::vector<std::unique_ptr<connection>> idle;
  std::size_t open_count = 0;      ///< busy + idle + connecting; bounded by max_connections
  std::deque<waiter_ptr> waiting;  ///< calls at the cap, first come first served
  std::atomic<bool> closed{false};
  std::atomic<std::uint64_t> opened{0};

  /// A call's right to one connection: the idle one it took, or null with a slot to open one.
  /// Every acquired slot ends in give_back() or drop().
  asio::awaitable<result<std::unique_ptr<connection>>> acquire(
      std::chrono::steady_clock::time_point deadline, std::chrono::milliseconds timeout) {
    waiter_ptr w;
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
      w = std::make_shared<connection_waiter>(executor);
      waiting.push_back(w);
    }
    // Raw pointers in the initiation: the caller keeps `this` and `w` alive until it resumes;
    // the timer handler owns its own references.
    auto initiation = [self = this, wp = w.get(), deadline](auto handler) {
      auto ex = asio::get_associated_executor(handler, wp->timer.get_executor());
      std::lock_guard lock(self->mutex);
      if (wp->woken) {
        asio::post(ex, std::move(handler));
        return;
      }
      wp->handler.emplace(std::move(handler));
      wp->handler_executor = ex;
      wp->timer.expires_at(deadline);
      wp->timer.async_wait([pool = self->shared_from_this(),
                            ws = wp->shared_from_this()](boost::system::error_code) {
        std::lock_guard lock(pool->mutex);
        if (ws->woken) return;
        std::erase(pool->waiting, ws);
        wake(*ws);
      });
    };
    co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(initiation,
                                                                         asio::use_awaitable);
    w->timer.cancel();
    std::lock_guard lock(mutex);
    if (w->granted) co_return std::move(w->handed_over);
    if (closed) co_return closed_error();
    co_return fail(errc::timeout, "no connection to " + ep.to_string() + " came free within " +
                                      std::to_string(timeout.count()) + " ms (max_connections " +
                                      std::to_string(settings.max_connections) + ")");
  }

  error closed_error() const {
    return fail(errc::closed, "the HTTP client for " + ep.to_string() + " is closed");
  }

  /// Hands the first waiting call a slot, with `c` or (null) the right to open one. Mutex held.
  bool hand_to_waiter(std::unique_ptr<connection>& c) {
    if (waiting.empty()) return false;
    auto w = std::move(waiting.front());
    waiting.pop_front();
    w->granted = true;
    w->handed_over = std::move(c);
    wake(*w);
    return true;
  }

  /// A call is done with a connection the server keeps open.
  void give_back(std::unique_ptr<connection> c) {
    std::lock_guard lock(mutex);
    if (!closed && hand_to_waiter(c)) return;
    if (!closed && idle.size() < settings.max_idle_connections) {
      idle.push_back(std::move(c));
    } else {
      --open_count;  // closed as `c` goes
    }
  }

  /// A call's slot ends without a reusable connection (failure, or the server closes it).
  void drop() {
    std::lock_guard lock(mutex);
    std::unique_ptr<connection> none;
    if (!closed && hand_to_waiter(none)) return;
    --open_count;
  }

  asio::awaitable<result<std::unique_ptr<connection>>> open(
      std::chrono::steady_clock::time_point deadline) {
    auto c = std::make_unique<connection>();
    tcp::resolver resolver(executor);
    auto [rec, results] =
        co_await resolver.async_resolve(ep.host, std::to_string(ep.port), use_tuple);
    if (rec) {
      co_return fail(errc::connection_failed,
                     "cannot resolve " + ep.to_string() + ": " + rec.message());
    }
    if (ssl) {
      c->secure.emplace(executor, *ssl);
    } else {
      c->plain.emplace(executor);
    }
    auto& stream = c->lowest();
    const auto connect_deadline =
        std::min(deadline, std::chrono::steady_clock::now() + settings.connect_timeout);
    stream.expires_at(connect_deadline);
    auto [cec, connected] = co_await stream.async_connect(results, use_tuple);
    (void)connected;
    if (cec) {
      co_return fail(cec == beast::error::timeout ? errc::timeout : errc::connection_failed,
                     "cannot connect to " + ep.to_string() + ": " + cec.message());
    }
    stream.socket().set_option(tcp::no_delay(true));
    if (ssl) {
      if (!SSL_set_tlsext_host_name(c->secure->native_handle(), ep.host.c_str())) {
        co_return fail(errc::connection_failed, "cannot set TLS server name for " + ep.to_string());
      }
      if (settings.verify_tls) {
        c->secure->set_verify_mode(asio::ssl::verify_peer);
        c->secure->set_verify_callback(asio::ssl::host_name_verification(ep.host));
      } else {
        c->secure->set_verify_mode(asio::ssl::verify_none);
      }
      auto [hec] = co_await c->secure->async_handshake(asio::ssl::stream_base::client, use_tuple);
      if (hec) {
        co_return fail(errc::connection_failed,
                       "TLS handshake with " + ep.to_string() + " failed: " + hec.message());
      }
    }
    ++opened;
    co_return std::move(c);
  }

  template <class Stream>
  asio::awaitable<boost::system::error_code> exchange(
      Stream& stream, connection& c, http::request<http::string_body>& req,
      http::response_parser<http::string_body>& parser) {
    auto [wec, written] = co_await http::async_write(stream, req, use_tuple);
    (void)written;
    if (wec) co_return wec;
    auto [rec, read] = co_await http::async_read(stream, c.buffer, parser, use_tuple);
    (void)read;
    co_return rec;
  }
};

http_pool::http_pool(asio::any_io_executor executor, endpoint ep, http_settings settings)
    : impl_(std::make_shared<impl>()) {
  impl_->executor = std::move(executor);
  impl_->ep = std::move(ep);
  impl_->settings = std::move(settings);
  if (impl_->ep.tls) {
    impl_->ssl.emplace(asio::ssl::context::tls_client);
    impl_->ssl->set_default_verify_paths();
    if (!impl_->settings.ca_file.empty()) impl_->ssl->load_verify_file(impl_->settings.ca_file);
  }
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
    for (auto& w : impl_->waiting) wake(*w);  // they report the pool closed
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

std::uint64_t http_pool::connections_opened() const noexcept {
  return impl_->opened;
}

asio::awaitable<result<http_response>> http_pool::send(http_request request,
                                                       std::chrono::milliseconds timeout) {
  auto self = impl_;  // keeps the pool's state alive while the call runs
  if (self->closed) co_return self->closed_error();
  const auto deadline = std::chrono::steady_clock::now() + timeout;

  http::request<http::string_body> req;
  req.version(11);
  req.method_string(request.method);
  req.target(request.target);
  req.set(http::field::host, self->ep.host_header());
  for (const auto& [k, v] : request.headers) req.set(k, v);
  req.keep_alive(true);
  req.body() = std::move(request.body);
  req.prepare_payload();

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

  // At most two tries: a reused keep-alive connection may have been closed by the server
  // just before we used it; that failure says nothing about the server, so try a fresh one.
  for (int attempt = 0;; ++attempt) {
    const bool reused = c != nullptr;
    if (!c) {
      auto opened = co_await self->open(deadline);
      if (!opened) co_return opened.error();
      c = std::move(*opened);
    }
    c->lowest().expires_at(deadline);
    http::response_parser<http::string_body> parser;
    parser.body_limit(self->settings.max_response_bytes);
    parser.header_limit(64 * 1024);
    boost::system::error_code ec;
    if (c->secure) {
      ec = co_await self->exchange(*c->secure, *c, req, parser);
    } else {
      ec = co_await self->exchange(*c->plain, *c, req, parser);
    }
    if (ec) {
      if (ec == beast::error::timeout) {
        co_return fail(errc::timeout, "no answer from " + self->ep.to_string() + " within " +
                                          std::to_string(timeout.count()) + " ms");
      }
      if (reused && attempt == 0 && !parser.got_some()) {
        c.reset();  // the same slot opens a fresh connection
        continue;
      }
      co_return fail(errc::connection_failed,
                     "connection to " + self->ep.to_string() + " failed: " + ec.message());
    }
    auto res = parser.release();
    http_response out;
    out.status = res.result_int();
    for (const auto& field : res) {
      out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    const bool keep = res.keep_alive();
    out.body = std::move(res.body());
    if (keep && !self->closed) {
      c->lowest().expires_never();
      slot.pool.reset();
      self->give_back(std::move(c));
    }
    co_return out;
  }
}

}  // namespace qrt::net
