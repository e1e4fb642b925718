// qrt::session_processor against the real embedded provider, with the fault-injecting decorator
// between them. Contract P5: 4 sessions processed concurrently each stay in order while
// failures are injected; parallel processing must not break a session's order.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <qrt/fault_injection.hpp>
#include <qrt/memory.hpp>
#include <qrt/runtime.hpp>
#include <qrt/session_processor.hpp>
#include <set>

#include "../support/calls_in_flight.hpp"
#include "../support/empty_handler.hpp"
#include "../support/forwarding_provider.hpp"
#include "../support/run.hpp"
#include "../support/wait.hpp"

using namespace std::chrono_literals;
using qrt::errc;
using qrt::received_message;

namespace {

struct session_fixture {
  qrt::runtime rt{{.worker_threads = 8}};
  qrt::provider_ptr memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  std::shared_ptr<qrt::fault_injecting_provider> faulty =
      qrt::make_fault_injecting_provider(memory);
  qrt::queue_client client{faulty, {.retry = [] {
                             auto p = qrt::retry_policy::fixed_interval(1ms);
                             p.max_attempts = 8;
                             return p;
                           }()}};
  qrt::queue_client direct{memory, {.retry = std::nullopt}};
  qrt::queue_name q = qrt::queue_name::from("ordered");

  session_fixture() {
    EXPECT_TRUE(rt.block_on(direct.create_queue(
        q, {.lock_duration = 1s, .max_delivery_count = 100, .requires_session = true})));
  }
  void send(const std::string& session, const std::string& body) {
    qrt::message m{.body = body};
    m.session = qrt::session_id::from(session);
    ASSERT_TRUE(rt.block_on(direct.send(q, std::move(m))));
  }
  qrt::queue_stats stats() { return rt.block_on(direct.stats(q)).value(); }
};

std::pair<std::string, int> parse(const std::string& body) {  // "s2-7" -> {"s2", 7}
  auto dash = body.find('-');
  return {body.substr(0, dash), std::stoi(body.substr(dash + 1))};
}

}  // namespace

// As a processor, a session processor refuses an empty handler when it is built, before it
// takes a session.
TEST(SessionProcessor, AnEmptyHandlerIsRefusedBeforeASessionIsTaken) {
  session_fixture f;
  f.send("s1", "s1-0");
  qrt::test::expect_empty_handler_refused(
      [&] { qrt::session_processor p(f.client, f.q, qrt::message_handler{}); });
  EXPECT_EQ(f.stats().active, 1);
  EXPECT_EQ(f.stats().in_flight, 0);
}

