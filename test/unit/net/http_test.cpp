// The HTTP client against hostile peers and inputs: every answer is bounded (head, body,
// chunked or not, time), anything that is not HTTP is a clear protocol_error, a request field
// that cannot be sent is refused before a byte leaves, endpoints never echo user info, and
// nothing here throws.
#include "net/http.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

using namespace qrt;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

// Accepts connections on 127.0.0.1 (kernel-chosen port) on its own thread and hands each one to
// `serve`, one at a time, until it is destroyed. Declared last in the servers below, so that it
// starts once the members `serve` uses exist, and stops before they go.
class accept_loop {
 public:
  using serve_fn = std::function<void(asio::ip::tcp::socket)>;
  explicit accept_loop(serve_fn serve)
      : serve_(std::move(serve)),
        acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}),
        thread_([this] { run(); }) {}
  ~accept_loop() {
    stopping_ = true;
    boost::system::error_code ec;
    asio::ip::tcp::socket wake(io_);
    wake.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
  }
  net::endpoint target() const {
    return net::endpoint{false, "127.0.0.1", acceptor_.local_endpoint().port()};
  }
  /// Keeps `socket` open until the loop ends (from `serve`, on the loop's thread).
  void hold(asio::ip::tcp::socket socket) { held_.push_back(std::move(socket)); }

 private:
  void run() {
    while (!stopping_) {
      asio::ip::tcp::socket socket(io_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stopping_) return;
      serve_(std::move(socket));
    }
  }
  serve_fn serve_;
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::atomic<bool> stopping_{false};
  std::vector<asio::ip::tcp::socket> held_;  // closed before io_ goes
  std::thread thread_;
};

// Answers every request with the same raw bytes; `hold` keeps the connection open afterwards
// (a server that never finishes its answer).
class raw_server {
 public:
  raw_server(std::string reply, bool hold) : reply_(std::move(reply)), hold_(hold) {}
  net::endpoint target() const { return loop_.target(); }
  int requests() const { return requests_; }

 private:
  void serve(asio::ip::tcp::socket socket) {
    boost::system::error_code ec;
    asio::streambuf head;
    asio::read_until(socket, head, "\r\n\r\n", ec);
    if (ec) return;
    ++requests_;
    asio::write(socket, asio::buffer(reply_), ec);
    if (hold_) loop_.hold(std::move(socket));
  }
  std::string reply_;
  bool hold_;
  std::atomic<int> requests_{0};
  accept_loop loop_{[this](asio::ip::tcp::socket s) { serve(std::move(s)); }};
};

result<net::http_response> call(const net::endpoint& target, net::http_request request,
                                std::size_t max_body = 1u << 20,
                                std::chrono::milliseconds timeout = 5s) {
  asio::io_context io;
  net::http_settings settings;
  settings.max_response_bytes = max_body;
  net::http_pool pool(io.get_executor(), target, settings);
  auto f = asio::co_spawn(io, pool.send(std::move(request), timeout), asio::use_future);
  io.run();
  return f.get();  // rethrows whatever escaped the call: a test failure
}

net::http_request get() {
  net::http_request r;
  r.method = "GET";
  return r;
}

std::string chunked_body(std::size_t total) {
  std::string out;
  const std::string chunk(4096, 'x');
  for (std::size_t sent = 0; sent < total; sent += chunk.size()) out += "1000\r\n" + chunk + "\r\n";
  return out + "0\r\n\r\n";
}

// Keeps each connection open and answers every request on it with the same raw bytes: what
// a keep-alive connection sees from a server whose answers do not end where they say. With
// `then_close`, the first answer on a connection is followed by those bytes and the close (a
// server timing out an idle connection with a "408").
class keep_alive_server {
 public:
  explicit keep_alive_server(std::string reply, std::string then_close = {})
      : reply_(std::move(reply)), then_close_(std::move(then_close)) {}
  net::endpoint target() const { return loop_.target(); }
  int requests() const { return requests_; }

