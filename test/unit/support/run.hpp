// Running a provider's coroutines from a test: to completion on the test's own thread, or on an
// io_context that runs on a thread of its own, with a bound on how long one may hang.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <cstdlib>
#include <future>
#include <optional>
#include <thread>

namespace qrt::test {

/// Runs `op` on `io`, in this thread, until `io` has no work left, and returns its result. The
/// io_context is restarted first, so one fixture can run operation after operation.
template <class T>
T run(boost::asio::io_context& io, boost::asio::awaitable<T> op) {
  auto f = boost::asio::co_spawn(io, std::move(op), boost::asio::use_future);
  io.restart();
  io.run();
  return f.get();
}

/// Runs `io` on this thread, one handler at a time, until `done()`; then runs whatever that set
/// going and is ready to run, without waiting for anything (what is parked on a timer or on
/// another executor stays parked). False if nothing ran for 30 s, or `io` ran out of work.
template <class Done>
bool turn_until(boost::asio::io_context& io, Done done) {
  while (!done()) {
    if (io.run_one_for(std::chrono::seconds{30}) == 0) return false;
  }
  io.poll();
  return true;
}

/// An io_context running on its own thread until destroyed.
class io_thread {
 public:
  io_thread() : guard_(io_.get_executor()), thread_([this] { io_.run(); }) {}
  ~io_thread() {
    guard_.reset();
    io_.stop();
    thread_.join();
  }
  io_thread(const io_thread&) = delete;
  io_thread& operator=(const io_thread&) = delete;

  boost::asio::any_io_executor executor() { return io_.get_executor(); }

  /// Runs `op` on the thread and waits for its result. An operation that hangs for `limit`
  /// aborts the binary: it may still use the test's state, so the test cannot go on.
  template <class T>
  T run(boost::asio::awaitable<T> op, std::chrono::seconds limit = std::chrono::seconds{60}) {
    auto f = start(std::move(op));
    if (f.wait_for(limit) != std::future_status::ready) {
      ADD_FAILURE() << "operation hung for " << limit.count() << " s";
      std::abort();
    }
    return f.get();
  }
  /// `op` started; its future, to wait on with a deadline.
  template <class T>
  std::future<T> start(boost::asio::awaitable<T> op) {
    return boost::asio::co_spawn(io_, std::move(op), boost::asio::use_future);
  }

 private:
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_;
  std::thread thread_;
};

}  // namespace qrt::test
