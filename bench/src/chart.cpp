#include <algorithm>
#include <cmath>
#include <cstdio>
#include <qrt/bench/chart.hpp>

namespace qrt::bench::chart {

namespace {

std::string number(double v, int decimals, bool keep_zeros) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", std::max(0, decimals), v);
  std::string s = buf;
  if (!keep_zeros && s.find('.') != std::string::npos) {
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
  }
  // "-0" (a tiny negative rounded) reads as 0. Erasing the sign rather than assigning "0":
  // GCC 12 reports a false -Wrestrict on the assignment in sanitizer builds.
  if (s == "-0") s.erase(0, 1);
  return s;
}

}  // namespace

std::string format_value(double v, unit u, double scale_of, int decimals, bool keep_zeros) {
  const double ref = std::abs(scale_of != 0 ? scale_of : v);
  auto number = [&](double x, int d) { return qrt::bench::chart::number(x, d, keep_zeros); };
  switch (u) {
    case unit::rate:
      if (ref >= 1e6) return number(v / 1e6, decimals) + " M msg/s";
      if (ref >= 1e3) return number(v / 1e3, decimals) + " k msg/s";
      return number(v, decimals) + " msg/s";
    case unit::micros:
      if (ref >= 1e6) return number(v / 1e6, decimals) + " s";
      if (ref >= 1e3) return number(v / 1e3, decimals) + " ms";
      return number(v, decimals) + " µs";
    case unit::seconds:
      if (ref >= 120) return number(v / 60, decimals) + " min";
      if (ref >= 1) return number(v, decimals) + " s";
      return number(v * 1e3, decimals) + " ms";
    case unit::count:
      return number(v, decimals);
    case unit::ratio:
      return number(v, decimals) + "×";
    case unit::fraction:
      return number(v * 100, decimals) + " %";
    case unit::bytes: {
      constexpr double kib = 1024, mib = kib * 1024, gib = mib * 1024;
      if (ref >= gib) return number(v / gib, decimals) + " GiB";
      if (ref >= mib) return number(v / mib, decimals) + " MiB";
      if (ref >= kib) return number(v / kib, decimals) + " KiB";
      return number(v, decimals) + " B";
    }
  }
  return number(v, decimals);
}

std::vector<tick> linear_ticks(double lo, double hi, unit u, int target) {
  if (!std::isfinite(lo)) lo = 0;
  if (!std::isfinite(hi) || !(hi > lo)) hi = lo + (lo == 0 ? 1 : std::abs(lo));
  target = std::max(target, 1);
  // Round in the unit the labels use when it is not a power of ten: KiB, MiB, GiB for bytes,
  // minutes for a long run's time axis.
  double factor = 1;
  if (u == unit::bytes) {
    while (factor < 1024.0 * 1024 * 1024 && std::max(std::abs(lo), std::abs(hi)) >= factor * 1024)
      factor *= 1024;
  } else if (u == unit::seconds && std::max(std::abs(lo), std::abs(hi)) >= 120) {
    factor = 60;
  }
  if (factor != 1) {
    auto ticks = linear_ticks(lo / factor, hi / factor, unit::count, target);
    const double scale = std::max(std::abs(ticks.front().value), std::abs(ticks.back().value));
    for (auto& t : ticks) {
      t.value *= factor;
      if (t.value == 0) continue;
      t.label = format_value(t.value, u, std::max(scale * factor, u == unit::bytes ? factor : 120));
    }
    return ticks;
  }
  const double raw = (hi - lo) / target;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / magnitude;
  double step = magnitude * 10;
  for (double m : {1.0, 2.0, 2.5, 5.0}) {
    if (norm <= m + 1e-9) {
      step = magnitude * m;
      break;
    }
  }
  const double first = std::floor(lo / step + 1e-9) * step;
  const double last = std::ceil(hi / step - 1e-9) * step;
  const double scale = std::max(std::abs(first), std::abs(last));
  std::vector<tick> out;
  for (int i = 0;; ++i) {
    double v = first + i * step;
    if (v > last + step * 1e-6) break;
    if (std::abs(v) < step * 1e-9) v = 0;
    // Zero needs no unit ("0", not "0 M msg/s").
    out.push_back({v, v == 0 ? std::string("0") : format_value(v, u, scale)});
  }
  return out;
}

std::vector<tick> log_ticks(double lo, double hi, unit u, std::size_t max_ticks) {
  if (!std::isfinite(hi) || hi <= 0) hi = 1;
  if (!std::isfinite(lo) || lo <= 0) lo = std::min(hi, 1.0) / 10;
  if (hi <= lo) hi = lo * 10;
  const int e_lo = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
  const int e_hi = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
  std::vector<double> values;
  for (int e = e_lo; e <= e_hi; ++e) {
    for (double m : {1.0, 2.0, 5.0}) values.push_back(m * std::pow(10.0, e));
  }
  // From the largest value at or below lo to the smallest at or above hi.
  std::size_t begin = 0, end = values.size();
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (values[i] <= lo * (1 + 1e-9)) begin = i;
  }
  for (std::size_t i = values.size(); i-- > 0;) {
    if (values[i] >= hi * (1 - 1e-9)) end = i + 1;
  }
  std::vector<double> chosen(values.begin() + static_cast<std::ptrdiff_t>(begin),
                             values.begin() + static_cast<std::ptrdiff_t>(end));
  if (chosen.size() > max_ticks) {
    chosen.clear();
    for (int e = e_lo; e <= e_hi; ++e) chosen.push_back(std::pow(10.0, e));
  }
  std::vector<tick> out;
  for (double v : chosen) out.push_back({v, format_value(v, u, 0, 6)});
  return out;
}

double percentile_axis(double q) {
  q = std::clamp(q, 0.0, 1.0 - 1e-9);
  return -std::log10(1.0 - q);
}

double axis_fraction(double v, double lo, double hi, bool log) {
  double f = 0;
  if (log) {
    if (v <= 0 || lo <= 0 || hi <= lo) return 0;
    f = (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
  } else {
    if (hi <= lo) return 0;
    f = (v - lo) / (hi - lo);
  }
  if (!std::isfinite(f)) return 0;
  return std::clamp(f, 0.0, 1.0);
}

std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace qrt::bench::chart
