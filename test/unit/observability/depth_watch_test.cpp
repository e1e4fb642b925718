// depth_watch over the real embedded provider: the queue-depth gauge follows the queue without
// anyone calling stats(), a queue that cannot be read is reported and retried without stopping
// the others, and stop() waits for the reading in flight.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <optional>
#include <qrt/client.hpp>
#include <qrt/instrumented_provider.hpp>
#include <qrt/memory.hpp>
#include <string>
#include <vector>

#include "../support/forwarding_provider.hpp"

// Its own namespace: the test target is a unity build, and its other files have a run() and a
// fixture too.
namespace qrt::metrics::depth_watch_tests {
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

// Runs `io` one handler at a time until `done()` holds, at most `limit` handlers: a watch that
// never gets there fails the test instead of hanging it.
template <class Done>
bool run_until(boost::asio::io_context& io, Done done, int limit = 100'000) {
  io.restart();
  for (int i = 0; i < limit && !done(); ++i) {
    if (io.run_one() == 0) break;
  }
  return done();
}

// Whether `io` runs out of work within `limit` handlers: a watch still reading never lets it.
bool runs_dry(boost::asio::io_context& io, int limit = 1'000) {
  io.restart();
  for (int i = 0; i < limit; ++i) {
    if (io.run_one() == 0) break;
  }
  return io.stopped();
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

  gauge& active_depth() { return m.queue_depth.with({"orders", "memory", "active"}); }
  void send(std::size_t n) {
    std::vector<message> batch(n);
    for (auto& msg : batch) msg.body = "x";
    ASSERT_TRUE(run(io, client->send_batch(orders, std::move(batch))));
  }
};

using DepthWatch = fixture;

// Before, the depth gauge moved only when someone called stats(): a program that served
// /metrics showed a depth of 0 (or none) whatever its queue held, and the backlog alert
// never fired.
TEST_F(DepthWatch, KeepsTheDepthGaugeCurrentWithoutAnyoneCallingStats) {
  send(5);
  depth_watch watch(*client, {orders}, depth_watch_options{.interval = 1ms});
  watch.start(io.get_executor());
  ASSERT_TRUE(run_until(io, [&] { return active_depth().value() == 5.0; }))
      << "depth " << active_depth().value();
  EXPECT_NE(
      reg.expose().find(
          "queue_runtime_queue_depth{queue=\"orders\",provider=\"memory\",state=\"active\"} 5\n"),
      std::string::npos)
      << reg.expose();

  // It follows the queue: two messages taken and completed.
  auto got = run(io, client->receive(orders, 2, 1s)).value();
  ASSERT_EQ(got.size(), 2u);
  for (const auto& g : got) ASSERT_TRUE(run(io, client->complete(g.receipt)));
  ASSERT_TRUE(run_until(io, [&] { return active_depth().value() == 3.0; }))
      << "depth " << active_depth().value();

  run(io, watch.stop());
  EXPECT_GE(watch.stats().readings, 2u);
  EXPECT_EQ(watch.stats().failures, 0u);
}

// A queue that cannot be read (here: it does not exist) is reported, counted as a stats error,
// and read again later; the other queues of the watch go on being read, and stop() returns.
TEST_F(DepthWatch, ReportsAQueueItCannotReadAndKeepsWatchingTheRest) {
  send(2);
  const auto missing = queue_name::from("missing");
  std::vector<std::string> reported;
  depth_watch_options o;
  o.interval = 1ms;
  o.max_backoff = 4ms;
  o.on_error = [&](const queue_name& q, const error& e) {
    reported.push_back(q.str() + ": " + std::string(to_string(e.code)));
  };
  depth_watch watch(*client, {missing, orders}, o);
  watch.start(io.get_executor());
  ASSERT_TRUE(run_until(io, [&] { return watch.stats().failures >= 3; }))
      << "the watch stopped reading after a failure";
  EXPECT_EQ(active_depth().value(), 2.0) << "the readable queue was not read";
  EXPECT_GE(watch.stats().readings, 3u);
  ASSERT_FALSE(reported.empty());
  EXPECT_EQ(reported.front(), "missing: queue_not_found");
  EXPECT_GE(m.errors.with({"missing", "memory", "stats", "queue_not_found"}).value(), 3u);

  run(io, watch.stop());
  const auto failures = watch.stats().failures;
  EXPECT_TRUE(runs_dry(io)) << "the watch went on after stop()";
  EXPECT_EQ(watch.stats().failures, failures);
}

// A provider whose stats() takes until `release` is cancelled, as an HTTP call to a broker
// that does not answer does until its own timeout.
class slow_stats final : public test::forwarding_provider {
 public:
  slow_stats(provider_ptr inner, boost::asio::steady_timer& release)
      : forwarding_provider(std::move(inner)), release_(release) {}
  awaitable<result<queue_stats>> stats(const queue_name& q) override {
    ++calls;
    release_.expires_after(60s);
    co_await release_.async_wait(boost::asio::bind_cancellation_slot(
        boost::asio::cancellation_slot(), boost::asio::as_tuple(boost::asio::use_awaitable)));
    auto r = co_await forwarding_provider::stats(q);
    ++answered;
    co_return r;
  }
  std::atomic<int> calls{0};
  std::atomic<int> answered{0};

