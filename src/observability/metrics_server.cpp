#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <list>
#include <optional>
#include <qrt/metrics_server.hpp>
#include <thread>

#include "core/io_loop.hpp"

namespace qrt::metrics {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

struct metrics_server::impl {
  const registry& source;
  server_options options;
  // One per session that has started, in the order they last became idle (the longest idle
  // first); touched only on the server's thread. A connection is idle while it waits for the
  // first byte of a request (its first or its next); from that byte until its answer is written it
  // is busy. Declared before `io`, whose destruction ends the sessions still open.
  struct connection {
    boost::beast::tcp_stream* stream;
    bool idle = false;
    bool evicted = false;  // closed to make room; no longer counted in `connections`
  };
  std::list<connection> open;
  // Connections accepted and not yet closed (or evicted).
  std::size_t connections = 0;
  // The loop and the listening socket: stop() destroys both, and with the loop the sessions still
  // open, so their connections close when the server stops, not only when it is destroyed.
  std::optional<asio::io_context> io{std::in_place, 1};
  std::optional<tcp::acceptor> acceptor{std::in_place, *io};
  std::uint16_t port = 0;  // the one bound, still known once stopped
  std::thread thread;
  // A session's entry in `open`, and its place in `connections` (taken when it was accepted),
  // both given back when the session ends. Declared after its stream, so the count drops before
  // the socket closes: a client that sees the close can count on the room.
  class slot {
   public:
    slot(impl& server, boost::beast::tcp_stream& stream)
        : server_(server), it_(server.open.insert(server.open.end(), {&stream})) {}
    ~slot() {
      if (!it_->evicted) --server_.connections;
      server_.open.erase(it_);
    }
    slot(const slot&) = delete;
    slot& operator=(const slot&) = delete;

    void idle() {
      it_->idle = true;
      server_.open.splice(server_.open.end(), server_.open, it_);
    }
    void busy() { it_->idle = false; }
    bool evicted() const { return it_->evicted; }

   private:
    impl& server_;
    std::list<connection>::iterator it_;
  };

  // Closes the connection idle longest to make room for a new one; false when every connection
  // is busy. Idle connections give way because they cost their clients nothing to keep: the wait
  // for a next request is bounded only by request_timeout, and a client that asks again within it
  // keeps its connection for ever, so enough keep-alive clients (or one opening many connections)
  // would lock every later scraper and health probe out. HTTP lets a server close an idle
  // connection at any time; its client opens a new one (and retries a GET that met the close). A
  // busy connection is never cut, so a request on its way is answered; the one idle longest is
  // the least likely to be about to send one.
  bool evict_the_longest_idle() {
    const auto victim =
        std::ranges::find_if(open, [](const connection& c) { return c.idle && !c.evicted; });
    if (victim == open.end()) return false;
    victim->evicted = true;
    --connections;
    // Its session, waiting for a request's first byte, sees the read fail and ends.
    victim->stream->close();
    return true;
  }

  impl(const registry& r, server_options o) : source(r), options(std::move(o)) {}

  http::response<http::string_body> respond(const http::request<http::string_body>& req) {
    http::response<http::string_body> res;
    res.version(req.version());
    res.keep_alive(req.keep_alive());
    res.set(http::field::server, "qrt");
    const std::string_view target = req.target();
    const std::string_view path = target.substr(0, target.find('?'));
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET, HEAD");
      res.body() = "only GET is served\n";
    } else if (path == "/metrics") {
      res.result(http::status::ok);
      res.set(http::field::content_type, exposition_content_type);
      res.body() = source.expose();
    } else if (path == "/health" && options.health) {
      auto [healthy, body] = options.health();
      res.result(healthy ? http::status::ok : http::status::service_unavailable);
      res.set(http::field::content_type, "application/json");
      res.body() = std::move(body);
    } else {
      res.result(http::status::not_found);
      res.body() = "not found: try /metrics\n";
    }
    if (req.method() == http::verb::head) {
      res.content_length(res.body().size());
      res.body().clear();
    } else {
      res.prepare_payload();
    }
    return res;
  }

  // The status for a request Beast's parser refused, or none when the error is not a refusal
  // (the peer closed, the read timed out, the request was cut short).
  static std::optional<http::status> refusal_status(const boost::system::error_code& ec) {
    if (ec.category() != http::make_error_code(http::error::bad_target).category()) return {};
    switch (static_cast<http::error>(ec.value())) {
      case http::error::end_of_stream:
      case http::error::partial_message:
      case http::error::need_more:
      case http::error::need_buffer:
        return {};
      case http::error::body_limit:
        return http::status::payload_too_large;
      case http::error::header_limit:
        return http::status::request_header_fields_too_large;
      default:
        return http::status::bad_request;
    }
  }

  // What the wait for a request's first byte reads at most; the parser reads the rest.
  static constexpr std::size_t first_read_bytes = 1024;

