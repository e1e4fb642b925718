// The time a wait ends, for waits given as durations by callers.
#pragma once

#include <algorithm>
#include <chrono>

namespace qrt::detail {

/// `now + wait`, saturated: a wait too long to add (milliseconds::max() for "no limit") ends at
/// the clock's last time point instead of wrapping around into the past, which would end it at
/// once. A wait of zero or less ends now.
template <class TimePoint>
TimePoint deadline_after(TimePoint now, std::chrono::milliseconds wait) {
  if (wait.count() <= 0) return now;
  const auto room = std::chrono::duration_cast<std::chrono::milliseconds>(TimePoint::max() - now);
  if (wait >= room) return TimePoint::max();
  return now + std::chrono::duration_cast<typename TimePoint::duration>(wait);
}

/// What is left of a wait that ends at `deadline`, in whole milliseconds rounded up and at least
/// one: for handing the rest of a caller's timeout to the next attempt of a call (0 would mean
/// "no wait" or "no limit" to some callees).
template <class TimePoint>
std::chrono::milliseconds time_left(TimePoint deadline, TimePoint now) {
  if (deadline <= now) return std::chrono::milliseconds(1);
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
  return std::max(left, std::chrono::milliseconds(1));
}

/// `until - now`, or zero once `until` has passed. `until` may come from a peer (a lock's end,
/// saturated at the clock's first time point when the peer's value lies before it), where the
/// plain difference would overflow.
template <class TimePoint>
typename TimePoint::duration remaining(TimePoint until, TimePoint now) {
  return until <= now ? TimePoint::duration::zero() : until - now;
}

}  // namespace qrt::detail
