// qrt::processor against the real embedded provider. Each test names the item of
// docs/contract.md (P1-P6) it checks. Locks are short (250-300 ms) so lock expiry happens quickly.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <qrt/fault_injection.hpp>
#include <qrt/memory.hpp>
#include <qrt/processor.hpp>
#include <qrt/runtime.hpp>
#include <qrt/session_processor.hpp>
#include <set>
#include <stdexcept>

#include "../support/calls_in_flight.hpp"
#include "../support/empty_handler.hpp"
#include "../support/forwarding_provider.hpp"
#include "../support/run.hpp"
#include "../support/wait.hpp"

using namespace std::chrono_literals;
using qrt::errc;
using qrt::received_message;

namespace {

// `prefix + std::to_string(i)`. Not written with operator+(const char*, std::string&&): GCC 12
// at -O3 inlines its insert-at-the-front and reports a false -Wrestrict (an "overlapping"
// memcpy of 2^63 bytes); appending to the prefix does the same without it.
std::string numbered(std::string prefix, int i) {
  prefix += std::to_string(i);
  return prefix;
}

qrt::awaitable<void> work_for(qrt::milliseconds d) {
  boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, d);
  co_await t.async_wait(boost::asio::use_awaitable);
}

struct fixture {
  qrt::runtime rt{{.worker_threads = 8}};
  qrt::provider_ptr memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client{memory};
  qrt::queue_name q = qrt::queue_name::from("work");

  explicit fixture(qrt::queue_options o = {}) {
    EXPECT_TRUE(rt.block_on(client.create_queue(q, o)));
  }

  void send(const std::string& body) {
    ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = body})));
  }
  void send_numbered(int n) {
    for (int i = 0; i < n; ++i) send(numbered("m", i));
  }
  qrt::queue_stats stats() { return rt.block_on(client.stats(q)).value(); }
  // Receives and completes everything left; returns the bodies.
  std::multiset<std::string> drain(const qrt::queue_name& from) {
    std::multiset<std::string> out;
    for (;;) {
      auto got = rt.block_on(client.receive(from, 100, 0ms)).value();
      if (got.empty()) return out;
      for (auto& m : got) {
        out.insert(m.body);
        EXPECT_TRUE(rt.block_on(client.complete(m.receipt)));
      }
    }
  }
};

}  // namespace

// Hands out every message with a lock that ended before the clock's first time point: what a
// Service Bus lock annotation from before 1677 decodes to (saturated there). A lock that far in
// the past is a lock that is gone; before, the processor computed `locked_until - now`, which
// overflows there.
class locks_from_before_the_clock final : public qrt::test::forwarding_provider {
 public:
  using forwarding_provider::forwarding_provider;
  qrt::awaitable<qrt::result<std::vector<received_message>>> receive(
      const qrt::queue_name& q, std::size_t max, qrt::milliseconds wait) override {
    auto got = co_await forwarding_provider::receive(q, max, wait);
    if (got) {
      for (auto& m : *got) m.locked_until = qrt::time_point::min();
    }
    co_return got;
  }
};

TEST(Processor, ALockThatEndedBeforeTheClockBeganIsRenewedBeforeTheHandler) {
  qrt::runtime rt{{.worker_threads = 2}};
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(std::make_shared<locks_from_before_the_clock>(memory));
  const auto q = qrt::queue_name::from("work");
  ASSERT_TRUE(rt.block_on(client.create_queue(q, {.lock_duration = 60s})));
  ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = "only"})));
  qrt::test::counter calls;
  qrt::processor p(client, q,
                   [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                     calls.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 1, .receive_wait = 50ms});
  p.start(rt.executor());
  ASSERT_TRUE(calls.wait_for_at_least(1, 20s));
  rt.block_on(p.stop(5s));
  EXPECT_EQ(p.stats().completed, 1u);
  auto s = rt.block_on(client.stats(q)).value();
  EXPECT_EQ(s.active + s.in_flight, 0);
}

// An empty handler could only fail every message, so the processor refuses it when it is
// built, naming the problem, and the queue's messages are left untouched (never delivered).
TEST(Processor, AnEmptyHandlerIsRefusedBeforeAMessageIsTaken) {
  fixture f;
  f.send("waiting");
  qrt::test::expect_empty_handler_refused(
      [&] { qrt::processor p(f.client, f.q, qrt::message_handler{}); });
  auto left = f.rt.block_on(f.client.receive(f.q, 10, 0ms)).value();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].delivery_count, 1u);  // its first delivery: the processor never took it
}

// Contract P3, C19: after max_delivery_count deliveries a message goes to the DLQ. A failing
// handler abandons (redelivery), then dead-letters with its error kept, and the good messages
// around it are completed.
TEST(Processor, HandlerFailuresRedeliverThenDeadLetterAtMaxDeliveries) {
  fixture f({.lock_duration = 5s, .max_delivery_count = 50});
  for (int i = 0; i < 5; ++i) f.send(numbered("ok", i));
  f.send("poison");

  std::mutex m;
  std::vector<std::uint32_t> poison_deliveries;
  qrt::test::counter ok, poison;
  qrt::processor p(f.client, f.q,
                   [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                     if (msg.body == "poison") {
                       {
                         std::lock_guard lock(m);
                         poison_deliveries.push_back(msg.delivery_count);
                       }
                       poison.add();
                       co_return qrt::fail(errc::timeout, "downstream unavailable");
                     }
                     ok.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 2, .receive_wait = 50ms, .max_delivery_count = 3});
  p.start(f.rt.executor());
  ASSERT_TRUE(ok.wait_for_at_least(5));
  ASSERT_TRUE(poison.wait_for_at_least(3));
  f.rt.block_on(p.stop(5s));

  EXPECT_EQ(poison_deliveries, (std::vector<std::uint32_t>{1, 2, 3}));
  auto dlq = f.rt.block_on(f.client.receive(f.q.dead_letter(), 10, 0ms)).value();
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].body, "poison");
  ASSERT_TRUE(dlq[0].dead_letter);
  EXPECT_EQ(dlq[0].dead_letter->reason, "MaxDeliveryCountExceeded");
  EXPECT_NE(dlq[0].dead_letter->description.find("downstream unavailable"), std::string::npos);
  auto s = p.stats();
  EXPECT_EQ(s.completed, 5u);
  EXPECT_EQ(s.abandoned, 2u);
  EXPECT_EQ(s.dead_lettered, 1u);
  EXPECT_EQ(f.stats().active, 0);
  EXPECT_EQ(f.stats().in_flight, 0);
}

// A complete that fails while the lock is still held is followed by an abandon: the message comes
// back at once instead of when its 60 s lock runs out (on AMQP brokers a delivery stays locked
// while its link lives, so without the abandon it would be held until the link closed).
TEST(Processor, AFailedCompleteGivesTheMessageBackAtOnce) {
  qrt::runtime rt{{.worker_threads = 4}};
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto faulty = qrt::make_fault_injecting_provider(memory);
  qrt::client_options no_retries;
  no_retries.retry = std::nullopt;
  qrt::queue_client client(faulty, no_retries);
  const auto q = qrt::queue_name::from("work");
  ASSERT_TRUE(rt.block_on(client.create_queue(q, {.lock_duration = 60s})));
  ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = "only"})));
  faulty->fail_next(qrt::fault_ops::settle, 1, qrt::fail(errc::connection_failed, "reset"));

  std::mutex m;
  std::vector<std::uint32_t> deliveries;
  qrt::test::counter calls;
  qrt::processor p(client, q,
                   [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                     {
                       std::lock_guard lock(m);
                       deliveries.push_back(msg.delivery_count);
                     }
                     calls.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 1, .receive_wait = 50ms});
  p.start(rt.executor());
  // Well inside the 60 s lock: only the abandon can have brought it back this soon.
  ASSERT_TRUE(calls.wait_for_at_least(2, 20s))
      << "the message stayed locked after the failed complete";
  rt.block_on(p.stop(5s));
  auto s = p.stats();
  EXPECT_EQ(s.settle_failures, 1u);
  EXPECT_EQ(s.abandoned, 1u);
  EXPECT_EQ(s.completed, 1u);
  std::lock_guard lock(m);
  EXPECT_EQ(deliveries, (std::vector<std::uint32_t>{1, 2}));
}

