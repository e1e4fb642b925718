// The metrics decorator over the real embedded provider: every operation shows up under the
// runtime's metric names (docs/adr/0070-metrics-recording.md) with the right labels, and promtool
// accepts the result. Also carries a W3C traceparent from send to the handler through the provider.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <qrt/client.hpp>
#include <qrt/health.hpp>
#include <qrt/instrumented_provider.hpp>
#include <qrt/memory.hpp>
#include <qrt/runtime.hpp>
#include <qrt/trace_context.hpp>
#include <thread>

#include "../support/forwarding_provider.hpp"

namespace qrt::metrics {
namespace {

using namespace std::chrono_literals;

// Runs `task` to completion on a one-thread io_context.
template <class T>
T run(boost::asio::io_context& io, awaitable<T> task) {
  auto f = boost::asio::co_spawn(io, std::move(task), boost::asio::use_future);
  io.restart();
  while (f.wait_for(0s) != std::future_status::ready) io.run_one();
  return f.get();
}

struct fixture : ::testing::Test {
  boost::asio::io_context io;
  registry reg;
  runtime_metrics m{reg};
  provider_ptr raw;
  std::unique_ptr<queue_client> client;
  queue_name orders = queue_name::from("orders");

  void SetUp() override {
    auto opts = memory::options::for_testing();
    opts.queues = {"orders"};
    raw = memory::make_provider(opts, io.get_executor()).value();
    client = std::make_unique<queue_client>(instrument(raw, m));
  }
  void TearDown() override { run(io, raw->close()); }
};

using InstrumentedProvider = fixture;

TEST_F(InstrumentedProvider, RecordsEveryOperationWithQueueProviderAndOperationLabels) {
  std::vector<message> batch(5);
  for (auto& msg : batch) msg.body = "x";
  ASSERT_TRUE(run(io, client->send_batch(orders, std::move(batch))));
  auto got = run(io, client->receive(orders, 5, 1s)).value();
  ASSERT_EQ(got.size(), 5u);
  EXPECT_DOUBLE_EQ(m.in_flight.with({"orders", "memory"}).value(), 5.0);

  std::vector<settlement> s;
  s.push_back(settlement::complete(got[0].receipt));
  s.push_back(settlement::complete(got[1].receipt));
  s.push_back(settlement::complete(got[2].receipt));
  s.push_back(settlement::dead_letter(got[3].receipt, "bad", "test"));
  s.push_back(settlement::abandon(got[4].receipt));
  for (const auto& r : run(io, client->settle(s))) EXPECT_TRUE(r);
  // Settling the same receipt twice fails and is counted as an error of that operation.
  auto again = run(io, client->complete(got[0].receipt));
  EXPECT_FALSE(again);
  ASSERT_TRUE(run(io, client->stats(orders)));
  EXPECT_FALSE(run(io, client->receive(queue_name::from("missing"), 1, 0ms)));

  EXPECT_EQ(m.messages_sent.with({"orders", "memory"}).value(), 5u);
  EXPECT_EQ(m.messages_received.with({"orders", "memory"}).value(), 5u);
  EXPECT_EQ(m.dead_lettered.with({"orders", "memory"}).value(), 1u);
  EXPECT_DOUBLE_EQ(m.in_flight.with({"orders", "memory"}).value(), 0.0);
  EXPECT_EQ(m.operations.with({"orders", "memory", "send"}).value(), 1u);
  EXPECT_EQ(m.operations.with({"orders", "memory", "receive"}).value(), 1u);
  EXPECT_EQ(m.operations.with({"orders", "memory", "complete"}).value(), 4u);
  EXPECT_EQ(m.operations.with({"orders", "memory", "dead_letter"}).value(), 1u);
  EXPECT_EQ(m.operations.with({"orders", "memory", "abandon"}).value(), 1u);
  EXPECT_EQ(m.operation_duration.with({"orders", "memory", "send"}).read().count, 1u);
  EXPECT_EQ(m.batch_sizes.with({"orders", "memory", "send"}).read().sum, 5.0);
  EXPECT_EQ(m.batch_sizes.with({"orders", "memory", "receive"}).read().sum, 5.0);
  EXPECT_EQ(
      m.errors.with({"orders", "memory", "complete", std::string(to_string(again.error().code))})
          .value(),
      1u);
  EXPECT_EQ(m.errors.with({"missing", "memory", "receive", "queue_not_found"}).value(), 1u);
  // stats(): the abandoned message is back, the dead-lettered one is in the DLQ.
  EXPECT_DOUBLE_EQ(m.queue_depth.with({"orders", "memory", "active"}).value(), 1.0);
  EXPECT_DOUBLE_EQ(m.queue_depth.with({"orders", "memory", "dead_lettered"}).value(), 1.0);
}

// What the embedded provider holds is a gauge brought up to date at each exposition: dead-letter
// queues included, down again as messages are completed; a byte budget adds its limit, and
// without one there is no limit series.
TEST_F(InstrumentedProvider, ExposesTheBytesTheEmbeddedProviderHolds) {
  const auto held = [&] {
    reg.expose();
    return m.memory_held.with({"memory"}).value();
  };
  EXPECT_DOUBLE_EQ(held(), 0.0);
  std::vector<message> batch(3);
  for (auto& msg : batch) msg.body = std::string(100, 'x');
  const auto each = static_cast<double>(memory::accounted_bytes(batch[0]));
  ASSERT_TRUE(run(io, client->send_batch(orders, std::move(batch))));
  EXPECT_DOUBLE_EQ(held(), 3 * each);

  auto got = run(io, client->receive(orders, 3, 1s)).value();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_DOUBLE_EQ(held(), 3 * each) << "a locked message is still held";
  ASSERT_TRUE(run(io, client->complete(got[0].receipt)));
  ASSERT_TRUE(run(io, client->dead_letter(got[1].receipt, "bad", "test")));
  EXPECT_DOUBLE_EQ(held(), 2 * each) << "the dead-letter queue's message counts";
  ASSERT_TRUE(run(io, client->complete(got[2].receipt)));
  EXPECT_DOUBLE_EQ(held(), each);
  EXPECT_EQ(reg.expose().find("queue_runtime_memory_limit_bytes{"), std::string::npos)
      << "no budget, no limit series";
  ASSERT_TRUE(run(io, client->delete_queue(orders)));
  EXPECT_DOUBLE_EQ(held(), 0.0) << "a deleted queue's messages are gone";

  registry budget_reg;
  runtime_metrics budget_m{budget_reg};
  auto opts = memory::options::for_testing();
  opts.queues = {"orders"};
  opts.max_memory_bytes = 1 << 20;
  auto budgeted = memory::make_provider(opts, io.get_executor()).value();
  queue_client budget_client(instrument(budgeted, budget_m));
  message one;
  one.body = std::string(100, 'y');
  ASSERT_TRUE(run(io, budget_client.send(orders, one)));
  const auto text = budget_reg.expose();
  EXPECT_NE(text.find("queue_runtime_memory_limit_bytes{provider=\"memory\"} 1048576"),
            std::string::npos)
      << text;
  EXPECT_DOUBLE_EQ(budget_m.memory_held.with({"memory"}).value(), each);
  run(io, budgeted->close());
}

// A provider whose messages live in a broker keeps none here: no memory series at all.
TEST(InstrumentedProviderMemory, AProviderWithoutMemoryStatsAddsNoSeries) {
  boost::asio::io_context io;
  registry reg;
  runtime_metrics m{reg};
  auto opts = memory::options::for_testing();
  opts.queues = {"orders"};
  auto raw = memory::make_provider(opts, io.get_executor()).value();
  struct broker_like final : test::forwarding_provider {
    using forwarding_provider::forwarding_provider;
    std::optional<memory_stats> memory() const override { return std::nullopt; }
  };
  queue_client client(instrument(std::make_shared<broker_like>(raw), m));
  message msg;
  msg.body = "x";
  ASSERT_TRUE(run(io, client.send(queue_name::from("orders"), msg)));
  const auto text = reg.expose();
  EXPECT_EQ(text.find("queue_runtime_memory_held_bytes{"), std::string::npos) << text;
  run(io, raw->close());
}

// Past 64 queues, further queues share the series labelled queue="other" (ADR 0070). Their
// messages are settled against that series too: what is received and completed there leaves
// nothing in flight, and nothing is taken off the "unknown" series, which no queue owns.
TEST_F(InstrumentedProvider, QueuesPastTheSeriesLimitSettleAgainstTheirSharedSeries) {
  for (int i = 0; i < 64; ++i) {
    const auto q = queue_name::from("q" + std::to_string(i));
    ASSERT_TRUE(run(io, client->create_queue(q)));
    ASSERT_TRUE(run(io, client->stats(q)));  // takes one of the 64 series
  }
  const auto late = queue_name::from("late");
  ASSERT_TRUE(run(io, client->create_queue(late)));
  message msg;
  msg.body = "x";
  ASSERT_TRUE(run(io, client->send(late, msg)));
  auto got = run(io, client->receive(late, 1, 1s)).value();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_DOUBLE_EQ(m.in_flight.with({"other", "memory"}).value(), 1.0);
  ASSERT_TRUE(run(io, client->complete(got[0].receipt)));
  EXPECT_DOUBLE_EQ(m.in_flight.with({"other", "memory"}).value(), 0.0);
  EXPECT_DOUBLE_EQ(m.in_flight.with({"unknown", "memory"}).value(), 0.0);
  EXPECT_EQ(m.operations.with({"other", "memory", "complete"}).value(), 1u);
}

TEST_F(InstrumentedProvider, HealthReportsReachableProviderAndMissingQueue) {
  auto ok = run(io, check_health(client->underlying(), orders, 1s));
  EXPECT_TRUE(ok.healthy()) << ok.to_json();
  EXPECT_EQ(ok.provider, "memory");
  auto missing = run(io, check_health(client->underlying(), queue_name::from("nope"), 1s,
                                      [] { return breaker_state::closed; }));
  EXPECT_TRUE(missing.reachable);
  EXPECT_FALSE(missing.healthy());
  EXPECT_NE(missing.to_json().find("queue_not_found"), std::string::npos);
  auto open =
      run(io, check_health(client->underlying(), orders, 1s, [] { return breaker_state::open; }));
  EXPECT_FALSE(open.healthy()) << "an open breaker is unhealthy even when the provider answers";
}

// A provider's stats() that goes on after it is cancelled, as an HTTP call does until its own
// timeout: it ends only when `release` is cancelled (or after a minute, so that nothing hangs).
class stats_that_ignore_cancellation final : public test::forwarding_provider {
 public:
  stats_that_ignore_cancellation(provider_ptr inner, boost::asio::steady_timer& release,
                                 std::atomic<bool>& finished)
      : forwarding_provider(std::move(inner)), release_(release), finished_(finished) {}
  awaitable<result<queue_stats>> stats(const queue_name& q) override {
    release_.expires_after(60s);
    co_await release_.async_wait(boost::asio::bind_cancellation_slot(
        boost::asio::cancellation_slot(), boost::asio::as_tuple(boost::asio::use_awaitable)));
    finished_ = true;
    co_return co_await forwarding_provider::stats(q);
  }

