#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <qrt/bench/report.hpp>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace qrt::bench {
namespace {

// The benchmark targets qrt adopted (production and development), as the repository ships them.
std::string adopted_targets_text() {
  std::ifstream in(QRT_BENCH_TARGETS_FILE);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}
const std::string adopted_targets = adopted_targets_text();

bench_result good_run() {
  bench_result r;
  r.messages_sent = r.messages_received = 10'000;
  r.e2e_throughput = 5'000;
  r.send_batch = r.receive_batch = 10;
  r.mean_send_batch = r.mean_receive_batch = 9.5;
  r.wall_s = 2;
  r.e2e.p50_us = 50;
  r.e2e.p95_us = 200;
  r.e2e.p99_us = 900;
  r.send_call.p95_us = 30;
  r.receive_call.p95_us = 40;
  r.complete_call.p95_us = 20;
  r.cpu_utilisation = 0.5;
  // As over a network provider: one connection opened while the run made its calls.
  r.provider_calls = 3'000;
  r.failed_calls = 0;
  r.connections_opened = 1;
  return r;
}

target_check check_named(const std::vector<target_check>& checks, std::string_view name) {
  for (const auto& c : checks)
    if (c.name == name) return c;
  ADD_FAILURE() << "no check " << name;
  return target_check{};
}

// One target of the given group and field, read as a file with that line alone.
performance_targets one_target(std::string_view group, std::string_view field,
                               std::string_view value) {
  const std::string yaml = "performance_targets:\n  " + std::string(group) + ":\n    " +
                           std::string(field) + ": \"" + std::string(value) + "\"\n";
  auto t = parse_targets(yaml, "");
  EXPECT_TRUE(t) << yaml << (t ? "" : t.error().message);
  return t ? *t : performance_targets{};
}

TEST(Targets, ReadsTheProductionAndDevelopmentSets) {
  auto prod = parse_targets(adopted_targets, "production").value();
  EXPECT_EQ(prod.environment, "production");
  EXPECT_DOUBLE_EQ(prod.messages_per_second->value, 1000);
  EXPECT_DOUBLE_EQ(prod.batch_efficiency->value, 0.9);
  EXPECT_DOUBLE_EQ(prod.sustained_duration->value, 3600);
  EXPECT_DOUBLE_EQ(prod.p99_latency->value, 1.0);
  EXPECT_EQ(prod.p99_latency->dir, bound::direction::at_most);
  EXPECT_DOUBLE_EQ(prod.error_rate->value, 0.001);
  ASSERT_TRUE(prod.availability);
  EXPECT_DOUBLE_EQ(prod.availability->value, 0.999);
  EXPECT_EQ(prod.availability->dir, bound::direction::at_least);
  ASSERT_TRUE(prod.memory_utilization);
  EXPECT_DOUBLE_EQ(prod.memory_utilization->value, 0.8);
  EXPECT_EQ(prod.memory_utilization->dir, bound::direction::at_most);
  ASSERT_TRUE(prod.connection_pool_efficiency);
  EXPECT_DOUBLE_EQ(prod.connection_pool_efficiency->value, 0.95);
  EXPECT_EQ(prod.connection_pool_efficiency->dir, bound::direction::at_least);
  // A rate per day is the one target a run cannot show.
  ASSERT_EQ(prod.not_measured.size(), 1u);
  EXPECT_EQ(prod.not_measured[0], "reliability.circuit_breaker_frequency <1 per day");

  auto dev = parse_targets(adopted_targets, "development").value();
  EXPECT_DOUBLE_EQ(dev.messages_per_second->value, 100);
  EXPECT_FALSE(dev.p50_latency);
  EXPECT_DOUBLE_EQ(dev.api_call_latency->value, 0.2);
}

TEST(Targets, ReadsASingleSetAtTheTop) {
  auto t = parse_targets("performance_targets:\n  latency:\n    p95_message_latency: \"<2s\"\n", "")
               .value();
  EXPECT_DOUBLE_EQ(t.p95_latency->value, 2.0);
}

// Targets after a second document would otherwise be dropped unread, and their checks with them.
TEST(Targets, MoreThanOneYamlDocumentIsRefused) {
  auto t = parse_targets(
      "performance_targets:\n  latency:\n    p95_message_latency: \"<2s\"\n---\n"
      "performance_targets:\n  latency:\n    p99_message_latency: \"<1s\"\n",
      "");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, qrt::errc::configuration_error);
  EXPECT_NE(t.error().message.find("more than one YAML document"), std::string::npos)
      << t.error().message;
  auto ended = parse_targets(
      "performance_targets:\n  latency:\n    p95_message_latency: \"<2s\"\n...\n"
      "performance_targets:\n  latency:\n    p99_message_latency: \"<1s\"\n",
      "");
  EXPECT_FALSE(ended);
}

