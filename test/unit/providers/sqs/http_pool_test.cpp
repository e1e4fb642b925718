// The HTTP pool's connection cap (max_connections): a burst of calls opens at most the cap and
// the calls wait in line, in order, instead of failing; counted at a local keep-alive server.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "net/http.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

/// Answers every request on a connection with 200 and keeps the connection open; counts the
/// sockets it accepted. With hold(), requests are read but answered only after release().
class keepalive_server {
 public:
  keepalive_server() : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~keepalive_server() {
    io_.stop();
    thread_.join();
  }

  qrt::net::endpoint endpoint() const {
    return {false, "127.0.0.1", acceptor_.local_endpoint().port()};
  }
  int accepted() const { return accepted_; }
  void hold() { held_ = true; }
  void release() {
    asio::post(io_, [this] {
      held_ = false;
      for (auto& answer : parked_) answer();
      parked_.clear();
    });
  }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      tcp::socket s = co_await acceptor_.async_accept(asio::use_awaitable);
      ++accepted_;
      asio::co_spawn(io_, serve(std::move(s)), asio::detached);
    }
  }

  asio::awaitable<void> serve(tcp::socket s) {
    auto socket = std::make_shared<tcp::socket>(std::move(s));
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      auto [ec, n] =
          co_await http::async_read(*socket, buffer, req, asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      if (held_) {
        // Answered on release(); this connection reads nothing more until then.
        asio::steady_timer gate(io_, std::chrono::steady_clock::time_point::max());
        parked_.push_back([&gate] { gate.cancel(); });
        co_await gate.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      http::response<http::string_body> res{http::status::ok, 11};
      res.body() = "ok";
      res.keep_alive(true);
      res.prepare_payload();
      auto [wec, w] = co_await http::async_write(*socket, res, asio::as_tuple(asio::use_awaitable));
      if (wec) co_return;
    }
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<int> accepted_{0};
  bool held_ = false;                          // touched on the server's thread only
  std::vector<std::function<void()>> parked_;  // ditto
};

qrt::net::http_request ping() {
  qrt::net::http_request r;
  r.method = "GET";
  return r;
}

TEST(HttpPool, BurstOfAThousandCallsOpensAtMostMaxConnectionsAndEveryCallSucceeds) {
  keepalive_server server;
  asio::io_context io;
  qrt::net::http_settings settings;
  settings.max_connections = 8;
  settings.max_idle_connections = 8;
  qrt::net::http_pool pool(io.get_executor(), server.endpoint(), settings);

  constexpr int calls = 1000;
  std::atomic<int> ok{0};
  std::mutex errors_mutex;
  std::vector<std::string> errors;
  for (int i = 0; i < calls; ++i) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto r = co_await pool.send(ping(), 60s);
          if (r && r->status == 200) {
            ++ok;
          } else {
            std::lock_guard lock(errors_mutex);
            errors.push_back(r ? "status " + std::to_string(r->status) : r.error().message);
          }
        },
        asio::detached);
  }
  std::thread second([&] { io.run(); });
  io.run();
  second.join();

  EXPECT_EQ(ok.load(), calls) << (errors.empty() ? "" : errors.front());
  EXPECT_LE(server.accepted(), 8) << "sockets accepted by the server";
  EXPECT_LE(pool.connections_opened(), 8u);
  EXPECT_LE(pool.open_connections(), 8u);
}

TEST(HttpPool, CallsAtTheCapAreServedInTheOrderTheyArrived) {
  keepalive_server server;
  asio::io_context io;  // one thread: calls start in spawn order
  qrt::net::http_settings settings;
  settings.max_connections = 1;
  qrt::net::http_pool pool(io.get_executor(), server.endpoint(), settings);

  std::vector<int> finished;
  for (int i = 0; i < 40; ++i) {
    asio::co_spawn(
        io,
        [&, i]() -> asio::awaitable<void> {
          auto r = co_await pool.send(ping(), 60s);
          finished.push_back(r ? i : -1);
        },
        asio::detached);
  }
  io.run();
  std::vector<int> expected(40);
  for (int i = 0; i < 40; ++i) expected[static_cast<std::size_t>(i)] = i;
  EXPECT_EQ(finished, expected);
  EXPECT_EQ(server.accepted(), 1);
}

