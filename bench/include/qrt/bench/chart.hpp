// The pieces of the benchmark charts that are plain arithmetic: axis ticks on round values with
// units, value formatting, and the percentile plot's x coordinate. report.cpp and compare.cpp
// draw with them; the unit tests check them directly.
#pragma once

#include <string>
#include <vector>

namespace qrt::bench::chart {

/// What an axis or a figure measures; decides the unit a value is written in.
enum class unit {
  rate,      ///< messages/s: "500 msg/s", "650 k msg/s", "1.2 M msg/s"
  micros,    ///< microseconds: "250 µs", "1.5 ms", "2 s"
  seconds,   ///< seconds: "250 ms", "1.5 s", "2 min"
  count,     ///< a plain number: "16"
  ratio,     ///< a multiple: "0.45×"
  fraction,  ///< a share written as a percentage: 0.125 -> "12.5 %"
  bytes,     ///< "512 B", "64 KiB", "64 MiB"
};

/// `v` in `u`, with the scale (k, M, ms, MiB...) chosen from `scale_of` (pass the largest
/// value on an axis so every tick uses the same scale; 0 uses `v` itself), and at most
/// `decimals` digits after the point, trailing zeros dropped unless `keep_zeros` (for columns
/// of figures, where 0.8 next to 0.88 would look less precise).
std::string format_value(double v, unit u, double scale_of = 0, int decimals = 3,
                         bool keep_zeros = false);

struct tick {
  double value = 0;
  std::string label;
};

/// Ticks on round values (1, 2, 2.5 or 5 times a power of ten apart) covering [lo, hi], about
/// `target` intervals; the first tick is at or below lo, the last at or above hi. Labels share
/// one scale. hi <= lo gives an axis from lo to lo + 1 (or 0 to 1).
std::vector<tick> linear_ticks(double lo, double hi, unit u, int target = 5);

/// Ticks for a logarithmic axis: 1, 2 and 5 times each power of ten, from the largest of those
/// at or below lo to the smallest at or above hi (lo is raised to a positive value). When that
/// gives more than `max_ticks`, only the powers of ten are kept.
std::vector<tick> log_ticks(double lo, double hi, unit u, std::size_t max_ticks = 12);

/// The percentile plot's x coordinate for quantile q: -log10(1 - q), so p50 -> 0.30,
/// p90 -> 1, p99 -> 2, p99.9 -> 3, p99.99 -> 4 (the tail gets room, as in HdrHistogram plots).
/// q is clamped below 1 - 1e-9.
double percentile_axis(double q);

/// The quantiles the percentile plot shows, and their labels ("p50" ... "p99.99").
struct quantile {
  double q;
  const char* label;
};
inline constexpr quantile plotted_quantiles[] = {
    {0.50, "p50"}, {0.90, "p90"}, {0.99, "p99"}, {0.999, "p99.9"}, {0.9999, "p99.99"}};

/// Maps a value onto [0, 1] of an axis from lo to hi, linear or logarithmic (values at or
/// below 0 on a log axis land at 0).
double axis_fraction(double v, double lo, double hi, bool log);

/// Escapes &, <, >, " for HTML and SVG text and attributes.
std::string escape(std::string_view s);

}  // namespace qrt::bench::chart
