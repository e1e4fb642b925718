// A TCP proxy on 127.0.0.1 for the network-stall scenario: forwards bytes both ways between
// each accepted client and the target port, and on stall() stops forwarding (connections stay
// open; nothing is closed or refused) until resume(); stall_answers() holds back only what the
// server sends. Runs on its own thread.
#pragma once

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

namespace qrt::faults {

class tcp_proxy {
 public:
  explicit tcp_proxy(unsigned short target_port)
      : target_port_(target_port),
        acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}),
        resumed_(io_, std::chrono::steady_clock::time_point::max()) {
    boost::asio::co_spawn(io_, accept_loop(), boost::asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~tcp_proxy() {
    io_.stop();
    thread_.join();
  }

  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  /// Client connections accepted so far.
  std::size_t accepted() const { return accepted_; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port()); }

  /// Stops forwarding; returns once the proxy's thread has taken it in.
  void stall() {
    on_proxy_thread([this] { stalled_requests_ = stalled_answers_ = true; });
  }
  /// Stops forwarding what the server sends; requests still reach it.
  void stall_answers() {
    on_proxy_thread([this] { stalled_answers_ = true; });
  }
  /// True once the server has sent bytes the stall holds back; false if `timeout` passed first.
  bool wait_for_held_answer(std::chrono::milliseconds timeout) {
    std::unique_lock lock(held_mutex_);
    return held_changed_.wait_for(lock, timeout, [&] { return held_answers_ > 0; });
  }
  /// True once the client has sent bytes the stall holds back; false if `timeout` passed first.
  bool wait_for_held_request(std::chrono::milliseconds timeout) {
    std::unique_lock lock(held_mutex_);
    return held_changed_.wait_for(lock, timeout, [&] { return held_requests_ > 0; });
  }
  /// Forwards again, including what arrived during the stall.
  void resume() {
    on_proxy_thread([this] {
      stalled_requests_ = stalled_answers_ = false;
      resumed_.cancel();  // wakes every pump waiting at the gate
      resumed_.expires_at(std::chrono::steady_clock::time_point::max());
    });
  }

 private:
  using tcp = boost::asio::ip::tcp;

  template <class F>
  void on_proxy_thread(F f) {
    std::promise<void> done;
    boost::asio::post(io_, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  boost::asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, client] =
          co_await acceptor_.async_accept(boost::asio::as_tuple(boost::asio::use_awaitable));
      if (ec) co_return;
      ++accepted_;
      auto upstream = std::make_shared<tcp::socket>(io_);
      auto [cec] = co_await upstream->async_connect(
          {boost::asio::ip::make_address("127.0.0.1"), target_port_},
          boost::asio::as_tuple(boost::asio::use_awaitable));
      if (cec) continue;
      auto down = std::make_shared<tcp::socket>(std::move(client));
      boost::asio::co_spawn(io_, pump(down, upstream, stalled_requests_), boost::asio::detached);
      boost::asio::co_spawn(io_, pump(upstream, down, stalled_answers_), boost::asio::detached);
    }
  }

  /// Forwards `from` to `to`; holds what it read while `stalled` (this direction's flag).
  boost::asio::awaitable<void> pump(std::shared_ptr<tcp::socket> from,
                                    std::shared_ptr<tcp::socket> to, const bool& stalled) {
    char buf[16384];
    for (;;) {
      auto [rec, n] = co_await from->async_read_some(
          boost::asio::buffer(buf), boost::asio::as_tuple(boost::asio::use_awaitable));
      if (!rec && stalled) {
        std::lock_guard lock(held_mutex_);
        ++(&stalled == &stalled_answers_ ? held_answers_ : held_requests_);
        held_changed_.notify_all();
      }
      while (stalled) {
        co_await resumed_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
      }
      if (rec) break;
      auto [wec, w] = co_await boost::asio::async_write(
          *to, boost::asio::buffer(buf, n), boost::asio::as_tuple(boost::asio::use_awaitable));
      if (wec) break;
    }
    boost::system::error_code ignored;
    to->shutdown(tcp::socket::shutdown_send, ignored);
    from->close(ignored);
  }

  unsigned short target_port_;
  boost::asio::io_context io_;
  tcp::acceptor acceptor_;
  boost::asio::steady_timer resumed_;  ///< cancelled on resume(): the pumps' gate
  bool stalled_requests_ = false;      ///< client to server; touched on the proxy's thread only
  bool stalled_answers_ = false;       ///< server to client; ditto
  std::mutex held_mutex_;
  std::condition_variable held_changed_;
  std::size_t held_answers_ = 0;   ///< reads from the server held back by a stall
  std::size_t held_requests_ = 0;  ///< reads from a client held back by a stall
  std::atomic<std::size_t> accepted_{0};
  std::thread thread_;
};

}  // namespace qrt::faults
