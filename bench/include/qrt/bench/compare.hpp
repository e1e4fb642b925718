// Comparing two benchmark runs (`qrt bench compare OLD/report.json NEW/report.json`): each
// headline figure side by side with its change, and which changes are regressions. Whether a
// figure got worse depends on the figure: throughput going down, latency, CPU per message,
// memory or errors going up.
#pragma once

#include <map>
#include <optional>
#include <qrt/bench/chart.hpp>
#include <qrt/error.hpp>
#include <string>
#include <utility>
#include <vector>

namespace qrt::bench {

/// Which way a figure is better.
enum class better { higher, lower };

/// One figure compare reads from report.json.
struct figure_spec {
  std::string key;    ///< path in report.json, e.g. "e2e_latency_us.p99"
  std::string label;  ///< "latency p99"
  chart::unit unit = chart::unit::count;
  better direction = better::higher;
  double scale = 1;        ///< value in report.json times this is in `unit` (s/msg -> µs/msg)
  int required_since = 0;  ///< the schema version from which a report must have it; 0: optional
  bool flagged = true;     ///< false: shown, never a regression (a reference or a noisy maximum)
};
/// The figures, in the order compare prints them.
const std::vector<figure_spec>& compared_figures();

/// The figures of one report.json, by key (scaled to their unit), and how the run was set up.
struct report_figures {
  std::string file;
  int schema_version = 1;
  std::map<std::string, double> values;
  std::map<std::string, std::string> setup;  ///< provider, messages, message_size, ...
  std::string command;
  /// The machine's cross-CPU round trip over the run (the mean of report.json's before and
  /// after); none in a report without it.
  std::optional<double> cross_cpu_round_trip_ns;
};

/// Reads the figures of a report.json's text. Errors name `file` and the field: not JSON, not
/// a report (another JSON document), a required figure missing (a report from an older qrt
/// lacks the newer ones: those are optional for it) or not a number.
result<report_figures> read_report_figures(std::string_view json_text, const std::string& file);
/// The same from a file (or a report directory's report.json); a missing or unreadable file is
/// an error naming it, and so is one of more than 64 MiB (a pipe or a device is read no further).
result<report_figures> load_report_figures(const std::string& path);

struct comparison_row {
  enum class verdict {
    within,     ///< changed by at most the threshold (or not flagged)
    improved,   ///< better by more than the threshold
    regressed,  ///< worse by more than the threshold
    missing,    ///< in only one of the reports
  };
  figure_spec spec;
  std::optional<double> old_value, new_value;
  std::optional<double> change;  ///< (new - old) / old; none when old is 0 or a value is missing
  verdict outcome = verdict::within;
};

struct comparison {
  std::string old_file, new_file;
  double threshold = 0.10;  ///< a fraction: 0.10 flags changes beyond 10 %
  std::vector<comparison_row> rows;
  std::vector<std::string> setup_differences;  ///< "message_size: 256 -> 1024"
  /// Set when the raw queue's throughput (the same work without qrt: a measure of the machine)
  /// moved by more than the threshold: the machine was not as fast in both runs, and changes
  /// of that size say more about it than about qrt.
  std::optional<double> machine_change;
  /// Set (old, new) when the two runs met the machine at different levels: one cross-CPU round
  /// trip more than 1.5 times the other. The CPU per message of threads that share a queue
  /// follows the round trip, so such a change says more about the machine than about qrt.
  std::optional<std::pair<double, double>> machine_level_change;
  bool any_regression() const;
  std::vector<const comparison_row*> regressions() const;
};

/// Judges one figure: the change from old to new against `threshold` in the figure's
/// direction. An old value of 0 has no relative change: any increase of a lower-is-better
/// figure (errors from none) is a regression, of a higher-is-better one an improvement.
comparison_row compare_figure(const figure_spec& spec, std::optional<double> old_value,
                              std::optional<double> new_value, double threshold);

comparison compare_reports(const report_figures& old_run, const report_figures& new_run,
                           double threshold);

/// The side-by-side table for a terminal.
std::string format_comparison(const comparison& c);
/// A self-contained HTML page (inline SVG): each figure's change as a bar, regressions in red,
/// improvements in green, the threshold as dashed lines; then the table.
std::string render_comparison_html(const comparison& c);

}  // namespace qrt::bench