 private:
  boost::asio::steady_timer& release_;
  std::atomic<bool>& finished_;
};

// The health check answers at its timeout even when the provider's call does not stop there:
// before, it waited for the call to end (an SQS call's whole request timeout), and /health
// answered late or not at all. The probe goes on detached and keeps the provider alive.
TEST_F(InstrumentedProvider, HealthAnswersAtItsTimeoutWhateverTheProviderDoes) {
  boost::asio::steady_timer release(io);
  std::atomic<bool> finished{false};
  auto slow = std::make_shared<stats_that_ignore_cancellation>(raw, release, finished);
  auto report = run(io, check_health(slow, orders, 50ms));
  EXPECT_FALSE(finished) << "the health check waited for the provider's call to end";
  EXPECT_FALSE(report.healthy());
  ASSERT_TRUE(report.problem);
  EXPECT_EQ(report.problem->code, errc::timeout);

  // The probe still holds the provider, and finishes once the call ends.
  std::weak_ptr<stats_that_ignore_cancellation> probed = slow;
  slow.reset();
  EXPECT_FALSE(probed.expired());
  release.cancel();
  io.restart();
  while (!probed.expired() && io.run_one() > 0) {
  }
  EXPECT_TRUE(finished);
  EXPECT_TRUE(probed.expired()) << "the detached probe kept the provider after it ended";
}

// The probe's error carries text from the service (an SQS message cut at 512 bytes can end inside
// a character; a broker's description may be Latin-1). /health serves this JSON to monitoring
// that parses it: bytes that are not UTF-8 become U+FFFD, and the rest is kept as it is.
TEST(HealthReport, JsonStaysValidWhenTheErrorIsNotUtf8) {
  health_report report;
  report.provider = "sqs";
  report.problem = fail(errc::provider_error, "caf\xc3\xa9 \xff broken \xe2\x82");
  const auto text = report.to_json();
  boost::system::error_code ec;
  const auto parsed = boost::json::parse(text, ec);
  ASSERT_FALSE(ec) << ec.message() << ": " << text;
  const std::string error(parsed.as_object().at("error").as_string());
  EXPECT_NE(error.find("caf\xc3\xa9 \xef\xbf\xbd broken \xef\xbf\xbd"), std::string::npos) << error;
  EXPECT_EQ(parsed.as_object().at("status").as_string(), "unhealthy");
}

TEST_F(InstrumentedProvider, TraceparentTravelsFromSendToTheHandler) {
  const auto ctx = tracing::trace_context::generate();
  message msg;
  msg.body = "traced";
  tracing::inject(msg, ctx);
  ASSERT_TRUE(run(io, client->send(orders, msg)));
  auto got = run(io, client->receive(orders, 1, 1s)).value();
  ASSERT_EQ(got.size(), 1u);
  auto extracted = tracing::extract(got[0]);
  ASSERT_TRUE(extracted);
  EXPECT_EQ(*extracted, ctx);
  EXPECT_EQ(extracted->child().trace_id, ctx.trace_id);
}

// Many threads send, receive and settle through one instrumented provider on a multi-threaded
// runtime, over two queues (so series are created and updated concurrently), while another
// thread renders the exposition: every count is exact at the end and nothing is left in flight.
TEST(InstrumentedProviderConcurrent, GaugesAndCountersStayExactUnderConcurrentUpdates) {
  constexpr int workers = 8;
  constexpr int per_worker = 300;
  registry reg;
  runtime_metrics m{reg};
  qrt::runtime rt{{.worker_threads = 4}};
  auto opts = memory::options::for_testing();
  opts.queues = {"orders", "billing"};
  auto raw = memory::make_provider(opts, rt.executor()).value();
  queue_client client(instrument(raw, m));
  const std::array<queue_name, 2> queues{queue_name::from("orders"), queue_name::from("billing")};

  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::thread reader([&] {
    while (!done.load()) {
      if (reg.expose().find("queue_runtime_in_flight_messages") == std::string::npos) {
        failures.fetch_add(1);
      }
    }
  });
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      const auto& q = queues[static_cast<std::size_t>(w % 2)];
      for (int i = 0; i < per_worker; ++i) {
        message msg;
        msg.body = std::to_string(w) + ":" + std::to_string(i);
        if (!rt.block_on(client.send(q, msg))) {
          failures.fetch_add(1);
          continue;
        }
        // Sends on this queue never trail its receives, so a message is always on its way.
        auto got = rt.block_on(client.receive(q, 1, 10s));
        if (!got || got->size() != 1) {
          failures.fetch_add(1);
          continue;
        }
        auto settled = (i % 10 == 9)
                           ? rt.block_on(client.dead_letter((*got)[0].receipt, "test", ""))
                           : rt.block_on(client.complete((*got)[0].receipt));
        if (!settled) failures.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  done = true;
  reader.join();
  rt.block_on(raw->close());

  EXPECT_EQ(failures.load(), 0);
  constexpr std::uint64_t per_queue = workers / 2 * per_worker;
  for (const auto& q : queues) {
    const std::vector<std::string> labels{q.str(), "memory"};
    EXPECT_EQ(m.messages_sent.with(labels).value(), per_queue) << q.str();
    EXPECT_EQ(m.messages_received.with(labels).value(), per_queue) << q.str();
    EXPECT_EQ(m.dead_lettered.with(labels).value(), per_queue / 10) << q.str();
    EXPECT_DOUBLE_EQ(m.in_flight.with(labels).value(), 0.0) << q.str() << ": in-flight gauge";
    EXPECT_EQ(m.operations.with({q.str(), "memory", "complete"}).value(),
              per_queue - per_queue / 10)
        << q.str();
    EXPECT_EQ(m.operation_duration.with({q.str(), "memory", "send"}).read().count, per_queue)
        << q.str();
  }
}

// A provider without network connections adds no connection series, and a decorator that is
// gone no longer takes part in exposition (its collector went with it: under ASan a collector
// left behind would read a destroyed provider).
TEST_F(InstrumentedProvider, ConnectionSeriesAppearOnlyForProvidersWithConnections) {
  ASSERT_TRUE(run(io, client->send(orders, message{.body = "x"})));
  const auto scrape = reg.expose();
  EXPECT_NE(scrape.find("# TYPE queue_runtime_connection_bytes_total counter"), std::string::npos);
  EXPECT_EQ(scrape.find("queue_runtime_connection_bytes_total{"), std::string::npos) << scrape;
  EXPECT_EQ(scrape.find("queue_runtime_connection_recovery_seconds_count{"), std::string::npos);

  client.reset();  // the only owner of the decorator
  EXPECT_FALSE(reg.expose().empty());
}

}  // namespace
}  // namespace qrt::metrics