TEST(HttpPool, ACallThatFindsNoFreeConnectionBeforeItsTimeoutFailsNamingTheCap) {
  keepalive_server server;
  server.hold();
  asio::io_context io;
  qrt::net::http_settings settings;
  settings.max_connections = 1;
  qrt::net::http_pool pool(io.get_executor(), server.endpoint(), settings);

  std::optional<qrt::result<qrt::net::http_response>> first, second;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { first = co_await pool.send(ping(), 60s); },
      asio::detached);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        second = co_await pool.send(ping(), 200ms);
        server.release();  // now let the first call's answer through
      },
      asio::detached);
  io.run();
  ASSERT_TRUE(second.has_value());
  ASSERT_FALSE(*second);
  EXPECT_EQ(second->error().code, qrt::errc::timeout);
  EXPECT_NE(second->error().message.find("max_connections"), std::string::npos)
      << second->error().message;
  ASSERT_TRUE(first && *first) << (first ? first->error().message : "no result");
  EXPECT_EQ((*first)->status, 200u);
}

// A waiting call whose io_context is destroyed mid-wait takes its place in line with it: the
// cap is not one slot smaller from then on.
TEST(HttpPool, ACallAbandonedWhileWaitingAtTheCapLeavesTheLine) {
  keepalive_server server;
  server.hold();
  asio::io_context io;
  qrt::net::http_settings settings;
  settings.max_connections = 1;
  qrt::net::http_pool pool(io.get_executor(), server.endpoint(), settings);

  std::optional<qrt::result<qrt::net::http_response>> first, later;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { first = co_await pool.send(ping(), 60s); },
      asio::detached);
  io.poll();  // the first call has taken the only slot
  ASSERT_EQ(pool.open_connections(), 1u);
  {
    asio::io_context caller;
    asio::co_spawn(caller, pool.send(ping(), 60s), asio::detached);
    caller.poll();  // runs the call up to its wait in line
    ASSERT_EQ(pool.waiting_calls(), 1u);
  }  // the caller's io_context goes, and the waiting call with it
  ASSERT_EQ(pool.waiting_calls(), 0u);

  server.release();
  io.run();
  ASSERT_TRUE(first && *first) << (first ? first->error().message : "no result");
  EXPECT_EQ(pool.idle_connections(), 1u) << "the connection went to nobody";
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { later = co_await pool.send(ping(), 5s); },
      asio::detached);
  io.restart();
  io.run();
  ASSERT_TRUE(later && *later) << (later ? later->error().message : "no result");
  EXPECT_EQ(server.accepted(), 1);
}

// A slot handed to a waiting call whose io_context is destroyed before the call resumes goes
// back to the pool; otherwise it would stay counted against the cap for good.
TEST(HttpPool, AConnectionHandedToACallThatNeverResumesGoesBackToThePool) {
  keepalive_server server;
  server.hold();
  asio::io_context io;
  qrt::net::http_settings settings;
  settings.max_connections = 1;
  qrt::net::http_pool pool(io.get_executor(), server.endpoint(), settings);

  std::optional<qrt::result<qrt::net::http_response>> first, later;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { first = co_await pool.send(ping(), 60s); },
      asio::detached);
  io.poll();  // the first call has taken the only slot
  ASSERT_EQ(pool.open_connections(), 1u);
  {
    asio::io_context caller;
    asio::co_spawn(caller, pool.send(ping(), 60s), asio::detached);
    caller.poll();  // runs the call up to its wait in line
    ASSERT_EQ(pool.waiting_calls(), 1u);
    server.release();
    io.run();  // the first call ends and hands its connection to the waiting one
    ASSERT_TRUE(first && *first) << (first ? first->error().message : "no result");
    ASSERT_EQ(pool.waiting_calls(), 0u);
    ASSERT_EQ(pool.idle_connections(), 0u);
  }  // the caller's io_context goes before it ever ran the call it woke
  EXPECT_EQ(pool.idle_connections(), 1u);
  EXPECT_EQ(pool.open_connections(), 1u);

  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { later = co_await pool.send(ping(), 5s); },
      asio::detached);
  io.restart();
  io.run();
  ASSERT_TRUE(later && *later) << (later ? later->error().message : "no result");
  EXPECT_EQ((*later)->status, 200u);
  EXPECT_EQ(server.accepted(), 1) << "the later call reuses the connection given back";
}

}  // namespace