 private:
  void serve(asio::ip::tcp::socket socket) {
    boost::system::error_code ec;
    asio::streambuf head;
    for (;;) {
      const auto n = asio::read_until(socket, head, "\r\n\r\n", ec);
      if (ec) return;
      head.consume(n);
      ++requests_;
      asio::write(socket, asio::buffer(reply_), ec);
      if (ec) return;
      if (!then_close_.empty()) {
        asio::write(socket, asio::buffer(then_close_), ec);
        return;
      }
    }
  }
  std::string reply_;
  std::string then_close_;
  std::atomic<int> requests_{0};
  accept_loop loop_{[this](asio::ip::tcp::socket s) { serve(std::move(s)); }};
};

// On every connection: answers the first request, keeping the connection alive, then closes
// it. With `take_next`, it first reads the next request on it and closes without an answer (a
// server that took the request and went away before answering); without, it closes at once (a
// server giving up an idle keep-alive connection). closes() counts the connections it closed.
class closing_server {
 public:
  explicit closing_server(bool take_next) : take_next_(take_next) {}
  net::endpoint target() const { return loop_.target(); }
  int requests() const { return requests_; }
  /// True once `n` connections were closed by the server (false after 5 s).
  bool wait_for_closes(int n) {
    std::unique_lock lock(mutex_);
    return closed_changed_.wait_for(lock, 5s, [&] { return closes_ >= n; });
  }

 private:
  void serve(asio::ip::tcp::socket socket) {
    boost::system::error_code ec;
    asio::streambuf head;
    const auto n = asio::read_until(socket, head, "\r\n\r\n", ec);
    if (ec) return;
    head.consume(n);
    ++requests_;
    asio::write(socket, asio::buffer(std::string("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")),
                ec);
    if (take_next_ && !ec) {
      asio::read_until(socket, head, "\r\n\r\n", ec);
      if (!ec) ++requests_;
    }
    socket.close(ec);
    std::lock_guard lock(mutex_);
    ++closes_;
    closed_changed_.notify_all();
  }
  bool take_next_;
  std::atomic<int> requests_{0};
  std::mutex mutex_;
  std::condition_variable closed_changed_;
  int closes_ = 0;
  accept_loop loop_{[this](asio::ip::tcp::socket s) { serve(std::move(s)); }};
};

}  // namespace

TEST(HttpResponseParsing, ReadsCompleteAnswersWithLengthOrChunks) {
  auto plain = net::parse_http_response(
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Amzn-RequestId: r1\r\n\r\nhello", 100);
  ASSERT_TRUE(plain) << plain.error().to_string();
  EXPECT_EQ(plain->status, 200u);
  EXPECT_EQ(plain->body, "hello");
  EXPECT_EQ(plain->header("x-amzn-requestid"), "r1");

  auto chunked = net::parse_http_response(
      "HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
      100);
  ASSERT_TRUE(chunked) << chunked.error().to_string();
  EXPECT_EQ(chunked->status, 503u);
  EXPECT_EQ(chunked->body, "abcde");

  auto until_close = net::parse_http_response("HTTP/1.1 200 OK\r\n\r\nto the end", 100);
  ASSERT_TRUE(until_close) << until_close.error().to_string();
  EXPECT_EQ(until_close->body, "to the end");
}

// An answer cut anywhere is incomplete, whatever the cut: a protocol_error, never a partial
// body read as whole. (Cut after the last chunk's size line, it once drove the parser past its
// input: the fuzz corpus keeps that case too.)
TEST(HttpResponseParsing, AChunkedAnswerCutAnywhereIsIncomplete) {
  const std::string whole =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
  for (std::size_t cut = 1; cut < whole.size(); ++cut) {
    auto r = net::parse_http_response(whole.substr(0, cut), 100);
    ASSERT_FALSE(r) << "cut at " << cut << " read as a whole answer";
    EXPECT_EQ(r.error().code, errc::protocol_error) << cut;
  }
  auto r = net::parse_http_response(whole, 100);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->body, "abc");
}