TEST(SessionProcessor, FourSessionsRunConcurrentlyEachInOrderWhileFailuresAreInjected) {
  session_fixture f;
  constexpr int sessions = 4, per_session = 15;
  for (int i = 0; i < per_session; ++i) {
    for (int k = 0; k < sessions; ++k) {
      f.send("s" + std::to_string(k), "s" + std::to_string(k) + "-" + std::to_string(i));
    }
  }
  // Transient receive / accept / renew failures (the client retries them) and a few failed
  // settlements (the processor must give the session up and get the message again, in order).
  f.faulty->set_options({.transient_error_rate = 0.1,
                         .error_ops = qrt::fault_ops::receive | qrt::fault_ops::accept_session |
                                      qrt::fault_ops::renew_lock});
  f.faulty->fail_next(qrt::fault_ops::settle, 3, qrt::fail(errc::connection_failed, "reset"));

  std::mutex m;
  std::condition_variable all_entered;
  std::set<std::string> entered;
  std::map<std::string, std::vector<int>> succeeded;  // per session, in handler order
  std::set<std::string> distinct;
  qrt::test::counter done;
  qrt::session_processor p(f.client, f.q,
                           [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                             auto [session, index] = parse(msg.body);
                             EXPECT_EQ(msg.session->str(), session);
                             {
                               // Hold the first message of each session until all four sessions are
                               // in a handler at once: proof that they are processed concurrently.
                               std::unique_lock lock(m);
                               entered.insert(session);
                               all_entered.notify_all();
                               all_entered.wait_for(lock, 10s,
                                                    [&] { return entered.size() >= sessions; });
                             }
                             if (index % 4 == 2 && msg.delivery_count == 1) {
                               co_return qrt::fail(errc::timeout, "injected handler failure");
                             }
                             std::lock_guard lock(m);
                             succeeded[session].push_back(index);
                             if (distinct.insert(msg.body).second) done.add();
                             co_return qrt::result<void>{};
                           },
                           {.max_concurrent_sessions = sessions,
                            .max_messages_per_receive = 5,
                            .session_idle_timeout = 200ms,
                            .accept_wait = 200ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(done.wait_for_at_least(sessions * per_session, 20s));
  f.rt.block_on(p.stop(5s));

  std::lock_guard lock(m);
  EXPECT_EQ(entered.size(), static_cast<std::size_t>(sessions));
  for (auto& [session, order] : succeeded) {
    // A message whose completion failed is handled again right away (at least once), never
    // after a later one: with immediate repeats folded, each session reads 0, 1, 2, ...
    std::vector<int> folded;
    for (int i : order) {
      if (folded.empty() || folded.back() != i) folded.push_back(i);
    }
    std::vector<int> expected(per_session);
    for (int i = 0; i < per_session; ++i) expected[i] = i;
    EXPECT_EQ(folded, expected) << session;
  }
  auto s = p.stats();
  EXPECT_LE(s.max_sessions_held, static_cast<std::size_t>(sessions));
  EXPECT_GE(s.abandoned, static_cast<std::uint64_t>(sessions * 3)) << "handler failures happened";
  EXPECT_GE(s.sessions_lost, 1u) << "injected settlement failures released sessions";
  EXPECT_EQ(s.dead_lettered, 0u);
  EXPECT_EQ(f.stats().active, 0);
  EXPECT_EQ(f.stats().dead_lettered, 0);
}

TEST(SessionProcessor, IdleSessionIsReleasedSoTheNextOneIsTaken) {
  session_fixture f;
  f.send("a", "a-0");
  f.send("b", "b-0");
  f.send("c", "c-0");
  qrt::test::counter handled;
  qrt::session_processor p(
      f.client, f.q,
      [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
        handled.add();
        co_return qrt::result<void>{};
      },
      {.max_concurrent_sessions = 1, .session_idle_timeout = 50ms, .accept_wait = 200ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(handled.wait_for_at_least(3)) << "one worker must move on from an idle session";
  f.rt.block_on(p.stop(5s));
  EXPECT_GE(p.stats().sessions_released_idle, 2u);
  EXPECT_EQ(p.stats().sessions_accepted, 3u);
  EXPECT_EQ(f.stats().active, 0);
}

TEST(SessionProcessor, ShutdownReleasesHeldSessionsAndDeadLettersNothing) {
  session_fixture f;
  for (int k = 0; k < 3; ++k) {
    for (int i = 0; i < 3; ++i)
      f.send("s" + std::to_string(k), "s" + std::to_string(k) + "-" + std::to_string(i));
  }
  qrt::test::counter started, finished;
  qrt::session_processor p(f.client, f.q,
                           [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                             started.add();
                             boost::asio::steady_timer t(co_await boost::asio::this_coro::executor,
                                                         1s);
                             co_await t.async_wait(boost::asio::use_awaitable);
                             finished.add();
                             co_return qrt::result<void>{};
                           },
                           {.max_concurrent_sessions = 3, .accept_wait = 100ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(started.wait_for_at_least(3));
  auto report = f.rt.block_on(p.stop(50ms));
  EXPECT_EQ(report.abandoned_running, 3u);
  EXPECT_EQ(f.stats().dead_lettered, 0);
  // Every message can be had again, in order, by the next holder of its session.
  ASSERT_TRUE(finished.wait_for_at_least(3));
  EXPECT_EQ(p.stats().completed, 0u);
  for (int k = 0; k < 3; ++k) {
    auto s = f.rt.block_on(
        f.direct.accept_session(f.q, qrt::session_id::from("s" + std::to_string(k)), 1s));
    ASSERT_TRUE(s) << s.error().to_string();
    auto got = f.rt.block_on(s->receive(10, 100ms)).value();
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].body, "s" + std::to_string(k) + "-0");
    f.rt.block_on(s->close());
  }
}

// Contract P4: once stop() returns, no worker's call is still inside the provider, so the
// executor the processor ran on may be destroyed at once. The provider lives on another
// runtime, as a synchronous client's or a network provider's connection does: an accept that
// returned after stop() would resume on the destroyed runtime.
TEST(SessionProcessor, StopReturnsOnlyOnceItsCallsInsideTheProviderHaveReturned) {
  qrt::test::counted_provider_elsewhere provider;
  auto& client = provider.client;
  auto& provider_rt = provider.rt;
  const auto q = qrt::queue_name::from("sessions");
  ASSERT_TRUE(provider_rt.block_on(client.create_queue(q, {.requires_session = true})));
  {
    qrt::runtime rt{{.worker_threads = 2}};
    qrt::session_processor p(client, q,
                             [](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                               co_return qrt::result<void>{};
                             },
                             {.max_concurrent_sessions = 2, .accept_wait = 1500ms});
    p.start(rt.executor());
    ASSERT_TRUE(provider.calls->started.wait_for_at_least(2));
    rt.block_on(p.stop(10ms));
    EXPECT_EQ(provider.calls->in_flight(), 0)
        << "stop() returned with an accept inside the provider";
  }
  ASSERT_TRUE(provider_rt.block_on(
      client.send(q, qrt::message{.body = "after", .session = qrt::session_id::from("s")})));
  auto s = provider_rt.block_on(client.accept_session(q, qrt::session_id::from("s"), 1s));
  ASSERT_TRUE(s) << s.error().to_string();
  auto got = provider_rt.block_on(s->receive(1, 1s));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->front().body, "after");
}

// The same promise, read the other way round: the executor is destroyed after stop() and
// before the processor. The processor's destructor must then leave the executor alone: its
// strand, timers and the workers' wake-ups destroyed after the io_context would write into it
// (ASan reports a use after free).
TEST(SessionProcessor, DestroyedAfterItsStoppedExecutorItTouchesNothingOfIt) {
  qrt::test::counted_provider_elsewhere provider;
  const auto q = qrt::queue_name::from("sessions");
  ASSERT_TRUE(provider.rt.block_on(provider.client.create_queue(q, {.requires_session = true})));
  std::optional<qrt::session_processor> p;
  qrt::shutdown_report first;
  {
    qrt::runtime rt{{.worker_threads = 2}};
    p.emplace(
        provider.client, q,
        [](const received_message&) -> qrt::awaitable<qrt::result<void>> {
          co_return qrt::result<void>{};
        },
        qrt::session_processor_options{.max_concurrent_sessions = 2, .accept_wait = 50ms});
    p->start(rt.executor());
    ASSERT_TRUE(provider.calls->started.wait_for_at_least(2));
    first = rt.block_on(p->stop(10ms));
  }
  // A later stop() has the first one's report, and nothing of the executor to go to.
  const auto again = provider.rt.block_on(p->stop(10ms));
  EXPECT_EQ(again.abandoned_running, first.abandoned_running);
  EXPECT_EQ(again.abandoned_buffered, first.abandoned_buffered);
  EXPECT_EQ(again.finished_in_time, first.finished_in_time);
  p.reset();
  EXPECT_EQ(provider.calls->in_flight(), 0);
}

// A handler that throws something not derived from std::exception fails that message like any
// other failure: it is abandoned and comes back first, in order, and the session's worker goes
// on. With one worker, a throw that escaped would leave the session held and the rest unhandled.
TEST(SessionProcessor, NonStandardThrowIsAHandlerFailureAndTheSessionGoesOn) {
  session_fixture f;
  for (int i = 0; i < 3; ++i) f.send("a", "a-" + std::to_string(i));
  std::mutex m;
  std::vector<std::string> seen;
  bool thrown = false;
  qrt::test::counter handled;
  qrt::session_processor p(
      f.direct, f.q,
      [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
        bool throw_now = false;
        {
          std::lock_guard lock(m);
          seen.push_back(msg.body);
          throw_now = msg.body == "a-1" && !thrown;
          thrown = thrown || throw_now;
        }
        handled.add();
        if (throw_now) throw 7;
        co_return qrt::result<void>{};
      },
      {.max_concurrent_sessions = 1, .session_idle_timeout = 50ms, .accept_wait = 200ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(handled.wait_for_at_least(4)) << "the session stopped after the throw";
  f.rt.block_on(p.stop(5s));
  {
    std::lock_guard lock(m);
    EXPECT_EQ(seen, (std::vector<std::string>{"a-0", "a-1", "a-1", "a-2"}));
  }
  EXPECT_EQ(p.stats().handler_failures, 1u);
  EXPECT_EQ(p.stats().completed, 3u);
  EXPECT_EQ(f.stats().active, 0);
}

namespace {

// Records the settle calls made on the sessions it hands out: the actions of each call, in order
// ('c' complete, 'a' abandon, 'd' dead-letter), so a test can see how settlements were grouped.
class settle_call_recorder final : public qrt::test::forwarding_provider {
 public:
  explicit settle_call_recorder(qrt::provider_ptr inner) : forwarding_provider(std::move(inner)) {}

  std::vector<std::string> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }

  qrt::awaitable<std::vector<qrt::result<void>>> settle(std::vector<qrt::settlement> s) override {
    record(s);
    return inner_->settle(std::move(s));
  }
  qrt::awaitable<qrt::result<std::shared_ptr<qrt::session_receiver>>> accept_session(
      const qrt::queue_name& q, std::optional<qrt::session_id> id, qrt::milliseconds w) override {
    auto s = co_await inner_->accept_session(q, std::move(id), w);
    if (!s) co_return s;
    co_return std::shared_ptr<qrt::session_receiver>(
        std::make_shared<recording_session>(*this, std::move(*s)));
  }

 private:
  struct recording_session final : qrt::test::forwarding_session {
    recording_session(settle_call_recorder& owner, std::shared_ptr<qrt::session_receiver> inner)
        : forwarding_session(std::move(inner)), owner(owner) {}
    qrt::awaitable<std::vector<qrt::result<void>>> settle(std::vector<qrt::settlement> s) override {
      owner.record(s);
      return inner_->settle(std::move(s));
    }
    settle_call_recorder& owner;
  };

  void record(const std::vector<qrt::settlement>& s) {
    std::string actions;
    for (const auto& one : s) {
      actions += one.action == qrt::settle_action::complete  ? 'c'
                 : one.action == qrt::settle_action::abandon ? 'a'
                                                             : 'd';
    }
    std::lock_guard lock(mutex_);
    calls_.push_back(std::move(actions));
  }

  mutable std::mutex mutex_;
  std::vector<std::string> calls_;
};

// Runs one session processor over `f`'s queue until `completions` messages were completed,
// with `handler_fails(body, delivery_count)` deciding which fail, and returns the settle calls
// and the bodies in handler order.
struct batch_run {
  std::vector<std::string> settle_calls;
  std::vector<std::string> handled;
  qrt::session_processor_stats stats;
};
batch_run run_batches(session_fixture& f, qrt::batch_settlement mode, long completions,
                      std::function<bool(const std::string&, std::uint32_t)> handler_fails,
                      const std::shared_ptr<qrt::fault_injecting_provider>& faults = nullptr) {
  auto recorder =
      std::make_shared<settle_call_recorder>(faults ? qrt::provider_ptr(faults) : f.memory);
  std::mutex m;
  batch_run out;
  qrt::test::counter completed;
  qrt::session_processor p(qrt::queue_client{recorder, {.retry = std::nullopt}}, f.q,
                           [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                             const bool fails = handler_fails(msg.body, msg.delivery_count);
                             {
                               std::lock_guard lock(m);
                               out.handled.push_back(msg.body);
                             }
                             if (fails)
                               co_return qrt::fail(errc::timeout, "injected handler failure");
                             co_return qrt::result<void>{};
                           },
                           {.max_concurrent_sessions = 1,
                            .max_messages_per_receive = 5,
                            .session_idle_timeout = 100ms,
                            .accept_wait = 100ms,
                            .settle = mode,
                            .on_processed = [&](const qrt::processed_message& done) {
                              if (done.outcome == qrt::processing_outcome::completed)
                                completed.add();
                            }});
  p.start(f.rt.executor());
  EXPECT_TRUE(completed.wait_for_at_least(completions));
  f.rt.block_on(p.stop(5s));
  out.settle_calls = recorder->calls();
  out.stats = p.stats();
  std::lock_guard lock(m);
  return out;
}

}  // namespace

// Session-aware batch acknowledgment: per_batch settles a session's batch in one provider call,
// per_message in one call per message; both complete everything, in order.
TEST(SessionProcessor, PerBatchSettlementCompletesASessionsBatchInOneCall) {
  const std::vector<std::string> in_order = {"a-0", "a-1", "a-2", "a-3", "a-4",
                                             "a-5", "a-6", "a-7", "a-8", "a-9"};
  for (auto mode : {qrt::batch_settlement::per_batch, qrt::batch_settlement::per_message}) {
    session_fixture f;
    for (const auto& body : in_order) f.send("a", body);
    auto run = run_batches(f, mode, 10, [](const std::string&, std::uint32_t) { return false; });
    EXPECT_EQ(run.handled, in_order);
    if (mode == qrt::batch_settlement::per_batch) {
      EXPECT_EQ(run.settle_calls, (std::vector<std::string>{"ccccc", "ccccc"}));
    } else {
      EXPECT_EQ(run.settle_calls, std::vector<std::string>(10, "c"));
    }
    EXPECT_EQ(run.stats.completed, 10u);
    EXPECT_EQ(f.stats().active, 0);
  }
}

// A failure that is abandoned ends the batch: the completions before it, its abandon and the
// abandons of the rest go in one call, and the session reads on from the failed message.
TEST(SessionProcessor, PerBatchSettlementSendsTheFailureWithTheBatchAndKeepsTheOrder) {
  session_fixture f;
  for (int i = 0; i < 5; ++i) f.send("a", "a-" + std::to_string(i));
  auto run = run_batches(f, qrt::batch_settlement::per_batch, 5,
                         [](const std::string& body, std::uint32_t delivery) {
                           return body == "a-2" && delivery == 1;
                         });
  EXPECT_EQ(run.handled, (std::vector<std::string>{"a-0", "a-1", "a-2", "a-2", "a-3", "a-4"}));
  ASSERT_GE(run.settle_calls.size(), 2u);
  EXPECT_EQ(run.settle_calls[0], "ccaaa");
  EXPECT_EQ(run.settle_calls[1], "ccc");
  EXPECT_EQ(run.stats.completed, 5u);
  EXPECT_EQ(run.stats.abandoned, 1u);
  EXPECT_EQ(f.stats().dead_lettered, 0);
}

// What per_batch costs: when the batch's one settle call fails, nothing of the batch was
// settled; the session is released and every message of the batch, handled or not, is
// delivered again, in order, to the next holder (at least once; none lost).
TEST(SessionProcessor, PerBatchSettlementThatFailsDeliversTheWholeBatchAgainInOrder) {
  session_fixture f;
  for (int i = 0; i < 3; ++i) f.send("a", "a-" + std::to_string(i));
  f.faulty->fail_next(qrt::fault_ops::settle, 1, qrt::fail(errc::connection_failed, "reset"));
  auto run = run_batches(
      f, qrt::batch_settlement::per_batch, 3,
      [](const std::string&, std::uint32_t) { return false; }, f.faulty);
  EXPECT_EQ(run.handled, (std::vector<std::string>{"a-0", "a-1", "a-2", "a-0", "a-1", "a-2"}));
  EXPECT_EQ(run.stats.sessions_lost, 1u);
  EXPECT_EQ(run.stats.completed, 3u);
  EXPECT_EQ(f.stats().active, 0);
  EXPECT_EQ(f.stats().dead_lettered, 0);
}

// An accept_wait of zero or less is taken as 1 ms, as a processor's receive_wait is: with 0 the
// worker's accept loop polled a queue without sessions and never gave its thread to stop().
TEST(SessionProcessor, AnAcceptWaitOfZeroIsTakenAsOneMillisecondAndStopReturns) {
  qrt::runtime rt{{.worker_threads = 1}};
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto calls = std::make_shared<qrt::test::calls_in_flight>(memory);
  qrt::queue_client client{calls, {.retry = std::nullopt}};
  const auto q = qrt::queue_name::from("idle-sessions");
  ASSERT_TRUE(rt.block_on(client.create_queue(q, {.requires_session = true})));
  qrt::session_processor p(client, q,
                           [](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                             co_return qrt::result<void>{};
                           },
                           {.max_concurrent_sessions = 1, .accept_wait = 0ms});
  p.start(rt.executor());
  ASSERT_TRUE(calls->started.wait_for_at_least(3));
  auto stopped = boost::asio::co_spawn(rt.executor(), p.stop(1s), boost::asio::use_future);
  if (stopped.wait_for(30s) != std::future_status::ready) {
    ADD_FAILURE() << "stop() did not return: the accept loop never gave up its thread";
    std::abort();  // the runtime's only thread is stuck in the loop: nothing can be cleaned up
  }
  for (auto w : calls->waits()) EXPECT_EQ(w, 1ms);
}

// Hands out sessions whose lock, as first reported, ended before the clock's first time point
// (what a Service Bus lock annotation from before 1677 decodes to). Before, the processor took
// `locked_until - now` as the lock's length, which overflows there.
class session_locks_from_before_the_clock final : public qrt::test::forwarding_provider {
 public:
  using forwarding_provider::forwarding_provider;
  struct session final : qrt::test::forwarding_session {
    using forwarding_session::forwarding_session;
    qrt::time_point locked_until() const noexcept override { return qrt::time_point::min(); }
  };
  qrt::awaitable<qrt::result<std::shared_ptr<qrt::session_receiver>>> accept_session(
      const qrt::queue_name& q, std::optional<qrt::session_id> which,
      qrt::milliseconds wait) override {
    auto got = co_await inner_->accept_session(q, std::move(which), wait);
    if (!got) co_return got;
    co_return std::shared_ptr<qrt::session_receiver>(std::make_shared<session>(std::move(*got)));
  }
};

TEST(SessionProcessor, ASessionLockThatEndedBeforeTheClockBeganIsRenewedNotOverflowed) {
  qrt::runtime rt{{.worker_threads = 2}};
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client{std::make_shared<session_locks_from_before_the_clock>(memory)};
  const auto q = qrt::queue_name::from("sessions");
  ASSERT_TRUE(
      rt.block_on(client.create_queue(q, {.lock_duration = 60s, .requires_session = true})));
  ASSERT_TRUE(rt.block_on(
      client.send(q, qrt::message{.body = "m1", .session = qrt::session_id::from("s")})));
  qrt::test::counter handled;
  qrt::session_processor p(
      client, q,
      [&handled](const received_message&) -> qrt::awaitable<qrt::result<void>> {
        handled.add();
        co_return qrt::result<void>{};
      },
      {.max_concurrent_sessions = 1, .accept_wait = 100ms});
  p.start(rt.executor());
  ASSERT_TRUE(handled.wait_for_at_least(1, 20s));
  rt.block_on(p.stop(5s));
  auto s = rt.block_on(client.stats(q)).value();
  EXPECT_EQ(s.active + s.in_flight, 0);
}

// A session whose close() is counted.
class close_counting_session final : public qrt::test::forwarding_session {
 public:
  close_counting_session(std::shared_ptr<qrt::session_receiver> inner, std::atomic<int>& closes)
      : forwarding_session(std::move(inner)), closes_(closes) {}
  qrt::awaitable<qrt::result<void>> close() override {
    ++closes_;
    return inner_->close();
  }

 private:
  std::atomic<int>& closes_;
};

// Holds each accepted session back until the test opens the gate, so that the accept in flight
// answers only once stop() is waiting for it; counts the closes of the sessions it hands out.
class gated_accept final : public qrt::test::forwarding_provider {
 public:
  using forwarding_provider::forwarding_provider;
  qrt::awaitable<qrt::result<std::shared_ptr<qrt::session_receiver>>> accept_session(
      const qrt::queue_name& q, std::optional<qrt::session_id> which,
      qrt::milliseconds wait) override {
    const qrt::queue_name queue = q;
    entered.add();
    auto got = co_await inner_->accept_session(queue, std::move(which), wait);
    boost::asio::steady_timer poll(co_await boost::asio::this_coro::executor);
    while (!open) {  // polled: the gate only holds the answer back
      poll.expires_after(5ms);
      co_await poll.async_wait(boost::asio::use_awaitable);
    }
    if (!got) co_return got;
    ++accepted;
    co_return std::shared_ptr<qrt::session_receiver>(
        std::make_shared<close_counting_session>(std::move(*got), closes));
  }
  qrt::test::counter entered;
  std::atomic<bool> open{false};
  std::atomic<int> accepted{0};
  std::atomic<int> closes{0};
};

// A queue that requires sessions, holding one message ("m1") in session "s", read through a
// gated_accept (`client`) or directly (`direct`).
struct gated_sessions {
  explicit gated_sessions(std::size_t threads)
      : rt({.worker_threads = threads}),
        memory(
            qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value()),
        gate(std::make_shared<gated_accept>(memory)),
        client(gate, {.retry = std::nullopt}),
        direct(memory, {.retry = std::nullopt}) {
    EXPECT_TRUE(
        rt.block_on(direct.create_queue(q, {.lock_duration = 60s, .requires_session = true})));
    EXPECT_TRUE(rt.block_on(
        direct.send(q, qrt::message{.body = "m1", .session = qrt::session_id::from("s")})));
  }
  qrt::runtime rt;
  qrt::provider_ptr memory;
  std::shared_ptr<gated_accept> gate;
  qrt::queue_client client;
  qrt::queue_client direct;
  const qrt::queue_name q = qrt::queue_name::from("sessions");
  std::atomic<int> handled{0};

  // A handler that counts the messages it is given into `handled`.
  qrt::message_handler counting_handler() {
    return [this](const received_message&) -> qrt::awaitable<qrt::result<void>> {
      ++handled;
      co_return qrt::result<void>{};
    };
  }
};

// A session that the accept in flight returns while stop() waits for that accept is closed
// (contract P4: a stopped session processor holds no session). stop() sealed provider calls as
// soon as the accept returned, so the worker's close was refused and the session stayed locked:
// the embedded provider frees it when the receiver is destroyed, Service Bus only when its lock
// runs out.
TEST(SessionProcessor, ASessionAcceptedWhileStoppingIsClosed) {
  gated_sessions f(1);
  auto& [rt, memory, gate, client, direct, q, handled] = f;
  qrt::session_processor p(client, q, f.counting_handler(),
                           {.max_concurrent_sessions = 1, .accept_wait = 5s});
  p.start(rt.executor());
  ASSERT_TRUE(gate->entered.wait_for_at_least(1));
  auto stopped = boost::asio::co_spawn(rt.executor(), p.stop(0ms), boost::asio::use_future);
  // stop() cannot finish while the accept is held at the gate; give it the time to begin.
  ASSERT_EQ(stopped.wait_for(300ms), std::future_status::timeout);
  gate->open = true;
  ASSERT_EQ(stopped.wait_for(30s), std::future_status::ready);
  stopped.get();
  EXPECT_EQ(handled.load(), 0);
  ASSERT_EQ(gate->accepted.load(), 1);
  EXPECT_EQ(gate->closes.load(), 1) << "the session accepted while stopping was never closed";
  // Nothing holds session "s" now: another receiver takes it and finds its message.
  auto again = rt.block_on(direct.accept_session(q, qrt::session_id::from("s"), 1s));
  ASSERT_TRUE(again) << again.error().to_string();
  auto got = rt.block_on(again->receive(1, 1s));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->front().body, "m1");
  rt.block_on(again->close());
}

// A session whose accept returned just before stop() began is closed by that stop() even when
// its deadline has passed before the worker gets to the session (contract P4: a stopped session
// processor holds no session). The worker used to register the session only once it started
// on it; a stop() that ran in between found nothing to close, sealed provider calls, and the
// worker's own close was refused: the session stayed locked until its lock ran out (on Service
// Bus; the embedded provider frees it when the receiver is destroyed). The observer blocking on
// `accepted` stands in for the worker's thread being preempted at that point.
TEST(SessionProcessor, ASessionAcceptedJustBeforeAStopPastItsDeadlineIsClosed) {
  gated_sessions f(2);
  auto& [rt, memory, gate, client, direct, q, handled] = f;
  gate->open = true;  // only its close counting is used here
  qrt::test::counter accepted_seen;
  qrt::test::counter released_seen;
  std::promise<void> go_on;
  auto resume = go_on.get_future().share();
  qrt::session_processor p(client, q, f.counting_handler(),
                           {.max_concurrent_sessions = 1,
                            .accept_wait = 5s,
                            .on_session = [&, resume](const qrt::session_event& e) {
                              if (e.what == qrt::session_event_kind::accepted) {
                                accepted_seen.add();
                                resume.wait();
                              } else if (e.what == qrt::session_event_kind::released) {
                                released_seen.add();
                              }
                            }});
  p.start(rt.executor());
  ASSERT_TRUE(accepted_seen.wait_for_at_least(1, 20s));
  // The worker is between its accept and its session; stop() runs on the other thread.
  auto stopped = boost::asio::co_spawn(rt.executor(), p.stop(0ms), boost::asio::use_future);
  const bool stop_returned = stopped.wait_for(30s) == std::future_status::ready;
  go_on.set_value();
  ASSERT_TRUE(stop_returned);
  stopped.get();
  ASSERT_TRUE(released_seen.wait_for_at_least(1, 20s));
  EXPECT_EQ(handled.load(), 0);
  ASSERT_EQ(gate->accepted.load(), 1);
  EXPECT_EQ(gate->closes.load(), 1) << "the session accepted before stop() was never closed";
}

// Once the renewal of a session's lock finds it lost, the session is the next holder's: the rest
// of the batch in hand is not handled here (it would run beside that holder's handlers, out of
// order). It is given back, the session released, and its messages come back in order to
// whoever takes the session next (here the same processor).
TEST(SessionProcessor, ALostSessionLockEndsTheBatchBeforeTheNextHandler) {
  session_fixture f;
  const auto q = qrt::queue_name::from("short_locks");
  ASSERT_TRUE(f.rt.block_on(f.direct.create_queue(
      q, {.lock_duration = 100ms, .max_delivery_count = 100, .requires_session = true})));
  for (int i = 0; i < 3; ++i) {
    qrt::message m{.body = "a-" + std::to_string(i)};
    m.session = qrt::session_id::from("a");
    ASSERT_TRUE(f.rt.block_on(f.direct.send(q, std::move(m))));
  }
  // The first renewal (at half the lock's 100 ms) finds the lock gone.
  f.faulty->fail_next(qrt::fault_ops::renew_lock, 1,
                      qrt::fail(errc::session_lock_lost, "taken by another holder"));
  std::atomic<bool> lost{false};
  std::atomic<int> accepted{0};
  std::mutex m;
  std::vector<std::pair<std::string, int>> handled;  // body, the acceptance it ran under
  qrt::test::counter completed;
  qrt::session_processor p(
      qrt::queue_client{f.faulty, {.retry = std::nullopt}}, q,
      [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
        {
          std::lock_guard lock(m);
          handled.emplace_back(msg.body, accepted.load());
        }
        if (msg.body == "a-0") {
          // Runs until the renewer has found the lock lost (bounded: the test fails, not hangs).
          boost::asio::steady_timer t(co_await boost::asio::this_coro::executor);
          for (int i = 0; i < 10'000 && !lost; ++i) {
            t.expires_after(1ms);
            co_await t.async_wait(boost::asio::use_awaitable);
          }
        }
        co_return qrt::result<void>{};
      },
      {.max_concurrent_sessions = 1,
       .session_idle_timeout = 100ms,
       .accept_wait = 100ms,
       .settle = qrt::batch_settlement::per_batch,
       .on_error =
           [&](const qrt::error& e) {
             if (e.code == errc::session_lock_lost) lost = true;
           },
       .on_processed =
           [&](const qrt::processed_message& done) {
             if (done.outcome == qrt::processing_outcome::completed) completed.add();
           },
       .on_session =
           [&](const qrt::session_event& e) {
             if (e.what == qrt::session_event_kind::accepted) ++accepted;
           }});
  p.start(f.rt.executor());
  ASSERT_TRUE(completed.wait_for_at_least(3));
  f.rt.block_on(p.stop(5s));
  EXPECT_TRUE(lost);
  std::lock_guard lock(m);
  EXPECT_EQ(handled, (std::vector<std::pair<std::string, int>>{{"a-0", 1}, {"a-1", 2}, {"a-2", 2}}))
      << "a message was handled under the lost lock";
  EXPECT_EQ(p.stats().sessions_lost, 1u);
  EXPECT_EQ(f.rt.block_on(f.direct.stats(q)).value().active, 0);
}

// A session that fails as soon as it is taken (its receive refused, say) is released; the worker
// then waits its retry back-off before taking a session again, as after a failed accept. Before,
// it took the same session again at once: accept, fail, release, accept, in a loop as fast as
// the provider answered, hammering the broker (and, for a failing settlement, the handlers).
TEST(SessionProcessor, ASessionThatFailsAtOnceIsNotRetakenBeforeTheBackOff) {
  session_fixture f;
  f.send("a", "a-0");
  f.faulty->fail_next(qrt::fault_ops::receive, 1'000,
                      qrt::fail(errc::connection_failed, "session receive refused"));
  qrt::test::counter accepted;
  qrt::test::counter failures_reported;
  qrt::session_processor p(
      qrt::queue_client{f.faulty, {.retry = std::nullopt}}, f.q,
      [](const received_message&) -> qrt::awaitable<qrt::result<void>> {
        co_return qrt::result<void>{};
      },
      {.max_concurrent_sessions = 1,
       .accept_wait = 100ms,
       // Long enough that a second accept can only come from a worker that skipped it.
       .retry = qrt::retry_policy::fixed_interval(1h),
       .on_error = [&](const qrt::error&) { failures_reported.add(); },
       .on_session =
           [&](const qrt::session_event& e) {
             if (e.what == qrt::session_event_kind::accepted) accepted.add();
           }});
  p.start(f.rt.executor());
  ASSERT_TRUE(failures_reported.wait_for_at_least(1));
  // Without the back-off the second accept follows within microseconds; with it, never here.
  EXPECT_FALSE(accepted.wait_for_at_least(2, 300ms))
      << "the failed session was taken again " << accepted.value() - 1 << " times at once";
  const auto report = f.rt.block_on(p.stop(0ms));
  EXPECT_EQ(report.abandoned_running, 0u);
  EXPECT_EQ(p.stats().sessions_accepted, 1u);
  EXPECT_EQ(p.stats().sessions_lost, 1u);
  EXPECT_EQ(p.stats().handler_calls, 0u);
  EXPECT_EQ(f.stats().active, 1) << "the message stays in the queue, untouched";
}

namespace {
// Starts stop() with a long deadline and says whether it returned within `bound`; if not,
// waits it out so the test can go on (stop() always returns by its deadline).
bool stops_within(session_fixture& f, qrt::session_processor& p, std::chrono::seconds bound) {
  auto stopped = boost::asio::co_spawn(f.rt.executor(), p.stop(20s), boost::asio::use_future);
  const bool in_time = stopped.wait_for(bound) == std::future_status::ready;
  stopped.get();
  return in_time;
}
}  // namespace

// stop() ends a worker's back-off after a failed accept instead of waiting it out (as a
// processor's receive loop does): nothing is held, so nothing needs the deadline. Before, stop()
// waited for the worker until its deadline.
TEST(SessionProcessor, StopEndsTheBackOffAfterAFailedAccept) {
  session_fixture f;
  f.faulty->fail_next(qrt::fault_ops::accept_session, 1,
                      qrt::fail(errc::connection_failed, "accept refused"));
  qrt::test::counter failures_reported;
  qrt::session_processor p(qrt::queue_client{f.faulty, {.retry = std::nullopt}}, f.q,
                           [](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                             co_return qrt::result<void>{};
                           },
                           {.max_concurrent_sessions = 1,
                            .accept_wait = 100ms,
                            .retry = qrt::retry_policy::fixed_interval(1h),
                            .on_error = [&](const qrt::error&) { failures_reported.add(); }});
  p.start(f.rt.executor());
  ASSERT_TRUE(failures_reported.wait_for_at_least(1));
  EXPECT_TRUE(stops_within(f, p, 10s)) << "stop() waited out the worker's one-hour back-off";
  EXPECT_EQ(p.stats().sessions_accepted, 0u);
}

// A failed message waiting its abandon_delay is abandoned at once when stop() comes (with the
// rest of its batch, in order), as a processor's is: stop() does not wait the delay out.
TEST(SessionProcessor, StopEndsTheAbandonDelayAndGivesTheMessageBack) {
  session_fixture f;
  f.send("a", "a-0");
  f.send("a", "a-1");
  qrt::test::counter failed;
  std::atomic<int> calls{0};
  qrt::session_processor p(f.client, f.q,
                           [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                             ++calls;
                             failed.add();
                             co_return qrt::fail(errc::timeout, "dependency down");
                           },
                           {.max_concurrent_sessions = 1,
                            .accept_wait = 100ms,
                            .abandon_delay = std::chrono::duration_cast<qrt::milliseconds>(1h)});
  p.start(f.rt.executor());
  ASSERT_TRUE(failed.wait_for_at_least(1));
  EXPECT_TRUE(stops_within(f, p, 10s)) << "stop() waited out the one-hour abandon_delay";
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(p.stats().abandoned, 1u) << "the failed message was not given back by an abandon";
  EXPECT_EQ(f.stats().active, 2);
  EXPECT_EQ(f.stats().dead_lettered, 0);
}

// Contract P2 for sessions: while a session is held its lock is renewed, so a handler that runs
// three times the lock's length keeps the session; nobody else can take it meanwhile, and the
// message is handled once and completed. (Behaviour that held but had no test.)
TEST(SessionProcessor, ASessionHeldLongerThanItsLockIsRenewedAndStaysOurs) {
  session_fixture f;  // session locks of 1 s: renewals land in time on a loaded machine
  f.send("a", "a-0");
  qrt::test::counter calls, finished;
  std::atomic<bool> taken_meanwhile{false};
  qrt::session_processor p(
      f.client, f.q,
      [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
        calls.add();
        boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 3s);
        co_await t.async_wait(boost::asio::use_awaitable);
        // Three lock lengths later: the session must still be ours.
        auto other = co_await f.direct.accept_session(f.q, qrt::session_id::from("a"), 0ms);
        if (other) {
          taken_meanwhile = true;
          co_await other->close();
        }
        finished.add();
        co_return qrt::result<void>{};
      },
      {.max_concurrent_sessions = 1, .session_idle_timeout = 100ms, .accept_wait = 100ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(finished.wait_for_at_least(1));
  f.rt.block_on(p.stop(5s));
  EXPECT_FALSE(taken_meanwhile) << "another receiver took the session while its handler ran";
  EXPECT_EQ(calls.value(), 1) << "the message was delivered again while its handler ran";
  const auto s = p.stats();
  EXPECT_GE(s.session_lock_renewals, 2u);
  EXPECT_EQ(s.completed, 1u);
  EXPECT_EQ(s.sessions_lost, 0u);
  EXPECT_EQ(f.stats().active, 0);
  EXPECT_EQ(f.stats().dead_lettered, 0);
}

// A session processor destroyed without stop() ends its workers' back-off at once, as stop()
// does, so their coroutines end and let go of the client. Before, the destructor only set the
// flag the workers look at between waits: a worker backing off after a failed accept waited out
// its whole back-off, holding the processor (and the provider) for up to an hour after it was
// gone. The io_context running out of work shows that every worker has ended.
TEST(SessionProcessor, DestroyedWithoutStopItEndsTheBackOffAndLetsGoOfTheClient) {
  // Refuses every accept without suspending: the worker's back-off begins in the same turn.
  struct accept_refused final : qrt::test::forwarding_provider {
    using forwarding_provider::forwarding_provider;
    qrt::awaitable<qrt::result<std::shared_ptr<qrt::session_receiver>>> accept_session(
        const qrt::queue_name&, std::optional<qrt::session_id>, qrt::milliseconds) override {
      co_return qrt::fail(errc::connection_failed, "broker unreachable");
    }
  };
  qrt::runtime rt{{.worker_threads = 1}};  // the embedded provider's
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto refusing = std::make_shared<accept_refused>(memory);
  const std::weak_ptr<qrt::provider> held = refusing;
  const qrt::queue_client client{std::move(refusing), {.retry = std::nullopt}};
  const auto q = qrt::queue_name::from("ordered");
  const auto handler = [](const received_message&) -> qrt::awaitable<qrt::result<void>> {
    co_return qrt::result<void>{};
  };
  {
    qrt::session_processor never_started(client, q, handler);  // nothing to wake
  }

  const long owners_without_processor = held.use_count();

  boost::asio::io_context io;
  std::atomic<int> refusals{0};
  std::optional<qrt::session_processor> p;
  p.emplace(client, q, handler,
            qrt::session_processor_options{.max_concurrent_sessions = 2,
                                           .accept_wait = 100ms,
                                           .retry = qrt::retry_policy::fixed_interval(1h),
                                           .on_error = [&](const qrt::error&) { ++refusals; }});
  p->start(io.get_executor());
  // Both workers had their accept refused: each is in its one-hour back-off.
  ASSERT_TRUE(qrt::test::turn_until(io, [&] { return refusals.load() == 2; }));

  p.reset();
  io.run_for(30s);  // returns as soon as no worker is left
  EXPECT_TRUE(io.stopped()) << "a worker of the destroyed processor still waited out its back-off";
  EXPECT_EQ(refusals.load(), 2) << "a worker asked for a session again after the destructor";
  EXPECT_EQ(held.use_count(), owners_without_processor)
      << "the destroyed processor still held its client";
}

namespace {

// One worker, three sessions with four messages each, sent interleaved (a-0 b-0 c-0 a-1 ...).
// Each handler outlasts `hold` (a timer never fires early), so with a bound every session has
// been held past it once its batch of one is settled. Returns the bodies in handler order.
std::vector<std::string> handled_order_with_hold(std::chrono::milliseconds hold,
                                                 qrt::session_processor_stats& stats) {
  session_fixture f;
  constexpr int per_session = 4;
  for (int i = 0; i < per_session; ++i) {
    for (const char* s : {"a", "b", "c"}) f.send(s, std::string(s) + "-" + std::to_string(i));
  }
  std::mutex m;
  std::vector<std::string> order;
  qrt::test::counter handled;
  qrt::session_processor p(f.client, f.q,
                           [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                             boost::asio::steady_timer outlast_the_hold(
                                 co_await boost::asio::this_coro::executor, hold + 1ms);
                             co_await outlast_the_hold.async_wait(boost::asio::use_awaitable);
                             {
                               std::lock_guard lock(m);
                               order.push_back(msg.body);
                             }
                             handled.add();
                             co_return qrt::result<void>{};
                           },
                           {.max_concurrent_sessions = 1,
                            .max_messages_per_receive = 1,
                            .session_idle_timeout = 20ms,
                            .max_session_hold = hold,
                            .accept_wait = 200ms});
  p.start(f.rt.executor());
  EXPECT_TRUE(handled.wait_for_at_least(3 * per_session));
  f.rt.block_on(p.stop(5s));
  stats = p.stats();
  EXPECT_EQ(f.stats().active, 0) << "every message completed";
  std::lock_guard lock(m);
  return order;
}

}  // namespace

// With more busy sessions than workers, a held session is released after max_session_hold so
// the others get a turn: all three are handled interleaved, each in order, every message once.
TEST(SessionProcessor, ASessionHeldPastMaxSessionHoldIsReleasedSoTheOthersGetATurn) {
  qrt::session_processor_stats stats;
  const auto order = handled_order_with_hold(5ms, stats);
  EXPECT_EQ(order, (std::vector<std::string>{"a-0", "b-0", "c-0", "a-1", "b-1", "c-1", "a-2", "b-2",
                                             "c-2", "a-3", "b-3", "c-3"}));
  EXPECT_GE(stats.sessions_released_hold, 9u);
  EXPECT_EQ(stats.handler_calls, 12u) << "nothing handled twice";
}

// Without a bound (0, the default) a busy session is held until it has nothing more: the first
// one is drained before another is taken. This is what the bound above changes.
TEST(SessionProcessor, WithoutMaxSessionHoldABusySessionIsDrainedFirst) {
  qrt::session_processor_stats stats;
  const auto order = handled_order_with_hold(0ms, stats);
  EXPECT_EQ(order, (std::vector<std::string>{"a-0", "a-1", "a-2", "a-3", "b-0", "b-1", "b-2", "b-3",
                                             "c-0", "c-1", "c-2", "c-3"}));
  EXPECT_EQ(stats.sessions_released_hold, 0u);
  EXPECT_EQ(stats.sessions_accepted, 3u);
}

// A negative bound is a mistake, not "no bound": refused when the processor is built.
TEST(SessionProcessor, ANegativeMaxSessionHoldIsRefused) {
  session_fixture f;
  try {
    qrt::session_processor p(f.client, f.q,
                             [](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                               co_return qrt::result<void>{};
                             },
                             {.max_session_hold = -1ms});
    FAIL() << "a negative max_session_hold was accepted";
  } catch (const qrt::exception& e) {
    EXPECT_EQ(e.get().code, errc::invalid_argument);
    EXPECT_NE(e.get().message.find("max_session_hold"), std::string::npos) << e.what();
  }
}
