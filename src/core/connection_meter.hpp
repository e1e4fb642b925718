// Counts a provider's connection traffic, failures and recoveries (qrt::connection_stats) with
// relaxed atomics, so the I/O paths that record and the metrics that read never wait on each
// other. Internal: the HTTP pool and the AMQP connection each hold one.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <qrt/provider.hpp>

namespace qrt::detail {

class connection_meter {
 public:
  using clock = std::chrono::steady_clock;

  void sent(std::uint64_t bytes) noexcept { sent_.fetch_add(bytes, std::memory_order_relaxed); }
  void received(std::uint64_t bytes) noexcept {
    received_.fetch_add(bytes, std::memory_order_relaxed);
  }

  /// A connect failed, or an established connection broke or timed out. The first failure of
  /// an outage starts its clock.
  void failed(clock::time_point now = clock::now()) noexcept {
    failures_.fetch_add(1, std::memory_order_relaxed);
    std::int64_t healthy = 0;
    failing_since_.compare_exchange_strong(healthy, ticks(now), std::memory_order_relaxed);
  }

  /// A connection was established; after a failure this ends the outage and counts a recovery.
  void opened(clock::time_point now = clock::now()) noexcept {
    opened_.fetch_add(1, std::memory_order_relaxed);
    const std::int64_t since = failing_since_.exchange(0, std::memory_order_relaxed);
    if (since == 0) return;
    const std::int64_t took = std::max<std::int64_t>(0, ticks(now) - since);
    recoveries_.fetch_add(1, std::memory_order_relaxed);
    recovery_total_.fetch_add(took, std::memory_order_relaxed);
    std::int64_t longest = longest_.load(std::memory_order_relaxed);
    while (took > longest &&
           !longest_.compare_exchange_weak(longest, took, std::memory_order_relaxed)) {
    }
  }

  connection_stats read() const noexcept {
    connection_stats s;
    s.bytes_sent = sent_.load(std::memory_order_relaxed);
    s.bytes_received = received_.load(std::memory_order_relaxed);
    s.connections_opened = opened_.load(std::memory_order_relaxed);
    s.connection_failures = failures_.load(std::memory_order_relaxed);
    s.recoveries = recoveries_.load(std::memory_order_relaxed);
    s.recovery_time_total =
        std::chrono::nanoseconds(recovery_total_.load(std::memory_order_relaxed));
    s.longest_recovery = std::chrono::nanoseconds(longest_.load(std::memory_order_relaxed));
    return s;
  }

 private:
  // Nanoseconds since the clock's epoch, never 0 (0 means "not failing").
  static std::int64_t ticks(clock::time_point t) noexcept {
    return std::max<std::int64_t>(
        1, std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
  }

  std::atomic<std::uint64_t> sent_{0};
  std::atomic<std::uint64_t> received_{0};
  std::atomic<std::uint64_t> opened_{0};
  std::atomic<std::uint64_t> failures_{0};
  std::atomic<std::uint64_t> recoveries_{0};
  std::atomic<std::int64_t> recovery_total_{0};
  std::atomic<std::int64_t> longest_{0};
  std::atomic<std::int64_t> failing_since_{0};
};

}  // namespace qrt::detail
