#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <qrt/bench/compare.hpp>

#include "core/bounded_file.hpp"
#include "svg_plot.hpp"

namespace qrt::bench {

namespace {
using chart::unit;
}  // namespace

const std::vector<figure_spec>& compared_figures() {
  // required_since: 1 for figures every report.json has had, 2 for those added with
  // schema_version 2; 0 for sections a run may leave out (--no-baseline, --half-rate, ...).
  static const std::vector<figure_spec> figures = {
      {"end_to_end_msgs_per_s", "end-to-end throughput", unit::rate, better::higher, 1, 1, true},
      {"send_msgs_per_s", "send throughput", unit::rate, better::higher, 1, 1, true},
      {"receive_msgs_per_s", "receive throughput", unit::rate, better::higher, 1, 1, true},
      {"baseline.ratio", "ratio to the raw queue", unit::ratio, better::higher, 1, 0, true},
      {"baseline.msgs_per_s", "raw queue (machine reference)", unit::rate, better::higher, 1, 0,
       false},
      {"e2e_latency_us.p50", "latency p50", unit::micros, better::lower, 1, 1, true},
      {"e2e_latency_us.p95", "latency p95", unit::micros, better::lower, 1, 1, true},
      {"e2e_latency_us.p99", "latency p99", unit::micros, better::lower, 1, 1, true},
      {"e2e_latency_us.p99_9", "latency p99.9", unit::micros, better::lower, 1, 2, true},
      {"e2e_latency_us.max", "latency max (not flagged)", unit::micros, better::lower, 1, 1, false},
      {"half_rate.e2e_latency_us.p50", "half-rate latency p50", unit::micros, better::lower, 1, 0,
       true},
      {"half_rate.e2e_latency_us.p99", "half-rate latency p99", unit::micros, better::lower, 1, 0,
       true},
      {"operation_latency_us.send.p99", "send call p99", unit::micros, better::lower, 1, 1, true},
      {"operation_latency_us.receive.p99", "receive call p99", unit::micros, better::lower, 1, 1,
       true},
      {"operation_latency_us.complete.p99", "complete call p99", unit::micros, better::lower, 1, 1,
       true},
      {"sessions.accept_latency_us.p99", "session accept call p99", unit::micros, better::lower, 1,
       0, true},
      {"cpu_seconds_per_message", "CPU per message", unit::micros, better::lower, 1e6, 1, true},
      {"peak_rss_bytes", "peak resident memory", unit::bytes, better::lower, 1, 1, true},
      {"errors", "errors (send + receive + complete)", unit::count, better::lower, 1, 1, true},
      {"overhead.qrt_share", "client overhead (CPU share)", unit::fraction, better::lower, 1, 0,
       true},
      {"memory_budget.growth_per_budget_byte", "memory growth / budget", unit::ratio, better::lower,
       1, 0, true},
      {"scaling.last.efficiency", "scaling efficiency at the most consumers", unit::fraction,
       better::higher, 1, 0, true},
  };
  return figures;
}

namespace {

error bad_report(const std::string& file, const std::string& why) {
  return fail(errc::invalid_argument, file + ": " + why);
}

const boost::json::value* find_path(const boost::json::object& root, const std::string& key) {
  const boost::json::value* v = nullptr;
  const boost::json::object* at = &root;
  std::size_t start = 0;
  while (true) {
    const auto dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? dot : dot - start);
    if (!at) return nullptr;
    if (part == "last" && v && v->is_array()) {
      const auto& a = v->as_array();
      if (a.empty()) return nullptr;
      v = &a.back();
    } else {
      v = at->if_contains(part);
    }
    if (!v) return nullptr;
    if (dot == std::string::npos) return v;
    at = v->if_object();
    if (!at && !v->is_array()) return nullptr;
    start = dot + 1;
  }
}

std::optional<double> as_number(const boost::json::value& v) {
  if (v.is_double()) return v.as_double();
  if (v.is_int64()) return static_cast<double>(v.as_int64());
  if (v.is_uint64()) return static_cast<double>(v.as_uint64());
  return std::nullopt;
}

std::string schema_note(int version) {
  return version < 2
             ? " (its schema_version is " + std::to_string(version) + ": written by an older qrt?)"
             : "";
}

}  // namespace