// Carries out its first settlement, then reports it unconfirmed: a broker that applied it and
// whose answer was lost with the link.
class applies_then_unconfirmed final : public qrt::test::forwarding_provider {
 public:
  using forwarding_provider::forwarding_provider;
  qrt::awaitable<std::vector<qrt::result<void>>> settle(
      std::vector<qrt::settlement> settlements) override {
    auto results = co_await inner_->settle(settlements);
    if (first_.exchange(false)) {
      for (auto& r : results) {
        r = qrt::fail(errc::unconfirmed, "the link ended before the broker confirmed it");
      }
    }
    co_return results;
  }

 private:
  std::atomic<bool> first_{true};
};

// P3: a complete whose outcome never came back, retried by the client and then refused for its
// receipt (the first attempt was applied), is a settlement of unknown outcome: reported as
// unconfirmed, counted as a failed settlement, never as a handler failure, and nothing is
// dead-lettered. The message was completed, so it does not come back.
TEST(Processor, ACompleteLeftUnconfirmedIsASettleFailureNeverAHandlerFailure) {
  qrt::runtime rt{{.worker_threads = 4}};
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto cut = std::make_shared<applies_then_unconfirmed>(memory);
  qrt::client_options retrying;
  retrying.retry = qrt::retry_policy::fixed_interval(1ms);
  qrt::queue_client client(cut, retrying);
  const auto q = qrt::queue_name::from("work");
  ASSERT_TRUE(rt.block_on(client.create_queue(q, {.lock_duration = 60s})));
  ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = "only"})));

  std::mutex m;
  std::vector<qrt::error> reported;
  qrt::test::counter errors;
  qrt::processor_options o;
  o.max_concurrent_calls = 1;
  o.receive_wait = 50ms;
  o.on_error = [&](const qrt::error& e) {
    {
      std::lock_guard lock(m);
      reported.push_back(e);
    }
    errors.add();
  };
  qrt::processor p(
      client, q,
      [](const received_message&) -> qrt::awaitable<qrt::result<void>> {
        co_return qrt::result<void>{};
      },
      o);
  p.start(rt.executor());
  ASSERT_TRUE(errors.wait_for_at_least(1, 20s)) << "the unconfirmed complete was not reported";
  rt.block_on(p.stop(5s));
  auto s = p.stats();
  EXPECT_EQ(s.handler_calls, 1u);
  EXPECT_EQ(s.handler_failures, 0u);
  EXPECT_EQ(s.settle_failures, 1u);
  EXPECT_EQ(s.completed, 0u) << "a complete of unknown outcome was counted done";
  EXPECT_EQ(s.dead_lettered, 0u);
  {
    std::lock_guard lock(m);
    ASSERT_FALSE(reported.empty());
    EXPECT_EQ(reported.front().code, errc::unconfirmed) << reported.front().to_string();
  }
  auto stats = rt.block_on(client.stats(q));
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->active + stats->in_flight + stats->dead_lettered, 0)
      << "the first attempt completed the message";
}

TEST(Processor, PermanentHandlerErrorDeadLettersAtOnce) {
  fixture f({.lock_duration = 5s});
  f.send("malformed");
  qrt::test::counter calls;
  qrt::processor p(f.client, f.q,
                   [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                     calls.add();
                     co_return qrt::fail(errc::invalid_argument, "cannot parse order");
                   },
                   {.receive_wait = 50ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(calls.wait_for_at_least(1));
  f.rt.block_on(p.stop(5s));
  EXPECT_EQ(calls.value(), 1);
  auto dlq = f.rt.block_on(f.client.receive(f.q.dead_letter(), 10, 0ms)).value();
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].dead_letter->reason, "HandlerFailedPermanently");
}

