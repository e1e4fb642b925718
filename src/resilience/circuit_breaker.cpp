#include <algorithm>
#include <qrt/circuit_breaker.hpp>

namespace qrt {

std::string_view to_string(breaker_state s) noexcept {
  switch (s) {
    case breaker_state::closed:
      return "closed";
    case breaker_state::open:
      return "open";
    case breaker_state::half_open:
      return "half_open";
  }
  return "unknown";
}

circuit_breaker::circuit_breaker(circuit_breaker_options options) : options_(std::move(options)) {
  if (options_.failure_threshold == 0) options_.failure_threshold = 1;
  if (options_.half_open_probes == 0) options_.half_open_probes = 1;
}

circuit_breaker::time circuit_breaker::now() const {
  return options_.now ? options_.now() : std::chrono::steady_clock::now();
}

// Called with the lock held; releases it to run the callback so a callback may call back in.
// The callback is user code run from inside whoever recorded the outcome (a processor's strand,
// a breaker.run() caller): an exception from it is dropped, so it cannot unwind through them
// and, for a processor, end the coroutine that holds a handler's slot.
void circuit_breaker::transition(breaker_state to, std::unique_lock<std::mutex>& lock) {
  const breaker_state from = state_;
  if (from == to) return;
  state_ = to;
  probes_in_flight_ = 0;
  if (to == breaker_state::open) opened_at_ = now();
  if (to != breaker_state::half_open) consecutive_failures_ = 0;
  if (options_.on_state_change) {
    lock.unlock();
    try {
      options_.on_state_change(from, to);
    } catch (...) {  // NOLINT(bugprone-empty-catch): see above
    }
  }
}

// How long the breaker has been open, in the options' unit (floored): compared with or
// subtracted from open_duration in the clock's nanoseconds, an open_duration near
// milliseconds::max() would overflow. For a whole number of milliseconds D, floor(t) < D exactly
// when t < D, and D - floor(t) is D - t rounded up.
namespace {
milliseconds open_for(std::chrono::steady_clock::duration elapsed) {
  return std::max(std::chrono::floor<milliseconds>(elapsed), milliseconds{0});  // never negative
}
}  // namespace

bool circuit_breaker::allow() {
  std::unique_lock lock(mutex_);
  if (state_ == breaker_state::open) {
    if (open_for(now() - opened_at_) < options_.open_duration) return false;
    transition(breaker_state::half_open, lock);
    if (!lock.owns_lock()) lock.lock();
  }
  if (state_ == breaker_state::half_open) {
    if (probes_in_flight_ >= options_.half_open_probes) return false;
    ++probes_in_flight_;
  }
  return true;
}

void circuit_breaker::record_success() {
  std::unique_lock lock(mutex_);
  consecutive_failures_ = 0;
  if (state_ == breaker_state::half_open) transition(breaker_state::closed, lock);
}

void circuit_breaker::record_failure() {
  std::unique_lock lock(mutex_);
  if (state_ == breaker_state::half_open) {
    transition(breaker_state::open, lock);
    return;
  }
  if (state_ == breaker_state::closed && ++consecutive_failures_ >= options_.failure_threshold) {
    transition(breaker_state::open, lock);
  }
}

void circuit_breaker::cancel() {
  std::lock_guard lock(mutex_);
  if (state_ == breaker_state::half_open && probes_in_flight_ > 0) --probes_in_flight_;
}

breaker_state circuit_breaker::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

milliseconds circuit_breaker::time_until_probe() const {
  std::lock_guard lock(mutex_);
  if (state_ != breaker_state::open) return milliseconds{0};
  const auto open = open_for(now() - opened_at_);
  if (open >= options_.open_duration) return milliseconds{0};
  return options_.open_duration - open;
}

error circuit_breaker::rejection() const {
  error e{errc::throttled, "circuit breaker is open: the dependency failed repeatedly",
          "circuit_open"};
  e.retry_after = time_until_probe();
  return e;
}

}  // namespace qrt