result<report_figures> read_report_figures(std::string_view json_text, const std::string& file) {
  boost::system::error_code ec;
  auto doc = boost::json::parse(json_text, ec);
  if (ec) return bad_report(file, "not JSON (" + ec.message() + ")");
  const auto* root = doc.if_object();
  if (!root || !root->contains("end_to_end_msgs_per_s") || !root->contains("provider")) {
    return bad_report(file,
                      "not a qrt bench report.json (expected an object with provider and "
                      "end_to_end_msgs_per_s)");
  }
  report_figures out;
  out.file = file;
  if (const auto* sv = root->if_contains("schema_version")) {
    const auto n = as_number(*sv);
    if (!n || *n < 1 || *n != std::floor(*n)) {
      return bad_report(file, "field 'schema_version' is not a positive whole number");
    }
    out.schema_version = static_cast<int>(*n);
  }
  if (const auto* c = root->if_contains("command"); c && c->is_string()) {
    out.command = std::string(c->as_string());
  }
  for (const auto& spec : compared_figures()) {
    std::optional<double> value;
    if (spec.key == "errors") {
      const auto* errs = root->if_contains("errors");
      if (!errs || !errs->is_object()) {
        return bad_report(
            file, "field 'errors' is missing or not an object" + schema_note(out.schema_version));
      }
      double total = 0;
      for (const char* part : {"send", "receive", "complete"}) {
        const auto* e = errs->as_object().if_contains(part);
        const auto n = e ? as_number(*e) : std::nullopt;
        if (!n) {
          return bad_report(file, std::string("field 'errors.") + part +
                                      "' is missing or not a number" +
                                      schema_note(out.schema_version));
        }
        total += *n;
      }
      value = total;
    } else if (const auto* v = find_path(*root, spec.key); v && !v->is_null()) {
      value = as_number(*v);
      if (!value) return bad_report(file, "field '" + spec.key + "' is not a number");
    }
    const bool required = spec.required_since > 0 && out.schema_version >= spec.required_since;
    if (!value) {
      if (required) {
        return bad_report(file,
                          "field '" + spec.key + "' is missing" + schema_note(out.schema_version));
      }
      continue;
    }
    if (!std::isfinite(*value)) return bad_report(file, "field '" + spec.key + "' is not finite");
    out.values[spec.key] = *value * spec.scale;
  }
  for (const char* key : {"provider", "messages", "message_size", "producers", "consumers",
                          "send_batch", "receive_batch"}) {
    if (const auto* v = root->if_contains(key)) {
      out.setup[key] = v->is_string() ? std::string(v->as_string()) : boost::json::serialize(*v);
    }
  }
  if (const auto* half = root->if_contains("half_rate"); half && half->is_object()) {
    out.setup["half_rate"] = "yes";
  }
  // Older reports have no machine section; a round trip that could not be measured is null.
  if (const auto* m = root->if_contains("machine"); m && m->is_object()) {
    const auto* before = m->as_object().if_contains("cross_cpu_round_trip_before_ns");
    const auto* after = m->as_object().if_contains("cross_cpu_round_trip_after_ns");
    const auto b = before ? as_number(*before) : std::nullopt;
    const auto a = after ? as_number(*after) : std::nullopt;
    if (b && a && std::isfinite(*b) && std::isfinite(*a) && *b > 0 && *a > 0) {
      out.cross_cpu_round_trip_ns = (*b + *a) / 2;
    }
  }
  // A session run and a plain one measure different paths: compare says they differ.
  if (const auto* sessions = root->if_contains("sessions"); sessions && sessions->is_object()) {
    if (const auto* n = sessions->as_object().if_contains("count")) {
      out.setup["sessions"] = boost::json::serialize(*n);
    }
  }
  return out;
}

result<report_figures> load_report_figures(const std::string& given) {
  // A report directory stands for the report.json in it.
  std::string path = given;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    path = (std::filesystem::path(path) / "report.json").string();
  }
  // Far more than any report.json written by qrt bench (its series are bounded); a device or a
  // pipe that never ends is read no further.
  constexpr std::size_t largest_report = std::size_t{64} << 20;
  auto text = qrt::detail::read_file_at_most(path, largest_report, "report");
  if (!text) return fail(errc::invalid_argument, text.error().message);
  return read_report_figures(*text, path);
}