// Contract P1: concurrency is bounded, not spawned and hoped for. The handler itself measures how
// many run at once: never more than the limit, and the limit is reached (the processor really runs
// in parallel).
TEST(Processor, ConcurrencyLimitIsNeverExceeded) {
  fixture f({.lock_duration = 30s});
  f.send_numbered(40);
  constexpr int limit = 4;
  std::atomic<int> running{0}, most{0};
  std::mutex m;
  std::condition_variable all_in;
  bool gate_open = false;
  qrt::test::counter done;
  qrt::processor p(f.client, f.q,
                   [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                     const int now = ++running;
                     int seen = most.load();
                     while (now > seen && !most.compare_exchange_weak(seen, now)) {
                     }
                     {
                       // The first `limit` handlers block their threads until all of them are in at
                       // once.
                       std::unique_lock lock(m);
                       if (now == limit) gate_open = true;
                       all_in.notify_all();
                       all_in.wait_for(lock, 10s, [&] { return gate_open; });
                     }
                     co_await work_for(1ms);
                     --running;
                     done.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = limit, .prefetch_count = 10, .receive_wait = 50ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(done.wait_for_at_least(40));
  f.rt.block_on(p.stop(5s));
  EXPECT_EQ(most.load(), limit);
  EXPECT_TRUE(gate_open) << "the limit was never reached: handlers did not run in parallel";
  EXPECT_LE(p.stats().max_in_flight, static_cast<std::size_t>(limit));
  EXPECT_EQ(p.stats().completed, 40u);
  EXPECT_EQ(f.stats().active, 0);
}

// Contract P2: a handler that runs long does not lose its lock. The handler runs 3x the lock
// duration; with a second free slot, an expired lock would hand the message to the processor again.
TEST(Processor, HandlerRunningThreeTimesTheLockDurationIsNotRedelivered) {
  // A lock long enough that renewals every third of it land in time on a loaded 2-core
  // machine under TSan; the handler still outlives it three times.
  fixture f({.lock_duration = 1s});
  f.send("slow");
  qrt::test::counter calls, finished;
  qrt::processor p(f.client, f.q,
                   [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                     calls.add();
                     co_await work_for(3s);
                     finished.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 2, .receive_wait = 50ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(finished.wait_for_at_least(1));
  f.rt.block_on(p.stop(5s));
  EXPECT_EQ(calls.value(), 1) << "the message was redelivered while its handler ran";
  auto s = p.stats();
  EXPECT_EQ(s.completed, 1u);
  EXPECT_GE(s.lock_renewals, 2u);
  EXPECT_EQ(s.locks_lost, 0u);
  EXPECT_EQ(s.settle_failures, 0u);
  EXPECT_EQ(f.stats().active, 0);
  EXPECT_EQ(f.stats().dead_lettered, 0);
}

// Contract P2: prefetched messages whose locks would expire in the buffer are not handed over. One
// slot, a first handler that outlives every prefetched lock: no handler may see a dead lock, every
// completion must succeed, and every message is handled exactly once.
TEST(Processor, PrefetchedMessageWhoseLockWouldExpireIsNotHandedToAHandler) {
  fixture f({.lock_duration = 300ms, .max_delivery_count = 50});
  f.send_numbered(6);
  std::mutex m;
  std::map<std::string, int> handled;
  std::atomic<int> dead_lock_seen{0};
  qrt::test::counter calls;
  qrt::processor p(f.client, f.q,
                   [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                     if (msg.locked_until <= qrt::clock::now()) ++dead_lock_seen;
                     {
                       std::lock_guard lock(m);
                       ++handled[msg.body];
                     }
                     if (msg.body == "m0") co_await work_for(700ms);
                     calls.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 1, .prefetch_count = 10, .receive_wait = 50ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(calls.wait_for_at_least(6));
  f.rt.block_on(p.stop(5s));
  EXPECT_EQ(dead_lock_seen.load(), 0);
  auto s = p.stats();
  EXPECT_EQ(s.settle_failures, 0u) << "a handler ran on a message whose lock had expired";
  EXPECT_EQ(s.completed, 6u);
  EXPECT_GE(s.released_unstarted + s.lock_renewals, 1u) << "the scenario did not happen";
  std::lock_guard lock(m);
  EXPECT_EQ(handled.size(), 6u);
  for (auto& [body, n] : handled) EXPECT_EQ(n, 1) << body;
  EXPECT_EQ(f.stats().active, 0);
}

// Contract P4: shutdown neither drops nor dead-letters in-flight work and holds no locks
// afterwards: stop under load; every message is either completed or back in the queue.
TEST(Processor, ShutdownUnderLoadLosesNothingAndDeadLettersNothing) {
  fixture f({.lock_duration = 30s});
  constexpr int total = 200;
  f.send_numbered(total);
  std::mutex m;
  std::set<std::string> handled;
  qrt::test::counter calls;
  qrt::processor p(f.client, f.q,
                   [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                     co_await work_for(2ms);
                     {
                       std::lock_guard lock(m);
                       EXPECT_TRUE(handled.insert(msg.body).second) << "handled twice";
                     }
                     calls.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 8, .prefetch_count = 20, .receive_wait = 50ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(calls.wait_for_at_least(50));
  auto report = f.rt.block_on(p.stop(5s));
  EXPECT_EQ(report.abandoned_running, 0u) << "2 ms handlers finish within the deadline";

  auto s = p.stats();
  EXPECT_EQ(s.dead_lettered, 0u);
  EXPECT_EQ(f.stats().dead_lettered, 0);
  EXPECT_EQ(f.stats().in_flight, 0) << "a stopped processor holds no locks";
  std::lock_guard lock(m);
  EXPECT_EQ(s.completed, handled.size());
  auto rest = f.drain(f.q);
  std::set<std::string> all(handled.begin(), handled.end());
  for (auto& b : rest) EXPECT_TRUE(all.insert(b).second) << b << " completed and still queued";
  EXPECT_EQ(all.size(), static_cast<std::size_t>(total));
}

TEST(Processor, ShutdownDeadlineAbandonsRunningHandlersAndNeverDeadLetters) {
  fixture f({.lock_duration = 30s});
  f.send_numbered(10);
  qrt::test::counter started, finished;
  qrt::processor p(f.client, f.q,
                   [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                     started.add();
                     co_await work_for(1500ms);
                     finished.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 3, .prefetch_count = 5, .receive_wait = 50ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(started.wait_for_at_least(3));
  auto report = f.rt.block_on(p.stop(100ms));
  EXPECT_EQ(report.abandoned_running, 3u);
  EXPECT_EQ(f.stats().in_flight, 0);
  EXPECT_EQ(f.stats().active, 10) << "every message is back in the queue";
  EXPECT_EQ(f.stats().dead_lettered, 0);
  // The abandoned handlers still finish; their success must not complete a released message.
  ASSERT_TRUE(finished.wait_for_at_least(3));
  EXPECT_EQ(p.stats().completed, 0u);
  EXPECT_EQ(f.drain(f.q).size(), 10u);
}

// Contract P4: once stop() returns, none of the processor's own calls is still inside the
// provider, so the executor it ran on may be destroyed at once. Here the provider lives on
// another runtime, as a synchronous client's or a network provider's connection does: a
// receive that returned after stop() would resume on the destroyed runtime (ASan reports it as
// a use after free when the provider's wait ends).
TEST(Processor, StopReturnsOnlyOnceItsCallsInsideTheProviderHaveReturned) {
  qrt::test::counted_provider_elsewhere provider;
  auto& client = provider.client;
  auto& provider_rt = provider.rt;
  const auto q = qrt::queue_name::from("empty");
  ASSERT_TRUE(provider_rt.block_on(client.create_queue(q, {})));
  {
    qrt::runtime rt{{.worker_threads = 2}};
    qrt::processor p(client, q,
                     [](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                       co_return qrt::result<void>{};
                     },
                     {.receive_wait = 1500ms});
    p.start(rt.executor());
    ASSERT_TRUE(provider.calls->started.wait_for_at_least(1));
    rt.block_on(p.stop(10ms));
    EXPECT_EQ(provider.calls->in_flight(), 0)
        << "stop() returned with a receive inside the provider";
  }
  // The provider goes on serving other callers.
  ASSERT_TRUE(provider_rt.block_on(client.send(q, qrt::message{.body = "after"})));
  auto got = provider_rt.block_on(client.receive(q, 1, 1s));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->front().body, "after");
}

// The same promise, read the other way round: the executor is destroyed after stop() and
// before the processor, with a handler still running (it finishes unobserved, or here never).
// The processor's destructor must then leave the executor alone: a post to it, or its strand
// and timers destroyed after the io_context, would write into it (ASan: a use after free).
TEST(Processor, DestroyedAfterItsStoppedExecutorItTouchesNothingOfIt) {
  qrt::test::counted_provider_elsewhere provider;
  const auto q = qrt::queue_name::from("work");
  ASSERT_TRUE(provider.rt.block_on(provider.client.create_queue(q, {.lock_duration = 30s})));
  ASSERT_TRUE(provider.rt.block_on(provider.client.send(q, qrt::message{.body = "slow"})));
  qrt::test::counter started;
  std::optional<qrt::processor> p;
  qrt::shutdown_report first;
  {
    qrt::runtime rt{{.worker_threads = 1}};
    p.emplace(
        provider.client, q,
        [&started](const received_message&) -> qrt::awaitable<qrt::result<void>> {
          started.add();
          boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 30s);
          boost::system::error_code ignored;
          co_await t.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ignored));
          co_return qrt::result<void>{};
        },
        qrt::processor_options{.max_concurrent_calls = 1, .receive_wait = 50ms});
    p->start(rt.executor());
    ASSERT_TRUE(started.wait_for_at_least(1));
    first = rt.block_on(p->stop(10ms));
    EXPECT_EQ(first.abandoned_running, 1u);
  }
  // A later stop() has the first one's report, and nothing of the executor to go to.
  const auto again = provider.rt.block_on(p->stop(10ms));
  EXPECT_EQ(again.abandoned_running, first.abandoned_running);
  EXPECT_EQ(again.finished_in_time, first.finished_in_time);
  p.reset();
  EXPECT_EQ(provider.calls->in_flight(), 0);
}

// Contract P6: redelivery loops do not hammer a failing dependency. Once the breaker opens, no
// handler runs (and nothing is received) until its open duration has passed; a good probe closes
// it.
TEST(Processor, OpenCircuitBreakerStopsHandlingUntilAProbeSucceeds) {
  fixture f({.lock_duration = 30s, .max_delivery_count = 100});
  f.send_numbered(10);
  qrt::test::counter opened, failures, completed;
  std::atomic<bool> dependency_up{false};
  std::atomic<int> calls_while_open{0};
  auto breaker = std::make_shared<qrt::circuit_breaker>(qrt::circuit_breaker_options{
      .failure_threshold = 3, .open_duration = 500ms, .on_state_change = [&](auto, auto to) {
        if (to == qrt::breaker_state::open) opened.add();
      }});
  qrt::processor p(f.client, f.q,
                   [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                     if (breaker->state() == qrt::breaker_state::open) ++calls_while_open;
                     if (!dependency_up) {
                       failures.add();
                       co_return qrt::fail(errc::connection_failed, "payment service down");
                     }
                     completed.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 1, .receive_wait = 50ms, .breaker = breaker});
  p.start(f.rt.executor());
  ASSERT_TRUE(opened.wait_for_at_least(1));
  const auto failures_when_opened = failures.value();
  dependency_up = true;
  ASSERT_TRUE(completed.wait_for_at_least(10));
  f.rt.block_on(p.stop(5s));
  EXPECT_EQ(failures_when_opened, 3);
  EXPECT_EQ(calls_while_open.load(), 0) << "a handler ran while the breaker was open";
  EXPECT_EQ(breaker->state(), qrt::breaker_state::closed);
  EXPECT_EQ(p.stats().completed, 10u);
  EXPECT_EQ(f.stats().active, 0);
}

// The breaker's state-change callback is user code the processor runs on its own strand (when
// a handler's outcome opens or closes the breaker). If it throws, the processor must go on: the
// handler's slot comes back, the message is settled, and the breaker still changes state.
TEST(Processor, ThrowingBreakerCallbackDoesNotStallTheProcessor) {
  fixture f({.lock_duration = 30s});
  f.send_numbered(3);
  qrt::test::counter state_changes, completed;
  std::atomic<bool> failed_once{false};
  auto breaker = std::make_shared<qrt::circuit_breaker>(qrt::circuit_breaker_options{
      .failure_threshold = 1, .open_duration = 20ms, .on_state_change = [&](auto, auto) {
        state_changes.add();
        throw 13;
      }});
  qrt::processor p(f.client, f.q,
                   [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                     if (!failed_once.exchange(true)) {
                       co_return qrt::fail(errc::connection_failed, "payment service down");
                     }
                     completed.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 1, .receive_wait = 50ms, .breaker = breaker});
  p.start(f.rt.executor());
  ASSERT_TRUE(completed.wait_for_at_least(3)) << "the processor stalled after the callback threw";
  f.rt.block_on(p.stop(5s));
  EXPECT_EQ(state_changes.value(), 3);  // closed -> open -> half_open -> closed
  EXPECT_EQ(breaker->state(), qrt::breaker_state::closed);
  EXPECT_EQ(p.stats().abandoned, 1u);
  EXPECT_EQ(p.stats().completed, 3u);
  EXPECT_EQ(p.stats().in_flight, 0u);
  EXPECT_EQ(f.stats().active, 0);
}

// One configuration for the client and its processor: the provider's preset and processing keys
// give the processor's options, and worker_threads (which every provider accepts) the runtime's.
TEST(Processor, OptionsComeFromTheProvidersConfiguration) {
  auto fast = qrt::processor_options::from_config(
      qrt::config{{"provider", "servicebus"}, {"preset", "high_throughput"}});
  ASSERT_TRUE(fast) << fast.error().to_string();
  EXPECT_EQ(fast->max_concurrent_calls, 32u);
  EXPECT_EQ(fast->prefetch_count, 50u);
  EXPECT_EQ(fast->max_auto_lock_renewal_duration, std::chrono::minutes(10));

  auto tuned = qrt::processor_options::from_config(qrt::config{
      {"provider", "servicebus"}, {"preset", "low_latency"}, {"max_concurrent_calls", "6"}});
  ASSERT_TRUE(tuned) << tuned.error().to_string();
  EXPECT_EQ(tuned->max_concurrent_calls, 6u);
  EXPECT_EQ(tuned->prefetch_count, 1u);
  EXPECT_EQ(tuned->max_auto_lock_renewal_duration, std::chrono::minutes(1));

  auto plain = qrt::processor_options::from_config(qrt::config{{"provider", "memory"}});
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->max_concurrent_calls, qrt::processor_options{}.max_concurrent_calls);

  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"max_concurrent_calls", "lots"},
           {"max_concurrent_calls", "0"},
           {"prefetch_count", "-1"},
           {"max_auto_lock_renewal_duration", "forever"}}) {
    auto bad = qrt::processor_options::from_config(qrt::config{{key, value}});
    ASSERT_FALSE(bad) << key << "=" << value;
    EXPECT_EQ(bad.error().code, errc::configuration_error);
    EXPECT_NE(bad.error().message.find(key), std::string::npos) << bad.error().message;
  }

  auto threads = qrt::runtime_configuration::from_config(
      qrt::config{{"provider", "sqs"}, {"worker_threads", "3"}});
  ASSERT_TRUE(threads) << threads.error().to_string();
  EXPECT_EQ(threads->worker_threads, 3u);
  auto no_threads = qrt::runtime_configuration::from_config(qrt::config{{"worker_threads", "0"}});
  ASSERT_FALSE(no_threads);
  EXPECT_NE(no_threads.error().message.find("worker_threads"), std::string::npos);
}

TEST(Processor, PresetsHaveTheirDocumentedValues) {
  auto high = qrt::processor_options::for_high_throughput();
  EXPECT_EQ(high.max_concurrent_calls, 32u);
  EXPECT_EQ(high.prefetch_count, 50u);
  EXPECT_EQ(high.max_auto_lock_renewal_duration, 10min);
  EXPECT_EQ(high.retry.kind, qrt::retry_policy::backoff::exponential);
  EXPECT_EQ(high.retry.initial_delay, 100ms);
  EXPECT_EQ(high.retry.max_delay, 30s);
  EXPECT_EQ(high.retry.multiplier, 3.0);
  auto low = qrt::processor_options::for_low_latency();
  EXPECT_EQ(low.max_concurrent_calls, 4u);
  EXPECT_EQ(low.prefetch_count, 1u);
  EXPECT_EQ(low.max_auto_lock_renewal_duration, 1min);
  EXPECT_EQ(low.retry.kind, qrt::retry_policy::backoff::fixed);
  EXPECT_EQ(low.retry.initial_delay, 50ms);
}

// The session processor's presets against the plain processor's: more sessions, bigger batches
// and the longer renewal for throughput; fewer sessions and a 1 min renewal for latency; the
// same back-offs. Neither turns on per_batch settlement (it changes what is delivered again).
TEST(SessionProcessor, PresetsHaveTheirDocumentedValues) {
  const qrt::session_processor_options defaults;
  auto high = qrt::session_processor_options::for_high_throughput();
  EXPECT_EQ(high.max_concurrent_sessions, 32u);
  EXPECT_EQ(high.max_messages_per_receive, 50u);
  EXPECT_EQ(high.max_auto_lock_renewal_duration, 10min);
  EXPECT_EQ(high.retry.kind, qrt::retry_policy::backoff::exponential);
  EXPECT_EQ(high.retry.initial_delay, 100ms);
  EXPECT_EQ(high.retry.max_delay, 30s);
  EXPECT_EQ(high.retry.multiplier, 3.0);
  EXPECT_EQ(high.settle, qrt::batch_settlement::per_message);
  EXPECT_GT(high.max_concurrent_sessions, defaults.max_concurrent_sessions);
  EXPECT_GT(high.max_messages_per_receive, defaults.max_messages_per_receive);
  auto low = qrt::session_processor_options::for_low_latency();
  EXPECT_EQ(low.max_concurrent_sessions, 4u);
  EXPECT_EQ(low.max_messages_per_receive, defaults.max_messages_per_receive);
  EXPECT_EQ(low.max_auto_lock_renewal_duration, 1min);
  EXPECT_EQ(low.retry.kind, qrt::retry_policy::backoff::fixed);
  EXPECT_EQ(low.retry.initial_delay, 50ms);
  EXPECT_EQ(low.settle, qrt::batch_settlement::per_message);
  EXPECT_LT(low.max_concurrent_sessions, defaults.max_concurrent_sessions);
}

// One configuration for the client and its session processor: the preset and the lock renewal
// key give the options; the plain processor's handler and read-ahead keys do not size sessions.
TEST(SessionProcessor, OptionsComeFromTheProvidersConfiguration) {
  auto fast = qrt::session_processor_options::from_config(
      qrt::config{{"provider", "servicebus"}, {"preset", "high_throughput"}});
  ASSERT_TRUE(fast) << fast.error().to_string();
  EXPECT_EQ(fast->max_concurrent_sessions, 32u);
  EXPECT_EQ(fast->max_messages_per_receive, 50u);
  EXPECT_EQ(fast->max_auto_lock_renewal_duration, 10min);

  auto tuned = qrt::session_processor_options::from_config(
      qrt::config{{"provider", "servicebus"},
                  {"preset", "low_latency"},
                  {"max_auto_lock_renewal_duration", "90s"},
                  {"max_concurrent_calls", "2"},
                  {"prefetch_count", "0"}});
  ASSERT_TRUE(tuned) << tuned.error().to_string();
  EXPECT_EQ(tuned->max_concurrent_sessions, 4u);
  EXPECT_EQ(tuned->max_auto_lock_renewal_duration, 90s);
  EXPECT_EQ(tuned->max_messages_per_receive,
            qrt::session_processor_options{}.max_messages_per_receive);

  auto plain = qrt::session_processor_options::from_config(
      qrt::config{{"provider", "sqs"}, {"preset", "cost_optimization"}});
  ASSERT_TRUE(plain) << plain.error().to_string();
  EXPECT_EQ(plain->max_concurrent_sessions,
            qrt::session_processor_options{}.max_concurrent_sessions);

  auto bad = qrt::session_processor_options::from_config(
      qrt::config{{"max_auto_lock_renewal_duration", "forever"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, errc::configuration_error);
  EXPECT_NE(bad.error().message.find("max_auto_lock_renewal_duration"), std::string::npos)
      << bad.error().message;
}

// The session settings come from the configuration too, each over the preset's; a malformed or
// out-of-range value is refused naming the key, and check_processing_keys() (what every provider
// checks) refuses it the same way.
TEST(SessionProcessor, SessionSettingsComeFromTheConfiguration) {
  const qrt::session_processor_options defaults;
  auto sessions = qrt::session_processor_options::from_config(
      qrt::config{{"preset", "high_throughput"}, {"max_concurrent_sessions", "5"}});
  ASSERT_TRUE(sessions) << sessions.error().to_string();
  EXPECT_EQ(sessions->max_concurrent_sessions, 5u);
  EXPECT_EQ(sessions->max_messages_per_receive, 50u);  // the rest of the preset stays

  auto idle =
      qrt::session_processor_options::from_config(qrt::config{{"session_idle_timeout", "250ms"}});
  ASSERT_TRUE(idle) << idle.error().to_string();
  EXPECT_EQ(idle->session_idle_timeout, 250ms);
  EXPECT_EQ(idle->max_concurrent_sessions, defaults.max_concurrent_sessions);

  auto hold = qrt::session_processor_options::from_config(qrt::config{{"max_session_hold", "2m"}});
  ASSERT_TRUE(hold) << hold.error().to_string();
  EXPECT_EQ(hold->max_session_hold, 2min);
  EXPECT_EQ(hold->session_idle_timeout, defaults.session_idle_timeout);

  EXPECT_EQ(
      qrt::session_processor_options::from_config(qrt::config{{"max_concurrent_sessions", "10000"}})
          .value()
          .max_concurrent_sessions,
      qrt::session_processor_options::most_concurrent_sessions);

  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"max_concurrent_sessions", "0"},
                                                        {"max_concurrent_sessions", "10001"},
                                                        {"max_concurrent_sessions", "many"},
                                                        {"session_idle_timeout", "soon"},
                                                        {"session_idle_timeout", "-1s"},
                                                        {"max_session_hold", "forever"}}) {
    auto bad = qrt::session_processor_options::from_config(qrt::config{{key, value}});
    ASSERT_FALSE(bad) << key << "=" << value;
    EXPECT_EQ(bad.error().code, errc::configuration_error);
    EXPECT_NE(bad.error().message.find(key), std::string::npos) << bad.error().message;
    auto checked = qrt::check_processing_keys(qrt::config{{key, value}});
    ASSERT_FALSE(checked) << key << "=" << value;
    EXPECT_NE(checked.error().message.find(key), std::string::npos) << checked.error().message;
  }
}

// A handler may throw anything, not only a std::exception (an int, a library's own type). Such a
// throw is a handler failure like any other: the message is abandoned, then dead-lettered at
// max_delivery_count, and its concurrency slot comes back. With one slot, a leaked slot would
// leave every later message unhandled.
TEST(Processor, NonStandardThrowIsAHandlerFailureAndFreesItsSlot) {
  fixture f({.lock_duration = 5s});
  f.send("bomb");
  f.send_numbered(3);
  qrt::test::counter ok, bombs;
  qrt::processor p(f.client, f.q,
                   [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                     if (msg.body == "bomb") {
                       bombs.add();
                       throw 42;
                     }
                     ok.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 1, .receive_wait = 50ms, .max_delivery_count = 2});
  p.start(f.rt.executor());
  ASSERT_TRUE(bombs.wait_for_at_least(2));
  ASSERT_TRUE(ok.wait_for_at_least(3)) << "the throwing handler kept its concurrency slot";
  f.rt.block_on(p.stop(5s));

  EXPECT_EQ(p.stats().handler_failures, 2u);
  EXPECT_EQ(p.stats().in_flight, 0u);
  auto dlq = f.rt.block_on(f.client.receive(f.q.dead_letter(), 10, 0ms)).value();
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].body, "bomb");
  ASSERT_TRUE(dlq[0].dead_letter);
  EXPECT_NE(dlq[0].dead_letter->description.find("not derived from std::exception"),
            std::string::npos)
      << dlq[0].dead_letter->description;
  EXPECT_EQ(f.stats().active, 0);
  EXPECT_EQ(f.stats().in_flight, 0);
}