TEST(HttpResponseParsing, OversizeOrMalformedAnswersAreProtocolErrors) {
  const std::string big_head =
      "HTTP/1.1 200 OK\r\n" + std::string(net::max_response_head_bytes, 'a') + ": b\r\n\r\n";
  const std::pair<std::string, std::string> cases[] = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n" + std::string(101, 'x'), "body over 100"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", ""},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked_body(8192),
       "body over 100"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n", ""},
      {big_head, "head over"},
      {"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not valid HTTP"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "incomplete"},
      {"", "incomplete"},
  };
  for (const auto& [bytes, says] : cases) {
    auto r = net::parse_http_response(bytes, 100);
    ASSERT_FALSE(r) << bytes.substr(0, 80);
    EXPECT_EQ(r.error().code, errc::protocol_error);
    EXPECT_NE(r.error().message.find(says), std::string::npos) << r.error().message;
  }
}

TEST(HttpClient, AnEndlessHeadIsRefusedAtTheLimit) {
  std::string endless = "HTTP/1.1 200 OK\r\n";
  while (endless.size() < 2 * net::max_response_head_bytes)
    endless += "X-Filler: aaaaaaaaaaaaaa\r\n";
  raw_server server(endless, true);
  auto r = call(server.target(), get());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::protocol_error);
  EXPECT_NE(r.error().message.find("head over"), std::string::npos) << r.error().message;
}

TEST(HttpClient, AChunkedBodyOverTheLimitIsRefused) {
  raw_server server(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked_body(256 * 1024), true);
  auto r = call(server.target(), get(), 64 * 1024);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::protocol_error);
  EXPECT_NE(r.error().message.find("body over 65536 bytes"), std::string::npos)
      << r.error().message;
}

TEST(HttpClient, GarbageIsAProtocolErrorNotAConnectionFailure) {
  raw_server server("220 smtp.example ESMTP ready\r\n\r\n", false);
  auto r = call(server.target(), get());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::protocol_error) << r.error().to_string();
}

// An answer followed by bytes its length does not cover (a Content-Length that is too short, a
// second answer nobody asked for): the extra bytes belong to no request. On a reused
// connection they were read as the next call's answer, so every later call on it got the
// answer to the call before.
TEST(HttpClient, BytesPastTheEndOfAnAnswerAreNeverTheNextCallsAnswer) {
  keep_alive_server server(
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale");
  asio::io_context io;
  net::http_pool pool(io.get_executor(), server.target(), net::http_settings{});
  auto calls = [&]() -> asio::awaitable<std::vector<std::string>> {
    std::vector<std::string> bodies;
    for (int i = 0; i < 3; ++i) {
      auto r = co_await pool.send(get(), 5s);
      bodies.push_back(r ? r->body : "error: " + r.error().to_string());
    }
    co_return bodies;
  };
  auto f = asio::co_spawn(io, calls(), asio::use_future);
  io.run();
  const auto bodies = f.get();
  for (const auto& body : bodies) EXPECT_EQ(body, "ok");
  EXPECT_EQ(server.requests(), 3) << "each call is answered by the server, not by leftovers";
}

// A server that gives up on an idle keep-alive connection may say so ("408") before it closes
// it. That answer is to no request: the next call must not take it as its own.
TEST(HttpClient, AnAnswerSentOnAnIdleConnectionIsNotTheNextCallsAnswer) {
  keep_alive_server server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                           "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n");
  asio::io_context io;
  net::http_pool pool(io.get_executor(), server.target(), net::http_settings{});
  auto calls = [&]() -> asio::awaitable<std::vector<std::string>> {
    std::vector<std::string> answers;
    for (int i = 0; i < 2; ++i) {
      auto r = co_await pool.send(get(), 5s);
      answers.push_back(r ? std::to_string(r->status) + " " + r->body
                          : "error: " + r.error().to_string());
    }
    co_return answers;
  };
  auto f = asio::co_spawn(io, calls(), asio::use_future);
  io.run();
  for (const auto& answer : f.get()) EXPECT_EQ(answer, "200 ok");
  EXPECT_EQ(server.requests(), 2);
}

