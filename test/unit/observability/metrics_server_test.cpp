#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <qrt/metrics_server.hpp>
#include <string_view>
#include <thread>
#include <vector>

namespace qrt::metrics {
namespace {

namespace http = boost::beast::http;

http::response<http::string_body> get(std::uint16_t port, const std::string& target,
                                      http::verb verb = http::verb::get) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  http::request<http::string_body> req(verb, target, 11);
  req.set(http::field::host, "127.0.0.1");
  http::write(socket, req);
  boost::beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(socket, buffer, res);
  return res;
}

TEST(MetricsServer, ServesTheExpositionOnMetrics) {
  registry r;
  r.add_counter("app_sent_total", "sent").with({}).inc(5);
  auto server = metrics_server::start(r);
  ASSERT_TRUE(server) << server.error().to_string();
  ASSERT_NE((*server)->port(), 0);

  auto res = get((*server)->port(), "/metrics");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], exposition_content_type);
  EXPECT_EQ(res.body(), r.expose());

  // The endpoint reads live values, not a snapshot taken at start.
  r.add_counter("app_sent_total", "sent").with({}).inc();
  EXPECT_NE(get((*server)->port(), "/metrics").body().find("app_sent_total 6"), std::string::npos);
}

TEST(MetricsServer, AnswersUnknownPathsAndMethodsWithoutServingMetrics) {
  registry r;
  r.add_counter("app_sent_total", "sent").with({}).inc();
  auto server = metrics_server::start(r);
  ASSERT_TRUE(server);
  EXPECT_EQ(get((*server)->port(), "/nope").result(), http::status::not_found);
  EXPECT_EQ(get((*server)->port(), "/health").result(), http::status::not_found);
  for (const auto verb : {http::verb::post, http::verb::put, http::verb::delete_}) {
    const auto res = get((*server)->port(), "/metrics", verb);
    EXPECT_EQ(res.result(), http::status::method_not_allowed) << res.body();
    EXPECT_EQ(res[http::field::allow], "GET, HEAD");
    EXPECT_EQ(res.body().find("app_sent_total"), std::string::npos) << verb;
  }
  EXPECT_EQ(get((*server)->port(), "/metrics", http::verb::post).result(),
            http::status::method_not_allowed);
}

TEST(MetricsServer, ServesHealthWithItsStatusCode) {
  registry r;
  std::atomic<bool> healthy{true};
  auto server = metrics_server::start(
      r, {.health = [&] {
        const bool now = healthy.load();
        return std::pair{
            now, std::string(now ? R"({"status":"healthy"})" : R"({"status":"unhealthy"})")};
      }});
  ASSERT_TRUE(server);
  auto ok = get((*server)->port(), "/health");
  EXPECT_EQ(ok.result(), http::status::ok);
  EXPECT_EQ(ok.body(), R"({"status":"healthy"})");
  healthy = false;
  EXPECT_EQ(get((*server)->port(), "/health").result(), http::status::service_unavailable);
}

// A client that starts a request and never finishes it (or never sends one) is dropped after
// request_timeout, so slow clients cannot hold the server's descriptors until it runs out; the
// server goes on answering others meanwhile.
TEST(MetricsServer, DropsAConnectionThatDoesNotFinishItsRequestInTime) {
  registry r;
  auto server = metrics_server::start(r, {.request_timeout = std::chrono::milliseconds(200)});
  ASSERT_TRUE(server) << server.error().to_string();
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket slow(io);
  slow.connect({boost::asio::ip::make_address("127.0.0.1"), (*server)->port()});
  boost::asio::write(slow, boost::asio::buffer(std::string_view("GET /metrics HTTP/1.1\r\n")));
  EXPECT_EQ(get((*server)->port(), "/metrics").result(), http::status::ok)
      << "the slow client held up the others";
  // The read returns 0 (end of stream) when the server drops the connection. It is a plain
  // recv() with a receive timeout of its own, which Asio's blocking reads would wait out: before,
  // the server held the connection and this read gave up with EAGAIN after 30 s.
  const timeval limit{30, 0};
  ASSERT_EQ(::setsockopt(slow.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit), 0);
  char byte = 0;
  const auto n = ::recv(slow.native_handle(), &byte, 1, 0);
  EXPECT_EQ(n, 0) << (n < 0 ? std::strerror(errno) : "the server answered a half request");
}