// What a throw means depends on what was thrown. A qrt::exception (from result<T>::value())
// keeps its error's kind: a permanent one dead-letters at once, a transient one is retried. Any
// other exception says nothing about retrying, so it is retried too: the message comes back and
// is completed on its next delivery, instead of being dead-lettered on the first throw.
TEST(Processor, ThrownExceptionsAreRetriedUnlessTheyCarryAPermanentError) {
  fixture f({.lock_duration = 5s});
  f.send("runtime-error");
  f.send("transient-qrt-error");
  f.send("permanent-qrt-error");
  std::mutex m;
  std::map<std::string, int> deliveries;
  qrt::test::counter completed, calls;
  qrt::processor p(f.client, f.q,
                   [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                     int delivery = 0;
                     {
                       std::lock_guard lock(m);
                       delivery = ++deliveries[msg.body];
                     }
                     calls.add();
                     if (delivery == 1 || msg.body == "permanent-qrt-error") {
                       if (msg.body == "runtime-error")
                         throw std::runtime_error("database unreachable");
                       if (msg.body == "transient-qrt-error") {
                         qrt::result<int> r = qrt::fail(errc::connection_failed, "reset by peer");
                         (void)r.value();  // throws qrt::exception carrying the transient error
                       }
                       qrt::result<int> r = qrt::fail(errc::invalid_argument, "no such customer");
                       (void)r.value();
                     }
                     completed.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 1, .receive_wait = 50ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(completed.wait_for_at_least(2));
  ASSERT_TRUE(calls.wait_for_at_least(5));
  f.rt.block_on(p.stop(5s));

  {
    std::lock_guard lock(m);
    EXPECT_EQ(deliveries["runtime-error"], 2);
    EXPECT_EQ(deliveries["transient-qrt-error"], 2);
    EXPECT_EQ(deliveries["permanent-qrt-error"], 1);
  }
  EXPECT_EQ(p.stats().handler_failures, 3u);
  EXPECT_EQ(p.stats().abandoned, 2u);
  EXPECT_EQ(p.stats().completed, 2u);
  auto dlq = f.rt.block_on(f.client.receive(f.q.dead_letter(), 10, 0ms)).value();
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].body, "permanent-qrt-error");
  ASSERT_TRUE(dlq[0].dead_letter);
  EXPECT_EQ(dlq[0].dead_letter->reason, "HandlerFailedPermanently");
  EXPECT_NE(dlq[0].dead_letter->description.find("no such customer"), std::string::npos)
      << dlq[0].dead_letter->description;
  EXPECT_EQ(f.stats().active, 0);
}

