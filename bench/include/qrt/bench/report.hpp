// What a benchmark run produces: a table for people, report.json for scripts, a chart
// (self-contained HTML with inline SVG), and checks against the benchmark targets.
#pragma once

#include <optional>
#include <qrt/bench/harness.hpp>
#include <qrt/bench/machine.hpp>
#include <qrt/error.hpp>
#include <string>
#include <vector>

namespace qrt::bench {

/// One bound read from a targets file: "<100ms", ">90%", "1 hour", 1000.
struct bound {
  enum class direction { at_most, at_least } dir = direction::at_least;
  double value = 0;  ///< seconds for durations, a fraction for percentages, else as written
  std::string text;  ///< as written, for the report
};

/// One set of benchmark targets (`performance_targets:` in the YAML); every field optional.
struct performance_targets {
  std::string environment;  ///< "production", "development", or "" when the file has one set
  std::optional<bound> messages_per_second, batch_efficiency, sustained_duration;
  std::optional<bound> p50_latency, p95_latency, p99_latency, api_call_latency;
  std::optional<bound> error_rate, availability, cpu_utilization;
  std::optional<bound> memory_utilization, connection_pool_efficiency;
  std::optional<bound> recovery_time;     ///< reliability.recovery_time, against run_outage
  std::vector<std::string> not_measured;  ///< known fields qrt bench cannot measure
};

/// Accepts `performance_targets: {...}` with one set, or sets per environment
/// (`production:` / `development:`, at the top or under performance_targets). `environment`
/// picks one when the file has several. Unknown fields and unreadable values are errors naming
/// the field; a text of more than one YAML document is refused.
result<performance_targets> parse_targets(std::string_view yaml, std::string_view environment);
result<performance_targets> load_targets(const std::string& path, std::string_view environment);

struct target_check {
  enum class status { pass, miss, not_checked };
  std::string name;      ///< "latency.p99_message_latency"
  std::string target;    ///< "<1000ms"
  std::string measured;  ///< "0.21 ms", or why it was not checked
  status outcome = status::not_checked;
};
/// Checks each target the run can show. throughput.sustained_duration passes only when the run
/// lasted that long and, when throughput.messages_per_second is set too, every whole second of
/// it held that rate (slowest_whole_second): an average can hide a stall.
/// Availability is 1 - failed calls / calls of this run. Connection pool efficiency is
/// 1 - connections opened during the run / its calls, not applicable to a provider without
/// connections. Memory utilisation is the process's peak resident memory (the main run's, or
/// the --memory-budget run's with the queue full when that is higher) as a share of the memory
/// it may use (`limit`, memory_available()), not checked when that is unknown. Recovery time is the
/// outage run's (--outage) time back to its recovered share of the offered rate, a miss when it
/// never got back or lost or redelivered a message, not checked without one. A circuit breaker
/// frequency (a rate per day) is never checked.
std::vector<target_check> check_targets(
    const performance_targets& t, const bench_result& r,
    const std::optional<memory_budget_result>& memory_budget = std::nullopt,
    const std::optional<outage_result>& outage = std::nullopt,
    const std::optional<memory_limit>& limit = std::nullopt);
/// The fewest messages completed in one whole second of the run's series, over the seconds
/// between the first (the ramp-up) and the last one in which anything was sent (the end of
/// sending and the drain after it); nullopt when the run has no such second. A sample is split
/// between the seconds its interval covers, in proportion.
std::optional<double> slowest_whole_second(const std::vector<sample>& series);
bool any_miss(const std::vector<target_check>& checks);

struct report {
  bench_result run;
  std::optional<baseline_result> baseline;
  std::optional<bench_result> half_rate;  ///< the same run paced at half the measured rate
  /// The raw queue paced at that same rate in the same run: what the machine allows there.
  std::optional<baseline_result> half_rate_baseline;
  /// With --repeat: every half-rate round's p99 (µs), in run order; the median round is shown.
  std::vector<double> half_rate_round_p99s;
  /// With --repeat: every round's ratio (or msg/s without a baseline).
  std::vector<double> round_ratios;
  std::optional<std::vector<scaling_point>> scaling;
  std::optional<overhead_result> overhead;
  std::optional<memory_budget_result> memory_budget;
  std::optional<outage_result> outage;
  std::vector<target_check> checks;
  std::string targets_environment;
  std::string command;               ///< the command line that made the report, for history
  std::string finished_at;           ///< UTC, "2026-12-03T11:05:00Z" (empty: unknown)
  std::vector<double> load_average;  ///< 1, 5 and 15 minutes at the end of the run (empty: unknown)
  /// The machine's cross-CPU round trip (ns, cross_cpu_round_trip_ns()) before the first round
  /// and after the last run; nullopt where it cannot be measured. Which of its levels the run
  /// met decides what CPU per message two threads sharing one queue can reach.
  std::optional<double> cross_cpu_round_trip_before_ns;
  std::optional<double> cross_cpu_round_trip_after_ns;
  /// The memory the process may use (memory_available()); nullopt where unknown.
  std::optional<qrt::bench::memory_limit> available_memory;

  /// run.e2e_throughput / baseline.throughput (0 without a baseline).
  double baseline_ratio() const;
};

/// The version of report.json's layout (`schema_version`); docs/bench-report.md lists the
/// fields. Reports written before the field existed are version 1.
inline constexpr int report_schema_version = 2;

/// The 1, 5 and 15 minute load averages (/proc/loadavg); empty when unreadable.
std::vector<double> read_load_average();
/// The current UTC time as "2026-12-03T11:05:00Z".
std::string utc_now();

std::string format_table(const report& r);
std::string to_json(const report& r);
std::string render_chart_html(const report& r);
/// Creates `dir` (and parents) and checks that files can be made in it: qrt bench calls it
/// before the run, so a directory that cannot take the report is refused before anything is
/// measured rather than after.
result<void> prepare_report_dir(const std::string& dir);
/// Creates `dir` (and parents) and writes report.json and chart.html into it.
result<void> write_report_dir(const report& r, const std::string& dir);

}  // namespace qrt::bench
