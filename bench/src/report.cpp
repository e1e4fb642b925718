#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <qrt/bench/chart.hpp>
#include <qrt/bench/report.hpp>
#include <set>

#include "core/bounded_file.hpp"
#include "core/yaml_document.hpp"
#include "svg_plot.hpp"

namespace qrt::bench {

// ---------------------------------------------------------------------------------------------
// Targets

namespace {

error target_error(const std::string& field, const std::string& why) {
  return fail(errc::configuration_error, "targets: " + field + ": " + why);
}

std::string trim(std::string s) {
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

enum class unit_kind { count, duration, fraction };

// "<100ms" / ">90%" / "1 hour" / "1000": the comparison, the number and its unit.
result<bound> parse_bound(const std::string& field, const std::string& text, unit_kind kind,
                          bound::direction default_dir) {
  bound b;
  b.text = trim(text);
  std::string rest = b.text;
  b.dir = default_dir;
  if (rest.starts_with("<=") || rest.starts_with(">=")) {
    b.dir = rest[0] == '<' ? bound::direction::at_most : bound::direction::at_least;
    rest = rest.substr(2);
  } else if (rest.starts_with("<") || rest.starts_with(">")) {
    b.dir = rest[0] == '<' ? bound::direction::at_most : bound::direction::at_least;
    rest = rest.substr(1);
  }
  rest = trim(rest);
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(rest, &used);
  } catch (...) {
    return target_error(field,
                        "cannot read '" + b.text + "' (expected e.g. \"<100ms\", \">90%\", 1000)");
  }
  if (!std::isfinite(v) || v < 0)
    return target_error(field, "'" + b.text + "' is not a non-negative number");
  const std::string unit = trim(rest.substr(used));
  switch (kind) {
    case unit_kind::count:
      if (!unit.empty()) return target_error(field, "'" + b.text + "' should be a plain number");
      b.value = v;
      break;
    case unit_kind::fraction:
      if (unit != "%")
        return target_error(field, "'" + b.text + "' should be a percentage like \">90%\"");
      // Each percentage is a share (of full batches, of calls, of all cores): above 100 % a
      // lower bound could never be met and an upper one would check nothing.
      if (v > 100) return target_error(field, "'" + b.text + "' is not a share from 0% to 100%");
      b.value = v / 100.0;
      break;
    case unit_kind::duration: {
      static const std::map<std::string, double> units = {
          {"us", 1e-6},    {"µs", 1e-6},   {"ms", 1e-3},   {"s", 1},       {"sec", 1},
          {"second", 1},   {"seconds", 1}, {"m", 60},      {"min", 60},    {"minute", 60},
          {"minutes", 60}, {"h", 3600},    {"hour", 3600}, {"hours", 3600}};
      auto it = units.find(unit);
      if (it == units.end()) {
        return target_error(field,
                            "'" + b.text + "' needs a time unit (us, ms, s, minutes, hours)");
      }
      b.value = v * it->second;
      break;
    }
  }
  return b;
}

result<void> read_section(const YAML::Node& node, performance_targets& t) {
  struct field_spec {
    const char* group;
    const char* name;
    unit_kind kind;
    bound::direction default_dir;
    std::optional<bound> performance_targets::*slot;
  };
  using d = bound::direction;
  static const field_spec fields[] = {
      {"throughput", "messages_per_second", unit_kind::count, d::at_least,
       &performance_targets::messages_per_second},
      {"throughput", "batch_efficiency", unit_kind::fraction, d::at_least,
       &performance_targets::batch_efficiency},
      {"throughput", "sustained_duration", unit_kind::duration, d::at_least,
       &performance_targets::sustained_duration},
      {"latency", "p50_message_latency", unit_kind::duration, d::at_most,
       &performance_targets::p50_latency},
      {"latency", "p95_message_latency", unit_kind::duration, d::at_most,
       &performance_targets::p95_latency},
      {"latency", "p99_message_latency", unit_kind::duration, d::at_most,
       &performance_targets::p99_latency},
      {"latency", "api_call_latency", unit_kind::duration, d::at_most,
       &performance_targets::api_call_latency},
      {"reliability", "error_rate", unit_kind::fraction, d::at_most,
       &performance_targets::error_rate},
      {"reliability", "availability", unit_kind::fraction, d::at_least,
       &performance_targets::availability},
      {"resources", "cpu_utilization", unit_kind::fraction, d::at_most,
       &performance_targets::cpu_utilization},
      {"resources", "memory_utilization", unit_kind::fraction, d::at_most,
       &performance_targets::memory_utilization},
      {"resources", "connection_pool_efficiency", unit_kind::fraction, d::at_least,
       &performance_targets::connection_pool_efficiency},
      {"reliability", "recovery_time", unit_kind::duration, d::at_most,
       &performance_targets::recovery_time},
  };
  // A rate per day ("<1 per day"): no run of seconds or hours shows one, so its text is kept
  // as written and reported as not checked.
  static const std::pair<const char*, const char*> unmeasured[] = {
      {"reliability", "circuit_breaker_frequency"},
  };
  if (!node.IsMap()) return target_error("performance_targets", "expected a map of groups");
  // A field given twice (or in a group given twice) would take one of its values silently: a
  // looser bound over a stricter one, say. Which one the user meant is theirs to say.
  std::set<std::string> given;
  for (const auto& group : node) {
    const auto gname = group.first.as<std::string>();
    if (gname != "throughput" && gname != "latency" && gname != "reliability" &&
        gname != "resources") {
      return target_error(gname,
                          "unknown group (expected throughput, latency, reliability, resources)");
    }
    if (!group.second.IsMap()) return target_error(gname, "expected a map");
    for (const auto& item : group.second) {
      const auto name = item.first.as<std::string>();
      const std::string path = gname + "." + name;
      if (!given.insert(path).second) return target_error(path, "given more than once");
      if (!item.second.IsScalar()) return target_error(path, "expected a value like \"<100ms\"");
      const auto value = item.second.as<std::string>();
      bool known = false;
      for (const auto& f : fields) {
        if (gname == f.group && name == f.name) {
          auto b = parse_bound(path, value, f.kind, f.default_dir);
          if (!b) return b.error();
          t.*f.slot = *b;
          known = true;
        }
      }
      for (const auto& [g, n] : unmeasured) {
        if (gname == g && name == n) {
          t.not_measured.push_back(path + " " + value);
          known = true;
        }
      }
      if (!known) return target_error(path, "unknown field");
    }
  }
  return {};
}

}  // namespace

namespace {

// How many keys of map `node` are `key`: yaml-cpp keeps every one, and node[key] finds the first.
std::size_t keys_named(const YAML::Node& node, std::string_view key) {
  std::size_t n = 0;
  if (!node.IsMap()) return n;
  for (const auto& kv : node) {
    if (kv.first.IsScalar() && kv.first.Scalar() == key) ++n;
  }
  return n;
}

}  // namespace

result<performance_targets> parse_targets(std::string_view yaml, std::string_view environment) {
  YAML::Node root;
  try {
    auto document = qrt::detail::load_single_document(yaml, "the file");
    if (!document) return fail(errc::configuration_error, "targets: " + document.error().message);
    root = *document;
  } catch (const YAML::Exception& e) {
    return fail(errc::configuration_error, std::string("targets: not valid YAML: ") + e.what());
  }
  if (!root.IsMap()) return target_error("(top level)", "expected a map");
  try {
    if (keys_named(root, "performance_targets") > 1) {
      return target_error("performance_targets", "given more than once");
    }
    YAML::Node set = root["performance_targets"] ? root["performance_targets"] : root;
    const bool per_environment = set.IsMap() && (set["production"] || set["development"]);
    performance_targets t;
    if (per_environment) {
      const std::string env = environment.empty() ? "production" : std::string(environment);
      if (!set[env]) {
        return target_error(
            env, "no targets for this environment (the file has production/development)");
      }
      if (keys_named(set, env) > 1) return target_error(env, "given more than once");
      YAML::Node chosen = set[env];
      if (keys_named(chosen, "performance_targets") > 1) {
        return target_error(env + ".performance_targets", "given more than once");
      }
      if (chosen["performance_targets"]) chosen = chosen["performance_targets"];
      t.environment = env;
      if (auto r = read_section(chosen, t); !r) return r.error();
    } else {
      if (!root["performance_targets"]) {
        return target_error("(top level)",
                            "expected performance_targets, production or development");
      }
      if (auto r = read_section(set, t); !r) return r.error();
    }
    return t;
  } catch (const YAML::Exception& e) {
    return fail(errc::configuration_error, std::string("targets: ") + e.what());
  }
}

result<performance_targets> load_targets(const std::string& path, std::string_view environment) {
  auto text =
      qrt::detail::read_file_at_most(path, qrt::detail::largest_settings_file, "targets file");
  if (!text) return fail(errc::configuration_error, text.error().message);
  auto t = parse_targets(*text, environment);
  if (!t) {
    auto e = t.error();
    e.message = path + ": " + e.message;
    return e;
  }
  return t;
}

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

target_check check(const std::string& name, const bound& b, double measured, std::string shown) {
  target_check c;
  c.name = name;
  c.target = b.text;
  c.measured = std::move(shown);
  const bool ok = b.dir == bound::direction::at_most ? measured <= b.value : measured >= b.value;
  c.outcome = ok ? target_check::status::pass : target_check::status::miss;
  return c;
}

}  // namespace