// A keep-alive connection the server closed while it sat idle is not used again: the next call
// goes out on a fresh connection and is answered.
TEST(HttpClient, AConnectionTheServerClosedWhileIdleIsNotUsedAgain) {
  closing_server server(/*take_next=*/false);
  asio::io_context io;
  net::http_pool pool(io.get_executor(), server.target(), net::http_settings{});
  auto calls = [&]() -> asio::awaitable<std::vector<std::string>> {
    std::vector<std::string> answers;
    for (int i = 0; i < 2; ++i) {
      auto r = co_await pool.send(get(), 5s);
      answers.push_back(r ? r->body : "error: " + r.error().to_string());
      if (i == 0 && !server.wait_for_closes(1)) answers.push_back("the server never closed");
    }
    co_return answers;
  };
  auto f = asio::co_spawn(io, calls(), asio::use_future);
  io.run();
  EXPECT_EQ(f.get(), (std::vector<std::string>{"ok", "ok"}));
  EXPECT_EQ(server.requests(), 2);
}

// A request written whole on a reused connection may have been carried out even if the
// connection then closes without an answer: the call fails as one whose outcome is unknown
// (it reached the server), and the pool does not send it again on its own, or a send it
// repeated would be stored twice behind the caller's back.
TEST(HttpClient, ARequestWrittenOnAReusedConnectionIsNotSentAgainByThePool) {
  closing_server server(/*take_next=*/true);
  asio::io_context io;
  net::http_pool pool(io.get_executor(), server.target(), net::http_settings{});
  bool reached = false;
  auto calls = [&]() -> asio::awaitable<std::vector<std::string>> {
    std::vector<std::string> answers;
    for (int i = 0; i < 2; ++i) {
      auto r = co_await pool.send(get(), 5s, i == 1 ? &reached : nullptr);
      answers.push_back(r ? r->body : std::string(to_string(r.error().code)));
    }
    co_return answers;
  };
  auto f = asio::co_spawn(io, calls(), asio::use_future);
  io.run();
  EXPECT_EQ(f.get(), (std::vector<std::string>{"ok", "connection_failed"}));
  EXPECT_TRUE(reached) << "a request the server may have carried out was reported as not sent";
  EXPECT_EQ(server.requests(), 2) << "the pool sent the request a second time";
}

// Reads a request's head and then, with `hang_up`, closes the connection with the rest of the
// request unread (the kernel resets it); without, holds it open and reads nothing more. Either
// way a request larger than the socket buffers is never written whole.
class unread_body_server {
 public:
  explicit unread_body_server(bool hang_up) : hang_up_(hang_up) {}
  net::endpoint target() const { return loop_.target(); }

 private:
  void serve(asio::ip::tcp::socket socket) {
    boost::system::error_code ec;
    asio::streambuf head;
    asio::read_until(socket, head, "\r\n\r\n", ec);
    if (hang_up_) {
      socket.close(ec);
    } else {
      loop_.hold(std::move(socket));
    }
  }
  bool hang_up_;
  accept_loop loop_{[this](asio::ip::tcp::socket s) { serve(std::move(s)); }};
};

/// A POST whose body (64 MiB) is far larger than what the kernel buffers between the two ends.
net::http_request large_post() {
  net::http_request r;
  r.method = "POST";
  r.body.assign(64u << 20, 'x');
  return r;
}