comparison_row compare_figure(const figure_spec& spec, std::optional<double> old_value,
                              std::optional<double> new_value, double threshold) {
  comparison_row row;
  row.spec = spec;
  row.old_value = old_value;
  row.new_value = new_value;
  if (!old_value || !new_value) {
    row.outcome = comparison_row::verdict::missing;
    return row;
  }
  const double o = *old_value, n = *new_value;
  // Positive: the figure got better.
  double gain = 0;
  if (o == 0) {
    row.change = n == 0 ? std::optional<double>(0.0) : std::nullopt;
    if (n == 0) {
      gain = 0;
    } else {
      gain = (spec.direction == better::higher) == (n > 0) ? INFINITY : -INFINITY;
    }
  } else {
    row.change = (n - o) / std::abs(o);
    gain = spec.direction == better::higher ? *row.change : -*row.change;
  }
  if (!spec.flagged) {
    row.outcome = comparison_row::verdict::within;
  } else if (gain < -threshold) {
    row.outcome = comparison_row::verdict::regressed;
  } else if (gain > threshold) {
    row.outcome = comparison_row::verdict::improved;
  } else {
    row.outcome = comparison_row::verdict::within;
  }
  return row;
}

comparison compare_reports(const report_figures& old_run, const report_figures& new_run,
                           double threshold) {
  comparison c;
  c.old_file = old_run.file;
  c.new_file = new_run.file;
  c.threshold = threshold;
  auto get = [](const report_figures& r, const std::string& key) -> std::optional<double> {
    auto it = r.values.find(key);
    if (it == r.values.end()) return std::nullopt;
    return it->second;
  };
  for (const auto& spec : compared_figures()) {
    auto o = get(old_run, spec.key), n = get(new_run, spec.key);
    if (!o && !n) continue;
    c.rows.push_back(compare_figure(spec, o, n, threshold));
  }
  for (const auto& r : c.rows) {
    if (r.spec.key == "baseline.msgs_per_s" && r.change && std::abs(*r.change) > threshold) {
      c.machine_change = *r.change;
    }
  }
  if (old_run.cross_cpu_round_trip_ns && new_run.cross_cpu_round_trip_ns) {
    const double o = *old_run.cross_cpu_round_trip_ns, n = *new_run.cross_cpu_round_trip_ns;
    if (std::max(o, n) > 1.5 * std::min(o, n)) c.machine_level_change = std::pair{o, n};
  }
  std::map<std::string, std::pair<std::string, std::string>> setup;
  for (const auto& [k, v] : old_run.setup) setup[k].first = v;
  for (const auto& [k, v] : new_run.setup) setup[k].second = v;
  for (const auto& [k, v] : setup) {
    if (v.first != v.second) {
      c.setup_differences.push_back(k + ": " + (v.first.empty() ? "-" : v.first) + " -> " +
                                    (v.second.empty() ? "-" : v.second));
    }
  }
  return c;
}

bool comparison::any_regression() const {
  return !regressions().empty();
}

std::vector<const comparison_row*> comparison::regressions() const {
  std::vector<const comparison_row*> out;
  for (const auto& r : rows) {
    if (r.outcome == comparison_row::verdict::regressed) out.push_back(&r);
  }
  return out;
}

namespace {

std::string value_text(const comparison_row& r, const std::optional<double>& v) {
  if (!v) return "-";
  const double a = std::abs(*v);
  double scaled = a;
  if (r.spec.unit == unit::rate || r.spec.unit == unit::micros) {
    scaled = a >= 1e6 ? a / 1e6 : a >= 1e3 ? a / 1e3 : a;
  } else if (r.spec.unit == unit::fraction) {
    scaled = a * 100;
  } else if (r.spec.unit == unit::bytes) {
    scaled = a / (1024.0 * 1024.0);
  }
  const int decimals = scaled >= 100 ? 0 : scaled >= 10 ? 1 : 2;
  return chart::format_value(*v, r.spec.unit, 0, r.spec.unit == unit::count ? 0 : decimals, true);
}

std::string change_text(const comparison_row& r) {
  if (r.outcome == comparison_row::verdict::missing) {
    return r.old_value ? "only in old" : "only in new";
  }
  if (!r.change) return *r.new_value > *r.old_value ? "up from 0" : "down to 0";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f %%", *r.change * 100);
  return buf;
}

std::string verdict_text(const comparison_row& r) {
  switch (r.outcome) {
    case comparison_row::verdict::regressed:
      return r.spec.direction == better::higher ? "REGRESSED (lower is worse)"
                                                : "REGRESSED (higher is worse)";
    case comparison_row::verdict::improved:
      return "better";
    case comparison_row::verdict::missing:
    case comparison_row::verdict::within:
      return "";
  }
  return "";
}

std::string pad(const std::string& s, std::size_t width, bool right) {
  // Width in characters, counting a multi-byte UTF-8 sequence (µ, ×) as one.
  std::size_t chars = 0;
  for (unsigned char ch : s) chars += (ch & 0xC0) != 0x80;
  if (chars >= width) return s;
  const std::string fill(width - chars, ' ');
  return right ? fill + s : s + fill;
}

}  // namespace