// A targets file is read no further than a configuration file is: a device or a pipe has no
// size to check first, and /dev/zero, read whole, exhausted memory. A directory is refused by name.
TEST(Targets, ATargetsFileIsReadNoFurtherThanAMegabyte) {
  auto endless = load_targets("/dev/zero", "");
  ASSERT_FALSE(endless);
  EXPECT_EQ(endless.error().code, qrt::errc::configuration_error);
  EXPECT_NE(endless.error().message.find("/dev/zero"), std::string::npos)
      << endless.error().message;
  EXPECT_NE(endless.error().message.find("at most 1048576"), std::string::npos)
      << endless.error().message;

  const auto dir = std::filesystem::temp_directory_path();
  auto directory = load_targets(dir.string(), "");
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error().code, qrt::errc::configuration_error);
  EXPECT_NE(directory.error().message.find("directory"), std::string::npos)
      << directory.error().message;
}

// A target given twice took one of its values silently (the last of a field, a looser bound
// over a stricter one; the first of an environment), where a configuration refuses a key given
// twice. Each is refused, naming it.
TEST(Targets, ATargetGivenTwiceIsRefusedByName) {
  auto field = parse_targets(
      "performance_targets:\n  latency:\n    p99_message_latency: \"<100ms\"\n"
      "    p99_message_latency: \"<10s\"\n",
      "");
  ASSERT_FALSE(field) << "p99 read as " << field->p99_latency->text;
  EXPECT_EQ(field.error().code, qrt::errc::configuration_error);
  EXPECT_NE(field.error().message.find("latency.p99_message_latency"), std::string::npos)
      << field.error().message;
  EXPECT_NE(field.error().message.find("more than once"), std::string::npos)
      << field.error().message;
  auto group = parse_targets(
      "performance_targets:\n  latency:\n    p99_message_latency: \"<100ms\"\n"
      "  latency:\n    p99_message_latency: \"<10s\"\n",
      "");
  EXPECT_FALSE(group);
  auto environment = parse_targets(
      "production:\n  performance_targets:\n    latency:\n      p99_message_latency: "
      "\"<100ms\"\nproduction:\n  performance_targets:\n    latency:\n      "
      "p99_message_latency: \"<10s\"\n",
      "production");
  ASSERT_FALSE(environment);
  EXPECT_NE(environment.error().message.find("production"), std::string::npos)
      << environment.error().message;
  EXPECT_NE(environment.error().message.find("more than once"), std::string::npos)
      << environment.error().message;
  auto top = parse_targets(
      "performance_targets:\n  latency:\n    p99_message_latency: \"<100ms\"\n"
      "performance_targets:\n  latency:\n    p95_message_latency: \"<10s\"\n",
      "");
  EXPECT_FALSE(top);
}