std::vector<target_check> check_targets(const performance_targets& t, const bench_result& r,
                                        const std::optional<memory_budget_result>& memory_budget,
                                        const std::optional<outage_result>& outage,
                                        const std::optional<memory_limit>& limit) {
  std::vector<target_check> out;
  auto ms = [](double us) { return fmt("%.3f ms", us / 1000.0); };
  if (t.messages_per_second) {
    out.push_back(check("throughput.messages_per_second", *t.messages_per_second, r.e2e_throughput,
                        fmt("%.0f msg/s", r.e2e_throughput)));
  }
  if (t.batch_efficiency) {
    const double send_fill = r.send_batch ? r.mean_send_batch / r.send_batch : 0;
    const double receive_fill = r.receive_batch ? r.mean_receive_batch / r.receive_batch : 0;
    const double fill = std::min(send_fill, receive_fill);
    out.push_back(check("throughput.batch_efficiency", *t.batch_efficiency, fill,
                        fmt("%.1f%% (worst of send/receive batch fill)", fill * 100)));
  }
  if (t.sustained_duration) {
    target_check c;
    c.name = "throughput.sustained_duration";
    c.target = t.sustained_duration->text;
    if (r.wall_s + 1e-9 < t.sustained_duration->value) {
      c.measured = fmt("run lasted %.1f s; use --duration to test this", r.wall_s);
    } else if (!t.messages_per_second) {
      c.outcome = target_check::status::pass;
      c.measured = fmt("%.0f s (no throughput.messages_per_second to hold)", r.wall_s);
    } else if (const auto slowest = slowest_whole_second(r.series)) {
      // Sustained means the rate held all along, not on average.
      const bool held = *slowest + 1e-9 >= t.messages_per_second->value;
      c.outcome = held ? target_check::status::pass : target_check::status::miss;
      c.measured = fmt("%.0f s, ", r.wall_s) + fmt("slowest whole second %.0f msg/s", *slowest);
    } else {
      c.measured = fmt("%.0f s, but the run's series has no whole second to check", r.wall_s);
    }
    out.push_back(c);
  }
  if (t.p50_latency)
    out.push_back(
        check("latency.p50_message_latency", *t.p50_latency, r.e2e.p50_us / 1e6, ms(r.e2e.p50_us)));
  if (t.p95_latency)
    out.push_back(
        check("latency.p95_message_latency", *t.p95_latency, r.e2e.p95_us / 1e6, ms(r.e2e.p95_us)));
  if (t.p99_latency)
    out.push_back(
        check("latency.p99_message_latency", *t.p99_latency, r.e2e.p99_us / 1e6, ms(r.e2e.p99_us)));
  if (t.api_call_latency) {
    const double worst =
        std::max({r.send_call.p95_us, r.receive_call.p95_us, r.complete_call.p95_us});
    out.push_back(check("latency.api_call_latency", *t.api_call_latency, worst / 1e6,
                        ms(worst) + " (worst p95 of send/receive/complete)"));
  }
  if (t.error_rate) {
    const double attempts = static_cast<double>(r.messages_sent + r.send_errors);
    const double errors = static_cast<double>(r.send_errors + r.receive_errors + r.complete_errors);
    const double rate = attempts > 0 ? errors / attempts : 0;
    out.push_back(check("reliability.error_rate", *t.error_rate, rate, fmt("%.4f%%", rate * 100)));
  }
  auto count = [](std::uint64_t n) { return std::to_string(n); };
  auto not_checked = [](std::string name, const bound& b, std::string why) {
    return target_check{std::move(name), b.text, std::move(why), target_check::status::not_checked};
  };
  if (t.availability) {
    // What a run can show of availability: its own calls, not the service's uptime over time.
    const std::string name = "reliability.availability";
    if (r.provider_calls == 0) {
      out.push_back(not_checked(name, *t.availability, "no provider calls in this run"));
    } else {
      const double failed = static_cast<double>(std::min(r.failed_calls, r.provider_calls));
      const double share = 1 - failed / static_cast<double>(r.provider_calls);
      out.push_back(check(name, *t.availability, share,
                          fmt("%.3f%% of calls in this run succeeded (", share * 100) +
                              count(r.failed_calls) + " of " + count(r.provider_calls) +
                              " send/receive/settle calls failed)"));
    }
  }
  if (t.cpu_utilization) {
    out.push_back(check("resources.cpu_utilization", *t.cpu_utilization, r.cpu_utilisation,
                        fmt("%.1f%% of all cores", r.cpu_utilisation * 100)));
  }
  if (t.memory_utilization) {
    const std::string name = "resources.memory_utilization";
    if (!limit || limit->bytes == 0) {
      out.push_back(not_checked(name, *t.memory_utilization,
                                "the memory available to the process is unknown (no cgroup "
                                "limit and no /proc/meminfo to read)"));
    } else {
      // The budget run fills a queue on purpose: its peak is the process's too.
      const std::uint64_t peak =
          std::max(r.peak_rss_bytes, memory_budget ? memory_budget->full_rss_bytes : 0);
      const double share = static_cast<double>(peak) / static_cast<double>(limit->bytes);
      constexpr double mib = 1024.0 * 1024.0;
      out.push_back(check(name, *t.memory_utilization, share,
                          fmt("%.1f%% of ", share * 100) +
                              fmt("%.1f MiB", static_cast<double>(limit->bytes) / mib) + " (" +
                              limit->source + "): peak resident " +
                              fmt("%.1f MiB", static_cast<double>(peak) / mib)));
    }
  }
  if (t.connection_pool_efficiency) {
    const std::string name = "resources.connection_pool_efficiency";
    if (!r.connections_opened) {
      out.push_back(not_checked(
          name, *t.connection_pool_efficiency,
          "not applicable (no connections): the " + r.provider + " provider opens none"));
    } else if (r.provider_calls == 0) {
      out.push_back(
          not_checked(name, *t.connection_pool_efficiency, "no provider calls in this run"));
    } else {
      // A call either found a connection open or opened one; a provider that reconnects more
      // often than it is called reused none.
      const double opened = static_cast<double>(std::min(*r.connections_opened, r.provider_calls));
      const double share = 1 - opened / static_cast<double>(r.provider_calls);
      out.push_back(check(name, *t.connection_pool_efficiency, share,
                          fmt("%.1f%% of calls reused an open connection (", share * 100) +
                              count(*r.connections_opened) + " connections opened during " +
                              count(r.provider_calls) + " calls)"));
    }
  }
  if (t.recovery_time) {
    const std::string name = "reliability.recovery_time";
    if (!outage) {
      out.push_back(not_checked(name, *t.recovery_time,
                                "no outage run to measure recovery in (--outage makes one)"));
    } else if (!outage->every_message_once()) {
      out.push_back({name, t.recovery_time->text,
                     "the outage run lost or redelivered messages (sent " + count(outage->sent) +
                         ", completed " + count(outage->completed) + ", redelivered " +
                         count(outage->redeliveries) + ")",
                     target_check::status::miss});
    } else if (!outage->recovery_s) {
      out.push_back({name, t.recovery_time->text,
                     "never back to " + fmt("%.0f%%", outage->recovered_share * 100) +
                         " of the offered rate within the run",
                     target_check::status::miss});
    } else {
      out.push_back(check(name, *t.recovery_time, *outage->recovery_s,
                          fmt("%.2f s after a ", *outage->recovery_s) +
                              fmt("%.1f s outage, back to ",
                                  std::chrono::duration<double>(outage->outage).count()) +
                              fmt("%.0f%% of the offered rate", outage->recovered_share * 100)));
    }
  }
  for (const auto& n : t.not_measured) {
    const auto name = n.substr(0, n.find(' '));
    std::string why = "not measured by qrt bench";
    if (name == "reliability.circuit_breaker_frequency") {
      why = fmt("a run of %.1f s cannot show a rate per day, ", r.wall_s) +
            "and qrt bench has no circuit breaker to count openings of (its producers and "
            "consumers call the provider directly)";
    }
    out.push_back({name, n.substr(n.find(' ') + 1), why, target_check::status::not_checked});
  }
  return out;
}