// A client that sends a request a byte at a time, never finishing it, is dropped when the request's
// time is up: the deadline covers the whole request, not each read, so a trickle cannot hold a
// connection until it reaches the size limit (here 8 KiB at 10 ms a byte: over 80 s).
TEST(MetricsServer, DropsAClientThatTricklesItsRequest) {
  registry r;
  auto server = metrics_server::start(r, {.request_timeout = std::chrono::milliseconds(200)});
  ASSERT_TRUE(server) << server.error().to_string();
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket slow(io);
  slow.connect({boost::asio::ip::make_address("127.0.0.1"), (*server)->port()});
  boost::asio::write(slow,
                     boost::asio::buffer(std::string_view("GET /metrics HTTP/1.1\r\nX-Slow: ")));
  std::size_t sent = 0;
  boost::system::error_code ec;
  while (sent < max_request_head_bytes) {
    boost::asio::write(slow, boost::asio::buffer("a", 1), ec);
    if (ec) break;  // the server has closed the connection
    ++sent;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // the trickle's pace
  }
  EXPECT_LT(sent, max_request_head_bytes) << "the trickle held its connection to the size limit";
}

// Waits (at most 30 s, a receive timeout of the socket's own) for what `socket` reads next: 0 at
// the end of the stream, i.e. when the server has closed the connection.
ssize_t read_one_byte(boost::asio::ip::tcp::socket& socket) {
  const timeval limit{30, 0};
  EXPECT_EQ(::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit), 0);
  char byte = 0;
  return ::recv(socket.native_handle(), &byte, 1, 0);
}

// Sends a keep-alive GET on `socket` and reads its answer; unknown when the connection failed.
http::status ask(boost::asio::ip::tcp::socket& socket, boost::beast::flat_buffer& buffer,
                 const std::string& target = "/metrics") {
  http::request<http::string_body> req(http::verb::get, target, 11);
  req.set(http::field::host, "127.0.0.1");
  boost::beast::error_code ec;
  http::write(socket, req, ec);
  http::response<http::string_body> res;
  if (!ec) http::read(socket, buffer, res, ec);
  return ec ? http::status::unknown : res.result();
}

// A GET on a connection of its own: unknown when the server closed it without an answer.
http::status answer_on_a_new_connection(std::uint16_t port,
                                        const std::string& target = "/metrics") {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  boost::beast::flat_buffer buffer;
  return ask(socket, buffer, target);
}

