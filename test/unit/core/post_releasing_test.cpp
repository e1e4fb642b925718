// post_releasing (src/core/post_releasing.hpp): a thread of another context hands a completion
// back to the caller's executor and holds no copy of that executor once the caller runs. The
// executor here records where and when its copies die, and the first copy destroyed on the
// posting thread after the function is queued waits (up to a bound) for the function to run:
// that is the moment a plain post leaves open, made wide enough to see every time.
#include "core/post_releasing.hpp"

#include <gtest/gtest.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace asio = boost::asio;

namespace {

thread_local bool on_posting_thread = false;

/// What the copies of one executor did, in one order of events.
struct history {
  std::mutex mutex;
  std::condition_variable changed;
  long events = 0;
  bool queued = false;    ///< the function has been handed to the io_context
  bool held_one = false;  ///< one copy's destruction on the posting thread has waited
  long function_ran = 0;  ///< the event at which the posted function ran (0: not yet)
  std::atomic<long> queued_elsewhere{0};  ///< functions queued by other threads than the poster
  std::vector<long> destroyed_on_posting_thread;  ///< events

  void queued_now() {
    std::lock_guard lock(mutex);
    queued = true;
  }
  void run() {
    std::lock_guard lock(mutex);
    function_ran = ++events;
    changed.notify_all();
  }
  void destroyed_here() {
    std::unique_lock lock(mutex);
    if (queued && !held_one) {
      held_one = true;
      // Gives the function every chance to run while this copy still exists; with
      // post_releasing it cannot, so this wait ends at its bound.
      changed.wait_for(lock, std::chrono::milliseconds(200), [&] { return function_ran != 0; });
    }
    destroyed_on_posting_thread.push_back(++events);
  }
  bool wait_until_ran() {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, std::chrono::seconds(10), [&] { return function_ran != 0; });
  }
  /// Copies the posting thread destroyed after the function ran.
  std::size_t destroyed_after_run() {
    std::lock_guard lock(mutex);
    std::size_t n = 0;
    for (long at : destroyed_on_posting_thread) n += at > function_ran ? 1 : 0;
    return n;
  }
};

/// A never-blocking io_context executor (what a post asks for) whose copies report to a
/// history.
using never_blocking = decltype(asio::require(std::declval<asio::io_context::executor_type>(),
                                              asio::execution::blocking.never));

class watched_executor {
 public:
  watched_executor(asio::io_context::executor_type inner, std::shared_ptr<history> h)
      : inner_(asio::require(inner, asio::execution::blocking.never)), history_(std::move(h)) {}
  watched_executor(const watched_executor&) = default;
  watched_executor(watched_executor&& other) noexcept
      : inner_(other.inner_), history_(std::move(other.history_)) {}
  watched_executor& operator=(const watched_executor&) = default;
  watched_executor& operator=(watched_executor&& other) noexcept {
    inner_ = other.inner_;
    history_ = std::move(other.history_);
    return *this;
  }
  ~watched_executor() {
    if (history_ && on_posting_thread) history_->destroyed_here();
  }

  template <class F>
  void execute(F&& f) const {
    inner_.execute(std::forward<F>(f));
    if (on_posting_thread) {
      history_->queued_now();
    } else {
      ++history_->queued_elsewhere;
    }
  }
  asio::execution_context& query(asio::execution::context_t) const noexcept {
    return asio::query(inner_, asio::execution::context);
  }
  static constexpr asio::execution::blocking_t query(asio::execution::blocking_t) noexcept {
    return asio::execution::blocking.never;
  }
  watched_executor require(asio::execution::blocking_t::never_t) const { return *this; }
  friend bool operator==(const watched_executor& a, const watched_executor& b) noexcept {
    return a.inner_ == b.inner_ && a.history_ == b.history_;
  }
  friend bool operator!=(const watched_executor& a, const watched_executor& b) noexcept {
    return !(a == b);
  }

 private:
  never_blocking inner_;
  std::shared_ptr<history> history_;
};

/// Runs `post_from` on a thread of its own with an executor of `io` (made on that thread), while
/// `io` runs on another, and returns what the copies did.
template <class Post>
std::shared_ptr<history> post_from_another_thread(Post post_from) {
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  auto h = std::make_shared<history>();
  std::thread poster([&] {
    on_posting_thread = true;
    asio::any_io_executor ex{watched_executor(io.get_executor(), h)};
    post_from(std::move(ex), [h] { h->run(); });
  });
  poster.join();
  EXPECT_TRUE(h->wait_until_ran());
  work.reset();
  runner.join();
  return h;
}

}  // namespace

TEST(PostReleasing, ThePostingThreadHoldsNoCopyOfTheExecutorOnceTheFunctionRuns) {
  auto h = post_from_another_thread([](asio::any_io_executor ex, auto fn) {
    qrt::detail::post_releasing(std::move(ex), std::move(fn));
  });
  EXPECT_NE(h->function_ran, 0);
  EXPECT_FALSE(h->destroyed_on_posting_thread.empty());  // it did hold copies, and let go
  EXPECT_EQ(h->destroyed_after_run(), 0u);
}

TEST(PostReleasing, WithAFlagOfTheCallersOwnTheSameHolds) {
  std::atomic<bool> released{false};
  auto h = post_from_another_thread([&](asio::any_io_executor ex, auto fn) {
    qrt::detail::post_releasing(std::move(ex), std::move(fn), released);
  });
  EXPECT_TRUE(released.load());
  EXPECT_EQ(h->destroyed_after_run(), 0u);
}

// While the posting thread still holds its copy (here for the whole bound of the wait above),
// the function waits on the caller's thread without queueing itself again: a function that went
// round the queue until released kept that thread busy, and when the poster had been preempted
// on the same CPU, kept it from running there for a whole scheduler time slice.
TEST(PostReleasing, WaitingForTheReleaseDoesNotQueueTheFunctionAgain) {
  auto h = post_from_another_thread([](asio::any_io_executor ex, auto fn) {
    qrt::detail::post_releasing(std::move(ex), std::move(fn));
  });
  EXPECT_TRUE(h->held_one);  // the poster did hold a copy past the queueing
  EXPECT_EQ(h->queued_elsewhere.load(), 0);
  EXPECT_EQ(h->destroyed_after_run(), 0u);
}

// What the above guards against, shown with a plain post: the posting thread's last copy dies
// after the function ran, when the caller may already have destroyed the context.
TEST(PostReleasing, APlainPostLetsGoOfItsCopyOnlyAfterTheFunctionMayHaveRun) {
  auto h = post_from_another_thread(
      [](asio::any_io_executor ex, auto fn) { asio::post(ex, std::move(fn)); });
  EXPECT_GE(h->destroyed_after_run(), 1u);
}