// A request cut off while it was being written never reached the server whole, so the server
// cannot have acted on it: the call fails without claiming it may have (a send reported that
// way is called "maybe stored" although nothing was stored).
TEST(HttpClient, ARequestCutOffWhileBeingWrittenIsNotReportedAsReachingTheServer) {
  for (const bool hang_up : {true, false}) {
    SCOPED_TRACE(hang_up ? "the server closed mid-write" : "the deadline passed mid-write");
    unread_body_server server(hang_up);
    asio::io_context io;
    net::http_pool pool(io.get_executor(), server.target(), net::http_settings{});
    bool reached = false;
    auto f = asio::co_spawn(io, pool.send(large_post(), 500ms, &reached), asio::use_future);
    io.run();
    const auto r = f.get();
    ASSERT_FALSE(r) << "a request the server never read was answered";
    EXPECT_EQ(r.error().code, hang_up ? errc::connection_failed : errc::timeout)
        << r.error().to_string();
    if (!hang_up) {  // the timeout says the request did not go out, not that no answer came
      EXPECT_NE(r.error().message.find("was not written whole within 500 ms"), std::string::npos)
          << r.error().to_string();
      EXPECT_EQ(r.error().message.find("no answer"), std::string::npos) << r.error().to_string();
    }
    EXPECT_FALSE(reached) << "a request never written whole was reported as reaching the server: "
                          << r.error().to_string();
  }
}

// Interim answers (1xx) may come before the answer to a request even when the client asked for
// none; the answer is what follows them. Read as the answer, a request the server went on to
// carry out (a send) was reported failed.
TEST(HttpClient, InterimAnswersArePassedOverToTheAnswer) {
  raw_server server(
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
      false);
  auto r = call(server.target(), get());
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(r->body, "ok");
}

// A chunk-size line (or a trailer) that never ends is no part of the head, so the head limit
// does not bound it: the client must stop reading it at a bound, not buffer it until the call
// times out.
TEST(HttpClient, AnEndlessChunkLineIsRefusedNotBuffered) {
  std::string reply = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;";
  reply.append(16u << 20, 'a');
  raw_server server(reply, true);
  auto r = call(server.target(), get());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::protocol_error) << r.error().to_string();
  EXPECT_NE(r.error().message.find("chunk-size line or trailer over"), std::string::npos)
      << r.error().message;
}

TEST(HttpClient, AServerThatNeverFinishesRunsIntoTheTimeout) {
  raw_server server("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part", true);
  auto r = call(server.target(), get(), 1u << 20, 300ms);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout);
}

// Timeouts firing at every phase of a call (connecting, writing, reading) while the pool's calls
// run on four threads: every call ends with an error, none hangs or crashes. Each stream's
// operations start on its strand, where Beast's timeout closes the socket; started from the
// caller's thread, an operation could race that close (found once, rarely, by the fault suite
// under UBSan).
TEST(HttpClient, TimeoutsAtEveryPhaseOnAPoolOfThreadsEndEveryCallCleanly) {
  raw_server server("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part", true);
  asio::io_context io;
  net::http_pool pool(io.get_executor(), server.target(), net::http_settings{});
  constexpr int calls = 200;
  std::vector<std::future<result<net::http_response>>> results;
  for (int i = 0; i < calls; ++i) {
    results.push_back(asio::co_spawn(io, pool.send(get(), std::chrono::milliseconds(1 + i % 20)),
                                     asio::use_future));
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&io] { io.run(); });
  for (auto& t : threads) t.join();
  for (auto& f : results) {
    auto r = f.get();
    ASSERT_FALSE(r) << "an answer that never finishes was taken as complete";
    EXPECT_TRUE(r.error().code == errc::timeout || r.error().code == errc::connection_failed)
        << r.error().to_string();
  }
}

// A header value or target that Beast could not hold, or that would split the request, is an
// error before anything is sent (a fetched token must not inject headers).
TEST(HttpClient, RequestFieldsThatCannotBeSentAreRefusedNotThrown) {
  raw_server server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false);
  std::vector<net::http_request> bad;
  bad.push_back(get());
  bad.back().headers.emplace_back("X-Token", std::string(70'000, 't'));
  bad.push_back(get());
  bad.back().headers.emplace_back("X-Token", "abc\r\nX-Injected: 1");
  bad.push_back(get());
  bad.back().headers.emplace_back("Bad Name", "v");
  bad.push_back(get());
  bad.back().target = "/path\r\nX-Injected: 1";
  bad.push_back(get());
  bad.back().method = "GET /x HTTP/1.1\r\n";
  for (auto& request : bad) {
    auto r = call(server.target(), request);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::invalid_argument) << r.error().to_string();
    EXPECT_EQ(r.error().message.find("abc"), std::string::npos) << "never the value";
  }
  EXPECT_EQ(server.requests(), 0);
  auto ok = call(server.target(), get());
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(ok->status, 200u);
}

