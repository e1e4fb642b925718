// A circuit breaker: stop calling a dependency that keeps failing, then probe it carefully.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <qrt/error.hpp>
#include <qrt/provider.hpp>
#include <string_view>

namespace qrt {

/// The state of a circuit_breaker.
enum class breaker_state {
  closed,     ///< calls pass; consecutive failures are counted
  open,       ///< calls are rejected at once until open_duration has passed
  half_open,  ///< up to half_open_probes calls pass; one success closes, one failure reopens
};

/// "closed", "open" or "half_open".
std::string_view to_string(breaker_state s) noexcept;

/// When a circuit_breaker opens, and how it probes.
struct circuit_breaker_options {
  std::uint32_t failure_threshold = 5;  ///< consecutive failures that open the circuit
  milliseconds open_duration{30'000};   ///< how long to reject before probing
  std::uint32_t half_open_probes = 1;   ///< calls let through at once while half-open
  /// Called after every state change, outside the breaker's lock (from whichever thread
  /// recorded the outcome that caused it).
  std::function<void(breaker_state from, breaker_state to)> on_state_change;
  /// The clock; tests pass a controllable one.
  std::function<std::chrono::steady_clock::time_point()> now;
};

/// Thread-safe. Either use run() around an operation, or pair allow() with exactly one
/// record_success() / record_failure() for each call it allowed.
class circuit_breaker {
 public:
  /// A closed breaker.
  explicit circuit_breaker(circuit_breaker_options options = {});

  /// May a call go ahead now? Counts a probe while half-open.
  bool allow();
  /// An allowed call succeeded: closes a half-open breaker, resets the failure count.
  void record_success();
  /// An allowed call failed: counts towards opening; reopens a half-open breaker.
  void record_failure();
  /// A call allow() admitted did not happen after all: frees its half-open probe slot.
  void cancel();

  /// The current state (an open breaker turns half-open at the first allow() after open_duration).
  breaker_state state() const;
  /// How long until an open breaker lets a probe through (zero if not open).
  milliseconds time_until_probe() const;

  /// The error rejected calls return: errc::throttled with retry_after = time until the next
  /// probe and provider_code "circuit_open", so retry policies wait instead of hammering.
  error rejection() const;

  /// Runs `attempt` (returning awaitable<result<T>>) if allowed, recording its outcome; only
  /// transient and throttled errors count as failures (a permanent error is the caller's bug,
  /// not the dependency's health).
  template <class Attempt>
  auto run(Attempt attempt) -> decltype(attempt()) {
    if (!allow()) co_return rejection();
    auto r = co_await attempt();
    if (r || r.error().kind == error_kind::permanent) {
      record_success();
    } else {
      record_failure();
    }
    co_return r;
  }

 private:
  using time = std::chrono::steady_clock::time_point;
  time now() const;
  void transition(breaker_state to, std::unique_lock<std::mutex>& lock);

  circuit_breaker_options options_;
  mutable std::mutex mutex_;
  breaker_state state_ = breaker_state::closed;
  std::uint32_t consecutive_failures_ = 0;
  std::uint32_t probes_in_flight_ = 0;
  time opened_at_{};
};

}  // namespace qrt
