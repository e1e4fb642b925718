// Waiting on real events from tests: a counter that threads bump and the test waits on, with a
// bounded timeout (never a sleep standing in for synchronisation).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>

namespace qrt::test {

class counter {
 public:
  void add(long n = 1) {
    // Notify with the lock held: a waiter that sees the target may return and destroy this
    // counter at once, so add() must not touch it after unlocking.
    std::lock_guard lock(mutex_);
    value_ += n;
    changed_.notify_all();
  }
  long value() const {
    std::lock_guard lock(mutex_);
    return value_;
  }
  /// True once value() >= target; false if `timeout` passed first.
  bool wait_for_at_least(long target,
                         std::chrono::milliseconds timeout = std::chrono::seconds{10}) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return value_ >= target; });
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  long value_ = 0;
};

}  // namespace qrt::test
