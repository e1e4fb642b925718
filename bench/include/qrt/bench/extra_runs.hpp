// The runs `qrt bench` adds after its main run on request (half rate, scaling, overhead, memory
// budget, outage), and what becomes of the main run's figures when one of them fails.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <qrt/bench/report.hpp>
#include <qrt/error.hpp>
#include <vector>

namespace qrt::bench {

/// Which extra runs to make; each is off unless asked for.
struct extra_runs {
  /// The main run again at half its measured rate, `rounds` times, the raw queue after each
  /// round at that pace when `with_baseline`; the round with the median p99 is kept.
  bool half_rate = false;
  std::size_t rounds = 1;
  bool with_baseline = false;
  /// Called after each half-rate round (the CLI clears its progress line there).
  std::function<void()> after_half_rate_round;
  std::optional<scaling_options> scaling;
  /// Above 0: the overhead run, with a handler of this cost and `overhead_messages` messages.
  std::chrono::microseconds overhead_handler_cost{0};
  std::uint64_t overhead_messages = 2000;
  /// Above 0: the memory budget run, with this many bytes (provider=memory only).
  std::uint64_t memory_budget = 0;
  /// Set: the outage run (run_outage) with an outage this long, paced at the main run's rate
  /// when it had one, else at half its measured rate.
  std::optional<std::chrono::milliseconds> outage;
};

/// The index of the median of `figures` (the upper one of an even count); `figures` not empty.
std::size_t median_index(const std::vector<double>& figures);

/// Makes the extra runs in the order above with `options` (the main run's), putting what each
/// measures into `rep`. A run that fails does not throw away what was measured before it (the
/// main run's figures most of all, however long it took): it leaves `rep` as it was, skips the
/// runs after it, and is returned, naming the run. nullopt when every run asked for succeeded.
std::optional<error> run_extra_runs(report& rep, const bench_options& options,
                                    const extra_runs& extras);

}  // namespace qrt::bench