// The error callback is user code too: if it throws, the processor keeps receiving (and keeps
// reporting) instead of ending its receive loop.
TEST(Processor, ThrowingErrorCallbackDoesNotStopTheProcessor) {
  fixture f;
  qrt::test::counter reported;
  qrt::processor p(f.client, qrt::queue_name::from("no-such-queue"),
                   [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                     co_return qrt::result<void>{};
                   },
                   {.receive_wait = 10ms,
                    .retry = qrt::retry_policy::fixed_interval(1ms),
                    .on_error = [&](const qrt::error&) {
                      reported.add();
                      throw std::string("observer failed");
                    }});
  p.start(f.rt.executor());
  EXPECT_TRUE(reported.wait_for_at_least(3)) << "the receive loop stopped after the first throw";
  f.rt.block_on(p.stop(5s));
}

// Ordered processing without session locks (the SQS FIFO way): messages of one session are
// handled one at a time and in order, different sessions at once, while handlers fail and the
// failed message comes back (taking its session's later messages with it).
TEST(Processor, OrderBySessionKeepsEachSessionInOrderAndRunsSessionsConcurrently) {
  fixture f({.lock_duration = 5s, .max_delivery_count = 50});
  constexpr int sessions = 4, per_session = 20;
  for (int i = 0; i < per_session; ++i) {
    for (int k = 0; k < sessions; ++k) {
      qrt::message m{.body = numbered(numbered("s", k) + "-", i)};
      m.session = qrt::session_id::from(numbered("s", k));
      ASSERT_TRUE(f.rt.block_on(f.client.send(f.q, std::move(m))));
    }
  }
  std::mutex m;
  std::condition_variable all_entered;
  std::set<std::string> entered;
  std::map<std::string, int> running;                 // per session, handlers running now
  int most_running_in_one_session = 0;                // must stay 1
  std::map<std::string, std::vector<int>> succeeded;  // per session, in handler order
  std::set<std::string> failed_once;
  qrt::test::counter completed;
  auto options = qrt::processor_options{.max_concurrent_calls = 8, .prefetch_count = 20};
  options.order_by_session = true;
  options.on_processed = [&](const qrt::processed_message& done) {
    if (done.outcome == qrt::processing_outcome::completed) completed.add();
  };
  qrt::processor p(
      f.client, f.q,
      [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
        const auto session = msg.session->str();
        const int index = std::stoi(msg.body.substr(msg.body.find('-') + 1));
        {
          std::unique_lock lock(m);
          most_running_in_one_session = std::max(most_running_in_one_session, ++running[session]);
          // Hold each session's first message until all four are in a handler at once: proof
          // that different sessions run concurrently.
          entered.insert(session);
          all_entered.notify_all();
          all_entered.wait_for(lock, 10s, [&] { return entered.size() >= sessions; });
        }
        co_await work_for(qrt::milliseconds{index % 3});
        std::lock_guard lock(m);
        --running[session];
        // Fails the first handling (not delivery: a message sent back unhandled behind a
        // failure is delivered again without having failed).
        if (index % 7 == 3 && failed_once.insert(msg.body).second) {
          co_return qrt::fail(errc::timeout, "injected handler failure");
        }
        succeeded[session].push_back(index);
        co_return qrt::result<void>{};
      },
      options);
  p.start(f.rt.executor());
  ASSERT_TRUE(completed.wait_for_at_least(sessions * per_session, 20s));
  f.rt.block_on(p.stop(5s));

  std::lock_guard lock(m);
  EXPECT_EQ(entered.size(), static_cast<std::size_t>(sessions));
  EXPECT_EQ(most_running_in_one_session, 1);
  std::vector<int> expected(per_session);
  for (int i = 0; i < per_session; ++i) expected[i] = i;
  for (int k = 0; k < sessions; ++k) EXPECT_EQ(succeeded[numbered("s", k)], expected) << k;
  const auto s = p.stats();
  EXPECT_EQ(s.abandoned, static_cast<std::uint64_t>(sessions * 3)) << "3, 10 and 17 failed once";
  EXPECT_GT(s.released_unstarted, 0u) << "a failure took its session's buffered messages back";
  EXPECT_GE(s.max_in_flight, static_cast<std::size_t>(sessions));
  EXPECT_EQ(f.stats().active, 0);
  EXPECT_EQ(f.stats().dead_lettered, 0);
}

