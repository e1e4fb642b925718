#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <qrt/bench/report.hpp>
#include <sstream>

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
      {"resources", "cpu_utilization", unit_kind::fraction, d::at_most,
       &performance_targets::cpu_utilization},
  };
  static const std::pair<const char*, const char*> unmeasured[] = {
      {"reliability", "availability"},
      {"reliability", "circuit_breaker_frequency"},
      {"resources", "memory_utilization"},
      {"resources", "connection_pool_efficiency"},
  };
  if (!node.IsMap()) return target_error("performance_targets", "expected a map of groups");
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

result<performance_targets> parse_targets(std::string_view yaml, std::string_view environment) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return fail(errc::configuration_error, std::string("targets: not valid YAML: ") + e.what());
  }
  if (!root.IsMap()) return target_error("(top level)", "expected a map");
  try {
    YAML::Node set = root["performance_targets"] ? root["performance_targets"] : root;
    const bool per_environment = set.IsMap() && (set["production"] || set["development"]);
    performance_targets t;
    if (per_environment) {
      const std::string env = environment.empty() ? "production" : std::string(environment);
      if (!set[env]) {
        return target_error(
            env, "no targets for this environment (the file has production/development)");
      }
      YAML::Node chosen = set[env];
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
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(errc::configuration_error, "targets file '" + path + "' cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  auto t = parse_targets(ss.str(), environment);
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

std::vector<target_check> check_targets(const performance_targets& t, const bench_result& r) {
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
    if (r.wall_s + 1e-9 >= t.sustained_duration->value) {
      c.outcome = target_check::status::pass;
      c.measured = fmt("%.0f s", r.wall_s);
    } else {
      c.measured = fmt("run lasted %.1f s; use --duration to test this", r.wall_s);
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
  if (t.cpu_utilization) {
    out.push_back(check("resources.cpu_utilization", *t.cpu_utilization, r.cpu_utilisation,
                        fmt("%.1f%% of all cores", r.cpu_utilisation * 100)));
  }
  for (const auto& n : t.not_measured) {
    out.push_back({n.substr(0, n.find(' ')), n.substr(n.find(' ') + 1), "not measured by qrt bench",
                   target_check::status::not_checked});
  }
  return out;
}

bool any_miss(const std::vector<target_check>& checks) {
  return std::any_of(checks.begin(), checks.end(),
                     [](const auto& c) { return c.outcome == target_check::status::miss; });
}

double report::baseline_ratio() const {
  return baseline && baseline->throughput > 0 ? run.e2e_throughput / baseline->throughput : 0;
}

// ---------------------------------------------------------------------------------------------
// Table

namespace {

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

std::string latency_row(const std::string& name, const latency_summary& l) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "  %-22s %10.1f %10.1f %10.1f %10.1f %10.1f\n", name.c_str(),
                l.p50_us, l.p95_us, l.p99_us, l.max_us, l.mean_us);
  return buf;
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
      "%zu consumer(s) x batch %zu%s\n\n",
      r.provider.c_str(), with_thousands(static_cast<double>(r.messages_sent)).c_str(),
      r.message_size, r.producers, r.send_batch, r.consumers, r.receive_batch,
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
    if (!rep.round_ratios.empty()) {
      out += "    rounds        ";
      for (double x : rep.round_ratios) {
        std::snprintf(buf, sizeof buf, "%.2fx ", x);
        out += buf;
      }
      out += "(the median round is shown)\n";
    }
  }
  out += "\n  latency (us)               p50        p95        p99        max       mean\n";
  out += latency_row("end-to-end", r.e2e);
  out += latency_row("send call", r.send_call);
  out += latency_row("receive call", r.receive_call);
  out += latency_row("complete call", r.complete_call);
  if (rep.baseline) out += latency_row("baseline end-to-end", rep.baseline->e2e);
  std::snprintf(
      buf, sizeof buf,
      "\n  cpu %.2f us/msg (%.2f s total, %.0f%% of all cores), peak RSS %.1f MiB, wall %.2f s\n",
      r.cpu_s_per_message * 1e6, r.cpu_s, r.cpu_utilisation * 100,
      static_cast<double>(r.peak_rss_bytes) / (1024.0 * 1024.0), r.wall_s);
  out += buf;
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
  if (rep.half_rate) {
    std::snprintf(buf, sizeof buf, "\n  at half the rate (%s msg/s paced, %s achieved):\n",
                  with_thousands(rep.half_rate->rate_target).c_str(),
                  with_thousands(rep.half_rate->e2e_throughput).c_str());
    out += buf;
    out += latency_row("end-to-end", rep.half_rate->e2e);
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
  if (!rep.checks.empty()) {
    out +=
        "\n  targets" +
        (rep.targets_environment.empty() ? std::string() : " (" + rep.targets_environment + ")") +
        "\n";
    for (const auto& c : rep.checks) {
      std::snprintf(buf, sizeof buf, "    %-4s %-34s %-10s %s\n",
                    std::string(status_text(c.outcome)).c_str(), c.name.c_str(), c.target.c_str(),
                    c.measured.c_str());
      out += buf;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// JSON

namespace {

boost::json::object latency_json(const latency_summary& l) {
  return {{"count", l.count}, {"p50", l.p50_us}, {"p95", l.p95_us},
          {"p99", l.p99_us},  {"max", l.max_us}, {"mean", l.mean_us}};
}

}  // namespace

std::string to_json(const report& rep) {
  const auto& r = rep.run;
  boost::json::object o;
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
  if (rep.baseline) {
    o["baseline"] = boost::json::object{{"name", rep.baseline->name},
                                        {"msgs_per_s", rep.baseline->throughput},
                                        {"ratio", rep.baseline_ratio()},
                                        {"e2e_latency_us", latency_json(rep.baseline->e2e)}};
  } else {
    o["baseline"] = nullptr;
  }
  if (!rep.round_ratios.empty()) {
    boost::json::array rounds;
    for (double x : rep.round_ratios) rounds.push_back(x);
    o["round_ratios"] = std::move(rounds);
  }
  if (rep.half_rate) {
    o["half_rate"] = boost::json::object{{"rate_msgs_per_s", rep.half_rate->rate_target},
                                         {"end_to_end_msgs_per_s", rep.half_rate->e2e_throughput},
                                         {"e2e_latency_us", latency_json(rep.half_rate->e2e)}};
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
                      {"e2e_max_us", s.e2e_max_us}});
  }
  o["series"] = std::move(series);
  return boost::json::serialize(o);
}

// ---------------------------------------------------------------------------------------------
// Chart: two line charts (throughput, latency over time) as inline SVG in one HTML page.

namespace {

struct line {
  std::string name;
  std::string colour;
  std::vector<std::pair<double, double>> points;
};

std::string escape_html(std::string_view s) {
  std::string out;
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

std::string svg_chart(const std::string& title, const std::string& y_label,
                      const std::vector<line>& lines) {
  constexpr double w = 760, h = 300, left = 80, right = 20, top = 40, bottom = 45;
  double max_x = 0, max_y = 0;
  for (const auto& l : lines) {
    for (const auto& [x, y] : l.points) {
      max_x = std::max(max_x, x);
      max_y = std::max(max_y, y);
    }
  }
  if (max_x <= 0) max_x = 1;
  if (max_y <= 0) max_y = 1;
  max_y *= 1.1;
  auto px = [&](double x) { return left + x / max_x * (w - left - right); };
  auto py = [&](double y) { return h - bottom - y / max_y * (h - top - bottom); };
  std::string s;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                "font-family=\"sans-serif\" font-size=\"12\">\n",
                w, h);
  s += buf;
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  std::snprintf(buf, sizeof buf, "<text x=\"%.0f\" y=\"20\" font-size=\"15\">", left);
  s += buf + escape_html(title) + "</text>\n";
  for (int i = 0; i <= 4; ++i) {
    const double y = max_y * i / 4;
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n",
                  left, py(y), w - right, py(y), left - 6, py(y) + 4, y);
    s += buf;
    const double x = max_x * i / 4;
    std::snprintf(buf, sizeof buf,
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.1f s</text>\n", px(x),
                  h - bottom + 18, x);
    s += buf;
  }
  std::snprintf(buf, sizeof buf,
                "<text transform=\"translate(16,%.0f) rotate(-90)\" text-anchor=\"middle\">",
                h / 2);
  s += buf + escape_html(y_label) + "</text>\n";
  double legend_x = left;
  for (const auto& l : lines) {
    if (l.points.empty()) continue;
    s += "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" + l.colour + "\" points=\"";
    for (const auto& [x, y] : l.points) {
      std::snprintf(buf, sizeof buf, "%.1f,%.1f ", px(x), py(y));
      s += buf;
    }
    s += "\"/>\n";
    std::snprintf(buf, sizeof buf,
                  "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"3\" fill=\"%s\"/>"
                  "<text x=\"%.0f\" y=\"%.0f\">",
                  legend_x, h - 12, l.colour.c_str(), legend_x + 16, h - 7);
    s += buf + escape_html(l.name) + "</text>\n";
    legend_x += 30 + 7 * static_cast<double>(l.name.size());
  }
  s += "</svg>\n";
  return s;
}

}  // namespace

std::string render_chart_html(const report& rep) {
  const auto& r = rep.run;
  line sent{"sent msg/s", "#1f77b4", {}}, received{"completed msg/s", "#2ca02c", {}};
  line mean{"mean end-to-end us", "#ff7f0e", {}}, max{"max end-to-end us", "#d62728", {}};
  for (const auto& p : r.series) {
    sent.points.emplace_back(p.t_s, p.send_rate);
    received.points.emplace_back(p.t_s, p.receive_rate);
    mean.points.emplace_back(p.t_s, p.e2e_mean_us);
    max.points.emplace_back(p.t_s, p.e2e_max_us);
  }
  std::string html = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>qrt bench: " +
                     escape_html(r.provider) +
                     "</title></head>\n<body style=\"font-family:sans-serif\">\n<h1>qrt bench: " +
                     escape_html(r.provider) + "</h1>\n";
  html += svg_chart("Throughput over time", "messages/s", {sent, received});
  html += "<br>\n";
  html += svg_chart("End-to-end latency over time", "microseconds", {mean, max});
  html += "\n<pre>" + escape_html(format_table(rep)) + "</pre>\n</body></html>\n";
  return html;
}

result<void> write_report_dir(const report& rep, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return fail(errc::invalid_argument,
                "report directory '" + dir + "' cannot be created: " + ec.message());
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