TEST(Targets, ChecksPassAndMissAgainstARun) {
  auto prod = parse_targets(adopted_targets, "production").value();
  auto checks = check_targets(prod, good_run());
  auto find = [&](std::string_view name) { return check_named(checks, name); };
  EXPECT_EQ(find("throughput.messages_per_second").outcome, target_check::status::pass);
  EXPECT_EQ(find("latency.p99_message_latency").outcome, target_check::status::pass);
  EXPECT_EQ(find("throughput.batch_efficiency").outcome, target_check::status::pass);
  // A 2 s run cannot show one hour of sustained throughput: not checked, never a silent pass.
  EXPECT_EQ(find("throughput.sustained_duration").outcome, target_check::status::not_checked);
  EXPECT_EQ(find("reliability.availability").outcome, target_check::status::pass);
  EXPECT_EQ(find("resources.connection_pool_efficiency").outcome, target_check::status::pass);
  // No memory limit given: nothing to measure memory against.
  EXPECT_EQ(find("resources.memory_utilization").outcome, target_check::status::not_checked);
  EXPECT_EQ(find("reliability.circuit_breaker_frequency").outcome,
            target_check::status::not_checked);
  EXPECT_EQ(checks.size(), 13u) << "every target of the set is reported, checked or not";
  EXPECT_FALSE(any_miss(checks));

  auto slow = good_run();
  slow.e2e.p99_us = 1'500'000;
  slow.e2e_throughput = 500;
  auto missed = check_targets(prod, slow);
  EXPECT_TRUE(any_miss(missed));
}

// Availability is what a run can show of it: the share of its own calls (send, receive,
// settle) that succeeded, said to be of this run rather than of the service over time.
TEST(Targets, AvailabilityIsTheShareOfThisRunsCallsThatSucceeded) {
  const auto t = one_target("reliability", "availability", ">99.9%");
  auto r = good_run();
  r.failed_calls = 2;  // of 3,000: 99.933 %
  const auto held = check_named(check_targets(t, r), "reliability.availability");
  EXPECT_EQ(held.outcome, target_check::status::pass) << held.measured;
  EXPECT_NE(held.measured.find("99.933%"), std::string::npos) << held.measured;
  EXPECT_NE(held.measured.find("of calls in this run"), std::string::npos) << held.measured;
  EXPECT_NE(held.measured.find("2 of 3000"), std::string::npos) << held.measured;

  r.failed_calls = 4;  // 99.867 %
  const auto missed = check_named(check_targets(t, r), "reliability.availability");
  EXPECT_EQ(missed.outcome, target_check::status::miss) << missed.measured;

  r.provider_calls = r.failed_calls = 0;
  const auto none = check_named(check_targets(t, r), "reliability.availability");
  EXPECT_EQ(none.outcome, target_check::status::not_checked) << none.measured;
}

// Connection pool efficiency: the share of calls that used a connection already open rather
// than opening one. A provider without connections (the embedded one) has no pool to be
// efficient: not applicable, never a 100 % it did nothing to earn.
TEST(Targets, ConnectionPoolEfficiencyIsTheShareOfCallsThatReusedAConnection) {
  const auto t = one_target("resources", "connection_pool_efficiency", ">95%");
  auto r = good_run();
  r.connections_opened = 30;  // of 3,000 calls: 99 %
  const auto reused = check_named(check_targets(t, r), "resources.connection_pool_efficiency");
  EXPECT_EQ(reused.outcome, target_check::status::pass) << reused.measured;
  EXPECT_NE(reused.measured.find("99.0%"), std::string::npos) << reused.measured;
  EXPECT_NE(reused.measured.find("30 connections opened"), std::string::npos) << reused.measured;
  EXPECT_NE(reused.measured.find("3000 calls"), std::string::npos) << reused.measured;

  r.connections_opened = 300;  // 90 %
  EXPECT_EQ(check_named(check_targets(t, r), "resources.connection_pool_efficiency").outcome,
            target_check::status::miss);
  // More connections than calls (a reconnecting provider): no share below nothing.
  r.connections_opened = 6'000;
  const auto churn = check_named(check_targets(t, r), "resources.connection_pool_efficiency");
  EXPECT_EQ(churn.outcome, target_check::status::miss) << churn.measured;
  EXPECT_NE(churn.measured.find("0.0%"), std::string::npos) << churn.measured;

  r.connections_opened.reset();
  const auto embedded = check_named(check_targets(t, r), "resources.connection_pool_efficiency");
  EXPECT_EQ(embedded.outcome, target_check::status::not_checked) << embedded.measured;
  EXPECT_NE(embedded.measured.find("not applicable (no connections)"), std::string::npos)
      << embedded.measured;
}