// max_messages: a processor asked to handle 7 messages takes 7 from the queue and no more, even
// with room for 4 handlers and 10 prefetched. The other 23 were never delivered (delivery count
// 0), so a one-shot worker leaves no trace on what it did not handle.
TEST(Processor, MaxMessagesTakesNoMoreThanItsShareFromTheQueue) {
  fixture f({.lock_duration = 30s});
  f.send_numbered(30);
  qrt::test::counter handled;
  auto options =
      qrt::processor_options{.max_concurrent_calls = 4, .prefetch_count = 10, .receive_wait = 50ms};
  options.max_messages = 7;
  qrt::processor p(
      f.client, f.q,
      [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
        handled.add();
        co_return qrt::result<void>{};
      },
      options);
  p.start(f.rt.executor());
  ASSERT_TRUE(handled.wait_for_at_least(7));
  const auto report = f.rt.block_on(p.stop(5s));
  EXPECT_EQ(report.abandoned_buffered, 0u) << "it held messages beyond its share";
  const auto s = p.stats();
  EXPECT_EQ(s.received, 7u);
  EXPECT_EQ(s.handler_calls, 7u);
  EXPECT_EQ(s.completed, 7u);
  EXPECT_EQ(s.abandoned_at_shutdown, 0u);
  EXPECT_EQ(f.stats().active, 23);
  const auto left = f.rt.block_on(f.client.peek(f.q, 100)).value();
  ASSERT_EQ(left.size(), 23u);
  for (const auto& m : left) EXPECT_EQ(m.delivery_count, 0u) << m.body;
}

// max_messages counts handlers started: messages given back without one (order_by_session
// returns a session's buffered messages behind a failure) leave room for as many others, so the
// processor still starts exactly max_messages handlers and loses nothing.
TEST(Processor, MaxMessagesDoesNotCountMessagesGivenBackUnstarted) {
  fixture f({.lock_duration = 30s, .max_delivery_count = 50});
  for (int i = 1; i <= 3; ++i) {
    qrt::message m{.body = numbered("a", i)};
    m.session = qrt::session_id::from("a");
    ASSERT_TRUE(f.rt.block_on(f.client.send(f.q, std::move(m))));
  }
  f.send_numbered(10);
  std::atomic<bool> failed_a1{false};
  qrt::test::counter started;
  auto options =
      qrt::processor_options{.max_concurrent_calls = 2, .prefetch_count = 10, .receive_wait = 50ms};
  options.order_by_session = true;
  options.max_messages = 6;
  qrt::processor p(
      f.client, f.q,
      [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
        started.add();
        // a1 fails once: a2 and a3, buffered behind it, go back with it unstarted.
        if (msg.body == "a1" && !failed_a1.exchange(true)) {
          co_return qrt::fail(errc::timeout, "injected handler failure");
        }
        co_return qrt::result<void>{};
      },
      options);
  p.start(f.rt.executor());
  ASSERT_TRUE(started.wait_for_at_least(6)) << "given-back messages used up the share";
  f.rt.block_on(p.stop(5s));
  const auto s = p.stats();
  EXPECT_TRUE(failed_a1.load());
  EXPECT_GT(s.released_unstarted, 0u) << "the scenario did not happen";
  EXPECT_EQ(s.handler_calls, 6u);
  EXPECT_EQ(s.completed + s.abandoned, 6u);
  EXPECT_EQ(s.abandoned_at_shutdown, 0u);
  // Nothing lost: 13 sent, the completed ones gone, every other one back in the queue.
  EXPECT_EQ(static_cast<std::uint64_t>(f.stats().active) + s.completed, 13u);
  EXPECT_EQ(f.stats().in_flight, 0);
}