TEST(HttpClient, AnUnreadableCaFileIsAnErrorFromTheConstructorOnNotAThrow) {
  asio::io_context io;
  net::http_settings settings;
  settings.ca_file = "/nonexistent/qrt-ca.pem";
  net::http_pool pool(io.get_executor(), net::endpoint{true, "sqs.example.invalid", 443}, settings);
  auto ready = pool.ready();
  ASSERT_FALSE(ready);
  EXPECT_EQ(ready.error().code, errc::configuration_error);
  EXPECT_NE(ready.error().message.find("/nonexistent/qrt-ca.pem"), std::string::npos);
  auto f = asio::co_spawn(io, pool.send(get(), 1s), asio::use_future);
  io.run();
  auto r = f.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::configuration_error);
}

TEST(HttpEndpoint, UserInfoIsRefusedAndNeverEchoed) {
  for (std::string_view url :
       {"http://user:SECRETPW@127.0.0.1:4566", "https://SECRETPW@host", "http://u:SECRET/PW@h",
        "sb://user:SECRETPW@host", "user:SECRETPW@host"}) {
    auto r = net::parse_endpoint(url);
    ASSERT_FALSE(r) << url;
    EXPECT_EQ(r.error().code, errc::configuration_error);
    EXPECT_EQ(r.error().message.find("SECRET"), std::string::npos) << r.error().message;
  }
  EXPECT_EQ(net::redact_userinfo("amqp://user:pw@host:5672"), "amqp://***@host:5672");
  EXPECT_EQ(net::redact_userinfo("https://host:443"), "https://host:443");
  EXPECT_FALSE(net::parse_endpoint("http://host\r\nX-Injected: 1"));
  EXPECT_FALSE(net::parse_endpoint("http://ho st"));
  auto v6 = net::parse_endpoint("http://[::1]:4566");
  ASSERT_TRUE(v6) << v6.error().to_string();
  EXPECT_EQ(v6->host, "::1");
}

// Every endpoint that parses prints back to a URL naming the same endpoint (the fuzzer's
// property): brackets hold only an IPv6 address, and a colon promises a port.
TEST(HttpEndpoint, OnlyEndpointsThatPrintBackTheSameParse) {
  for (std::string_view url : {"http://[%%1]:", "http://[%%1]", "http://[host]", "http://[::1%]",
                               "http://[1.2.3.4]", "http://host:", "http://[::1]:"}) {
    auto r = net::parse_endpoint(url);
    ASSERT_FALSE(r) << url << " parsed to " << r->to_string();
    EXPECT_EQ(r.error().code, errc::configuration_error) << url;
  }
  for (std::string_view url : {"http://[::1]", "https://[fe80::1%eth0]:8443", "http://h:81"}) {
    auto r = net::parse_endpoint(url);
    ASSERT_TRUE(r) << url << ": " << r.error().to_string();
    auto again = net::parse_endpoint(r->to_string());
    ASSERT_TRUE(again) << r->to_string();
    EXPECT_EQ(again->host, r->host);
    EXPECT_EQ(again->port, r->port);
  }
}

TEST(HttpEndpoint, LoopbackHostsAreRecognised) {
  for (std::string_view host : {"localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1"}) {
    EXPECT_TRUE(net::is_loopback_host(host)) << host;
  }
  for (std::string_view host : {"10.0.0.1", "sqs.us-east-1.amazonaws.com", "localhost.example",
                                "169.254.169.254", "::2", ""}) {
    EXPECT_FALSE(net::is_loopback_host(host)) << host;
  }
}