// Memory utilisation is the process's peak resident memory as a share of what it may use (a
// cgroup limit or the machine's memory). The --memory-budget run fills a queue on purpose, so
// its resident memory with the queue full counts when it is the higher; without a known limit
// there is nothing to be a share of.
TEST(Targets, MemoryUtilizationIsThePeakResidentMemoryAgainstWhatTheProcessMayUse) {
  const auto t = one_target("resources", "memory_utilization", "<80%");
  constexpr std::uint64_t mib = 1024 * 1024;
  const qrt::bench::memory_limit limit{1024 * mib, "cgroup memory.max"};
  auto run = good_run();
  run.peak_rss_bytes = 256 * mib;
  const auto within = check_named(check_targets(t, run, std::nullopt, std::nullopt, limit),
                                  "resources.memory_utilization");
  EXPECT_EQ(within.outcome, target_check::status::pass) << within.measured;
  EXPECT_EQ(within.measured, "25.0% of 1024.0 MiB (cgroup memory.max): peak resident 256.0 MiB");

  memory_budget_result m;
  m.budget_bytes = 800 * mib;
  m.message_size = 256;
  m.accepted = m.drained = 100'000;
  m.baseline_rss_bytes = 100 * mib;
  m.full_rss_bytes = 900 * mib;  // 87.9 % of the limit, above the main run's peak
  const auto over =
      check_named(check_targets(t, run, m, std::nullopt, limit), "resources.memory_utilization");
  EXPECT_EQ(over.outcome, target_check::status::miss) << over.measured;
  EXPECT_NE(over.measured.find("87.9%"), std::string::npos) << over.measured;

  m.full_rss_bytes = 128 * mib;  // below the main run's peak: that one counts
  const auto main_peak =
      check_named(check_targets(t, run, m, std::nullopt, limit), "resources.memory_utilization");
  EXPECT_NE(main_peak.measured.find("25.0%"), std::string::npos) << main_peak.measured;

  const auto unknown = check_named(check_targets(t, run), "resources.memory_utilization");
  EXPECT_EQ(unknown.outcome, target_check::status::not_checked) << unknown.measured;
  EXPECT_NE(unknown.measured.find("memory available to the process is unknown"), std::string::npos)
      << unknown.measured;
}

// A rate per day cannot come out of a run of seconds or minutes: not checked, saying why, and
// that the harness has no breaker whose openings it could count.
TEST(Targets, CircuitBreakerFrequencyIsNotCheckedSayingWhy) {
  auto t = parse_targets(
               "performance_targets:\n  reliability:\n    circuit_breaker_frequency: \"<1 per "
               "day\"\n",
               "")
               .value();
  const auto c = check_named(check_targets(t, good_run()), "reliability.circuit_breaker_frequency");
  EXPECT_EQ(c.outcome, target_check::status::not_checked);
  EXPECT_EQ(c.target, "<1 per day");
  EXPECT_NE(c.measured.find("per day"), std::string::npos) << c.measured;
  EXPECT_NE(c.measured.find("no circuit breaker"), std::string::npos) << c.measured;
}

// A run whose series holds `rates[k]` completions (and sends) in second k, sampled every 0.25 s.
bench_result run_of_seconds(const std::vector<double>& rates) {
  bench_result r = good_run();
  r.wall_s = static_cast<double>(rates.size());
  for (std::size_t k = 0; k < rates.size(); ++k) {
    for (int q = 1; q <= 4; ++q) {
      sample s;
      s.t_s = static_cast<double>(k) + 0.25 * q;
      s.dt_s = 0.25;
      s.send_rate = s.receive_rate = rates[k];
      r.series.push_back(s);
    }
  }
  return r;
}