// stop() with no deadline (milliseconds::max()) waits for the handler that runs, however long,
// and settles it by its outcome: a deadline too long to add must not read as one already past.
TEST(Processor, StopWithoutADeadlineLetsTheRunningHandlerFinish) {
  fixture f({.lock_duration = 30s});
  f.send("long job");
  qrt::test::counter started;
  qrt::processor p(f.client, f.q,
                   [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                     started.add();
                     co_await work_for(300ms);
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 1, .receive_wait = 50ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(started.wait_for_at_least(1));
  const auto report = f.rt.block_on(p.stop(qrt::milliseconds::max()));
  EXPECT_EQ(report.abandoned_running, 0u) << "stop gave up on the running handler";
  EXPECT_EQ(report.finished_in_time, 1u);
  const auto s = p.stats();
  EXPECT_EQ(s.completed, 1u);
  EXPECT_EQ(s.abandoned_at_shutdown, 0u);
  EXPECT_EQ(f.stats().active, 0);
}

// A receive_wait of zero or less is taken as 1 ms. With 0, the embedded provider answered each
// receive of an empty queue without suspending, so the loop polled without end and never gave
// its strand to stop(), which did not return.
TEST(Processor, AReceiveWaitOfZeroIsTakenAsOneMillisecondAndStopReturns) {
  qrt::runtime rt{{.worker_threads = 1}};
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto calls = std::make_shared<qrt::test::calls_in_flight>(memory);
  qrt::queue_client client{calls, {.retry = std::nullopt}};
  const auto q = qrt::queue_name::from("idle");
  ASSERT_TRUE(rt.block_on(client.create_queue(q)));
  qrt::processor p(client, q,
                   [](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                     co_return qrt::result<void>{};
                   },
                   {.receive_wait = 0ms});
  p.start(rt.executor());
  ASSERT_TRUE(calls->started.wait_for_at_least(3));
  auto stopped = boost::asio::co_spawn(rt.executor(), p.stop(1s), boost::asio::use_future);
  if (stopped.wait_for(30s) != std::future_status::ready) {
    ADD_FAILURE() << "stop() did not return: the receive loop never gave up its thread";
    std::abort();  // the runtime's only thread is stuck in the loop: nothing can be cleaned up
  }
  for (auto w : calls->waits()) EXPECT_EQ(w, 1ms);
}

// Two stop() calls at once (a signal handler and a destructor, say): the second waits for the
// first and returns its report. Before, both waited on the processor's drain event with a
// deadline, each re-arming its timer against the other, and spun on a core until the deadline;
// the second's report then missed what the first had released.
TEST(Processor, ASecondStopWaitsForTheFirstAndReturnsItsReport) {
  qrt::runtime rt{{.worker_threads = 1}};
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client{memory, {.retry = std::nullopt}};
  const auto q = qrt::queue_name::from("work");
  ASSERT_TRUE(rt.block_on(client.create_queue(q, {.lock_duration = 30s})));
  ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = "slow"})));
  qrt::test::counter started;
  qrt::processor p(
      client, q,
      [&started](const received_message&) -> qrt::awaitable<qrt::result<void>> {
        started.add();
        boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 30s);
        boost::system::error_code ignored;
        co_await t.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ignored));
        co_return qrt::result<void>{};
      },
      {.max_concurrent_calls = 1, .receive_wait = 50ms});
  p.start(rt.executor());
  ASSERT_TRUE(started.wait_for_at_least(1));
  auto first = boost::asio::co_spawn(rt.executor(), p.stop(100ms), boost::asio::use_future);
  auto second = boost::asio::co_spawn(rt.executor(), p.stop(100ms), boost::asio::use_future);
  ASSERT_EQ(first.wait_for(30s), std::future_status::ready);
  ASSERT_EQ(second.wait_for(30s), std::future_status::ready);
  const auto a = first.get();
  const auto b = second.get();
  EXPECT_EQ(a.abandoned_running, 1u) << "the running handler's message was released";
  EXPECT_EQ(b.abandoned_running, a.abandoned_running) << "the second stop() has its own story";
  EXPECT_EQ(b.finished_in_time, a.finished_in_time);
  EXPECT_EQ(p.stats().abandoned_at_shutdown, 1u) << "released once, not once per stop()";
}

// A breaker can be shared (by processors, or breaker.run() around the same dependency). While
// another caller's probe is in flight, this processor's buffered messages wait; when that probe
// closes the breaker, they are handled. Before, the processor waited for a handler of its own to
// finish, and none was running: it stalled until stop() while the messages' locks ran out.
TEST(Processor, MessagesHeldBackByASharedBreakerRunOnceAnotherCallerClosesIt) {
  qrt::runtime rt{{.worker_threads = 1}};
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto calls = std::make_shared<qrt::test::calls_in_flight>(memory);
  qrt::queue_client client{calls, {.retry = std::nullopt}};
  const auto q = qrt::queue_name::from("work");
  ASSERT_TRUE(rt.block_on(client.create_queue(q, {.lock_duration = 30s})));
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = "m" + std::to_string(i)})));
  }
  auto breaker = std::make_shared<qrt::circuit_breaker>(
      qrt::circuit_breaker_options{.failure_threshold = 1, .open_duration = 0ms});
  breaker->record_failure();      // the dependency failed for another caller: open
  ASSERT_TRUE(breaker->allow());  // and that caller's probe is in flight: half-open
  qrt::test::counter handled;
  qrt::processor p(
      client, q,
      [&handled](const received_message&) -> qrt::awaitable<qrt::result<void>> {
        handled.add();
        co_return qrt::result<void>{};
      },
      {.max_concurrent_calls = 1, .prefetch_count = 2, .receive_wait = 50ms, .breaker = breaker});
  p.start(rt.executor());
  ASSERT_TRUE(calls->received.wait_for_at_least(3)) << "the processor did not fill its buffer";
  // One thread runs the runtime: once this runs, the loop has gone back to waiting after the
  // breaker refused to start the messages it holds.
  rt.block_on([]() -> qrt::awaitable<void> { co_return; }());
  EXPECT_EQ(handled.value(), 0) << "started while another caller's probe was in flight";
  breaker->record_success();  // the other caller's probe succeeded: closed
  EXPECT_TRUE(handled.wait_for_at_least(5, 30s))
      << "the breaker closed, but the processor handled " << handled.value() << " of 5";
  rt.block_on(p.stop(5s));
}

// Contract P3: a failed message waits its abandon_delay with its lock still renewed, so it is
// not redelivered (to this processor or any other receiver) before the processor abandons it,
// and the abandon succeeds; the next delivery comes after. (Behaviour that held but had no
// test: without the renewals the lock would run out a third of the way into the delay, the
// message come back while its failure still waited, and the abandon fail.)
TEST(Processor, AbandonDelayKeepsTheLockRenewedUntilTheAbandon) {
  fixture f({.lock_duration = 1s, .max_delivery_count = 10});
  f.send("flaky");
  std::mutex m;
  std::vector<std::uint32_t> deliveries;
  qrt::test::counter succeeded;
  qrt::processor p(f.client, f.q,
                   [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                     {
                       std::lock_guard lock(m);
                       deliveries.push_back(msg.delivery_count);
                     }
                     if (msg.delivery_count == 1) {
                       co_return qrt::fail(errc::connection_failed, "dependency down");
                     }
                     succeeded.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 2, .receive_wait = 50ms, .abandon_delay = 3s});
  p.start(f.rt.executor());
  ASSERT_TRUE(succeeded.wait_for_at_least(1));
  f.rt.block_on(p.stop(5s));
  std::lock_guard lock(m);
  EXPECT_EQ(deliveries, (std::vector<std::uint32_t>{1, 2}))
      << "the message came back while its failure waited out abandon_delay";
  const auto s = p.stats();
  EXPECT_GE(s.lock_renewals, 2u);
  EXPECT_EQ(s.abandoned, 1u);
  EXPECT_EQ(s.completed, 1u);
  EXPECT_EQ(s.settle_failures, 0u);
  EXPECT_EQ(f.stats().active, 0);
}

