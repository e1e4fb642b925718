// The exposition must be exactly what Prometheus parses: checked by hand for small cases and by
// promtool (the Prometheus project's own checker, run as a subprocess) for the full set.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <qrt/metrics.hpp>
#include <string>

namespace qrt::metrics {
namespace {

struct tool_result {
  int exit_code;
  std::string output;
};

// Runs `promtool check metrics` with `text` on stdin.
tool_result promtool_check(const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("qrt_exposition_" + std::to_string(::getpid()) + ".prom");
  std::ofstream(path, std::ios::binary) << text;
  const std::string cmd = std::string(QRT_PROMTOOL) + " check metrics < " + path.string() + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) out += buf;
  const int status = ::pclose(pipe);
  std::filesystem::remove(path);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(Exposition, WritesCountersGaugesAndHistogramsInTheTextFormat) {
  registry r;
  r.add_counter("app_sent_total", "Messages sent", {"queue"}).with({"orders"}).inc(3);
  r.add_gauge("app_depth", "Queue depth").with({}).set(2.5);
  auto& h = r.add_histogram("app_latency_seconds", "Latency", {0.1, 1}, {"queue"}).with({"orders"});
  h.observe(0.05);
  h.observe(0.5);
  h.observe(2.0);
  EXPECT_EQ(r.expose(),
            "# HELP app_sent_total Messages sent\n"
            "# TYPE app_sent_total counter\n"
            "app_sent_total{queue=\"orders\"} 3\n"
            "# HELP app_depth Queue depth\n"
            "# TYPE app_depth gauge\n"
            "app_depth 2.5\n"
            "# HELP app_latency_seconds Latency\n"
            "# TYPE app_latency_seconds histogram\n"
            "app_latency_seconds_bucket{queue=\"orders\",le=\"0.1\"} 1\n"
            "app_latency_seconds_bucket{queue=\"orders\",le=\"1\"} 2\n"
            "app_latency_seconds_bucket{queue=\"orders\",le=\"+Inf\"} 3\n"
            "app_latency_seconds_sum{queue=\"orders\"} 2.55\n"
            "app_latency_seconds_count{queue=\"orders\"} 3\n");
}

TEST(Exposition, EscapesLabelValuesAndHelpText) {
  registry r;
  r.add_counter("app_total", "line one\nback\\slash", {"queue"}).with({"a\"b\\c\nd"}).inc();
  EXPECT_EQ(r.expose(),
            "# HELP app_total line one\\nback\\\\slash\n"
            "# TYPE app_total counter\n"
            "app_total{queue=\"a\\\"b\\\\c\\nd\"} 1\n");
  const auto check = promtool_check(r.expose());
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST(Exposition, PromtoolAcceptsTheRuntimeMetrics) {
  registry r;
  runtime_metrics m(r);
  m.messages_processed.with({"orders", "memory", "completed"}).inc(10);
  m.processing_duration.with({"orders", "memory"}).observe(0.003);
  m.batch_sizes.with({"orders", "memory", "receive"}).observe(10);
  m.errors.with({"orders", "memory", "send", "queue_full"}).inc();
  m.operation_duration.with({"orders", "memory", "send"}).observe(0.0002);
  m.operations.with({"orders", "memory", "send"}).inc();
  m.messages_sent.with({"orders", "memory"}).inc(10);
  m.messages_received.with({"orders", "memory"}).inc(10);
  m.retries.with({"orders", "memory", "send"}).inc();
  m.breaker_transitions.with({"memory", "open"}).inc();
  m.breaker_state.with({"memory"}).set(2);
  m.dead_lettered.with({"orders/$DeadLetterQueue", "memory"}).inc();
  m.in_flight.with({"orders", "memory"}).set(3);
  m.queue_depth.with({"orders", "memory", "active"}).set(42);
  const auto text = r.expose();
  const auto check = promtool_check(text);
  EXPECT_EQ(check.exit_code, 0) << check.output << "\n--- exposition ---\n" << text;
  EXPECT_EQ(check.output, "") << "promtool lint findings";
}

TEST(Exposition, WritesASampledCounterAsACounterWithItsFraction) {
  registry r;
  r.add_sampled_counter("app_cpu_seconds_total", "CPU time").with({}).set(1.25);
  EXPECT_EQ(r.expose(),
            "# HELP app_cpu_seconds_total CPU time\n"
            "# TYPE app_cpu_seconds_total counter\n"
            "app_cpu_seconds_total 1.25\n");
}

TEST(Exposition, PromtoolAcceptsTheProcessMetrics) {
  registry r;
  add_process_metrics(r);
  const auto text = r.expose();
  ASSERT_NE(text.find("\nprocess_cpu_seconds_total "), std::string::npos) << text;
  const auto check = promtool_check(text);
  EXPECT_EQ(check.exit_code, 0) << check.output << "\n--- exposition ---\n" << text;
  EXPECT_EQ(check.output, "") << "promtool lint findings";
}

TEST(Exposition, PromtoolRejectsABrokenExpositionSoTheCheckAboveMeansSomething) {
  const auto check = promtool_check("# TYPE x counter\nx{queue=\"unterminated} 1\n");
  EXPECT_NE(check.exit_code, 0) << check.output;
}

}  // namespace
}  // namespace qrt::metrics