  static http::response<http::string_body> refusal(http::status status) {
    http::response<http::string_body> res{status, 11};
    res.set(http::field::server, "qrt");
    res.set(http::field::content_type, "text/plain");
    res.keep_alive(false);
    res.body() = std::string(http::obsolete_reason(status)) + "\n";
    res.prepare_payload();
    return res;
  }

  asio::awaitable<void> session(tcp::socket socket) {
    boost::beast::tcp_stream stream(std::move(socket));
    slot me(*this, stream);
    boost::beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(max_request_head_bytes));
      parser.body_limit(max_request_body_bytes);
      // Each request, and each answer, within the timeout: a client that sends nothing, or a
      // byte at a time, is dropped instead of holding a descriptor for ever. The wait for the
      // request's first byte counts too, so an idle keep-alive connection ends after it as well.
      stream.expires_after(options.request_timeout);
      if (buffer.size() == 0) {
        // Idle until the request's first byte; a request already (partly) read is not.
        me.idle();
        auto [ec, n] = co_await stream.async_read_some(buffer.prepare(first_read_bytes),
                                                       asio::as_tuple(asio::use_awaitable));
        me.busy();
        if (ec || me.evicted()) co_return;
        buffer.commit(n);
      }
      auto [ec, n] =
          co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
      if (ec) {
        // A request the parser refused gets its status before the connection closes, so a
        // client (or an operator with curl) sees why instead of a bare reset. A closed
        // connection, a timeout or a half request gets nothing: there is nobody to tell, or
        // what arrived is not a request yet.
        if (const auto status = refusal_status(ec)) {
          auto res = refusal(*status);
          stream.expires_after(options.request_timeout);
          co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
        }
        co_return;
      }
      req = parser.release();
      auto res = respond(req);
      const bool keep = res.keep_alive();
      stream.expires_after(options.request_timeout);
      auto [wec, wn] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
      if (wec || !keep) co_return;
    }
  }

  asio::awaitable<void> accept_loop() {
    asio::steady_timer pause(*io);
    for (;;) {
      auto [ec, socket] = co_await acceptor->async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;  // stopped
      if (ec) {
        // Out of descriptors (EMFILE, ENFILE) or a connection reset before it was taken: the
        // next accept may succeed, and ending the loop would end /metrics and /health for the
        // rest of the process. A short pause keeps a lasting shortage from spinning.
        pause.expires_after(std::chrono::milliseconds(50));
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      // At the limit a new connection takes the place of the one idle longest; when every
      // connection is busy it is closed at once (the socket goes out of scope) rather than held
      // until its request times out: connections must not use up the process's descriptors,
      // which its providers need too.
      if (connections >= std::max<std::size_t>(1, options.max_connections) &&
          !evict_the_longest_idle()) {
        continue;
      }
      ++connections;
      asio::co_spawn(*io, session(std::move(socket)), asio::detached);
    }
  }
};

metrics_server::metrics_server(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

metrics_server::~metrics_server() {
  stop();
}

result<std::unique_ptr<metrics_server>> metrics_server::start(const registry& source,
                                                              server_options options) {
  // A deadline of zero or less would drop every client before its first byte: a server that
  // answers nobody must fail to start, not look healthy.
  if (options.request_timeout <= std::chrono::milliseconds::zero()) {
    return fail(errc::configuration_error, "metrics server request_timeout must be positive, got " +
                                               std::to_string(options.request_timeout.count()) +
                                               " ms");
  }
  auto p = std::make_unique<impl>(source, std::move(options));
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(p->options.address, ec);
  if (ec) {
    return fail(errc::configuration_error,
                "metrics server address '" + p->options.address + "' is not an IP address");
  }
  const tcp::endpoint ep(address, p->options.port);
  const std::string where = p->options.address + ":" + std::to_string(p->options.port);
  if (p->acceptor->open(ep.protocol(), ec); ec) {
    return fail(errc::connection_failed, "metrics server cannot open a socket: " + ec.message());
  }
  p->acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (p->acceptor->bind(ep, ec); ec) {
    return fail(errc::connection_failed,
                "metrics server cannot bind " + where + ": " + ec.message());
  }
  if (p->acceptor->listen(asio::socket_base::max_listen_connections, ec); ec) {
    return fail(errc::connection_failed,
                "metrics server cannot listen on " + where + ": " + ec.message());
  }
  p->port = p->acceptor->local_endpoint(ec).port();
  asio::co_spawn(*p->io, p->accept_loop(), asio::detached);
  p->thread = std::thread(
      [raw = p.get()] { qrt::detail::run_io_loop(*raw->io, "metrics server", "qrt-metrics"); });
  return std::unique_ptr<metrics_server>(new metrics_server(std::move(p)));
}

std::uint16_t metrics_server::port() const noexcept {
  return impl_->port;
}

void metrics_server::stop() {
  if (!impl_ || !impl_->io) return;
  impl_->io->stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  // The thread has ended, so nothing else touches these. The listening socket first (it belongs
  // to the loop); then the loop, whose pending handlers hold the open sessions: destroying them
  // closes every connection still open.
  impl_->acceptor.reset();
  impl_->io.reset();
}

}  // namespace qrt::metrics