// Contract P4: stop() abandons only what is still running at its deadline. A handler that
// finished in time is settled by its result even when its lock's renewal was still inside a
// slow provider at the deadline (settling waits for the renewal, so a settle never races it).
// Before, stop() took such a message for a running one: it abandoned it, the completion was
// dropped, and the handled message was delivered again.
TEST(Processor, AHandlerThatFinishedInTimeIsCompletedThoughItsRenewalWasInFlight) {
  // Every renewal is made at once but answered a second later (a slow round trip); it tells
  // when one has begun.
  struct slow_renewals final : qrt::test::forwarding_provider {
    using forwarding_provider::forwarding_provider;
    qrt::test::counter started;
    qrt::awaitable<qrt::result<qrt::time_point>> renew_lock(
        const qrt::receipt_handle& receipt) override {
      started.add();
      auto renewed = co_await forwarding_provider::renew_lock(receipt);
      co_await work_for(1s);
      co_return renewed;
    }
  };
  // Renewed at 1 s to run until 3 s: the lock outlives the renewal's slow answer.
  fixture f({.lock_duration = 2s});
  f.send("done in time");
  auto slow = std::make_shared<slow_renewals>(f.memory);
  qrt::queue_client client{slow, {.retry = std::nullopt}};
  qrt::test::counter finished;
  qrt::processor p(client, f.q,
                   [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                     // Finish once the renewal (at half the lock) is inside the provider.
                     for (int i = 0; i < 10'000 && slow->started.value() == 0; ++i)
                       co_await work_for(1ms);
                     finished.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 1, .prefetch_count = 0, .receive_wait = 50ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(finished.wait_for_at_least(1));
  // The deadline passes while the renewal still has most of its second to go.
  const auto report = f.rt.block_on(p.stop(100ms));
  EXPECT_EQ(report.abandoned_running, 0u) << "a handler that had finished was abandoned";
  EXPECT_EQ(report.finished_in_time, 1u);
  const auto s = p.stats();
  EXPECT_EQ(s.completed, 1u);
  EXPECT_EQ(s.abandoned_at_shutdown, 0u);
  EXPECT_EQ(f.stats().active, 0) << "the handled message went back to the queue";
}

namespace {

// Hands out the first `messages` messages of the queue, then fails every receive, as a broker
// that went down would. The failure comes without suspending, so the processor's back-off
// begins in the same turn of its strand as the failed receive.
class outage_after_messages final : public qrt::test::forwarding_provider {
 public:
  outage_after_messages(qrt::provider_ptr inner, std::size_t messages)
      : forwarding_provider(std::move(inner)), before_outage_(messages) {}

  std::atomic<int> receives_answered{0};
  std::atomic<int> receives_failed{0};

  qrt::awaitable<qrt::result<std::vector<received_message>>> receive(
      const qrt::queue_name& q, std::size_t max, qrt::milliseconds wait) override {
    if (handed_out_ >= before_outage_) {
      ++receives_failed;
      co_return qrt::fail(errc::connection_failed, "broker unreachable");
    }
    const qrt::queue_name queue = q;  // the caller's reference may not outlive the wait
    auto got = co_await inner_->receive(queue, max, wait);
    if (got) handed_out_ += got->size();
    ++receives_answered;
    co_return got;
  }

 private:
  std::size_t before_outage_;
  std::atomic<std::size_t> handed_out_{0};
};

}  // namespace

// The back-off after a failed receive lasts as long as the retry policy says. Handlers that
// finish during a broker outage do not end it: before, each finishing handler woke the receive
// loop (it waited on the event that handlers notify), which asked the broker again at once.
// stop() still ends the back-off at once. The processor runs on this thread, turn by turn, so
// the handlers finish only after the back-off has begun, and everything a finish set going has
// run before the receives are counted.
TEST(Processor, FinishingHandlersDoNotEndTheBackOffAfterAFailedReceive) {
  qrt::runtime rt{{.worker_threads = 1}};  // the embedded provider's
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto outage = std::make_shared<outage_after_messages>(memory, 3);
  qrt::queue_client client{outage, {.retry = std::nullopt}};
  const auto q = qrt::queue_name::from("work");
  ASSERT_TRUE(rt.block_on(client.create_queue(q, {.lock_duration = 60s})));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = numbered("m", i)})));
  }
  boost::asio::io_context io;
  std::atomic<int> errors_reported{0};
  std::atomic<int> completed{0};
  qrt::processor p(client, q,
                   [](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 4,
                    .prefetch_count = 0,
                    .receive_wait = 50ms,
                    // Long enough that a second failed receive can only come from a back-off
                    // that ended early.
                    .retry = qrt::retry_policy::fixed_interval(1h),
                    .on_error = [&](const qrt::error&) { ++errors_reported; },
                    .on_processed =
                        [&](const qrt::processed_message& m) {
                          if (m.outcome == qrt::processing_outcome::completed) ++completed;
                        }});
  p.start(io.get_executor());
  ASSERT_TRUE(qrt::test::turn_until(io, [&] { return completed.load() == 3; }));
  ASSERT_EQ(outage->receives_answered.load(), 1) << "the messages came in more than one receive";
  EXPECT_EQ(errors_reported.load(), 1);
  EXPECT_EQ(outage->receives_failed.load(), 1) << "finishing handlers ended the one-hour back-off "
                                               << outage->receives_failed.load() - 1 << " times";

  auto stopped = boost::asio::co_spawn(io, p.stop(5s), boost::asio::use_future);
  io.run_for(30s);  // returns as soon as the processor has nothing left to do
  ASSERT_EQ(stopped.wait_for(0s), std::future_status::ready) << "stop() did not end the back-off";
  EXPECT_EQ(stopped.get().abandoned_running, 0u);
  EXPECT_EQ(outage->receives_failed.load(), 1);
  EXPECT_EQ(p.stats().completed, 3u);
}

// A processor destroyed without stop() ends a failed message's abandon_delay at once, as stop()
// does: the message is abandoned and the processor's coroutines end, letting go of the client.
// Before, the destructor told only the receive loop to end, and the failed message's task
// waited out its delay, holding the processor (and the provider) for up to an hour after it
// was gone. The io_context running out of work shows that every coroutine of it has ended.
TEST(Processor, DestroyedWithoutStopItEndsTheAbandonDelayAndLetsGoOfTheClient) {
  qrt::runtime rt{{.worker_threads = 1}};  // the embedded provider's
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client direct{memory, {.retry = std::nullopt}};
  const auto q = qrt::queue_name::from("work");
  ASSERT_TRUE(rt.block_on(direct.create_queue(q, {.lock_duration = 60s})));
  ASSERT_TRUE(rt.block_on(direct.send(q, qrt::message{.body = "fails"})));
  auto wrapped = std::make_shared<qrt::test::forwarding_provider>(memory);
  const std::weak_ptr<qrt::provider> held = wrapped;

  boost::asio::io_context io;
  std::atomic<int> failed{0};
  std::optional<qrt::processor> p;
  p.emplace(
      qrt::queue_client{std::move(wrapped), {.retry = std::nullopt}}, q,
      [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
        ++failed;
        co_return qrt::fail(errc::connection_failed, "dependency down");
      },
      qrt::processor_options{.max_concurrent_calls = 1,
                             .receive_wait = 50ms,
                             .abandon_delay = std::chrono::duration_cast<qrt::milliseconds>(1h)});
  p->start(io.get_executor());
  // Once the handler has failed and what that set going has run, the task waits its delay.
  ASSERT_TRUE(qrt::test::turn_until(io, [&] { return failed.load() == 1; }));

  p.reset();
  io.run_for(30s);  // returns as soon as no coroutine of the processor is left
  EXPECT_TRUE(io.stopped()) << "the processor's failed message still waited out abandon_delay";
  EXPECT_TRUE(held.expired()) << "the destroyed processor still held its client";
  const auto s = rt.block_on(direct.stats(q)).value();
  EXPECT_EQ(s.active, 1) << "the failed message was not given back";
  EXPECT_EQ(s.in_flight, 0);
  EXPECT_EQ(failed.load(), 1);
}