// "Sustained" is the rate held for the whole duration, not an average that hides a stall: one
// second below messages_per_second misses, however fast the others were.
TEST(Targets, SustainedDurationMissesWhenAnyWholeSecondFallsBelowTheRate) {
  auto t = parse_targets(
               "performance_targets:\n  throughput:\n    messages_per_second: 1000\n"
               "    sustained_duration: \"5s\"\n",
               "")
               .value();
  auto sustained = [&](const bench_result& r) {
    for (const auto& c : check_targets(t, r))
      if (c.name == "throughput.sustained_duration") return c;
    ADD_FAILURE() << "no sustained_duration check";
    return target_check{};
  };
  const auto held = sustained(run_of_seconds({300, 1200, 1100, 1300, 1200, 1150, 200}));
  EXPECT_EQ(held.outcome, target_check::status::pass) << held.measured;
  EXPECT_NE(held.measured.find("slowest whole second 1100"), std::string::npos) << held.measured;
  // The same average, with one second stalled to 400 and the others faster to make up for it.
  const auto stalled = sustained(run_of_seconds({300, 1400, 1400, 400, 1400, 1350, 200}));
  EXPECT_EQ(stalled.outcome, target_check::status::miss) << stalled.measured;
  EXPECT_NE(stalled.measured.find("slowest whole second 400"), std::string::npos)
      << stalled.measured;
  // Long enough but with no series to look into: not checked rather than passed.
  auto bare = run_of_seconds({1200, 1200, 1200, 1200, 1200, 1200});
  bare.series.clear();
  EXPECT_EQ(sustained(bare).outcome, target_check::status::not_checked);
}

TEST(Targets, TheSlowestWholeSecondSplitsSamplesAndSkipsTheEnds) {
  // Samples of 0.4 s straddle whole seconds: each is split in proportion. 1000 msg/s throughout
  // but for 0.4 s at 0 from t=2.0 to 2.4: second 2 holds 600.
  std::vector<sample> series;
  for (int i = 1; i <= 15; ++i) {
    sample s;
    s.t_s = 0.4 * i;
    s.dt_s = 0.4;
    s.send_rate = 1000;
    s.receive_rate = (i == 6) ? 0 : 1000;
    series.push_back(s);
  }
  const auto slowest = slowest_whole_second(series);
  ASSERT_TRUE(slowest);
  EXPECT_NEAR(*slowest, 600, 1e-6);
  // Samples that are no interval of a run (read back from a damaged report) are passed over,
  // without looping over their span.
  sample huge;
  huge.t_s = 1e300;
  huge.dt_s = 1e300;
  huge.receive_rate = 1;
  sample nan;
  nan.t_s = std::numeric_limits<double>::quiet_NaN();
  nan.dt_s = 0.25;
  series.push_back(huge);
  series.push_back(nan);
  EXPECT_NEAR(slowest_whole_second(series).value_or(-1), 600, 1e-6);
  // Only the ramp-up second and the last second of sending: nothing whole in between.
  EXPECT_FALSE(slowest_whole_second(std::vector<sample>(series.begin(), series.begin() + 5)));
}

TEST(Targets, RefusesUnknownFieldsAndUnreadableValuesNamingTheField) {
  auto typo =
      parse_targets("performance_targets:\n  latency:\n    p99_mesage_latency: \"<1s\"\n", "");
  ASSERT_FALSE(typo);
  EXPECT_EQ(typo.error().code, errc::configuration_error);
  EXPECT_NE(typo.error().message.find("latency.p99_mesage_latency"), std::string::npos);

  auto bad =
      parse_targets("performance_targets:\n  latency:\n    p99_message_latency: \"soon\"\n", "");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("p99_message_latency"), std::string::npos);

  auto no_unit =
      parse_targets("performance_targets:\n  latency:\n    p99_message_latency: \"<100\"\n", "");
  ASSERT_FALSE(no_unit);
  EXPECT_NE(no_unit.error().message.find("time unit"), std::string::npos);

  auto missing_env = parse_targets(adopted_targets, "staging");
  ASSERT_FALSE(missing_env);
  EXPECT_NE(missing_env.error().message.find("staging"), std::string::npos);

  EXPECT_FALSE(parse_targets("{{{", ""));
  EXPECT_FALSE(load_targets("/nonexistent/targets.yaml", ""));
}