std::optional<double> slowest_whole_second(const std::vector<sample>& series) {
  std::map<long, double> completed;  // whole second -> messages completed in it
  std::map<long, double> covered;    // whole second -> how much of it the samples cover
  long last_sending = -1;
  for (const auto& s : series) {
    // A series read back from a report file is outside input: an interval that is not a
    // positive span of at most a day is no sample of a run (and would make this loop endless).
    if (!(s.dt_s > 0 && s.dt_s <= 86'400) || !std::isfinite(s.t_s)) continue;
    const double begin = s.t_s - s.dt_s;
    for (auto k = static_cast<long>(std::floor(begin)); k < s.t_s; ++k) {
      const double overlap =
          std::min(s.t_s, static_cast<double>(k + 1)) - std::max(begin, static_cast<double>(k));
      if (overlap <= 0) continue;
      completed[k] += s.receive_rate * overlap;
      covered[k] += overlap;
      if (s.send_rate > 0) last_sending = std::max(last_sending, k);
    }
  }
  std::optional<double> slowest;
  for (const auto& [second, count] : completed) {
    if (second < 1 || second >= last_sending) continue;  // the ramp-up; the end of sending
    if (covered[second] < 1 - 1e-6) continue;            // a gap in the series: not a whole second
    slowest = slowest ? std::min(*slowest, count) : count;
  }
  return slowest;
}

bool any_miss(const std::vector<target_check>& checks) {
  return std::any_of(checks.begin(), checks.end(),
                     [](const auto& c) { return c.outcome == target_check::status::miss; });
}

std::vector<double> read_load_average() {
  std::ifstream in("/proc/loadavg");
  double a = 0, b = 0, c = 0;
  if (!(in >> a >> b >> c)) return {};
  return {a, b, c};
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

double report::baseline_ratio() const {
  return baseline && baseline->throughput > 0 ? run.e2e_throughput / baseline->throughput : 0;
}

// ---------------------------------------------------------------------------------------------
// Table

namespace {

/// Below this share of its pace, a half-rate run is reported as not having held it.
constexpr double pace_held_fraction = 0.95;

/// The run's traffic and connection failures in a line's words; for a provider without
/// connections it says so, where rates of zero would read as an idle network.
std::string network_words(const std::optional<network_figures>& n) {
  if (!n) return "none (no connections)";
  const auto bytes = [](double v) { return chart::format_value(v, chart::unit::bytes, 0, 1); };
  std::string out = "sent " + bytes(static_cast<double>(n->bytes_sent)) + " (" +
                    bytes(n->bytes_sent_per_s) + "/s), received " +
                    bytes(static_cast<double>(n->bytes_received)) + " (" +
                    bytes(n->bytes_received_per_s) + "/s), " + bytes(n->bytes_per_message) +
                    " per message; connection failures " + std::to_string(n->connection_failures) +
                    ", recoveries " + std::to_string(n->recoveries);
  if (n->mean_recovery_s) {
    out += " (mean " + chart::format_value(*n->mean_recovery_s, chart::unit::seconds, 0, 2) + ")";
  }
  return out;
}

/// 0.734 -> "73 %".
std::string percent(double share) {
  return std::to_string(static_cast<long long>(std::llround(share * 100))) + " %";
}

std::string with_thousands(double v) {
  auto n = static_cast<long long>(std::llround(v));
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

/// "0.42 s", or `none` for a time not measured.
std::string seconds_or(const std::optional<double>& s, const char* none) {
  if (!s) return none;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f s", *s);
  return buf;
}

/// The outage run's recovery in a line's words, for the chart's summary.
std::string outage_words(const outage_result& o) {
  return "back to " + percent(o.recovered_share) + " of the offered rate " +
         seconds_or(o.recovery_s, "never") + " after a " +
         chart::format_value(std::chrono::duration<double>(o.outage).count(), chart::unit::seconds,
                             0, 2) +
         " outage (first completion " + seconds_or(o.first_completion_s, "never") + ")";
}

std::string outage_text(const outage_result& o) {
  std::string out = "\n  outage of " +
                    chart::format_value(std::chrono::duration<double>(o.outage).count(),
                                        chart::unit::seconds, 0, 2) +
                    " (paced at " + with_thousands(o.offered_rate) +
                    " msg/s, retries wait at most " +
                    chart::format_value(std::chrono::duration<double>(o.max_retry_delay).count(),
                                        chart::unit::seconds, 0, 2) +
                    "):\n";
  out += "    before it " + with_thousands(o.rate_before) + " msg/s completed; first completion " +
         seconds_or(o.first_completion_s, "never") + " after it ended; back to " +
         percent(o.recovered_share) + " of the offered rate " +
         (o.recovery_s ? seconds_or(o.recovery_s, "") + " after it ended (whole buckets)"
                       : std::string("NOT within the run")) +
         "\n";
  out += "    calls refused " + std::to_string(o.refused_calls) + ", messages held up " +
         std::to_string(o.late) + ", sent again " + std::to_string(o.resent) + "; ";
  if (o.every_message_once()) {
    out += "every message sent was completed once (" + std::to_string(o.sent) + ")\n";
  } else {
    out += "MESSAGES LOST OR REDELIVERED: sent " + std::to_string(o.sent) + ", completed " +
           std::to_string(o.completed) + ", redelivered " + std::to_string(o.redeliveries) + "\n";
  }
  return out;
}

std::string latency_row(const std::string& name, const latency_summary& l) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "  %-22s %10.1f %10.1f %10.1f %10.1f %10.1f\n", name.c_str(),
                l.p50_us, l.p95_us, l.p99_us, l.max_us, l.mean_us);
  return buf;
}

boost::json::array numbers(const std::vector<double>& xs) {
  boost::json::array a;
  for (double x : xs) a.push_back(x);
  return a;
}

/// `label`, each round's figure in `format`, and which round the rest of the report shows.
std::string rounds_row(const char* label, const std::vector<double>& rounds, const char* format) {
  std::string out = label;
  char buf[64];
  for (double x : rounds) {
    std::snprintf(buf, sizeof buf, format, x);
    out += buf;
  }
  return out + "(the median round is shown)\n";
}

std::string_view status_text(target_check::status s) {
  switch (s) {
    case target_check::status::pass:
      return "pass";
    case target_check::status::miss:
      return "MISS";
    case target_check::status::not_checked:
      return "n/a";
  }
  return "";
}

}  // namespace

std::string format_table(const report& rep) {
  const auto& r = rep.run;
  std::string out;
  char buf[300];
  std::snprintf(
      buf, sizeof buf,
      "qrt bench: provider %s, %s messages of %zu bytes, %zu producer(s) x batch %zu, "
      "%zu consumer(s) x batch %zu%s%s\n\n",
      r.provider.c_str(), with_thousands(static_cast<double>(r.messages_sent)).c_str(),
      r.message_size, r.producers, r.send_batch, r.consumers, r.receive_batch,
      r.sessions > 0 ? (", " + std::to_string(r.sessions) + " sessions").c_str() : "",
      r.rate_target > 0 ? (", rate " + with_thousands(r.rate_target) + " msg/s").c_str() : "");
  out += buf;
  out += "  throughput (msg/s)\n";
  out += "    send          " + with_thousands(r.send_throughput) + "\n";
  out += "    receive       " + with_thousands(r.receive_throughput) + "\n";
  out += "    end-to-end    " + with_thousands(r.e2e_throughput) + "\n";
  if (rep.baseline) {
    std::snprintf(buf, sizeof buf, "    baseline      %s (%s, same payloads and thread counts)\n",
                  with_thousands(rep.baseline->throughput).c_str(), rep.baseline->name.c_str());
    out += buf;
    std::snprintf(buf, sizeof buf, "    ratio         %.2fx of the raw queue\n",
                  rep.baseline_ratio());
    out += buf;
    if (!rep.round_ratios.empty())
      out += rounds_row("    rounds        ", rep.round_ratios, "%.2fx ");
  }
  out += "\n  latency (us)               p50        p95        p99        max       mean\n";
  out += latency_row("end-to-end", r.e2e);
  out += latency_row("send call", r.send_call);
  out += latency_row("receive call", r.receive_call);
  out += latency_row("complete call", r.complete_call);
  if (r.sessions > 0) out += latency_row("session accept call", r.accept_call);
  if (rep.baseline) out += latency_row("baseline end-to-end", rep.baseline->e2e);
  std::snprintf(
      buf, sizeof buf,
      "\n  cpu %.2f us/msg (%.2f s total, %.0f%% of all cores), peak RSS %.1f MiB, wall %.2f s\n",
      r.cpu_s_per_message * 1e6, r.cpu_s, r.cpu_utilisation * 100,
      static_cast<double>(r.peak_rss_bytes) / (1024.0 * 1024.0), r.wall_s);
  out += buf;
  if (rep.baseline) {
    std::snprintf(buf, sizeof buf, "  raw queue cpu %.2f us/msg (%.2f s total, wall %.2f s)\n",
                  rep.baseline->cpu_s_per_message * 1e6, rep.baseline->cpu_s, rep.baseline->wall_s);
    out += buf;
  }
  if (rep.cross_cpu_round_trip_before_ns || rep.cross_cpu_round_trip_after_ns) {
    // A cache line two threads share costs this much to cross and back: at a few hundred
    // nanoseconds (a virtual machine's vCPUs far apart) the CPU per message of two threads
    // meeting in one queue is several times what it is at under a hundred.
    const auto ns = [](const std::optional<double>& v) {
      return v ? std::to_string(static_cast<long long>(std::lround(*v))) + " ns"
               : std::string("unknown");
    };
    out += "  machine: cross-CPU round trip " + ns(rep.cross_cpu_round_trip_before_ns) +
           " before, " + ns(rep.cross_cpu_round_trip_after_ns) + " after\n";
  }
  if (rep.available_memory) {
    std::snprintf(buf, sizeof buf, "  machine: %.1f MiB of memory available (",
                  static_cast<double>(rep.available_memory->bytes) / (1024.0 * 1024.0));
    out += buf + rep.available_memory->source + ")\n";
  }
  std::snprintf(buf, sizeof buf,
                "  messages sent %llu, completed %llu, errors send/receive/complete "
                "%llu/%llu/%llu, redeliveries %llu\n",
                static_cast<unsigned long long>(r.messages_sent),
                static_cast<unsigned long long>(r.messages_received),
                static_cast<unsigned long long>(r.send_errors),
                static_cast<unsigned long long>(r.receive_errors),
                static_cast<unsigned long long>(r.complete_errors),
                static_cast<unsigned long long>(r.duplicates));
  out += buf;
  if (r.sessions > 0) {
    std::snprintf(buf, sizeof buf,
                  "  sessions %zu: accepted %llu, %.1f messages per session held, order "
                  "violations %llu\n",
                  r.sessions, static_cast<unsigned long long>(r.sessions_accepted),
                  r.mean_messages_per_session, static_cast<unsigned long long>(r.order_violations));
    out += buf;
  }
  std::snprintf(buf, sizeof buf, "  provider calls %llu, failed %llu; connections opened %s\n",
                static_cast<unsigned long long>(r.provider_calls),
                static_cast<unsigned long long>(r.failed_calls),
                r.connections_opened ? std::to_string(*r.connections_opened).c_str()
                                     : "none (the provider has no connections)");
  out += buf;
  out += "  network " + network_words(r.network) + "\n";
  if (rep.half_rate) {
    const auto& half = *rep.half_rate;
    std::string raw_achieved;
    if (rep.half_rate_baseline) {
      raw_achieved = "; the raw queue " + with_thousands(rep.half_rate_baseline->throughput);
    }
    std::snprintf(buf, sizeof buf, "\n  at half the rate (%s msg/s paced, %s achieved%s):\n",
                  with_thousands(half.rate_target).c_str(),
                  with_thousands(half.e2e_throughput).c_str(), raw_achieved.c_str());
    out += buf;
    // The pace comes from full-rate rounds of a fraction of a second; the paced rounds last
    // seconds, and a shared machine can slow down in between. A pace not held means messages
    // queued behind it, so the latency below measures that backlog, not the provider's path.
    const auto held = [&](double achieved) {
      return half.rate_target > 0 ? achieved / half.rate_target : 1.0;
    };
    const double qrt_held = held(half.e2e_throughput);
    const double raw_held = rep.half_rate_baseline ? held(rep.half_rate_baseline->throughput) : 1.0;
    if (qrt_held < pace_held_fraction || raw_held < pace_held_fraction) {
      std::string which = "qrt " + percent(qrt_held);
      if (rep.half_rate_baseline) which += ", the raw queue " + percent(raw_held);
      out +=
          "  the pace was not held (" + which + " of it): the latency below includes the backlog\n";
    }
    out += latency_row("end-to-end", rep.half_rate->e2e);
    if (rep.half_rate_baseline)
      out += latency_row("baseline end-to-end", rep.half_rate_baseline->e2e);
    if (!rep.half_rate_round_p99s.empty()) {
      out += rounds_row("  p99 of each round      ", rep.half_rate_round_p99s, "%.1f ");
    }
  }
  if (rep.scaling) {
    out +=
        "\n  consumer scaling (every provider call delayed; efficiency = msg/s / (N x msg/s at "
        "1))\n";
    out +=
        "    consumers        msg/s   efficiency   of ideal (batch / 2 x latency per consumer)\n";
    for (const auto& p : *rep.scaling) {
      std::snprintf(buf, sizeof buf, "    %9zu %12.0f   %10.2f   %8.2f\n", p.consumers,
                    p.throughput, p.efficiency, p.of_ideal);
      out += buf;
    }
  }
  if (rep.overhead) {
    std::snprintf(buf, sizeof buf,
                  "\n  client overhead (target: < 10%%): %llu messages, handler %lld us CPU each\n"
                  "    cpu  %.3f s, of it in the handler %.3f s: qrt share %.2f%%\n"
                  "    wall %.3f s, of it in the handler %.3f s: qrt share %.2f%% (waits and "
                  "preemption included)\n",
                  static_cast<unsigned long long>(rep.overhead->messages),
                  static_cast<long long>(rep.overhead->handler_cost.count()), rep.overhead->cpu_s,
                  rep.overhead->handler_cpu_s, rep.overhead->qrt_share * 100, rep.overhead->wall_s,
                  rep.overhead->handler_wall_s, rep.overhead->qrt_share_wall * 100);
    out += buf;
  }
  if (rep.memory_budget) {
    const auto& m = *rep.memory_budget;
    const double mib = 1024.0 * 1024.0;
    std::snprintf(
        buf, sizeof buf,
        "\n  memory budget (goal: resident growth <= 1.10 x budget): %.1f MiB, %zu-byte "
        "messages\n"
        "    %llu stored, then %llu refused with queue_full; %llu drained afterwards\n"
        "    resident %.1f MiB before, %.1f MiB full: growth %.2f x the budget\n",
        static_cast<double>(m.budget_bytes) / mib, m.message_size,
        static_cast<unsigned long long>(m.accepted), static_cast<unsigned long long>(m.refused),
        static_cast<unsigned long long>(m.drained), static_cast<double>(m.baseline_rss_bytes) / mib,
        static_cast<double>(m.full_rss_bytes) / mib, m.growth_per_budget_byte());
    out += buf;
    if (!m.refusal.empty()) out += "    refused with: " + m.refusal + "\n";
  }
  if (rep.outage) out += outage_text(*rep.outage);
  if (!rep.checks.empty()) {
    out +=
        "\n  targets" +
        (rep.targets_environment.empty() ? std::string() : " (" + rep.targets_environment + ")") +
        "\n";
    for (const auto& c : rep.checks) {
      // The measured text is appended whole: a reason can be longer than the buffer.
      std::snprintf(buf, sizeof buf, "    %-4s %-37s %-10s ",
                    std::string(status_text(c.outcome)).c_str(), c.name.c_str(), c.target.c_str());
      out += buf + c.measured + "\n";
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// JSON

namespace {

boost::json::object latency_json(const latency_summary& l) {
  return {{"count", l.count},      {"p50", l.p50_us}, {"p90", l.p90_us},
          {"p95", l.p95_us},       {"p99", l.p99_us}, {"p99_9", l.p99_9_us},
          {"p99_99", l.p99_99_us}, {"max", l.max_us}, {"mean", l.mean_us}};
}

/// Every number in `v` that is NaN or infinite (a figure that could not be computed) made null:
/// JSON has no such numbers, and Boost.JSON would write them as `NaN` and `Infinity`, which no
/// parser (bench compare's included) reads.
void null_non_finite(boost::json::value& v) {
  if (v.is_double()) {
    if (!std::isfinite(v.get_double())) v = nullptr;
  } else if (auto* o = v.if_object()) {
    for (auto& field : *o) null_non_finite(field.value());
  } else if (auto* a = v.if_array()) {
    for (auto& x : *a) null_non_finite(x);
  }
}

}  // namespace

std::string to_json(const report& rep) {
  const auto& r = rep.run;
  boost::json::object o;
  o["schema_version"] = report_schema_version;
  o["command"] = rep.command;
  o["finished_at"] = rep.finished_at;
  boost::json::array load;
  for (double x : rep.load_average) load.push_back(x);
  o["load_average"] = std::move(load);
  {
    boost::json::object machine;
    auto ns = [](const std::optional<double>& v) -> boost::json::value {
      return v ? boost::json::value(*v) : boost::json::value(nullptr);
    };
    machine["cross_cpu_round_trip_before_ns"] = ns(rep.cross_cpu_round_trip_before_ns);
    machine["cross_cpu_round_trip_after_ns"] = ns(rep.cross_cpu_round_trip_after_ns);
    machine["memory_limit_bytes"] = rep.available_memory
                                        ? boost::json::value(rep.available_memory->bytes)
                                        : boost::json::value(nullptr);
    machine["memory_limit_source"] = rep.available_memory
                                         ? boost::json::value(rep.available_memory->source)
                                         : boost::json::value(nullptr);
    o["machine"] = std::move(machine);
  }
  o["provider"] = r.provider;
  o["messages"] = r.messages_sent;
  o["messages_completed"] = r.messages_received;
  o["message_size"] = r.message_size;
  o["producers"] = r.producers;
  o["consumers"] = r.consumers;
  o["send_batch"] = r.send_batch;
  o["receive_batch"] = r.receive_batch;
  o["rate_target_msgs_per_s"] = r.rate_target;
  o["wall_seconds"] = r.wall_s;
  o["send_msgs_per_s"] = r.send_throughput;
  o["receive_msgs_per_s"] = r.receive_throughput;
  o["end_to_end_msgs_per_s"] = r.e2e_throughput;
  o["e2e_latency_us"] = latency_json(r.e2e);
  o["operation_latency_us"] = boost::json::object{{"send", latency_json(r.send_call)},
                                                  {"receive", latency_json(r.receive_call)},
                                                  {"complete", latency_json(r.complete_call)}};
  o["cpu_seconds"] = r.cpu_s;
  o["cpu_seconds_per_message"] = r.cpu_s_per_message;
  o["peak_rss_bytes"] = r.peak_rss_bytes;
  o["errors"] = boost::json::object{
      {"send", r.send_errors}, {"receive", r.receive_errors}, {"complete", r.complete_errors}};
  o["redeliveries"] = r.duplicates;
  o["provider_calls"] = r.provider_calls;
  o["failed_calls"] = r.failed_calls;
  if (r.connections_opened) {
    o["connections_opened"] = *r.connections_opened;
  } else {
    o["connections_opened"] = nullptr;
  }
  if (r.network) {
    const auto& n = *r.network;
    boost::json::object net{{"bytes_sent", n.bytes_sent},
                            {"bytes_received", n.bytes_received},
                            {"bytes_sent_per_s", n.bytes_sent_per_s},
                            {"bytes_received_per_s", n.bytes_received_per_s},
                            {"bytes_per_message", n.bytes_per_message},
                            {"connection_failures", n.connection_failures},
                            {"recoveries", n.recoveries}};
    if (n.mean_recovery_s) {
      net["mean_recovery_seconds"] = *n.mean_recovery_s;
    } else {
      net["mean_recovery_seconds"] = nullptr;
    }
    o["network"] = std::move(net);
  } else {
    o["network"] = nullptr;
  }
  if (r.sessions > 0) {
    o["sessions"] = boost::json::object{{"count", r.sessions},
                                        {"accepted", r.sessions_accepted},
                                        {"mean_messages_per_session", r.mean_messages_per_session},
                                        {"order_violations", r.order_violations},
                                        {"accept_latency_us", latency_json(r.accept_call)}};
  }
  if (rep.baseline) {
    o["baseline"] =
        boost::json::object{{"name", rep.baseline->name},
                            {"msgs_per_s", rep.baseline->throughput},
                            {"ratio", rep.baseline_ratio()},
                            {"e2e_latency_us", latency_json(rep.baseline->e2e)},
                            {"cpu_seconds_per_message", rep.baseline->cpu_s_per_message}};
  } else {
    o["baseline"] = nullptr;
  }
  if (!rep.round_ratios.empty()) o["round_ratios"] = numbers(rep.round_ratios);
  if (rep.half_rate) {
    boost::json::object half{{"rate_msgs_per_s", rep.half_rate->rate_target},
                             {"end_to_end_msgs_per_s", rep.half_rate->e2e_throughput},
                             {"e2e_latency_us", latency_json(rep.half_rate->e2e)}};
    if (rep.half_rate_baseline) {
      half["baseline_end_to_end_msgs_per_s"] = rep.half_rate_baseline->throughput;
      half["baseline_e2e_latency_us"] = latency_json(rep.half_rate_baseline->e2e);
    } else {
      half["baseline_end_to_end_msgs_per_s"] = nullptr;
      half["baseline_e2e_latency_us"] = nullptr;
    }
    if (!rep.half_rate_round_p99s.empty()) half["round_p99_us"] = numbers(rep.half_rate_round_p99s);
    o["half_rate"] = std::move(half);
  }
  if (rep.scaling) {
    boost::json::array a;
    for (const auto& p : *rep.scaling) {
      a.push_back({{"consumers", p.consumers},
                   {"msgs_per_s", p.throughput},
                   {"efficiency", p.efficiency},
                   {"of_ideal", p.of_ideal}});
    }
    o["scaling"] = std::move(a);
  }
  if (rep.overhead) {
    o["overhead"] = boost::json::object{{"messages", rep.overhead->messages},
                                        {"handler_cost_us", rep.overhead->handler_cost.count()},
                                        {"wall_seconds", rep.overhead->wall_s},
                                        {"handler_wall_seconds", rep.overhead->handler_wall_s},
                                        {"cpu_seconds", rep.overhead->cpu_s},
                                        {"handler_cpu_seconds", rep.overhead->handler_cpu_s},
                                        {"qrt_share", rep.overhead->qrt_share},
                                        {"qrt_share_wall", rep.overhead->qrt_share_wall}};
  }
  if (rep.outage) {
    const auto& g = *rep.outage;
    const auto or_null = [](const std::optional<double>& v) -> boost::json::value {
      if (v) return *v;
      return nullptr;
    };
    o["outage"] = boost::json::object{
        {"outage_seconds", std::chrono::duration<double>(g.outage).count()},
        {"offered_msgs_per_s", g.offered_rate},
        {"max_retry_delay_seconds", std::chrono::duration<double>(g.max_retry_delay).count()},
        {"start_seconds", g.start_s},
        {"end_seconds", g.end_s},
        {"msgs_per_s_before", g.rate_before},
        {"first_completion_seconds", or_null(g.first_completion_s)},
        {"recovery_seconds", or_null(g.recovery_s)},
        {"recovered_share", g.recovered_share},
        {"refused_calls", g.refused_calls},
        {"late_messages", g.late},
        {"resent_messages", g.resent},
        {"sent", g.sent},
        {"completed", g.completed},
        {"redeliveries", g.redeliveries}};
  }
  if (rep.memory_budget) {
    const auto& m = *rep.memory_budget;
    o["memory_budget"] =
        boost::json::object{{"budget_bytes", m.budget_bytes},
                            {"message_size", m.message_size},
                            {"accepted", m.accepted},
                            {"refused", m.refused},
                            {"refusal", m.refusal},
                            {"drained", m.drained},
                            {"baseline_rss_bytes", m.baseline_rss_bytes},
                            {"full_rss_bytes", m.full_rss_bytes},
                            {"growth_per_budget_byte", m.growth_per_budget_byte()}};
  }
  boost::json::array checks;
  for (const auto& c : rep.checks) {
    checks.push_back({{"name", c.name},
                      {"target", c.target},
                      {"measured", c.measured},
                      {"status", std::string(status_text(c.outcome))}});
  }
  o["targets"] = std::move(checks);
  boost::json::array series;
  for (const auto& s : r.series) {
    series.push_back({{"t_s", s.t_s},
                      {"send_msgs_per_s", s.send_rate},
                      {"receive_msgs_per_s", s.receive_rate},
                      {"e2e_mean_us", s.e2e_mean_us},
                      {"e2e_max_us", s.e2e_max_us},
                      {"interval_s", s.dt_s},
                      {"e2e_count", s.e2e_count}});
  }
  o["series"] = std::move(series);
  boost::json::value doc = std::move(o);
  null_non_finite(doc);
  return boost::json::serialize(doc);
}

// ---------------------------------------------------------------------------------------------
// Chart: one self-contained HTML page (inline SVG, no scripts, nothing fetched) with a summary
// of the headline figures and one chart per question a reader brings.

namespace {

using chart::axis;
using chart::plot;
using chart::unit;

// Three significant digits or so, for figures in the summary and on bars.
std::string figure(double v, unit u) {
  const double a = std::abs(v);
  double scaled = a;
  if (u == unit::rate || u == unit::micros) {
    scaled = a >= 1e6 ? a / 1e6 : a >= 1e3 ? a / 1e3 : a;
  } else if (u == unit::seconds) {
    scaled = a >= 120 ? a / 60 : a >= 1 ? a : a * 1e3;
  } else if (u == unit::fraction) {
    scaled = a * 100;
  } else if (u == unit::bytes) {
    scaled = a >= 1024.0 * 1024 ? a / (1024.0 * 1024) : a >= 1024 ? a / 1024 : a;
  }
  const int decimals = scaled >= 100 ? 0 : scaled >= 10 ? 1 : 2;
  return chart::format_value(v, u, 0, decimals, true);
}

// Horizontal bars, one per row, on a linear axis from 0.
struct hbar {
  std::string series, label, note;
  double value = 0;
  const char* colour = "#1f77b4";
};

std::string hbar_chart(const std::string& id, const std::string& title, unit u,
                       const std::string& axis_label, const std::vector<hbar>& bars,
                       const std::string& caption,
                       std::optional<std::pair<double, std::string>> reference = std::nullopt) {
  const double row_h = 34;
  plot p(id, title, 40 + 48 + row_h * static_cast<double>(bars.size()) + 8, 170);
  double hi = 0;
  for (const auto& b : bars) hi = std::max(hi, b.value);
  if (reference) hi = std::max(hi, reference->first);
  // Room on the right for the value written after the longest bar.
  p.set_x(chart::linear_axis(0, hi * 1.4, u, axis_label));
  for (std::size_t i = 0; i < bars.size(); ++i) {
    const auto& b = bars[i];
    const double top = p.plot_top() + 8 + row_h * static_cast<double>(i);
    p.bar(b.series, b.value, b.colour, p.x(0), top, p.x(b.value) - p.x(0), row_h - 12,
          b.label + ": " + figure(b.value, u));
    p.category_y(top + (row_h - 12) / 2, b.label);
    std::string text = figure(b.value, u);
    if (!b.note.empty()) text += "  " + b.note;
    p.text(p.x(b.value) + 6, top + (row_h - 12) / 2 + 4, text, "start", "font-weight=\"bold\"");
  }
  if (reference) p.reference_x(reference->first, reference->second);
  return p.finish(caption);
}

std::string throughput_chart(const report& rep) {
  const auto& r = rep.run;
  std::vector<hbar> bars;
  const double raw = rep.baseline ? rep.baseline->throughput : 0;
  auto note = [&](double v) {
    return raw > 0 ? chart::format_value(v / raw, unit::ratio, 0, 2) + " the raw queue"
                   : std::string();
  };
  bars.push_back(
      {"qrt send", "qrt send", note(r.send_throughput), r.send_throughput, chart::palette(0)});
  bars.push_back({"qrt receive", "qrt receive", note(r.receive_throughput), r.receive_throughput,
                  chart::palette(0)});
  bars.push_back({"qrt end-to-end", "qrt end-to-end", note(r.e2e_throughput), r.e2e_throughput,
                  chart::palette(1)});
  if (rep.baseline) {
    bars.push_back({"raw queue", "raw queue", "", rep.baseline->throughput, chart::palette(7)});
  }
  std::string caption =
      rep.baseline
          ? "The same payloads, thread counts and batch sizes through a raw " + rep.baseline->name +
                " in the same run: the ceiling for an in-process queue. End-to-end: "
                "completed messages over the time from the start to the last completion."
          : "No raw-queue baseline in this run (it runs for the embedded provider "
            "unless --no-baseline).";
  return hbar_chart("throughput", "Throughput: qrt against the raw queue", unit::rate,
                    "messages per second", bars, caption);
}

std::vector<std::pair<double, double>> percentile_points(const latency_summary& l) {
  const double values[] = {l.p50_us, l.p90_us, l.p99_us, l.p99_9_us, l.p99_99_us};
  std::vector<std::pair<double, double>> out;
  std::size_t i = 0;
  for (const auto& q : chart::plotted_quantiles) {
    out.emplace_back(chart::percentile_axis(q.q), values[i++]);
  }
  return out;
}

std::string percentile_chart(const report& rep) {
  struct run_line {
    std::string name;
    const latency_summary* l;
    const char* colour;
  };
  std::vector<run_line> runs{{"full rate", &rep.run.e2e, chart::palette(0)}};
  if (rep.half_rate) runs.push_back({"half rate", &rep.half_rate->e2e, chart::palette(2)});
  if (rep.baseline) runs.push_back({"raw queue", &rep.baseline->e2e, chart::palette(7)});
  if (rep.half_rate && rep.half_rate_baseline) {
    runs.push_back({"raw queue at half rate", &rep.half_rate_baseline->e2e, chart::palette(5)});
  }
  double lo = 0, hi = 0;
  for (const auto& rl : runs) {
    for (const auto& [x, y] : percentile_points(*rl.l)) {
      if (y > 0) lo = lo == 0 ? y : std::min(lo, y);
      hi = std::max(hi, y);
    }
  }
  plot p("percentiles", "End-to-end latency by percentile", 340);
  axis x;
  x.lo = chart::percentile_axis(0.5);
  x.hi = chart::percentile_axis(0.9999);
  x.label = "percentile (log scale of 1 - q: the tail gets room)";
  for (const auto& q : chart::plotted_quantiles)
    x.ticks.push_back({chart::percentile_axis(q.q), q.label});
  p.set_x(std::move(x));
  p.set_y(chart::log_axis(lo, hi, unit::micros, "latency (log scale)"));
  for (const auto& rl : runs) {
    const auto pts = percentile_points(*rl.l);
    p.line(rl.name, rl.colour, pts, true);
    // The p99 value written next to its marker.
    p.text(p.x(pts[2].first) + 6, p.y(pts[2].second) - 6, figure(pts[2].second, unit::micros),
           "start", (std::string("fill=\"") + rl.colour + "\"").c_str());
  }
  std::string caption =
      "From the send time stamped into each body to its handler, every message counted. ";
  if (rep.half_rate) {
    caption += "Half rate: paced at " + figure(rep.half_rate->rate_target, unit::rate) +
               ", half of what the full-rate run achieved, so queueing does not dominate. ";
  }
  if (rep.baseline) {
    caption += "Raw queue: the same measurement through the raw queue";
    if (rep.half_rate && rep.half_rate_baseline) {
      caption += ", at full speed and paced as the half-rate run";
    }
    caption += ".";
  }
  return p.finish(caption);
}

std::string operation_chart(const bench_result& r) {
  struct op {
    const char* name;
    const latency_summary* l;
  };
  const op ops[] = {
      {"send", &r.send_call}, {"receive", &r.receive_call}, {"complete", &r.complete_call}};
  struct pct {
    const char* name;
    double latency_summary::*field;
    const char* colour;
  };
  const pct pcts[] = {{"p50", &latency_summary::p50_us, chart::palette(0)},
                      {"p95", &latency_summary::p95_us, chart::palette(2)},
                      {"p99", &latency_summary::p99_us, chart::palette(4)}};
  double lo = 0, hi = 0;
  for (const auto& o : ops) {
    for (const auto& q : pcts) {
      const double v = (*o.l).*q.field;
      if (v > 0) lo = lo == 0 ? v : std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  const double group_h = 66, bar_h = 16;
  plot p("operations", "Latency of each provider call", 40 + 48 + 3 * group_h + 8, 110);
  // Room on the right for the value written after the longest bar.
  p.set_x(chart::log_axis(lo, hi * 2.5, unit::micros, "latency per call (log scale)"));
  for (std::size_t i = 0; i < 3; ++i) {
    const double top = p.plot_top() + 8 + group_h * static_cast<double>(i);
    p.category_y(top + 1.5 * bar_h, ops[i].name);
    for (std::size_t j = 0; j < 3; ++j) {
      const double v = (*ops[i].l).*pcts[j].field;
      const double y = top + bar_h * static_cast<double>(j);
      p.bar(std::string(ops[i].name) + " " + pcts[j].name, v, pcts[j].colour, p.plot_left(), y,
            p.x(v) - p.plot_left(), bar_h - 3,
            std::string(ops[i].name) + " " + pcts[j].name + ": " + figure(v, unit::micros));
      p.text(p.x(v) + 4, y + bar_h - 5, figure(v, unit::micros), "start", "font-size=\"11\"");
      p.legend(pcts[j].name, pcts[j].colour);
    }
  }
  return p.finish(
      "Time inside each client call: send (a batch), receive (a batch; waits up to the receive "
      "wait when the queue is empty) and complete (settling a batch).");
}

std::vector<std::pair<double, double>> moving_average(
    const std::vector<std::pair<double, double>>& points, std::size_t window) {
  std::vector<std::pair<double, double>> out;
  out.reserve(points.size());
  double sum = 0;
  for (std::size_t i = 0; i < points.size(); ++i) {
    sum += points[i].second;
    if (i >= window) sum -= points[i - window].second;
    const auto n = static_cast<double>(std::min(i + 1, window));
    out.emplace_back(points[i].first, sum / n);
  }
  return out;
}

std::string over_time_charts(const bench_result& r) {
  std::vector<std::pair<double, double>> sent, completed, mean, max;
  double t_max = 0, rate_max = 0, lat_lo = 0, lat_hi = 0;
  for (const auto& s : r.series) {
    sent.emplace_back(s.t_s, s.send_rate);
    completed.emplace_back(s.t_s, s.receive_rate);
    t_max = std::max(t_max, s.t_s);
    rate_max = std::max({rate_max, s.send_rate, s.receive_rate});
    if (s.e2e_count > 0 || s.e2e_mean_us > 0) {
      mean.emplace_back(s.t_s, s.e2e_mean_us);
      max.emplace_back(s.t_s, s.e2e_max_us);
      for (double v : {s.e2e_mean_us, s.e2e_max_us}) {
        if (v > 0) lat_lo = lat_lo == 0 ? v : std::min(lat_lo, v);
        lat_hi = std::max(lat_hi, v);
      }
    }
  }
  const std::string interval =
      r.series.size() > 1 ? figure(t_max / static_cast<double>(r.series.size()), unit::seconds)
                          : std::string("-");
  const std::size_t window = std::max<std::size_t>(1, sent.size() / 20);
  plot tp("throughput-over-time", "Throughput over time");
  tp.set_x(chart::linear_axis(0, t_max, unit::seconds, "time since the start", 8));
  // The axis fits the averages: single samples far above them are drawn at its top edge.
  const auto sent_avg = moving_average(sent, window),
             completed_avg = moving_average(completed, window);
  double avg_max = 0;
  for (const auto& pts : {sent_avg, completed_avg})
    for (const auto& pt : pts) avg_max = std::max(avg_max, pt.second);
  tp.set_y(chart::linear_axis(0, std::min(rate_max, avg_max * 1.6) * 1.05, unit::rate,
                              "messages per second"));
  // Fine samples are bursty (a thread descheduled for a few ms shows as a gap): each sample
  // drawn faint, and over it a moving average across a twentieth of the run.
  tp.line("sent, each sample", chart::palette(0), sent, false, nullptr, true);
  tp.line("completed, each sample", chart::palette(1), completed, false, nullptr, true);
  tp.line("sent", chart::palette(0), sent_avg);
  tp.line("completed", chart::palette(1), completed_avg);
  std::string out =
      tp.finish(std::to_string(r.series.size()) + " samples, about one every " + interval +
                " (faint), and their moving average over " + std::to_string(window) + " samples.");
  plot lp("latency-over-time", "End-to-end latency over time");
  lp.set_x(chart::linear_axis(0, t_max, unit::seconds, "time since the start", 8));
  lp.set_y(chart::log_axis(lat_lo, lat_hi, unit::micros, "latency (log scale)"));
  lp.line("mean", chart::palette(2), mean);
  lp.line("max", chart::palette(4), max);
  out += lp.finish("Mean and maximum of the messages handled in each sample interval.");
  return out;
}

std::string scaling_chart(const std::vector<scaling_point>& points) {
  plot p("scaling", "Scaling efficiency against the number of consumers");
  double most = 1, hi = 1;
  std::vector<std::pair<double, double>> eff, ideal;
  for (const auto& s : points) {
    most = std::max(most, static_cast<double>(s.consumers));
    hi = std::max({hi, s.efficiency, s.of_ideal});
    eff.emplace_back(static_cast<double>(s.consumers), s.efficiency);
    ideal.emplace_back(static_cast<double>(s.consumers), s.of_ideal);
  }
  axis x;
  x.log = true;
  x.lo = 1;
  x.hi = std::max(2.0, most);
  x.u = unit::count;
  x.label = "consumers (log scale)";
  for (const auto& s : points) {
    x.ticks.push_back({static_cast<double>(s.consumers),
                       chart::format_value(static_cast<double>(s.consumers), unit::count)});
  }
  p.set_x(std::move(x));
  p.set_y(chart::linear_axis(0, hi * 1.05, unit::fraction, "efficiency"));
  p.reference_y(1.0, "linear scaling");
  p.line("msg/s / (N × msg/s at 1)", chart::palette(0), eff, true);
  p.line("of the round-trip ceiling", chart::palette(2), ideal, true, "6 3");
  return p.finish(
      "Every provider call delayed by the same injected latency, consumers on a prefilled "
      "queue: 100 % means N consumers move N times as much as one.");
}

std::string overhead_chart(const overhead_result& o) {
  // Two stacked bars (CPU, wall): the handler's share and qrt's.
  plot p("overhead", "Client overhead: qrt's share of the work", 40 + 48 + 2 * 40 + 8, 110);
  p.set_x(chart::linear_axis(0, 1, unit::fraction, "share of the run"));
  struct row {
    const char* name;
    double total, handler;
  };
  const row rows[] = {{"CPU", o.cpu_s, o.handler_cpu_s}, {"wall", o.wall_s, o.handler_wall_s}};
  for (std::size_t i = 0; i < 2; ++i) {
    const double top = p.plot_top() + 8 + 40 * static_cast<double>(i);
    const double handler =
        rows[i].total > 0 ? std::clamp(rows[i].handler / rows[i].total, 0.0, 1.0) : 0;
    const double qrt = 1 - handler;
    p.category_y(top + 12, rows[i].name);
    p.bar(std::string(rows[i].name) + " handler", handler, chart::palette(7), p.x(0), top,
          p.x(handler) - p.x(0), 26, std::string("handler: ") + figure(handler, unit::fraction));
    p.bar(std::string(rows[i].name) + " qrt", qrt, chart::palette(4), p.x(handler), top,
          p.x(1) - p.x(handler), 26, std::string("qrt: ") + figure(qrt, unit::fraction));
    p.text(p.x(1) - 4, top + 17, "qrt " + figure(qrt, unit::fraction), "end",
           "fill=\"white\" font-weight=\"bold\"");
  }
  p.legend("handler", chart::palette(7));
  p.legend("qrt", chart::palette(4));
  p.reference_x(0.9, "goal: qrt under 10 %");
  return p.finish("One consumer, " + std::to_string(o.messages) + " messages, a handler burning " +
                  std::to_string(o.handler_cost.count()) +
                  " µs of CPU each. CPU is the headline (robust on a busy machine); wall "
                  "includes waits and preemption.");
}

std::string memory_chart(const memory_budget_result& m) {
  const double growth = m.full_rss_bytes > m.baseline_rss_bytes
                            ? static_cast<double>(m.full_rss_bytes - m.baseline_rss_bytes)
                            : 0;
  const double budget = static_cast<double>(m.budget_bytes);
  std::vector<hbar> bars{
      {"budget", "budget", "", budget, chart::palette(7)},
      {"resident growth", "resident growth",
       chart::format_value(m.growth_per_budget_byte(), unit::ratio, 0, 2) + " the budget", growth,
       m.growth_per_budget_byte() <= 1.10 ? chart::palette(1) : chart::palette(4)}};
  return hbar_chart(
      "memory", "Memory against the byte budget", unit::bytes, "bytes", bars,
      std::to_string(m.accepted) + " messages of " + std::to_string(m.message_size) +
          " bytes stored until the budget refused more; resident memory from before the queue "
          "held anything to full.",
      std::make_pair(budget * 1.10, std::string("goal: 1.10 × budget")));
}

struct headline {
  std::string name, value, goal;
  std::optional<bool> pass;
};

std::vector<headline> headlines(const report& rep) {
  const auto& r = rep.run;
  std::vector<headline> h;
  h.push_back({"end-to-end throughput", figure(r.e2e_throughput, unit::rate), "", std::nullopt});
  if (rep.baseline) {
    h.push_back({"against the raw queue",
                 chart::format_value(rep.baseline_ratio(), unit::ratio, 0, 2) + " (" +
                     figure(rep.baseline->throughput, unit::rate) + ")",
                 "", std::nullopt});
  }
  h.push_back({"latency p50 / p99",
               figure(r.e2e.p50_us, unit::micros) + " / " + figure(r.e2e.p99_us, unit::micros), "",
               std::nullopt});
  if (rep.half_rate) {
    std::string p99 = figure(rep.half_rate->e2e.p99_us, unit::micros);
    if (rep.half_rate_baseline) {
      p99 += " (raw queue at the same pace: " +
             figure(rep.half_rate_baseline->e2e.p99_us, unit::micros) + ")";
    }
    h.push_back({"latency p99 at half rate", p99, "", std::nullopt});
  }
  if (r.sessions > 0) {
    h.push_back({"session accept p50 / p99",
                 figure(r.accept_call.p50_us, unit::micros) + " / " +
                     figure(r.accept_call.p99_us, unit::micros),
                 "", std::nullopt});
    h.push_back({"sessions accepted",
                 with_thousands(static_cast<double>(r.sessions_accepted)) + " times over " +
                     std::to_string(r.sessions) + " sessions, " +
                     fmt("%.1f", r.mean_messages_per_session) + " messages per hold",
                 "", std::nullopt});
    h.push_back({"session order violations", std::to_string(r.order_violations), "none",
                 r.order_violations == 0});
  }
  h.push_back(
      {"CPU per message", figure(r.cpu_s_per_message * 1e6, unit::micros), "", std::nullopt});
  h.push_back({"network", network_words(r.network), "", std::nullopt});
  const auto errors = r.send_errors + r.receive_errors + r.complete_errors;
  h.push_back({"messages completed",
               with_thousands(static_cast<double>(r.messages_received)) + " of " +
                   with_thousands(static_cast<double>(r.messages_sent)) + ", " +
                   std::to_string(errors) + " errors",
               "all, no errors", r.messages_received == r.messages_sent && errors == 0});
  if (rep.overhead) {
    h.push_back({"client overhead (CPU)", figure(rep.overhead->qrt_share, unit::fraction), "< 10 %",
                 rep.overhead->qrt_share < 0.10});
  }
  if (rep.memory_budget) {
    const double g = rep.memory_budget->growth_per_budget_byte();
    h.push_back({"memory growth / budget", chart::format_value(g, unit::ratio, 0, 2), "≤ 1.10×",
                 g <= 1.10});
  }
  if (rep.outage) {
    h.push_back({"recovery after an outage", outage_words(*rep.outage),
                 "every message once, back to the offered rate",
                 rep.outage->every_message_once() && rep.outage->recovery_s.has_value()});
  }
  if (rep.scaling && !rep.scaling->empty()) {
    const auto& last = rep.scaling->back();
    h.push_back({"scaling efficiency at " + std::to_string(last.consumers) + " consumers",
                 figure(last.efficiency, unit::fraction), "", std::nullopt});
  }
  for (const auto& c : rep.checks) {
    std::optional<bool> pass;
    if (c.outcome != target_check::status::not_checked)
      pass = c.outcome == target_check::status::pass;
    h.push_back({"target " + c.name, c.measured, c.target, pass});
  }
  return h;
}

std::string summary_box(const report& rep) {
  const auto& r = rep.run;
  std::string s = "<section class=\"summary\" data-summary>\n<table>\n";
  for (const auto& h : headlines(rep)) {
    std::string status = "<td></td>";
    if (h.pass) {
      status = *h.pass ? "<td class=\"pass\">pass</td>" : "<td class=\"miss\">MISS</td>";
    }
    s += "<tr><th>" + chart::escape(h.name) + "</th><td class=\"value\">" + chart::escape(h.value) +
         "</td><td class=\"goal\">" + (h.goal.empty() ? "" : "goal " + chart::escape(h.goal)) +
         "</td>" + status + "</tr>\n";
  }
  s += "</table>\n<p class=\"setup\">" +
       chart::escape(with_thousands(static_cast<double>(r.messages_sent)) + " messages of " +
                     std::to_string(r.message_size) + " bytes, " + std::to_string(r.producers) +
                     " producer(s), " + std::to_string(r.consumers) + " consumer(s), batches of " +
                     std::to_string(r.send_batch) + "/" + std::to_string(r.receive_batch) +
                     (r.sessions > 0 ? ", " + std::to_string(r.sessions) + " sessions" : "") +
                     ", " + figure(r.wall_s, unit::seconds) + " wall");
  if (!rep.finished_at.empty()) s += ", finished " + chart::escape(rep.finished_at);
  if (!rep.load_average.empty()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "; load average %.2f %.2f %.2f", rep.load_average[0],
                  rep.load_average.size() > 1 ? rep.load_average[1] : 0.0,
                  rep.load_average.size() > 2 ? rep.load_average[2] : 0.0);
    s += buf;
  }
  if (rep.cross_cpu_round_trip_before_ns && rep.cross_cpu_round_trip_after_ns) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "; cross-CPU round trip %.0f ns before, %.0f ns after",
                  *rep.cross_cpu_round_trip_before_ns, *rep.cross_cpu_round_trip_after_ns);
    s += buf;
  }
  s += "</p>\n";
  if (!rep.command.empty())
    s += "<p class=\"setup\"><code>" + chart::escape(rep.command) + "</code></p>\n";
  s += "</section>\n";
  return s;
}

constexpr const char* page_style = R"(<style>
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 800px; }
h1 { font-size: 22px; margin-bottom: 8px; }
.summary { border: 2px solid #1f77b4; border-radius: 6px; padding: 8px 14px; margin-bottom: 20px; }
.summary table { border-collapse: collapse; }
.summary th { text-align: left; font-weight: normal; padding: 3px 16px 3px 0; color: #444; }
.summary td { padding: 3px 12px 3px 0; }
.summary td.value { font-weight: bold; font-size: 15px; }
.summary td.goal { color: #666; }
.pass { color: #137a13; font-weight: bold; }
.miss { color: #c41a1a; font-weight: bold; }
.setup { color: #555; font-size: 13px; margin: 6px 0 0; }
figure.chart { margin: 0 0 22px; break-inside: avoid; page-break-inside: avoid; }
figure.chart svg { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 13px; margin-top: 4px; }
pre { font-size: 12px; background: #f6f6f6; padding: 8px; overflow-x: auto; }
@media print { body { margin: 0; } pre { white-space: pre-wrap; } }
</style>
)";

}  // namespace

std::string render_chart_html(const report& rep) {
  const auto& r = rep.run;
  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src "
      "'unsafe-inline'; img-src data:\">\n<title>qrt bench: " +
      chart::escape(r.provider) + "</title>\n" + page_style +
      "</head>\n<body>\n<h1>qrt bench: " + chart::escape(r.provider) + " provider</h1>\n";
  html += summary_box(rep);
  html += throughput_chart(rep);
  html += percentile_chart(rep);
  html += operation_chart(r);
  html += over_time_charts(r);
  if (rep.scaling && !rep.scaling->empty()) html += scaling_chart(*rep.scaling);
  if (rep.overhead) html += overhead_chart(*rep.overhead);
  if (rep.memory_budget) html += memory_chart(*rep.memory_budget);
  html += "<h2>All figures</h2>\n<pre>" + chart::escape(format_table(rep)) + "</pre>\n";
  html += "</body></html>\n";
  return html;
}

result<void> prepare_report_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return fail(errc::invalid_argument,
                "report directory '" + dir + "' cannot be created: " + ec.message());
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return fail(errc::invalid_argument,
                "report directory '" + dir + "' cannot be written: " + std::strerror(errno));
  }
  return {};
}

result<void> write_report_dir(const report& rep, const std::string& dir) {
  if (auto ready = prepare_report_dir(dir); !ready) return ready;
  auto write = [&](const std::string& name, const std::string& content) -> result<void> {
    const auto path = std::filesystem::path(dir) / name;
    std::ofstream out(path, std::ios::binary);
    out << content;
    if (!out.good()) return fail(errc::invalid_argument, "cannot write '" + path.string() + "'");
    return {};
  };
  if (auto r = write("report.json", to_json(rep) + "\n"); !r) return r;
  return write("chart.html", render_chart_html(rep));
}

}  // namespace qrt::bench
