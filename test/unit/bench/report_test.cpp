// The pure parts of the benchmark report: axis ticks and units, the percentile plot's
// coordinates, merging time-series samples, what the chart draws, report.json against its
// documented fields, and compare's verdicts and input errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <qrt/bench/chart.hpp>
#include <qrt/bench/compare.hpp>
#include <qrt/bench/report.hpp>
#include <regex>
#include <set>
#include <sstream>

namespace qrt::bench {
namespace {

using chart::unit;

// A tick step is 1, 2, 2.5 or 5 times a power of ten.
bool round_step(double step) {
  const double magnitude = std::pow(10.0, std::floor(std::log10(step) + 1e-9));
  const double m = step / magnitude;
  for (double ok : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (std::abs(m - ok) < 1e-6) return true;
  }
  return false;
}

void expect_round_ticks(const std::vector<chart::tick>& ticks, double lo, double hi) {
  ASSERT_GE(ticks.size(), 2u);
  EXPECT_LE(ticks.front().value, lo);
  EXPECT_GE(ticks.back().value, hi);
  const double step = ticks[1].value - ticks[0].value;
  EXPECT_TRUE(round_step(step)) << "step " << step;
  for (std::size_t i = 0; i < ticks.size(); ++i) {
    EXPECT_NEAR(ticks[i].value, ticks[0].value + step * static_cast<double>(i), step * 1e-9);
    EXPECT_NEAR(std::remainder(ticks[i].value, step), 0, step * 1e-9) << ticks[i].value;
  }
  EXPECT_LE(ticks.size(), 12u);
}

TEST(ChartTicks, ThroughputTicksAreRoundWithThousandsUnit) {
  // The old chart labelled 659516 and 164879; the same range now reads in k msg/s.
  const auto ticks = chart::linear_ticks(0, 659516, unit::rate);
  expect_round_ticks(ticks, 0, 659516);
  EXPECT_EQ(ticks[1].value, 200000);
  EXPECT_EQ(ticks[1].label, "200 k msg/s");
  EXPECT_EQ(ticks.back().label, "800 k msg/s");
  const auto fast = chart::linear_ticks(0, 2.4e6, unit::rate);
  EXPECT_EQ(fast[1].label, "0.5 M msg/s");
  EXPECT_EQ(chart::linear_ticks(0, 450, unit::rate)[1].label, "100 msg/s");
}

TEST(ChartTicks, LatencyAndTimeTicksSwitchUnitsByMagnitude) {
  const auto ms = chart::linear_ticks(0, 2500, unit::micros);
  expect_round_ticks(ms, 0, 2500);
  EXPECT_EQ(ms[1].label, "0.5 ms");
  EXPECT_EQ(chart::linear_ticks(0, 80, unit::micros)[1].label, "20 µs");
  // A half-second run's time axis starts at 0 and reads in ms; a long one in s or min.
  const auto half_second = chart::linear_ticks(0, 0.487, unit::seconds, 8);
  expect_round_ticks(half_second, 0, 0.487);
  EXPECT_EQ(half_second.front().value, 0);
  EXPECT_EQ(half_second[1].label, "100 ms");
  EXPECT_EQ(chart::linear_ticks(0, 30, unit::seconds)[1].label, "10 s");
  EXPECT_EQ(chart::linear_ticks(0, 3600, unit::seconds)[1].label, "20 min");
}

TEST(ChartTicks, ByteTicksAreRoundInBinaryUnits) {
  const double mib = 1024.0 * 1024.0;
  const auto ticks = chart::linear_ticks(0, 94 * mib, unit::bytes);
  ASSERT_GE(ticks.size(), 2u);
  EXPECT_EQ(ticks[1].value, 20 * mib);
  EXPECT_EQ(ticks[1].label, "20 MiB");
  EXPECT_GE(ticks.back().value, 94 * mib);
}

TEST(ChartTicks, LogTicksAreOneTwoFiveAndCoverTheRange) {
  const auto ticks = chart::log_ticks(3, 1200, unit::micros);
  ASSERT_FALSE(ticks.empty());
  EXPECT_EQ(ticks.front().value, 2);
  EXPECT_EQ(ticks.front().label, "2 µs");
  EXPECT_NEAR(ticks.back().value, 2000, 1e-6);
  EXPECT_EQ(ticks.back().label, "2 ms");
  std::set<std::string> labels;
  for (const auto& t : ticks) labels.insert(t.label);
  EXPECT_TRUE(labels.count("1 ms")) << "1000 µs reads as 1 ms";
  // A range of many decades keeps only the powers of ten.
  const auto wide = chart::log_ticks(0.5, 5e7, unit::micros);
  for (const auto& t : wide) {
    EXPECT_NEAR(std::log10(t.value), std::round(std::log10(t.value)), 1e-9) << t.label;
  }
  // Nothing positive to plot still gives a usable axis.
  EXPECT_GE(chart::log_ticks(0, 0, unit::micros).size(), 2u);
}

TEST(ChartTicks, DegenerateRangesStillGiveAnAxis) {
  const auto flat = chart::linear_ticks(0, 0, unit::rate);
  ASSERT_GE(flat.size(), 2u);
  EXPECT_LT(flat.front().value, flat.back().value);
  const auto nan = chart::linear_ticks(NAN, NAN, unit::micros);
  ASSERT_GE(nan.size(), 2u);
}

TEST(ChartValues, FormatsWithUnits) {
  EXPECT_EQ(chart::format_value(0.125, unit::fraction), "12.5 %");
  EXPECT_EQ(chart::format_value(0.45, unit::ratio, 0, 2), "0.45×");
  EXPECT_EQ(chart::format_value(1536, unit::bytes), "1.5 KiB");
  EXPECT_EQ(chart::format_value(1500000, unit::micros), "1.5 s");
}

TEST(PercentilePlot, QuantilesAreSpacedByTheirTail) {
  EXPECT_NEAR(chart::percentile_axis(0.5), std::log10(2.0), 1e-12);
  EXPECT_NEAR(chart::percentile_axis(0.9), 1, 1e-9);
  EXPECT_NEAR(chart::percentile_axis(0.99), 2, 1e-9);
  EXPECT_NEAR(chart::percentile_axis(0.999), 3, 1e-9);
  EXPECT_NEAR(chart::percentile_axis(0.9999), 4, 1e-9);
  EXPECT_TRUE(std::isfinite(chart::percentile_axis(1.0)));
  double last = -1;
  for (const auto& q : chart::plotted_quantiles) {
    EXPECT_GT(chart::percentile_axis(q.q), last) << q.label;
    last = chart::percentile_axis(q.q);
  }
  // On the log latency axis, 10 µs to 10 ms: 100 µs sits a third of the way up.
  EXPECT_NEAR(chart::axis_fraction(100, 10, 10000, true), 1.0 / 3, 1e-9);
  EXPECT_EQ(chart::axis_fraction(0, 10, 10000, true), 0);
  EXPECT_EQ(chart::axis_fraction(1e9, 10, 10000, true), 1);
  EXPECT_NEAR(chart::axis_fraction(25, 0, 100, false), 0.25, 1e-12);
}

TEST(TimeSeries, BucketsMergeInPairsWhenARunOutgrowsThem) {
  constexpr std::int64_t ms = 1'000'000;
  time_buckets b(1 * ms, 4);
  b.add_sent(ms / 2, 1);
  b.add_sent(3 * ms + ms / 2, 2);
  ASSERT_EQ(b.buckets().size(), 4u);
  EXPECT_EQ(b.width_ns(), 1 * ms);
  b.add_completed(4 * ms + ms / 5, 3, 3, 300'000, 150'000);  // beyond the 4th: widths double
  EXPECT_EQ(b.width_ns(), 2 * ms);
  ASSERT_EQ(b.buckets().size(), 3u);
  EXPECT_EQ(b.buckets()[0].sent, 1u);
  EXPECT_EQ(b.buckets()[1].sent, 2u);
  EXPECT_EQ(b.buckets()[2].completed, 3u);
  b.add_sent(100 * ms, 1);  // far beyond: merges until it fits
  EXPECT_EQ(b.width_ns(), 32 * ms);
  EXPECT_LE(b.buckets().size(), 4u);
  std::uint64_t sent = 0;
  for (const auto& x : b.buckets()) sent += x.sent;
  EXPECT_EQ(sent, 4u) << "merging loses nothing";
  time_buckets fixed(250 * ms, 0);
  fixed.add_sent(10'000 * ms, 1);
  EXPECT_EQ(fixed.width_ns(), 250 * ms) << "a fixed interval never merges";
  EXPECT_EQ(fixed.buckets().size(), 41u);
}

TEST(TimeSeries, WorkersBucketsBecomeOneSeriesWithRatesPerSecond) {
  constexpr std::int64_t ms = 1'000'000;
  time_buckets producer(1 * ms, 0), consumer(2 * ms, 0);
  producer.add_sent(ms / 2, 10);       // bucket 0 of 2 ms after coarsening
  producer.add_sent(ms + ms / 2, 10);  // also bucket 0
  producer.add_sent(2 * ms + 1, 4);    // bucket 1
  consumer.add_completed(ms, 10, 10, 10 * 100'000, 200'000);
  consumer.add_completed(3 * ms, 6, 2, 2 * 400'000, 500'000);
  const auto series = to_samples({producer, consumer}, 3 * ms);  // the run ended at 3 ms
  ASSERT_EQ(series.size(), 2u);
  EXPECT_DOUBLE_EQ(series[0].t_s, 0.002);
  EXPECT_DOUBLE_EQ(series[0].dt_s, 0.002);
  EXPECT_DOUBLE_EQ(series[0].send_rate, 20 / 0.002);
  EXPECT_DOUBLE_EQ(series[0].receive_rate, 10 / 0.002);
  EXPECT_DOUBLE_EQ(series[0].e2e_mean_us, 100);
  EXPECT_DOUBLE_EQ(series[0].e2e_max_us, 200);
  EXPECT_EQ(series[0].e2e_count, 10u);
  // The last bucket is cut at the end of the run: its rates are over 1 ms, not 2.
  EXPECT_DOUBLE_EQ(series[1].t_s, 0.003);
  EXPECT_DOUBLE_EQ(series[1].dt_s, 0.001);
  EXPECT_DOUBLE_EQ(series[1].send_rate, 4 / 0.001);
  EXPECT_DOUBLE_EQ(series[1].receive_rate, 6 / 0.001);
  EXPECT_DOUBLE_EQ(series[1].e2e_mean_us, 400);
  EXPECT_TRUE(to_samples({}, 0).empty());
}

TEST(TimeSeries, AShortRunGetsManySamplesAndALongerOneStaysBounded) {
  // Paced to last about half a second: the default run's length.
  bench_options o;
  o.messages = 10'000;
  o.rate = 20'000;
  o.threads = 2;
  auto r = run_benchmark(o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_GE(r->series.size(), 50u) << "over " << r->wall_s << " s";
  EXPECT_LE(r->series.size(), o.max_samples);
  o.max_samples = 40;
  auto capped = run_benchmark(o);
  ASSERT_TRUE(capped) << capped.error().to_string();
  EXPECT_GE(capped->series.size(), 20u);
  EXPECT_LE(capped->series.size(), 40u);
  double covered = 0;
  for (const auto& s : capped->series) covered += s.dt_s;
  EXPECT_NEAR(covered, capped->series.back().t_s, 1e-6) << "merged samples still tile the run";
}

// A report with every optional section, as a full `scripts/bench.sh --scaling` run makes.
report full_report(std::size_t samples) {
  report rep;
  auto& r = rep.run;
  r.provider = "memory";
  r.messages_sent = r.messages_received = 200'000;
  r.message_size = 256;
  r.producers = r.consumers = 1;
  r.send_batch = r.receive_batch = 10;
  r.wall_s = 0.5;
  r.send_throughput = 420'000;
  r.receive_throughput = 410'000;
  r.e2e_throughput = 400'000;
  auto lat = [](double base) {
    latency_summary l;
    l.count = 1000;
    l.p50_us = base;
    l.p90_us = base * 2;
    l.p95_us = base * 3;
    l.p99_us = base * 5;
    l.p99_9_us = base * 8;
    l.p99_99_us = base * 9;
    l.max_us = base * 10;
    l.mean_us = base * 1.5;
    return l;
  };
  r.e2e = lat(100);
  r.send_call = lat(2);
  r.receive_call = lat(1);
  r.complete_call = lat(1.5);
  r.cpu_s = 0.2;
  r.cpu_s_per_message = 1e-6;
  r.peak_rss_bytes = 30u << 20;
  r.provider_calls = 60'000;
  r.failed_calls = 2;
  r.connections_opened = 1;
  r.network = network_figures{};
  r.network->bytes_sent = 3u << 20;
  r.network->bytes_received = 1u << 20;
  r.network->bytes_sent_per_s = 6u << 20;
  r.network->bytes_received_per_s = 2u << 20;
  r.network->bytes_per_message = 21;
  r.network->connection_failures = 2;
  r.network->recoveries = 1;
  r.network->mean_recovery_s = 1.5;
  rep.outage = outage_result{};
  rep.outage->outage = std::chrono::milliseconds(2000);
  rep.outage->offered_rate = 200'000;
  rep.outage->max_retry_delay = std::chrono::milliseconds(1000);
  rep.outage->start_s = 1.0;
  rep.outage->end_s = 3.0;
  rep.outage->rate_before = 199'000;
  rep.outage->first_completion_s = 0.25;
  rep.outage->recovery_s = 0.4;
  rep.outage->refused_calls = 40;
  rep.outage->late = 400'000;
  rep.outage->resent = 0;
  rep.outage->sent = rep.outage->completed = 1'400'000;
  r.sessions = 16;
  r.sessions_accepted = 400;
  r.mean_messages_per_session = 500;
  r.accept_call = lat(3);
  for (std::size_t i = 0; i < samples; ++i) {
    const double t = 0.005 * static_cast<double>(i + 1);
    r.series.push_back({t, 400'000.0 + static_cast<double>(i), 390'000, 80, 200, 0.005, 2000});
  }
  rep.baseline = baseline_result{};
  rep.baseline->messages = 200'000;
  rep.baseline->throughput = 1'600'000;
  rep.baseline->e2e = lat(20);
  rep.baseline->cpu_s = 0.25;
  rep.baseline->cpu_s_per_message = 1.25e-6;
  rep.baseline->wall_s = 0.5;
  rep.round_ratios = {0.24, 0.25, 0.26};
  rep.half_rate = r;
  rep.half_rate->rate_target = 200'000;
  rep.half_rate->e2e_throughput = 198'000;
  rep.half_rate->e2e = lat(30);
  rep.half_rate_baseline = baseline_result{};
  rep.half_rate_baseline->messages = 400'000;
  rep.half_rate_baseline->throughput = 199'000;
  rep.half_rate_baseline->e2e = lat(12);
  rep.half_rate_round_p99s = {420, 150, 9800};
  rep.scaling =
      std::vector<scaling_point>{{1, 490, 1, 0.98}, {2, 980, 1, 0.98}, {4, 1900, 0.97, 0.95}};
  overhead_result ov;
  ov.messages = 2000;
  ov.handler_cost = std::chrono::microseconds(100);
  ov.cpu_s = 0.21;
  ov.handler_cpu_s = 0.20;
  ov.wall_s = 0.22;
  ov.handler_wall_s = 0.20;
  ov.qrt_share = (0.21 - 0.20) / 0.21;
  ov.qrt_share_wall = (0.22 - 0.20) / 0.22;
  rep.overhead = ov;
  memory_budget_result m;
  m.budget_bytes = 64u << 20;
  m.message_size = 256;
  m.accepted = m.drained = 87'381;
  m.refused = 1000;
  m.refusal = "queue_full: max_memory_bytes";
  m.baseline_rss_bytes = 9u << 20;
  m.full_rss_bytes = 73u << 20;
  rep.memory_budget = m;
  rep.checks = {{"latency.p99_message_latency", "<1000ms", "0.500 ms", target_check::status::pass}};
  rep.command = "qrt bench --provider memory";
  rep.finished_at = "2026-12-03T11:00:00Z";
  rep.load_average = {1.5, 1.7, 1.6};
  rep.cross_cpu_round_trip_before_ns = 83.0;
  rep.cross_cpu_round_trip_after_ns = 331.0;
  rep.available_memory = qrt::bench::memory_limit{24ull << 30, "MemTotal"};
  return rep;
}

// Counts what each chart drew: line points (data-count) and bars (class="datum").
std::map<std::string, std::size_t> drawn_per_chart(const std::string& html) {
  std::map<std::string, std::size_t> out;
  const std::regex figure(R"re(<figure class="chart" id="chart-[^"]+" data-chart="([^"]+)">)re");
  const std::regex count(R"re(class="series" data-series="[^"]*" data-count="(\d+)")re");
  const std::regex datum(R"(class="datum")");
  std::vector<std::pair<std::size_t, std::string>> starts;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), figure);
       it != std::sregex_iterator(); ++it) {
    starts.emplace_back(static_cast<std::size_t>(it->position()), (*it)[1]);
  }
  for (std::size_t i = 0; i < starts.size(); ++i) {
    const auto end = i + 1 < starts.size() ? starts[i + 1].first : html.size();
    const std::string part = html.substr(starts[i].first, end - starts[i].first);
    std::size_t n = 0;
    for (auto it = std::sregex_iterator(part.begin(), part.end(), count);
         it != std::sregex_iterator(); ++it) {
      n += std::stoul((*it)[1]);
    }
    n += static_cast<std::size_t>(std::distance(
        std::sregex_iterator(part.begin(), part.end(), datum), std::sregex_iterator()));
    out[starts[i].second] = n;
  }
  return out;
}

TEST(Chart, DrawsEveryChartWithAllItsData) {
  const std::size_t samples = 97;
  const auto rep = full_report(samples);
  const auto html = render_chart_html(rep);
  const auto drawn = drawn_per_chart(html);
  EXPECT_EQ(drawn.at("throughput"), 4u) << "send, receive, end-to-end, raw queue";
  EXPECT_EQ(drawn.at("percentiles"), 4u * 5u)
      << "full rate, half rate, the raw queue at both; p50..p99.99";
  EXPECT_EQ(drawn.at("operations"), 9u) << "three calls, three percentiles";
  EXPECT_EQ(drawn.at("throughput-over-time"), 4 * samples) << "samples and averages, two lines";
  EXPECT_EQ(drawn.at("latency-over-time"), 2 * samples);
  EXPECT_EQ(drawn.at("scaling"), 2u * 3u);
  EXPECT_EQ(drawn.at("overhead"), 4u);
  EXPECT_EQ(drawn.at("memory"), 2u);
  // The ratio is written on the bars, the summary says what passed.
  EXPECT_NE(html.find("0.25× the raw queue"), std::string::npos);
  EXPECT_NE(html.find("data-summary"), std::string::npos);
  EXPECT_NE(html.find("<td class=\"pass\">pass</td>"), std::string::npos);
  EXPECT_NE(html.find("400 k msg/s"), std::string::npos);
  // Self-contained: nothing to fetch, no scripts.
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  std::string rest = html;
  for (std::size_t at = rest.find("http"); at != std::string::npos;
       at = rest.find("http", at + 1)) {
    EXPECT_TRUE(rest.compare(at, 26, "http://www.w3.org/2000/svg") == 0 ||
                rest.compare(at, 10, "http-equiv") == 0)
        << rest.substr(at, 40);
  }
  EXPECT_EQ(html.find("nan"), std::string::npos);
  EXPECT_EQ(html.find("inf\""), std::string::npos);
}

// The CPU per message is shown with the raw queue's in the same run, in the table and in
// report.json: whether the machine lets any two threads hand messages over for less.
TEST(Report, CpuPerMessageComesWithTheRawQueues) {
  const auto rep = full_report(3);
  const auto table = format_table(rep);
  const auto ours = table.find("  cpu 1.00 us/msg");
  ASSERT_NE(ours, std::string::npos) << table;
  EXPECT_NE(table.find("raw queue cpu 1.25 us/msg (0.25 s total, wall 0.50 s)", ours),
            std::string::npos)
      << table;
  const auto json = boost::json::parse(to_json(rep));
  EXPECT_EQ(json.at_pointer("/baseline/cpu_seconds_per_message").to_number<double>(), 1.25e-6);

  auto without = rep;
  without.baseline.reset();
  EXPECT_EQ(format_table(without).find("raw queue cpu"), std::string::npos);
}

// The machine's cross-CPU round trip before and after the run is in the table, report.json and
// the chart page, so a figure reads against the level the machine was at; where it could not be
// measured the table says nothing and report.json has null.
TEST(Report, TheMachinesCrossCpuRoundTripIsReported) {
  const auto rep = full_report(3);
  const auto table = format_table(rep);
  EXPECT_NE(table.find("machine: cross-CPU round trip 83 ns before, 331 ns after"),
            std::string::npos)
      << table;
  const auto json = boost::json::parse(to_json(rep));
  EXPECT_EQ(json.at_pointer("/machine/cross_cpu_round_trip_before_ns").to_number<double>(), 83.0);
  EXPECT_EQ(json.at_pointer("/machine/cross_cpu_round_trip_after_ns").to_number<double>(), 331.0);
  EXPECT_NE(render_chart_html(rep).find("cross-CPU round trip 83 ns before, 331 ns after"),
            std::string::npos);

  auto unknown = rep;
  unknown.cross_cpu_round_trip_before_ns.reset();
  unknown.cross_cpu_round_trip_after_ns.reset();
  EXPECT_EQ(format_table(unknown).find("cross-CPU"), std::string::npos);
  const auto none = boost::json::parse(to_json(unknown));
  EXPECT_TRUE(none.at_pointer("/machine/cross_cpu_round_trip_before_ns").is_null());
  EXPECT_TRUE(none.at_pointer("/machine/cross_cpu_round_trip_after_ns").is_null());
}

// The memory the process may use is in the table and report.json beside the round trip, with
// the limit it came from; unknown, the table says nothing and report.json has null.
TEST(Report, TheMemoryAvailableIsReportedWithItsSource) {
  auto rep = full_report(3);
  rep.available_memory = qrt::bench::memory_limit{512ull * 1024 * 1024, "cgroup memory.max"};
  EXPECT_NE(format_table(rep).find("machine: 512.0 MiB of memory available (cgroup memory.max)"),
            std::string::npos)
      << format_table(rep);
  const auto json = boost::json::parse(to_json(rep));
  EXPECT_EQ(json.at_pointer("/machine/memory_limit_bytes").to_number<std::uint64_t>(),
            512ull * 1024 * 1024);
  EXPECT_EQ(json.at_pointer("/machine/memory_limit_source").as_string(), "cgroup memory.max");

  rep.available_memory.reset();
  EXPECT_EQ(format_table(rep).find("memory available"), std::string::npos);
  const auto none = boost::json::parse(to_json(rep));
  EXPECT_TRUE(none.at_pointer("/machine/memory_limit_bytes").is_null());
  EXPECT_TRUE(none.at_pointer("/machine/memory_limit_source").is_null());
}

// The half-rate run's latency is shown beside the raw queue's at the same pace, in the table,
// in report.json and in the summary, so that its p99 reads against what the machine allowed.
TEST(Report, HalfRateLatencyComesWithTheRawQueuesAtTheSamePace) {
  const auto rep = full_report(3);
  const auto table = format_table(rep);
  const auto half = table.find("at half the rate");
  ASSERT_NE(half, std::string::npos);
  const auto raw_row = table.find("baseline end-to-end", half);
  ASSERT_NE(raw_row, std::string::npos);
  EXPECT_NE(table.find("60.0", raw_row), std::string::npos) << table.substr(half);  // p99 12*5
  // With --repeat, every round's p99 is listed: one stalled round does not decide the figure.
  EXPECT_NE(table.find("p99 of each round      420.0 150.0 9800.0", half), std::string::npos)
      << table.substr(half);

  const auto json = boost::json::parse(to_json(rep));
  EXPECT_EQ(json.at_pointer("/half_rate/baseline_e2e_latency_us/p99").to_number<double>(), 60.0);
  EXPECT_EQ(json.at_pointer("/half_rate/e2e_latency_us/p99").to_number<double>(), 150.0);
  EXPECT_EQ(json.at_pointer("/half_rate/round_p99_us").as_array().size(), 3u);

  EXPECT_NE(render_chart_html(rep).find("raw queue at the same pace: 60"), std::string::npos);

  auto without = rep;
  without.half_rate_baseline.reset();
  EXPECT_TRUE(boost::json::parse(to_json(without))
                  .at_pointer("/half_rate/baseline_e2e_latency_us")
                  .is_null());
}

// The pace is set from full-rate rounds of a fraction of a second and held for seconds; when
// the machine slows in between, messages queue behind the pace and the half-rate latency
// measures that backlog. The report says what each side achieved, and says so when either fell
// short of the pace, so a miss is not read as the provider's.
TEST(Report, AHalfRatePaceNotHeldIsSaid) {
  auto rep = full_report(3);
  auto table = format_table(rep);
  EXPECT_NE(table.find("(200,000 msg/s paced, 198,000 achieved; the raw queue 199,000)"),
            std::string::npos)
      << table;
  EXPECT_EQ(table.find("the pace was not held"), std::string::npos) << table;
  EXPECT_EQ(boost::json::parse(to_json(rep))
                .at_pointer("/half_rate/baseline_end_to_end_msgs_per_s")
                .to_number<double>(),
            199'000.0);

  rep.half_rate_baseline->throughput = 120'000;
  table = format_table(rep);
  EXPECT_NE(table.find("the pace was not held (qrt 99 %, the raw queue 60 % of it)"),
            std::string::npos)
      << table;

  rep.half_rate->e2e_throughput = 150'000;
  rep.half_rate_baseline.reset();
  table = format_table(rep);
  EXPECT_NE(table.find("the pace was not held (qrt 75 % of it)"), std::string::npos) << table;
  EXPECT_TRUE(boost::json::parse(to_json(rep))
                  .at_pointer("/half_rate/baseline_end_to_end_msgs_per_s")
                  .is_null());
}

TEST(Chart, LeavesOutWhatTheRunDidNotMeasureAndFlagsAMissedGoal) {
  auto rep = full_report(3);
  rep.baseline.reset();
  rep.half_rate.reset();
  rep.scaling.reset();
  rep.memory_budget.reset();
  rep.overhead->qrt_share = 0.25;
  const auto html = render_chart_html(rep);
  const auto drawn = drawn_per_chart(html);
  EXPECT_EQ(drawn.at("throughput"), 3u);
  EXPECT_EQ(drawn.at("percentiles"), 5u);
  EXPECT_FALSE(drawn.count("scaling"));
  EXPECT_FALSE(drawn.count("memory"));
  EXPECT_NE(html.find("<td class=\"miss\">MISS</td>"), std::string::npos);
}

// docs/bench-report.md lists report.json's fields; a full report has exactly those.
struct documented_fields {
  std::map<std::string, std::string> fields;   // path -> type
  std::map<std::string, std::string> latency;  // field of a latency object -> type
};

documented_fields read_documented_fields() {
  std::ifstream in(QRT_BENCH_REPORT_DOC);
  EXPECT_TRUE(in) << QRT_BENCH_REPORT_DOC;
  documented_fields d;
  const std::regex row(R"(^\| `([^`]+)` \| ([a-z]+) \|)");
  std::string line, section;
  while (std::getline(in, line)) {
    if (line.starts_with("## ")) section = line.substr(3);
    std::smatch m;
    if (!std::regex_search(line, m, row)) continue;
    if (section.starts_with("Fields")) d.fields[m[1]] = m[2];
    if (section.starts_with("A latency object")) d.latency[m[1]] = m[2];
  }
  return d;
}

void flatten(const boost::json::value& v, const std::string& path,
             std::map<std::string, const boost::json::value*>& out) {
  if (v.is_object()) {
    for (const auto& [k, x] : v.as_object()) {
      flatten(x, path.empty() ? std::string(k) : path + "." + std::string(k), out);
    }
  } else if (v.is_array() && !v.as_array().empty() && v.as_array()[0].is_object()) {
    flatten(v.as_array()[0], path + "[]", out);
  } else if (v.is_array()) {
    out[path + "[]"] = v.as_array().empty() ? &v : &v.as_array()[0];
  } else {
    out[path] = &v;
  }
}

bool has_type(const boost::json::value& v, const std::string& type) {
  if (type == "integer") return v.is_int64() || v.is_uint64();
  if (type == "number") return v.is_number();
  if (type == "string") return v.is_string();
  return false;
}

TEST(ReportJson, HasExactlyTheDocumentedFields) {
  const auto doc = read_documented_fields();
  ASSERT_GT(doc.fields.size(), 50u);
  ASSERT_EQ(doc.latency.size(), 9u);
  std::map<std::string, std::string> expected;
  for (const auto& [path, type] : doc.fields) {
    if (type == "latency") {
      for (const auto& [f, t] : doc.latency) expected[path + "." + f] = t;
    } else {
      expected[path] = type;
    }
  }
  const auto json = boost::json::parse(to_json(full_report(5)));
  std::map<std::string, const boost::json::value*> actual;
  flatten(json, "", actual);
  for (const auto& [path, type] : expected) {
    auto it = actual.find(path);
    if (it == actual.end()) {
      ADD_FAILURE() << "documented but not written: " << path;
      continue;
    }
    EXPECT_TRUE(has_type(*it->second, type))
        << path << " should be " << type << ", is " << boost::json::serialize(*it->second);
  }
  for (const auto& [path, v] : actual) {
    EXPECT_TRUE(expected.count(path))
        << "written but not documented in docs/bench-report.md: " << path;
  }
  EXPECT_EQ(json.at("schema_version").as_int64(), report_schema_version);
}

// The figures the availability and connection pool targets come from are in the report; a
// provider without connections has no count of them, written as null rather than a 0 that
// would read as a pool that never had to open one.
TEST(ReportJson, CallsAndConnectionsOpenedAreWrittenAndNullWithoutConnections) {
  auto rep = full_report(3);
  auto json = boost::json::parse(to_json(rep));
  EXPECT_EQ(json.at("provider_calls").to_number<std::uint64_t>(), 60'000u);
  EXPECT_EQ(json.at("failed_calls").to_number<std::uint64_t>(), 2u);
  EXPECT_EQ(json.at("connections_opened").to_number<std::uint64_t>(), 1u);
  EXPECT_NE(format_table(rep).find("provider calls 60000, failed 2; connections opened 1"),
            std::string::npos)
      << format_table(rep);
  rep.run.connections_opened.reset();
  json = boost::json::parse(to_json(rep));
  EXPECT_TRUE(json.at("connections_opened").is_null());
  EXPECT_NE(format_table(rep).find("connections opened none (the provider has no connections)"),
            std::string::npos)
      << format_table(rep);
}

// Bandwidth and connection failures are in the table, the JSON and the chart's summary; a
// provider without connections says so, and writes null, never rates of zero.
TEST(ReportJson, NetworkFiguresAreWrittenAndNoneWithoutConnections) {
  auto rep = full_report(3);
  auto json = boost::json::parse(to_json(rep));
  const auto& net = json.at("network");
  EXPECT_EQ(net.at("bytes_sent").to_number<std::uint64_t>(), 3u << 20);
  EXPECT_EQ(net.at("bytes_received").to_number<std::uint64_t>(), 1u << 20);
  EXPECT_DOUBLE_EQ(net.at("bytes_sent_per_s").to_number<double>(), 6.0 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(net.at("bytes_received_per_s").to_number<double>(), 2.0 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(net.at("bytes_per_message").to_number<double>(), 21.0);
  EXPECT_EQ(net.at("connection_failures").to_number<std::uint64_t>(), 2u);
  EXPECT_EQ(net.at("recoveries").to_number<std::uint64_t>(), 1u);
  EXPECT_DOUBLE_EQ(net.at("mean_recovery_seconds").to_number<double>(), 1.5);
  const std::string words =
      "sent 3 MiB (6 MiB/s), received 1 MiB (2 MiB/s), 21 B per message; connection failures 2, "
      "recoveries 1 (mean 1.5 s)";
  EXPECT_NE(format_table(rep).find("network " + words), std::string::npos) << format_table(rep);
  EXPECT_NE(render_chart_html(rep).find(words), std::string::npos);

  rep.run.network->mean_recovery_s.reset();
  json = boost::json::parse(to_json(rep));
  EXPECT_TRUE(json.at("network").at("mean_recovery_seconds").is_null());

  rep.run.network.reset();
  json = boost::json::parse(to_json(rep));
  EXPECT_TRUE(json.at("network").is_null());
  EXPECT_NE(format_table(rep).find("network none (no connections)"), std::string::npos)
      << format_table(rep);
  EXPECT_NE(render_chart_html(rep).find("none (no connections)"), std::string::npos);
}

// The outage run's recovery is in the table, the JSON and the chart's summary, and a run that
// never got back, or lost a message, says so.
TEST(Report, TheOutageRunsRecoveryIsReported) {
  auto rep = full_report(3);
  auto table = format_table(rep);
  EXPECT_NE(table.find("outage of 2 s (paced at 200,000 msg/s, retries wait at most 1 s)"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("first completion 0.25 s after it ended; back to 90 % of the offered rate "
                       "0.40 s after it ended"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("every message sent was completed once (1400000)"), std::string::npos)
      << table;
  auto json = boost::json::parse(to_json(rep));
  EXPECT_DOUBLE_EQ(json.at("outage").at("recovery_seconds").to_number<double>(), 0.4);
  EXPECT_EQ(json.at("outage").at("late_messages").to_number<std::uint64_t>(), 400'000u);
  const auto html = render_chart_html(rep);
  EXPECT_NE(html.find("back to 90 % of the offered rate 0.40 s after a 2 s outage"),
            std::string::npos);

  rep.outage->recovery_s.reset();
  rep.outage->completed -= 1;
  table = format_table(rep);
  EXPECT_NE(table.find("NOT within the run"), std::string::npos) << table;
  EXPECT_NE(table.find("MESSAGES LOST OR REDELIVERED: sent 1400000, completed 1399999"),
            std::string::npos)
      << table;
  json = boost::json::parse(to_json(rep));
  EXPECT_TRUE(json.at("outage").at("recovery_seconds").is_null());
  EXPECT_NE(render_chart_html(rep).find("<td class=\"miss\">MISS</td>"), std::string::npos);
}

// A target's measured text (a reason why it was not checked, say) is printed whole in the
// table, however long: a fixed line buffer cut the memory budget's text short.
TEST(Report, ATargetsMeasuredTextIsPrintedWhole) {
  auto rep = full_report(3);
  const std::string reason = std::string(400, 'x') + " the end of the reason";
  rep.checks.push_back({"reliability.circuit_breaker_frequency", "<1 per day", reason,
                        target_check::status::not_checked});
  const auto table = format_table(rep);
  EXPECT_NE(table.find("n/a  reliability.circuit_breaker_frequency <1 per day " + reason + "\n"),
            std::string::npos)
      << table;
}

// A figure that could not be computed (a ratio over a round that moved nothing) is written as
// null: JSON has no NaN or infinity, and a report.json holding them is refused by every parser,
// bench compare's included, which would lose the whole run's figures.
TEST(ReportJson, AFigureThatCannotBeComputedIsNullAndTheReportStaysJson) {
  auto rep = full_report(3);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  rep.scaling = std::vector<scaling_point>{{1, 0, 1, 0}, {2, 0, nan, 0}, {4, 10, inf, -inf}};
  rep.round_ratios = {1.5, nan};
  rep.run.series.front().e2e_mean_us = nan;
  const std::string text = to_json(rep);
  boost::system::error_code ec;
  const auto json = boost::json::parse(text, ec);
  ASSERT_FALSE(ec) << "report.json is not JSON (" << ec.message() << "): " << text.substr(0, 300);
  const auto& scaling = json.at("scaling").as_array();
  EXPECT_EQ(scaling.at(0).at("efficiency").as_double(), 1.0);
  EXPECT_TRUE(scaling.at(1).at("efficiency").is_null());
  EXPECT_TRUE(scaling.at(2).at("efficiency").is_null());
  EXPECT_TRUE(scaling.at(2).at("of_ideal").is_null());
  EXPECT_TRUE(json.at("round_ratios").as_array().at(1).is_null());
  EXPECT_TRUE(json.at("series").as_array().at(0).at("e2e_mean_us").is_null());
  auto figures = read_report_figures(text, "report.json");
  EXPECT_TRUE(figures) << figures.error().to_string();
}

// ---------------------------------------------------------------------------------------------
// compare

figure_spec spec_of(const std::string& key) {
  for (const auto& s : compared_figures()) {
    if (s.key == key) return s;
  }
  ADD_FAILURE() << "no figure " << key;
  return {};
}

using verdict = comparison_row::verdict;

// A report to compare is read no further than any report could be: `qrt bench compare
// /dev/zero ...` (or a pipe that never ends) was read whole, until memory ran out.
TEST(Compare, AReportIsReadNoFurtherThanAReportCouldBe) {
  auto endless = load_report_figures("/dev/zero");
  ASSERT_FALSE(endless);
  EXPECT_EQ(endless.error().code, errc::invalid_argument);
  EXPECT_NE(endless.error().message.find("'/dev/zero' holds more than"), std::string::npos)
      << endless.error().message;
  auto missing = load_report_figures("/nonexistent/report.json");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("/nonexistent/report.json"), std::string::npos)
      << missing.error().message;
}

TEST(Compare, ThroughputDownIsARegressionAndUpAnImprovement) {
  const auto tp = spec_of("end_to_end_msgs_per_s");
  EXPECT_EQ(tp.direction, better::higher);
  EXPECT_EQ(compare_figure(tp, 100'000, 80'000, 0.10).outcome, verdict::regressed);
  EXPECT_EQ(compare_figure(tp, 100'000, 120'000, 0.10).outcome, verdict::improved);
  EXPECT_EQ(compare_figure(tp, 100'000, 95'000, 0.10).outcome, verdict::within);
  EXPECT_NEAR(*compare_figure(tp, 100'000, 80'000, 0.10).change, -0.20, 1e-12);
  EXPECT_EQ(compare_figure(spec_of("baseline.ratio"), 0.5, 0.4, 0.10).outcome, verdict::regressed);
}

TEST(Compare, LatencyCpuAndMemoryUpAreRegressions) {
  for (const char* key :
       {"e2e_latency_us.p50", "e2e_latency_us.p99", "half_rate.e2e_latency_us.p99",
        "cpu_seconds_per_message", "peak_rss_bytes", "overhead.qrt_share",
        "operation_latency_us.send.p99", "sessions.accept_latency_us.p99"}) {
    const auto s = spec_of(key);
    EXPECT_EQ(s.direction, better::lower) << key;
    EXPECT_EQ(compare_figure(s, 100, 130, 0.10).outcome, verdict::regressed) << key;
    EXPECT_EQ(compare_figure(s, 100, 70, 0.10).outcome, verdict::improved) << key;
  }
}

TEST(Compare, TheThresholdDecidesAndIsNotItselfARegression) {
  const auto p99 = spec_of("e2e_latency_us.p99");
  EXPECT_EQ(compare_figure(p99, 100, 120, 0.25).outcome, verdict::within);
  EXPECT_EQ(compare_figure(p99, 100, 120, 0.15).outcome, verdict::regressed);
  EXPECT_EQ(compare_figure(p99, 1000, 1100, 0.10).outcome, verdict::within) << "exactly 10 %";
  EXPECT_EQ(compare_figure(p99, 1000, 1101, 0.10).outcome, verdict::regressed);
  EXPECT_EQ(compare_figure(p99, 100, 100.5, 0).outcome, verdict::regressed) << "threshold 0";
}

TEST(Compare, ErrorsFromNoneRegressAndUnflaggedFiguresNeverDo) {
  const auto errors = spec_of("errors");
  const auto row = compare_figure(errors, 0, 3, 0.10);
  EXPECT_EQ(row.outcome, verdict::regressed);
  EXPECT_FALSE(row.change);
  EXPECT_EQ(compare_figure(errors, 0, 0, 0.10).outcome, verdict::within);
  EXPECT_EQ(compare_figure(spec_of("e2e_latency_us.max"), 10, 1000, 0.10).outcome, verdict::within);
  EXPECT_EQ(compare_figure(spec_of("baseline.msgs_per_s"), 1e6, 1e5, 0.10).outcome,
            verdict::within);
  EXPECT_EQ(compare_figure(spec_of("baseline.ratio"), std::nullopt, 0.5, 0.10).outcome,
            verdict::missing);
}

TEST(Compare, TwoReportsSideBySideWithTheRegressionsNamed) {
  auto older = full_report(3);
  auto newer = full_report(3);
  newer.run.e2e_throughput = 300'000;    // -25 %
  newer.run.e2e.p99_us *= 1.05;          // +5 %: within
  newer.run.cpu_s_per_message = 1.5e-6;  // +50 %
  newer.memory_budget.reset();
  newer.run.message_size = 1024;
  auto o = read_report_figures(to_json(older), "old/report.json");
  auto n = read_report_figures(to_json(newer), "new/report.json");
  ASSERT_TRUE(o) << o.error().to_string();
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_DOUBLE_EQ(o->values.at("cpu_seconds_per_message"), 1.0) << "shown in µs per message";
  const auto c = compare_reports(*o, *n, 0.10);
  std::set<std::string> regressed;
  for (const auto* r : c.regressions()) regressed.insert(r->spec.key);
  EXPECT_EQ(regressed, (std::set<std::string>{"end_to_end_msgs_per_s", "baseline.ratio",
                                              "cpu_seconds_per_message"}));
  const auto text = format_comparison(c);
  EXPECT_NE(text.find("REGRESSED (lower is worse)"), std::string::npos) << text;
  EXPECT_NE(text.find("REGRESSED (higher is worse)"), std::string::npos) << text;
  EXPECT_NE(text.find("only in old"), std::string::npos) << text;
  EXPECT_NE(text.find("message_size: 256 -> 1024"), std::string::npos) << text;
  const auto html = render_comparison_html(c);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_NE(html.find("data-chart=\"compare\""), std::string::npos);
  EXPECT_FALSE(compare_reports(*o, *o, 0.10).any_regression());
  EXPECT_FALSE(c.machine_change);
  EXPECT_EQ(text.find("the raw queue itself changed"), std::string::npos);
  // The raw queue (the machine) slower by half: said, since qrt's figures move with it.
  newer.baseline->throughput /= 2;
  auto slower_machine = read_report_figures(to_json(newer), "new/report.json");
  ASSERT_TRUE(slower_machine);
  const auto m = compare_reports(*o, *slower_machine, 0.10);
  ASSERT_TRUE(m.machine_change);
  EXPECT_NEAR(*m.machine_change, -0.5, 1e-9);
  EXPECT_NE(format_comparison(m).find("the raw queue itself changed by -50.0 %"),
            std::string::npos);
}

// A session run's figures are in the table, report.json and the chart's summary; a plain run has
// no sessions section, and a report without one (every report written before session mode)
// still loads in compare, which shows the accept latency for the session run only and says
// that the runs differ in sessions.
// Two runs that met the machine at different levels (one cross-CPU round trip more than 1.5
// times the other) get a note saying so; runs at the same level, and reports without the
// figure (older ones, or where it was not measured), get none.
TEST(Compare, RunsAtDifferentMachineLevelsAreNoted) {
  auto fast = full_report(3);
  fast.cross_cpu_round_trip_before_ns = 80.0;
  fast.cross_cpu_round_trip_after_ns = 90.0;
  auto slow = full_report(3);
  slow.cross_cpu_round_trip_before_ns = 330.0;
  slow.cross_cpu_round_trip_after_ns = 340.0;
  auto f = read_report_figures(to_json(fast), "fast/report.json");
  auto s = read_report_figures(to_json(slow), "slow/report.json");
  ASSERT_TRUE(f && s);
  ASSERT_TRUE(f->cross_cpu_round_trip_ns);
  EXPECT_DOUBLE_EQ(*f->cross_cpu_round_trip_ns, 85.0);
  const auto c = compare_reports(*f, *s, 0.10);
  ASSERT_TRUE(c.machine_level_change);
  const auto text = format_comparison(c);
  EXPECT_NE(text.find("cross-CPU round trip was 85 ns in the old run and 335 ns in the new"),
            std::string::npos)
      << text;
  EXPECT_NE(render_comparison_html(c).find("cross-CPU round trip was 85 ns in the old run and "
                                           "335 ns in the new"),
            std::string::npos);

  auto also_fast = fast;
  also_fast.cross_cpu_round_trip_after_ns = 120.0;  // 100 against 85: the same level
  auto af = read_report_figures(to_json(also_fast), "also-fast/report.json");
  ASSERT_TRUE(af);
  EXPECT_FALSE(compare_reports(*f, *af, 0.10).machine_level_change);

  auto unmeasured = slow;
  unmeasured.cross_cpu_round_trip_after_ns.reset();
  auto u = read_report_figures(to_json(unmeasured), "unmeasured/report.json");
  ASSERT_TRUE(u) << u.error().to_string();
  EXPECT_FALSE(u->cross_cpu_round_trip_ns);
  const auto without = compare_reports(*f, *u, 0.10);
  EXPECT_FALSE(without.machine_level_change);
  EXPECT_EQ(format_comparison(without).find("cross-CPU"), std::string::npos);
}

TEST(Compare, ASessionRunsFiguresAreReportedAndAReportWithoutThemStillCompares) {
  const auto rep = full_report(3);
  const auto table = format_table(rep);
  EXPECT_NE(table.find("batch 10, 16 sessions"), std::string::npos) << table;
  EXPECT_NE(table.find("session accept call"), std::string::npos) << table;
  EXPECT_NE(table.find("sessions 16: accepted 400, 500.0 messages per session held, order "
                       "violations 0"),
            std::string::npos)
      << table;
  const auto json = boost::json::parse(to_json(rep));
  const auto& sessions = json.at("sessions");
  EXPECT_EQ(sessions.at("count").to_number<std::uint64_t>(), 16u);
  EXPECT_EQ(sessions.at("accepted").to_number<std::uint64_t>(), 400u);
  EXPECT_EQ(sessions.at("order_violations").to_number<std::uint64_t>(), 0u);
  EXPECT_DOUBLE_EQ(sessions.at("accept_latency_us").at("p99").to_number<double>(), 15);
  const auto html = render_chart_html(rep);
  EXPECT_NE(html.find("<th>session accept p50 / p99</th>"), std::string::npos);
  EXPECT_NE(html.find("400 times over 16 sessions, 500.0 messages per hold"), std::string::npos);
  EXPECT_NE(html.find("<th>session order violations</th><td class=\"value\">0</td>"),
            std::string::npos);

  auto plain = full_report(3);
  plain.run.sessions = 0;
  plain.run.sessions_accepted = 0;
  plain.run.mean_messages_per_session = 0;
  plain.run.accept_call = {};
  const auto plain_json = boost::json::parse(to_json(plain));
  EXPECT_FALSE(plain_json.as_object().contains("sessions"));
  EXPECT_EQ(format_table(plain).find("session"), std::string::npos) << format_table(plain);
  EXPECT_EQ(render_chart_html(plain).find("session accept"), std::string::npos);

  auto o = read_report_figures(to_json(plain), "plain/report.json");
  auto n = read_report_figures(to_json(rep), "sessions/report.json");
  ASSERT_TRUE(o) << o.error().to_string();
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_FALSE(o->values.count("sessions.accept_latency_us.p99"));
  EXPECT_DOUBLE_EQ(n->values.at("sessions.accept_latency_us.p99"), 15);
  const auto c = compare_reports(*o, *n, 0.10);
  EXPECT_FALSE(c.any_regression());
  const auto text = format_comparison(c);
  EXPECT_NE(text.find("session accept call p99"), std::string::npos) << text;
  EXPECT_NE(text.find("sessions: - -> 16"), std::string::npos) << text;
}

TEST(Compare, BadInputIsRefusedNamingTheFileAndField) {
  auto expect_error = [](std::string_view text, const std::string& needle) {
    auto r = read_report_figures(text, "runs/a/report.json");
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().code, errc::invalid_argument);
    EXPECT_NE(r.error().message.find("runs/a/report.json"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  };
  expect_error("", "not JSON");
  expect_error("{\"provider\": ", "not JSON");
  expect_error("[1, 2, 3]", "not a qrt bench report");
  expect_error("{\"name\": \"package.json\", \"version\": \"1.0.0\"}", "not a qrt bench report");

  auto doc = boost::json::parse(to_json(full_report(2))).as_object();
  auto without = [&](const std::string& parent, const std::string& field) {
    auto copy = doc;
    if (parent.empty()) {
      copy.erase(field);
    } else {
      copy.at(parent).as_object().erase(field);
    }
    return boost::json::serialize(copy);
  };
  expect_error(without("e2e_latency_us", "p99"), "field 'e2e_latency_us.p99' is missing");
  expect_error(without("", "cpu_seconds_per_message"), "'cpu_seconds_per_message'");
  expect_error(without("errors", "send"), "'errors.send'");
  expect_error(without("e2e_latency_us", "p99_9"), "'e2e_latency_us.p99_9'");
  auto wrong = doc;
  wrong["end_to_end_msgs_per_s"] = "fast";
  expect_error(boost::json::serialize(wrong), "'end_to_end_msgs_per_s' is not a number");
  wrong = doc;
  wrong["schema_version"] = "two";
  expect_error(boost::json::serialize(wrong), "'schema_version'");

  // A version 1 report (before schema_version) has no p99.9: read, the figure left out; a
  // field version 1 had is still required, and the message says the report is old.
  auto v1 = doc;
  v1.erase("schema_version");
  v1.at("e2e_latency_us").as_object().erase("p99_9");
  auto old = read_report_figures(boost::json::serialize(v1), "v1.json");
  ASSERT_TRUE(old) << old.error().to_string();
  EXPECT_FALSE(old->values.count("e2e_latency_us.p99_9"));
  v1.at("e2e_latency_us").as_object().erase("p50");
  auto older = read_report_figures(boost::json::serialize(v1), "v1.json");
  ASSERT_FALSE(older);
  EXPECT_NE(older.error().message.find("'e2e_latency_us.p50' is missing"), std::string::npos);
  EXPECT_NE(older.error().message.find("schema_version is 1"), std::string::npos);
}

TEST(Compare, AMissingFileIsRefusedNamingIt) {
  auto r = load_report_figures("/nonexistent/qrt/report.json");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("/nonexistent/qrt/report.json"), std::string::npos);
  // A report directory stands for its report.json.
  const auto dir =
      std::filesystem::temp_directory_path() / ("qrt_compare_" + std::to_string(::getpid()));
  ASSERT_TRUE(write_report_dir(full_report(2), dir.string()));
  auto from_dir = load_report_figures(dir.string());
  EXPECT_TRUE(from_dir) << from_dir.error().to_string();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace qrt::bench
