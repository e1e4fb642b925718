// A TCP proxy on 127.0.0.1 for the network-stall scenario: forwards bytes both ways between
// each accepted client and the target port, and on stall() stops forwarding (connections stay
// open; nothing is closed or refused) until resume(). Runs on its own thread.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <memory>
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
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port()); }

  /// Stops forwarding; returns once the proxy's thread has taken it in.
  void stall() {
    on_proxy_thread([this] { stalled_ = true; });
  }
  /// Forwards again, including what arrived during the stall.
  void resume() {
    on_proxy_thread([this] {
      stalled_ = false;
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
      auto upstream = std::make_shared<tcp::socket>(io_);
      auto [cec] = co_await upstream->async_connect(
          {boost::asio::ip::make_address("127.0.0.1"), target_port_},
          boost::asio::as_tuple(boost::asio::use_awaitable));
      if (cec) continue;
      auto down = std::make_shared<tcp::socket>(std::move(client));
      boost::asio::co_spawn(io_, pump(down, upstream), boost::asio::detached);
      boost::asio::co_spawn(io_, pump(upstream, down), boost::asio::detached);
    }
  }

  boost::asio::awaitable<void> pump(std::shared_ptr<tcp::socket> from,
                                    std::shared_ptr<tcp::socket> to) {
    char buf[16384];
    for (;;) {
      auto [rec, n] = co_await from->async_read_some(
          boost::asio::buffer(buf), boost::asio::as_tuple(boost::asio::use_awaitable));
      while (stalled_) {
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
  bool stalled_ = false;               ///< touched on the proxy's thread only
  std::thread thread_;
};

}  // namespace qrt::faults
