// A wake-up signal for coroutines that share one strand: wait() suspends until notify().
// A notify with nobody waiting is lost, so waiters re-check their condition in a loop. Any
// number of coroutines may wait(); wait_until() re-arms the timer, which wakes the others, so an
// event used with wait_until() must have a single waiter.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <mutex>
#include <optional>

namespace qrt::detail {

class event {
 public:
  explicit event(const boost::asio::any_io_executor& executor)
      : timer_(executor, std::chrono::steady_clock::time_point::max()) {}

  void notify() { timer_.cancel(); }

  /// Until notify() or `until`, whichever comes first.
  boost::asio::awaitable<void> wait_until(std::chrono::steady_clock::time_point until) {
    timer_.expires_at(until);
    boost::system::error_code ignored;
    co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ignored));
  }
  boost::asio::awaitable<void> wait() {
    if (timer_.expiry() != std::chrono::steady_clock::time_point::max()) {
      timer_.expires_at(std::chrono::steady_clock::time_point::max());
    }
    boost::system::error_code ignored;
    co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ignored));
  }

 private:
  boost::asio::steady_timer timer_;
};

/// The stop() of a processor whose first stop() ends by letting go of its strand, so that the
/// processor may outlive its executor: once that has happened a call returns the first one's
/// report without going near the strand; before start() (no strand) it returns an empty report;
/// otherwise it runs `shutdown` on the strand. `m` guards `final_report` and `strand`.
template <class Report, class Strand>
boost::asio::awaitable<Report> stop_through(std::mutex& m,
                                            const std::optional<Report>& final_report,
                                            const std::optional<Strand>& strand,
                                            boost::asio::awaitable<Report> shutdown) {
  std::optional<Strand> on;
  {
    std::lock_guard lock(m);
    if (final_report) co_return *final_report;
    if (!strand) co_return Report{};
    on = strand;
  }
  co_return co_await boost::asio::co_spawn(*on, std::move(shutdown), boost::asio::use_awaitable);
}

}  // namespace qrt::detail