 private:
  boost::asio::steady_timer& release_;
};

// stop() returns only once the reading in flight has returned (the executor may be destroyed
// right after), and no reading starts after it.
TEST_F(DepthWatch, StopWaitsForTheReadingInFlight) {
  boost::asio::steady_timer release(io);
  auto slow = std::make_shared<slow_stats>(raw, release);
  depth_watch watch(queue_client(instrument(slow, m)), {orders},
                    depth_watch_options{.interval = 1ms});
  watch.start(io.get_executor());
  ASSERT_TRUE(run_until(io, [&] { return slow->calls == 1; }));

  auto stopped = boost::asio::co_spawn(io, watch.stop(), boost::asio::use_future);
  io.restart();
  io.poll();
  EXPECT_NE(stopped.wait_for(0s), std::future_status::ready)
      << "stop() returned while the provider was still answering";
  release.cancel();
  ASSERT_TRUE(run_until(io, [&] { return stopped.wait_for(0s) == std::future_status::ready; }));
  stopped.get();
  EXPECT_EQ(slow->answered, 1);
  EXPECT_EQ(slow->calls, 1) << "a reading started after stop()";
}

// A watch destroyed without stop() ends: nothing is left on the io_context.
TEST_F(DepthWatch, EndsWhenDestroyedWithoutStop) {
  {
    depth_watch watch(*client, {orders}, depth_watch_options{.interval = 1ms});
    watch.start(io.get_executor());
    ASSERT_TRUE(run_until(io, [&] { return watch.stats().readings >= 2; }));
  }
  EXPECT_TRUE(runs_dry(io)) << "the watch kept reading after it was destroyed";
}

// stop() lets the executor be destroyed: a watch that outlives it (stopped, then its
// io_context destroyed, then the watch) touches nothing of it. Its strand and timers belonged to
// that io_context's services: destroyed after them, they wrote into freed memory (ASan).
TEST_F(DepthWatch, DestroyedAfterItsStoppedExecutorItTouchesNothingOfIt) {
  send(2);
  std::optional<depth_watch> watch;
  watch.emplace(*client, std::vector<queue_name>{orders}, depth_watch_options{.interval = 1ms});
  {
    boost::asio::io_context own;
    watch->start(own.get_executor());
    ASSERT_TRUE(run_until(own, [&] { return watch->stats().readings >= 1; }));
    run(own, watch->stop());
    run(own, watch->stop());  // a second stop() returns too
  }
  watch.reset();
  EXPECT_EQ(active_depth().value(), 2.0);
}

TEST_F(DepthWatch, RefusesNoQueuesAndAnIntervalUnderAMillisecond) {
  try {
    depth_watch none(*client, {});
    FAIL() << "a watch of no queues was accepted";
  } catch (const qrt::exception& e) {
    EXPECT_EQ(e.get().code, errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("at least one queue"), std::string::npos) << e.what();
  }
  try {
    depth_watch tight(*client, {orders}, depth_watch_options{.interval = 0ms});
    FAIL() << "an interval of 0 was accepted";
  } catch (const qrt::exception& e) {
    EXPECT_EQ(e.get().code, errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("interval"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qrt::metrics::depth_watch_tests