// Leaves `socket` in the middle of a request, as the server sees it: one whole request and the
// start of the next go out in a single write, so once the first is answered the server holds the
// second's start. Returns the first answer's status.
http::status stop_halfway_through_a_second_request(boost::asio::ip::tcp::socket& socket,
                                                   boost::beast::flat_buffer& buffer) {
  boost::asio::write(socket, boost::asio::buffer(
                                 std::string_view("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                                                  "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")));
  http::response<http::string_body> res;
  boost::beast::error_code ec;
  http::read(socket, buffer, res, ec);
  return ec ? http::status::unknown : res.result();
}

// Every connection holds a descriptor of the process (shared with the provider's connections):
// past max_connections, when every connection is in the middle of a request, a new connection is
// closed at once instead of being held, and one that ends makes room for the next.
TEST(MetricsServer, HoldsNoMoreThanMaxConnectionsAtOnce) {
  registry r;
  auto server = metrics_server::start(
      r, {.request_timeout = std::chrono::milliseconds(60'000), .max_connections = 3});
  ASSERT_TRUE(server) << server.error().to_string();
  const boost::asio::ip::tcp::endpoint at(boost::asio::ip::make_address("127.0.0.1"),
                                          (*server)->port());
  boost::asio::io_context io;
  std::vector<boost::asio::ip::tcp::socket> held;
  std::vector<boost::beast::flat_buffer> buffers(3);
  for (std::size_t i = 0; i < 3; ++i) {
    held.emplace_back(io);
    held.back().connect(at);
    ASSERT_EQ(stop_halfway_through_a_second_request(held.back(), buffers[i]), http::status::ok);
  }
  boost::asio::ip::tcp::socket extra(io);
  extra.connect(at);
  const auto n = read_one_byte(extra);
  EXPECT_EQ(n, 0) << (n < 0 ? std::strerror(errno) : "the server answered");

  // The connections it holds are served: the rest of one's request is answered.
  boost::asio::write(held[0], boost::asio::buffer(std::string_view("Connection: close\r\n\r\n")));
  http::response<http::string_body> res;
  http::read(held[0], buffers[0], res);
  EXPECT_EQ(res.result(), http::status::ok);
  // Once the server has closed that one, a new connection is served.
  EXPECT_EQ(read_one_byte(held[0]), 0);
  EXPECT_EQ(answer_on_a_new_connection((*server)->port()), http::status::ok);
}

// Keep-alive clients (a Prometheus scraper keeps its connection between scrapes) that sit idle
// between requests must not lock every later scraper and health probe out: at the cap, a new
// connection takes the place of the one idle longest. Before, it was closed at once, for as long
// as the idle ones stayed.
TEST(MetricsServer, ANewConnectionTakesThePlaceOfTheOneIdleLongest) {
  registry r;
  auto server = metrics_server::start(
      r, {.request_timeout = std::chrono::milliseconds(60'000), .max_connections = 2});
  ASSERT_TRUE(server) << server.error().to_string();
  const boost::asio::ip::tcp::endpoint at(boost::asio::ip::make_address("127.0.0.1"),
                                          (*server)->port());
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket first(io);
  boost::asio::ip::tcp::socket second(io);
  boost::beast::flat_buffer first_buffer;
  boost::beast::flat_buffer second_buffer;
  first.connect(at);
  ASSERT_EQ(ask(first, first_buffer), http::status::ok);
  second.connect(at);
  ASSERT_EQ(ask(second, second_buffer), http::status::ok);

  ASSERT_EQ(answer_on_a_new_connection((*server)->port()), http::status::ok)
      << "idle keep-alive connections locked a new client out";
  const auto n = read_one_byte(first);
  EXPECT_EQ(n, 0) << (n < 0 ? std::strerror(errno) : "answered")
                  << ": the connection idle longest is the one to go";
  EXPECT_EQ(ask(second, second_buffer), http::status::ok) << "the other idle one was closed too";
}

// A connection that has sent nothing yet is as idle as one between requests: a client opening
// connections and sending nothing cannot lock the others out either.
TEST(MetricsServer, ANewConnectionTakesThePlaceOfOneThatHasSentNothing) {
  registry r;
  auto server = metrics_server::start(
      r, {.request_timeout = std::chrono::milliseconds(60'000), .max_connections = 1});
  ASSERT_TRUE(server) << server.error().to_string();
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket silent(io);
  silent.connect({boost::asio::ip::make_address("127.0.0.1"), (*server)->port()});
  ASSERT_EQ(answer_on_a_new_connection((*server)->port()), http::status::ok)
      << "a connection that sent nothing locked a new client out";
  EXPECT_EQ(read_one_byte(silent), 0);
}

// A connection in the middle of a request is never the one to go, even when it is the oldest: a
// newcomer takes the place of an idle one, and the request goes on to its answer.
TEST(MetricsServer, ANewConnectionDoesNotCutARequestHalfway) {
  registry r;
  auto server = metrics_server::start(
      r, {.request_timeout = std::chrono::milliseconds(60'000), .max_connections = 2});
  ASSERT_TRUE(server) << server.error().to_string();
  const boost::asio::ip::tcp::endpoint at(boost::asio::ip::make_address("127.0.0.1"),
                                          (*server)->port());
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket halfway(io);
  boost::asio::ip::tcp::socket idle(io);
  boost::beast::flat_buffer halfway_buffer;
  boost::beast::flat_buffer idle_buffer;
  halfway.connect(at);
  ASSERT_EQ(stop_halfway_through_a_second_request(halfway, halfway_buffer), http::status::ok);
  idle.connect(at);
  ASSERT_EQ(ask(idle, idle_buffer), http::status::ok);

  ASSERT_EQ(answer_on_a_new_connection((*server)->port()), http::status::ok)
      << "an idle keep-alive connection locked a new client out";
  const auto n = read_one_byte(idle);
  EXPECT_EQ(n, 0) << (n < 0 ? std::strerror(errno) : "answered")
                  << ": the idle connection was not the one to go";
  boost::asio::write(halfway, boost::asio::buffer(std::string_view("\r\n")));
  http::response<http::string_body> res;
  boost::beast::error_code ec;
  http::read(halfway, halfway_buffer, res, ec);
  EXPECT_FALSE(ec) << "the request in progress was cut: " << ec.message();
  EXPECT_EQ(res.result(), http::status::ok);
}

// Sends `raw` as it is and reads the answer: the status, and whether the server closed the
// connection after it.
std::pair<http::status, bool> answer_to_raw(std::uint16_t port, const std::string& raw) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  boost::asio::write(socket, boost::asio::buffer(raw));
  boost::beast::flat_buffer buffer;
  http::response<http::string_body> res;
  boost::beast::error_code ec;
  http::read(socket, buffer, res, ec);
  if (ec) return {http::status::unknown, false};
  // A close with part of the request unread reaches the client as a reset, not an end of stream.
  const auto n = read_one_byte(socket);
  return {res.result(), n == 0 || (n < 0 && errno == ECONNRESET)};
}

// A request the server cannot parse is answered with the reason, then the connection closes:
// before, it was closed without a word, and a client could not tell a malformed request from a
// server that went away.
TEST(MetricsServer, AnswersAMalformedRequestWithItsStatusAndCloses) {
  registry r;
  auto server = metrics_server::start(r);
  ASSERT_TRUE(server) << server.error().to_string();
  const auto port = (*server)->port();

  EXPECT_EQ(answer_to_raw(port, "GET /metrics HTTP/9.x\r\n\r\n"),
            std::pair(http::status::bad_request, true));
  EXPECT_EQ(answer_to_raw(port, "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n"),
            std::pair(http::status::bad_request, true));
  EXPECT_EQ(answer_to_raw(
                port, "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(20'000, 'a') + "\r\n\r\n"),
            std::pair(http::status::request_header_fields_too_large, true));
  EXPECT_EQ(answer_to_raw(port, "POST /metrics HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n"),
            std::pair(http::status::payload_too_large, true));
  // A request line past the limit, before any header.
  EXPECT_EQ(
      answer_to_raw(port, "GET /" + std::string(max_request_head_bytes, 'm') + " HTTP/1.1\r\n\r\n"),
      std::pair(http::status::request_header_fields_too_large, true));
  // Not HTTP at all: the start of a TLS ClientHello, and bytes from no protocol.
  EXPECT_EQ(answer_to_raw(port, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11)),
            std::pair(http::status::bad_request, true));
  EXPECT_EQ(answer_to_raw(port, std::string("\0\xff\xfe\r\n\r\n", 7)),
            std::pair(http::status::bad_request, true));
  // And the server goes on serving.
  EXPECT_EQ(get(port, "/metrics").result(), http::status::ok);
}

// stop() lets go of everything the server holds, not only its thread: before, the clients still
// connected kept their connections (and the process its descriptors) until the server was
// destroyed, and the listening socket kept taking connections nobody would answer.
TEST(MetricsServer, StopClosesItsConnectionsAndItsPort) {
  registry r;
  auto server = metrics_server::start(r, {.request_timeout = std::chrono::milliseconds(60'000)});
  ASSERT_TRUE(server) << server.error().to_string();
  const boost::asio::ip::tcp::endpoint at(boost::asio::ip::make_address("127.0.0.1"),
                                          (*server)->port());
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket idle(io);
  idle.connect(at);
  boost::asio::ip::tcp::socket halfway(io);
  halfway.connect(at);
  boost::asio::write(halfway, boost::asio::buffer(std::string_view("GET /metrics HTTP/1.1\r\n")));
  // Both are held: a served request on a third connection shows the server has taken them.
  EXPECT_EQ(get((*server)->port(), "/metrics").result(), http::status::ok);

  (*server)->stop();
  // Closed: an end of stream, or a reset when part of what was sent was still unread.
  const auto closed = [](boost::asio::ip::tcp::socket& socket) {
    const auto n = read_one_byte(socket);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  };
  EXPECT_TRUE(closed(idle)) << "a connection with no request outlived stop()";
  EXPECT_TRUE(closed(halfway)) << "a connection with half a request outlived stop()";
  boost::asio::ip::tcp::socket late(io);
  boost::system::error_code ec;
  late.connect(at, ec);
  EXPECT_EQ(ec, boost::asio::error::connection_refused);
  EXPECT_EQ((*server)->port(), at.port()) << "port() still says where it listened";
  (*server)->stop();  // idempotent
}

TEST(MetricsServer, FailsClearlyOnABadAddress) {
  registry r;
  auto server = metrics_server::start(r, {.address = "not-an-ip"});
  ASSERT_FALSE(server);
  EXPECT_EQ(server.error().code, errc::configuration_error);
  EXPECT_NE(server.error().message.find("not-an-ip"), std::string::npos);
}

// A request_timeout of zero or less would drop every client at once: start() refuses it, naming
// the option, instead of serving nobody. Before, the server started and answered no one.
TEST(MetricsServer, RefusesARequestTimeoutThatIsNotPositive) {
  registry r;
  for (const auto timeout : {std::chrono::milliseconds(0), std::chrono::milliseconds(-5)}) {
    auto server = metrics_server::start(r, {.request_timeout = timeout});
    ASSERT_FALSE(server) << timeout.count();
    EXPECT_EQ(server.error().code, errc::configuration_error);
    EXPECT_NE(server.error().message.find("request_timeout"), std::string::npos)
        << server.error().message;
  }
}

TEST(MetricsServer, FailsClearlyWhenThePortIsTaken) {
  registry r;
  auto first = metrics_server::start(r);
  ASSERT_TRUE(first);
  auto second = metrics_server::start(r, {.port = (*first)->port()});
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, errc::connection_failed);
}

}  // namespace
}  // namespace qrt::metrics
