// Health checks: is the provider reachable, and is the circuit breaker letting calls through.
#pragma once

#include <functional>
#include <optional>
#include <qrt/circuit_breaker.hpp>
#include <qrt/provider.hpp>
#include <string>

namespace qrt {

/// The outcome of check_health(): what /health serves.
struct health_report {
  std::string provider;       ///< the provider's name
  bool reachable = false;     ///< the provider answered (a missing probe queue still counts)
  bool queue_exists = false;  ///< the probe queue exists
  std::optional<breaker_state> breaker;  ///< the circuit breaker's state, when the caller has one
  std::chrono::microseconds latency{0};  ///< of the probe call
  std::optional<qrt::error> problem;     ///< the probe's error, if any

  /// Reachable, the probe queue exists, and the breaker is not open.
  bool healthy() const noexcept {
    return reachable && queue_exists && breaker != breaker_state::open;
  }
  /// {"status":"healthy"|"unhealthy","provider":..,"reachable":..,"queue_exists":..,
  ///  "breaker":..,"latency_us":..,"error":..}; "breaker" is "none" without a breaker. Always
  ///  valid JSON: bytes of the error that are not UTF-8 are written as U+FFFD.
  std::string to_json() const;
};

/// Probes `p` with stats(probe_queue) and answers within `timeout` whatever the provider does:
/// past it, the report says timeout and the probe goes on detached, holding `p` until the
/// provider answers. `breaker` reports the circuit breaker's state when the caller has one.
awaitable<health_report> check_health(provider_ptr p, const queue_name& probe_queue,
                                      milliseconds timeout,
                                      std::function<breaker_state()> breaker = {});

}  // namespace qrt
