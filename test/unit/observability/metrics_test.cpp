#include <gtest/gtest.h>

#include <qrt/metrics.hpp>
#include <string>
#include <thread>
#include <vector>

namespace qrt::metrics {
namespace {

TEST(Counter, SumsIncrementsFromManyThreadsWithoutLosingAny) {
  registry r;
  auto& c = r.add_counter("test_events_total", "events").with({});
  constexpr int threads = 8;
  constexpr int per_thread = 100'000;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) c.inc();
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(c.value(), std::uint64_t{threads} * per_thread);
}

TEST(Gauge, AddsFromManyThreadsAndSetReplacesTheValue) {
  registry r;
  auto& g = r.add_gauge("test_in_flight", "in flight").with({});
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) g.inc();
      for (int i = 0; i < 400; ++i) g.dec();
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_DOUBLE_EQ(g.value(), 4 * 600.0);
  g.set(7);
  EXPECT_DOUBLE_EQ(g.value(), 7.0);
}

TEST(Histogram, CountsIntoTheFirstBucketWhoseBoundIsNotBelowTheValue) {
  histogram h({1, 2, 5});
  h.observe(0.5);
  h.observe(1.0);  // bounds are inclusive
  h.observe(1.5);
  h.observe(5.0);
  h.observe(9.0);  // only +Inf
  const auto s = h.read();
  ASSERT_EQ(s.cumulative.size(), 4u);
  EXPECT_EQ(s.cumulative[0], 2u);
  EXPECT_EQ(s.cumulative[1], 3u);
  EXPECT_EQ(s.cumulative[2], 4u);
  EXPECT_EQ(s.cumulative[3], 5u);
  EXPECT_EQ(s.count, 5u);
  EXPECT_DOUBLE_EQ(s.sum, 17.0);
}

TEST(Histogram, KeepsEveryObservationFromConcurrentThreads) {
  histogram h(batch_size_buckets());
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < 10'000; ++i) h.observe(static_cast<double>(t + 1));
    });
  }
  for (auto& w : workers) w.join();
  const auto s = h.read();
  EXPECT_EQ(s.count, 40'000u);
  EXPECT_DOUBLE_EQ(s.sum, 10'000.0 * (1 + 2 + 3 + 4));
  EXPECT_EQ(s.cumulative[0], 10'000u);  // le=1
  EXPECT_EQ(s.cumulative[1], 20'000u);  // le=2
  EXPECT_EQ(s.cumulative[2], 40'000u);  // le=5
}

TEST(Family, ReturnsTheSameSeriesForTheSameLabelValues) {
  registry r;
  auto& fam = r.add_counter("test_ops_total", "ops", {"queue", "operation"});
  auto& a = fam.with({"orders", "send"});
  auto& b = fam.with({"orders", "send"});
  auto& c = fam.with({"orders", "receive"});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &c);
}

TEST(Family, RejectsTheWrongNumberOfLabelValues) {
  registry r;
  auto& fam = r.add_counter("test_ops_total", "ops", {"queue", "operation"});
  try {
    fam.with({"orders"});
    FAIL() << "expected an exception";
  } catch (const qrt::exception& e) {
    EXPECT_EQ(e.get().code, errc::invalid_argument);
    EXPECT_NE(e.get().message.find("test_ops_total"), std::string::npos);
  }
}

TEST(Registry, ReturnsTheExistingFamilyForAnIdenticalRegistration) {
  registry r;
  auto& a = r.add_histogram("test_seconds", "h", {1, 2}, {"queue"});
  auto& b = r.add_histogram("test_seconds", "h", {1, 2}, {"queue"});
  EXPECT_EQ(&a, &b);
}

TEST(Registry, RefusesConflictingAndInvalidRegistrationsNamingTheMetric) {
  registry r;
  r.add_counter("test_total", "c", {"queue"});
  auto expect_rejected = [](auto&& register_it, std::string_view needle) {
    try {
      register_it();
      ADD_FAILURE() << "expected rejection mentioning " << needle;
    } catch (const qrt::exception& e) {
      EXPECT_EQ(e.get().code, errc::invalid_argument);
      EXPECT_NE(e.get().message.find(needle), std::string::npos) << e.get().message;
    }
  };
  expect_rejected([&] { r.add_gauge("test_total", "g", {"queue"}); },
                  "already registered as a counter");
  expect_rejected([&] { r.add_counter("test_total", "c", {"provider"}); }, "other labels");
  expect_rejected([&] { r.add_sampled_counter("test_total", "c", {"queue"}); },
                  "counter of whole increments");
  r.add_sampled_counter("test_seconds_total", "s");
  expect_rejected([&] { r.add_counter("test_seconds_total", "s"); }, "sampled counter");
  expect_rejected([&] { r.add_gauge("test_seconds_total", "s"); },
                  "already registered as a counter");
  expect_rejected([&] { r.add_counter("1bad", "c"); }, "not a valid Prometheus metric name");
  expect_rejected([&] { r.add_counter("ok_total", "c", {"le"}); }, "label 'le'");
  expect_rejected([&] { r.add_counter("ok_total", "c", {"bad-label"}); }, "label 'bad-label'");
  expect_rejected([&] { r.add_histogram("h_seconds", "h", {2, 1}); }, "strictly increasing");
  expect_rejected([&] { r.add_histogram("h_seconds", "h", {}); }, "at least one bucket");
}

TEST(RuntimeMetrics, UsesTheDocumentedNamesAndBuckets) {
  registry r;
  runtime_metrics m(r);
  EXPECT_EQ(m.messages_processed.name(), "queue_runtime_messages_processed_total");
  EXPECT_EQ(m.processing_duration.name(), "queue_runtime_processing_duration_seconds");
  EXPECT_EQ(m.batch_sizes.name(), "queue_runtime_batch_sizes");
  EXPECT_EQ(m.errors.name(), "queue_runtime_errors_total");
  EXPECT_EQ(m.message_latency.name(), "queue_runtime_message_latency_seconds");
  EXPECT_EQ(m.message_latency.label_names(), (std::vector<std::string>{"queue", "provider"}));
  EXPECT_EQ(m.session_duration.name(), "queue_runtime_session_duration_seconds");
  EXPECT_EQ(m.session_duration.label_names(), (std::vector<std::string>{"queue", "provider"}));
  EXPECT_EQ(processing_duration_buckets(),
            (std::vector<double>{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0}));
  EXPECT_EQ(batch_size_buckets(), (std::vector<double>{1, 2, 5, 10, 20, 50, 100}));
  // Latencies run from milliseconds (an idle queue) to minutes (a backlog); sessions are held
  // from a message's handling up to an hour of steady traffic.
  EXPECT_EQ(message_latency_buckets().front(), 0.001);
  EXPECT_EQ(message_latency_buckets().back(), 600.0);
  EXPECT_EQ(session_duration_buckets().front(), 0.01);
  EXPECT_EQ(session_duration_buckets().back(), 3600.0);
  // Registering twice (two components sharing one registry) yields the same families.
  runtime_metrics again(r);
  EXPECT_EQ(&again.messages_processed, &m.messages_processed);
}

}  // namespace
}  // namespace qrt::metrics