// Every percentage target is a share of something (full batches, failed calls, all cores), at
// most 100 %: one above it was accepted, and then could never be met (">150%") or said nothing
// ("<250%"). It is refused naming the field; 100 % itself is a target.
TEST(Targets, RefusesAPercentageAboveOneHundredNamingTheField) {
  for (const auto& [group, field, value] :
       {std::tuple{"throughput", "batch_efficiency", "\">150%\""},
        std::tuple{"reliability", "error_rate", "\"<100.5%\""},
        std::tuple{"resources", "cpu_utilization", "\"<250%\""},
        std::tuple{"reliability", "availability", "\">100.1%\""},
        std::tuple{"resources", "memory_utilization", "\"<120%\""},
        std::tuple{"resources", "connection_pool_efficiency", "\">101%\""}}) {
    const std::string yaml =
        std::string("performance_targets:\n  ") + group + ":\n    " + field + ": " + value + "\n";
    auto refused = parse_targets(yaml, "");
    ASSERT_FALSE(refused) << yaml;
    EXPECT_EQ(refused.error().code, errc::configuration_error);
    const auto& said = refused.error().message;
    EXPECT_NE(said.find(std::string(group) + "." + field), std::string::npos) << said;
    EXPECT_NE(said.find("from 0% to 100%"), std::string::npos) << said;
  }
  auto full = parse_targets(
      "performance_targets:\n  throughput:\n    batch_efficiency: \">=100%\"\n"
      "  resources:\n    cpu_utilization: \"<0.5%\"\n",
      "");
  ASSERT_TRUE(full) << full.error().message;
  EXPECT_DOUBLE_EQ(full->batch_efficiency->value, 1.0);
  EXPECT_DOUBLE_EQ(full->cpu_utilization->value, 0.005);
}

// The recovery time is the outage run's: read like the other durations, checked against the time
// back to the offered rate, missed when the run never got back or lost a message, and not checked
// (saying why) without an outage run.
TEST(Targets, RecoveryTimeIsCheckedAgainstTheOutageRun) {
  const auto t = one_target("reliability", "recovery_time", "<5s");
  ASSERT_TRUE(t.recovery_time);
  EXPECT_DOUBLE_EQ(t.recovery_time->value, 5.0);
  EXPECT_EQ(t.recovery_time->dir, bound::direction::at_most);
  const auto r = good_run();
  const auto none = check_named(check_targets(t, r), "reliability.recovery_time");
  EXPECT_EQ(none.outcome, target_check::status::not_checked);
  EXPECT_NE(none.measured.find("--outage"), std::string::npos) << none.measured;

  outage_result o;
  o.outage = std::chrono::milliseconds(2000);
  o.recovered_share = 0.9;
  o.sent = o.completed = 1000;
  o.recovery_s = 1.2;
  const auto fast = check_named(check_targets(t, r, std::nullopt, o), "reliability.recovery_time");
  EXPECT_EQ(fast.outcome, target_check::status::pass);
  EXPECT_NE(fast.measured.find("1.20 s after a 2.0 s outage"), std::string::npos) << fast.measured;
  o.recovery_s = 6.0;
  EXPECT_EQ(check_named(check_targets(t, r, std::nullopt, o), "reliability.recovery_time").outcome,
            target_check::status::miss);
  o.recovery_s.reset();
  const auto never = check_named(check_targets(t, r, std::nullopt, o), "reliability.recovery_time");
  EXPECT_EQ(never.outcome, target_check::status::miss);
  EXPECT_NE(never.measured.find("never back"), std::string::npos) << never.measured;
  o.recovery_s = 1.0;
  o.completed = 999;
  const auto lost = check_named(check_targets(t, r, std::nullopt, o), "reliability.recovery_time");
  EXPECT_EQ(lost.outcome, target_check::status::miss) << "fast, but a message was lost";
  EXPECT_NE(lost.measured.find("completed 999"), std::string::npos) << lost.measured;

  EXPECT_FALSE(
      parse_targets("performance_targets:\n  reliability:\n    recovery_time: fast\n", ""));
}

}  // namespace
}  // namespace qrt::bench