namespace {

// "85 ns in the old run and 335 ns in the new", for both renderings of the level note.
std::string round_trips_text(const std::pair<double, double>& old_and_new) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.0f ns in the old run and %.0f ns in the new", old_and_new.first,
                old_and_new.second);
  return buf;
}

}  // namespace

std::string format_comparison(const comparison& c) {
  char buf[160];
  std::string out = "old: " + c.old_file + "\nnew: " + c.new_file + "\n";
  for (const auto& d : c.setup_differences) out += "note: the runs differ in " + d + "\n";
  std::snprintf(buf, sizeof buf, "a regression: worse by more than %.1f %%\n\n", c.threshold * 100);
  out += buf;
  out += pad("figure", 42, false) + pad("old", 14, true) + pad("new", 14, true) +
         pad("change", 12, true) + "\n";
  for (const auto& r : c.rows) {
    out += pad(r.spec.label, 42, false) + pad(value_text(r, r.old_value), 14, true) +
           pad(value_text(r, r.new_value), 14, true) + pad(change_text(r), 12, true);
    const auto v = verdict_text(r);
    if (!v.empty()) out += "  " + v;
    out += "\n";
  }
  if (c.machine_change) {
    std::snprintf(buf, sizeof buf, "%+.1f %%", *c.machine_change * 100);
    out += std::string("\nnote: the raw queue itself changed by ") + buf +
           ": the machine was not equally fast in both runs\n      (other load?); read the "
           "flags against that (--repeat 3, a larger --threshold)\n";
  }
  if (c.machine_level_change) {
    out += "\nnote: the machine's cross-CPU round trip was " +
           round_trips_text(*c.machine_level_change) +
           ":\n      the CPU per message of threads sharing a queue follows it; read the flags "
           "against that\n";
  }
  const auto regressed = c.regressions();
  if (regressed.empty()) {
    std::snprintf(buf, sizeof buf, "\nno figure regressed by more than %.1f %%\n",
                  c.threshold * 100);
    out += buf;
  } else {
    out += "\n" + std::to_string(regressed.size()) + " figure(s) regressed:";
    for (std::size_t i = 0; i < regressed.size(); ++i) {
      out += (i ? ", " : " ") + regressed[i]->spec.label;
    }
    out += "\n";
  }
  return out;
}

std::string render_comparison_html(const comparison& c) {
  // One bar per figure with both values: its change in percent, coloured by the verdict.
  std::vector<const comparison_row*> drawn;
  double lo = -c.threshold * 1.5, hi = c.threshold * 1.5;
  constexpr double cap = 2.0;  // changes beyond ±200 % are drawn at the edge
  for (const auto& r : c.rows) {
    if (r.outcome == comparison_row::verdict::missing) continue;
    drawn.push_back(&r);
    const double ch = r.change ? std::clamp(*r.change, -cap, cap) : (*r.new_value > 0 ? cap : -cap);
    lo = std::min(lo, ch);
    hi = std::max(hi, ch);
  }
  const double row_h = 24;
  chart::plot p("compare", "Change from the old run to the new",
                40 + 48 + row_h * static_cast<double>(drawn.size()) + 8, 260);
  // Room on the right for the change written after a bar.
  p.set_x(
      chart::linear_axis(lo, hi + (hi - lo) * 0.12, unit::fraction, "change (new - old) / old", 6));
  for (std::size_t i = 0; i < drawn.size(); ++i) {
    const auto& r = *drawn[i];
    const double ch = r.change ? std::clamp(*r.change, -cap, cap) : (*r.new_value > 0 ? cap : -cap);
    const double top = p.plot_top() + 6 + row_h * static_cast<double>(i);
    const char* colour = r.outcome == comparison_row::verdict::regressed  ? "#d62728"
                         : r.outcome == comparison_row::verdict::improved ? "#2ca02c"
                                                                          : "#9e9e9e";
    const double x0 = p.x(0), x1 = p.x(ch);
    p.bar(r.spec.key, ch, colour, std::min(x0, x1), top, std::abs(x1 - x0), row_h - 8,
          r.spec.label + ": " + value_text(r, r.old_value) + " -> " + value_text(r, r.new_value));
    p.category_y(top + (row_h - 8) / 2, r.spec.label);
    p.text(std::max(x0, x1) + 4, top + row_h - 11, change_text(r), "start", "font-size=\"11\"");
  }
  p.reference_x(-c.threshold, "");
  p.reference_x(c.threshold, "");
  p.reference_x(0, "");
  p.legend("regressed", "#d62728");
  p.legend("better", "#2ca02c");
  p.legend("within the threshold", "#9e9e9e");
  char thr[64];
  std::snprintf(thr, sizeof thr, "%.1f %%", c.threshold * 100);
  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src "
      "'unsafe-inline'\">\n<title>qrt bench compare</title>\n<style>\n"
      "body { font-family: sans-serif; margin: 24px; color: #222; max-width: 800px; }\n"
      "figure.chart svg { max-width: 100%; height: auto; border: 1px solid #ddd; }\n"
      "figure.chart { margin: 0 0 22px; break-inside: avoid; }\n"
      "figcaption { color: #555; font-size: 13px; }\n"
      "table { border-collapse: collapse; font-size: 13px; }\n"
      "td, th { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: right; }\n"
      "td:first-child, th:first-child { text-align: left; }\n"
      ".regressed { color: #c41a1a; font-weight: bold; } .improved { color: #137a13; }\n"
      "</style></head>\n<body>\n<h1>qrt bench compare</h1>\n<p>old: <code>" +
      chart::escape(c.old_file) + "</code><br>new: <code>" + chart::escape(c.new_file) +
      "</code></p>\n";
  const auto regressed = c.regressions();
  html += regressed.empty() ? "<p class=\"improved\">No figure regressed by more than " +
                                  std::string(thr) + ".</p>\n"
                            : "<p class=\"regressed\">" + std::to_string(regressed.size()) +
                                  " figure(s) regressed by more than " + thr + ".</p>\n";
  for (const auto& d : c.setup_differences) {
    html += "<p>Note: the runs differ in " + chart::escape(d) + ".</p>\n";
  }
  if (c.machine_change) {
    char change[32];
    std::snprintf(change, sizeof change, "%+.1f %%", *c.machine_change * 100);
    html += std::string("<p>Note: the raw queue itself changed by ") + change +
            ": the machine was not equally fast in both runs, so read the flags against "
            "that.</p>\n";
  }
  if (c.machine_level_change) {
    html += "<p>Note: the machine's cross-CPU round trip was " +
            round_trips_text(*c.machine_level_change) +
            ": the CPU per message of threads sharing a queue follows it, so read the flags "
            "against that.</p>\n";
  }
  html += p.finish(std::string("Dashed lines: ±") + thr +
                   ". Red: worse beyond it (throughput down, latency, CPU, memory or errors "
                   "up); green: better beyond it.");
  html += "<table>\n<tr><th>figure</th><th>old</th><th>new</th><th>change</th><th></th></tr>\n";
  for (const auto& r : c.rows) {
    const char* cls = r.outcome == comparison_row::verdict::regressed  ? "regressed"
                      : r.outcome == comparison_row::verdict::improved ? "improved"
                                                                       : "";
    html += "<tr class=\"" + std::string(cls) + "\"><td>" + chart::escape(r.spec.label) +
            "</td><td>" + chart::escape(value_text(r, r.old_value)) + "</td><td>" +
            chart::escape(value_text(r, r.new_value)) + "</td><td>" +
            chart::escape(change_text(r)) + "</td><td>" + chart::escape(verdict_text(r)) +
            "</td></tr>\n";
  }
  html += "</table>\n</body></html>\n";
  return html;
}

}  // namespace qrt::bench
