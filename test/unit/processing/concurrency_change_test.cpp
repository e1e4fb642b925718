// Changing a running processor's concurrency (processor::set_max_concurrent_calls,
// session_processor::set_max_concurrent_sessions) against the real embedded provider. Handlers
// block on a gate the test opens, so "running at once" is observed, never timed.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <qrt/memory.hpp>
#include <qrt/processor.hpp>
#include <qrt/runtime.hpp>
#include <qrt/session_processor.hpp>
#include <string>
#include <thread>
#include <vector>

#include "../support/wait.hpp"

using namespace std::chrono_literals;
using qrt::received_message;

// A named namespace, tests included: the processing tests are built as one unity translation
// unit, and these helpers would clash with the other files' anonymous ones.
namespace concurrency_change {

std::string numbered(std::string prefix, int i) {
  prefix += std::to_string(i);
  return prefix;
}

qrt::awaitable<void> work_for(qrt::milliseconds d) {
  boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, d);
  co_await t.async_wait(boost::asio::use_awaitable);
}

// Handlers pass through it: while it is closed they wait inside (blocking their thread, so the
// runtime needs more threads than handlers held). It counts how many are inside at once.
class gate {
 public:
  // Counts the caller in, holds it while closed, counts it out. Returns how many were inside
  // (this one included) when it came in.
  int pass() {
    std::unique_lock lock(m_);
    const int now = ++inside_;
    ++entered_;
    changed_.notify_all();
    changed_.wait_for(lock, 20s, [&] { return open_; });
    --inside_;
    changed_.notify_all();
    return now;
  }
  bool wait_inside(int n) {
    std::unique_lock lock(m_);
    return changed_.wait_for(lock, 10s, [&] { return inside_ >= n; });
  }
  void open() {
    std::lock_guard lock(m_);
    open_ = true;
    changed_.notify_all();
  }
  int entered() const {
    std::lock_guard lock(m_);
    return entered_;
  }

 private:
  mutable std::mutex m_;
  std::condition_variable changed_;
  int inside_ = 0;
  int entered_ = 0;
  bool open_ = false;
};

void note_most(std::atomic<int>& most, int now) {
  int seen = most.load();
  while (now > seen && !most.compare_exchange_weak(seen, now)) {
  }
}

// Every body handled, with how often.
class tally {
 public:
  void add(const std::string& body) {
    {
      std::lock_guard lock(m_);
      ++seen_[body];
    }
    handled_.add();
  }
  bool wait_for(long n) { return handled_.wait_for_at_least(n, 20s); }
  std::map<std::string, int> seen() const {
    std::lock_guard lock(m_);
    return seen_;
  }

 private:
  mutable std::mutex m_;
  std::map<std::string, int> seen_;
  qrt::test::counter handled_;
};

// Each of `n` bodies "<prefix><i>" handled exactly once.
void expect_each_once(const tally& t, const std::string& prefix, int n) {
  const auto seen = t.seen();
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const auto it = seen.find(numbered(prefix, i));
    if (it == seen.end()) {
      ADD_FAILURE() << numbered(prefix, i) << " was never handled";
    } else {
      EXPECT_EQ(it->second, 1) << numbered(prefix, i) << " handled more than once";
    }
  }
}

struct fixture {
  // More threads than handlers the tests hold inside the gate, so the processor's own strand
  // (and the provider) always has one.
  qrt::runtime rt{{.worker_threads = 12}};
  qrt::provider_ptr memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client{memory};
  qrt::queue_name q = qrt::queue_name::from("work");

  explicit fixture(qrt::queue_options o = {.lock_duration = 30s}) {
    EXPECT_TRUE(rt.block_on(client.create_queue(q, o)));
  }
  void send_numbered(int n, const std::string& prefix = "m") {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = numbered(prefix, i)})));
    }
  }
  void expect_queue_empty() {
    auto s = rt.block_on(client.stats(q)).value();
    EXPECT_EQ(s.active + s.in_flight, 0);
  }
};

struct session_fixture {
  qrt::runtime rt{{.worker_threads = 12}};
  qrt::provider_ptr memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client{memory};
  qrt::queue_name q = qrt::queue_name::from("ordered");

  session_fixture() {
    EXPECT_TRUE(
        rt.block_on(client.create_queue(q, {.lock_duration = 30s, .requires_session = true})));
  }
  // `per_session` messages "s<k>-<i>" in each of `sessions` sessions "s<k>".
  void send(int sessions, int per_session) {
    for (int i = 0; i < per_session; ++i) {
      for (int k = 0; k < sessions; ++k) {
        qrt::message m{.body = numbered(numbered("s", k) + "-", i)};
        m.session = qrt::session_id::from(numbered("s", k));
        ASSERT_TRUE(rt.block_on(client.send(q, std::move(m))));
      }
    }
  }
  void expect_queue_empty() {
    auto s = rt.block_on(client.stats(q)).value();
    EXPECT_EQ(s.active + s.in_flight, 0);
  }
};

// Bodies "s<k>-<i>" of one session, in the order handled, each in order 0, 1, 2, ...
class session_order {
 public:
  void add(const std::string& body) {
    const auto dash = body.find('-');
    std::lock_guard lock(m_);
    order_[body.substr(0, dash)].push_back(std::stoi(body.substr(dash + 1)));
  }
  void expect_in_order(int sessions, int per_session) const {
    std::lock_guard lock(m_);
    ASSERT_EQ(order_.size(), static_cast<std::size_t>(sessions));
    for (const auto& [session, got] : order_) {
      ASSERT_EQ(got.size(), static_cast<std::size_t>(per_session)) << session;
      for (int i = 0; i < per_session; ++i) {
        EXPECT_EQ(got[static_cast<std::size_t>(i)], i) << session << " out of order";
      }
    }
  }

 private:
  mutable std::mutex m_;
  std::map<std::string, std::vector<int>> order_;
};

// Raised from 1 to 4 while four messages wait: four handlers are inside at the same time,
// without a restart (the first one, started under the old limit, is still running).
TEST(ConcurrencyChange, RaisingTheLimitLetsTheWaitingMessagesRunAtOnce) {
  fixture f;
  f.send_numbered(4);
  gate g;
  qrt::test::counter done;
  qrt::processor p(f.client, f.q,
                   [&](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                     g.pass();
                     done.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 1, .prefetch_count = 10, .receive_wait = 50ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(g.wait_inside(1));
  EXPECT_EQ(p.stats().max_concurrent_calls, 1u);

  p.set_max_concurrent_calls(4);
  EXPECT_EQ(p.stats().max_concurrent_calls, 4u);
  EXPECT_TRUE(g.wait_inside(4)) << "the raised limit did not start the waiting messages";
  g.open();
  ASSERT_TRUE(done.wait_for_at_least(4));
  f.rt.block_on(p.stop(5s));
  EXPECT_EQ(p.stats().max_in_flight, 4u);
  EXPECT_EQ(p.stats().completed, 4u);
  f.expect_queue_empty();
}

// Lowered from 8 to 2 with 8 handlers running: none of them is interrupted (all 8 complete),
// none starts beside them while more than 2 run, and afterwards never more than 2 run at once.
TEST(ConcurrencyChange, LoweringTheLimitInterruptsNoHandlerAndHoldsTheNewLimit) {
  fixture f;
  constexpr int total = 40;
  f.send_numbered(total);
  gate g;
  tally handled;
  std::atomic<bool> lowered{false};
  std::atomic<int> inside{0}, most_after{0}, started_after{0};
  qrt::processor p(f.client, f.q,
                   [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                     const int now = ++inside;
                     if (lowered) {
                       ++started_after;
                       note_most(most_after, now);
                       co_await work_for(1ms);
                     } else {
                       g.pass();
                     }
                     --inside;
                     handled.add(msg.body);
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 8, .prefetch_count = 10, .receive_wait = 50ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(g.wait_inside(8));

  // With 8 running at a limit of 8 nothing can start before the new limit is in force, so every
  // handler that finds `lowered` set started under it.
  lowered = true;
  p.set_max_concurrent_calls(2);
  g.open();
  ASSERT_TRUE(handled.wait_for(total));
  f.rt.block_on(p.stop(5s));

  EXPECT_EQ(g.entered(), 8);
  EXPECT_EQ(started_after.load(), total - 8);
  EXPECT_LE(most_after.load(), 2) << "a handler started while more than the new limit ran";
  const auto s = p.stats();
  EXPECT_EQ(s.max_concurrent_calls, 2u);
  EXPECT_EQ(s.max_in_flight, 8u);
  EXPECT_EQ(s.completed, static_cast<std::uint64_t>(total));
  EXPECT_EQ(s.handler_failures, 0u);
  expect_each_once(handled, "m", total);
  f.expect_queue_empty();
}

// Shrinking and growing while messages flow (with prefetched messages buffered each time, and
// locks short enough that a shrink gives some of them back): every message is handled exactly
// once, none is lost.
TEST(ConcurrencyChange, NothingIsLostOrHandledTwiceAcrossShrinksAndGrowths) {
  fixture f({.lock_duration = 1s});
  constexpr int total = 200;
  f.send_numbered(total);
  tally handled;
  qrt::test::counter progress;
  qrt::processor p(f.client, f.q,
                   [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                     co_await work_for(2ms);
                     handled.add(msg.body);
                     progress.add();
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 4, .prefetch_count = 50, .receive_wait = 50ms});
  p.start(f.rt.executor());
  const std::pair<long, std::size_t> steps[] = {{30, 1}, {60, 8}, {100, 2}, {140, 16}, {170, 1}};
  for (const auto& [after, limit] : steps) {
    ASSERT_TRUE(progress.wait_for_at_least(after, 20s));
    p.set_max_concurrent_calls(limit);
  }
  ASSERT_TRUE(handled.wait_for(total));
  f.rt.block_on(p.stop(5s));
  const auto s = p.stats();
  EXPECT_EQ(s.completed, static_cast<std::uint64_t>(total));
  EXPECT_EQ(s.handler_calls, static_cast<std::uint64_t>(total));
  EXPECT_EQ(s.max_concurrent_calls, 1u);
  expect_each_once(handled, "m", total);
  f.expect_queue_empty();
}

// Fills the processor's read-ahead for 8 handlers, then lowers the limit to 1 and lets every
// message be handled; each exactly once, none left in the queue. `out`: its stats at the end.
void lower_with_a_full_read_ahead(bool order_by_session, qrt::processor_stats& out) {
  fixture f({.lock_duration = 1s});
  constexpr int total = 59;  // the first alone, then 8 running and 50 prefetched
  f.send_numbered(total);
  gate g;
  tally handled;
  qrt::test::counter first_done;
  std::atomic<bool> opened{false};
  qrt::processor p(f.client, f.q,
                   [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                     if (msg.body == "m0") {
                       // Sets the observed handler duration the read-ahead is sized by: with
                       // at least 50 ms per message and half a 1 s lock to start in, 8 handlers
                       // start 80 messages in time, 1 handler at most 10.
                       co_await work_for(50ms);
                       first_done.add();
                     } else if (!opened) {
                       g.pass();
                     }
                     handled.add(msg.body);
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 1,
                    .prefetch_count = 50,
                    .receive_wait = 50ms,
                    .order_by_session = order_by_session});
  p.start(f.rt.executor());
  ASSERT_TRUE(first_done.wait_for_at_least(1));
  p.set_max_concurrent_calls(8);
  ASSERT_TRUE(g.wait_inside(8));
  // Until the processor holds all it may: 8 running, 50 buffered. A condition polled, with a
  // bound; nothing is timed.
  const auto give_up_at = std::chrono::steady_clock::now() + 10s;
  while (p.stats().received < static_cast<std::uint64_t>(total) &&
         std::chrono::steady_clock::now() < give_up_at) {
    std::this_thread::yield();
  }
  ASSERT_EQ(p.stats().received, static_cast<std::uint64_t>(total));

  p.set_max_concurrent_calls(1);
  opened = true;
  g.open();
  ASSERT_TRUE(handled.wait_for(total));
  f.rt.block_on(p.stop(5s));
  out = p.stats();
  EXPECT_EQ(out.completed, static_cast<std::uint64_t>(total));
  expect_each_once(handled, "m", total);
  f.expect_queue_empty();
}

// The read-ahead was sized for 8 handlers; lowered to 1, the processor cannot start most of
// what it buffered before their locks run short, so it gives those back to the queue at once
// (another consumer could take them) instead of holding them. None is lost or handled twice.
TEST(ConcurrencyChange, LoweringTheLimitGivesBackThePrefetchedMessagesItCannotStartInTime) {
  qrt::processor_stats s;
  lower_with_a_full_read_ahead(false, s);
  EXPECT_GE(s.released_unstarted, 40u) << "the prefetched messages were held, not given back";
}

// With order_by_session a message given back could be overtaken by a later one of its session
// taken meanwhile: the read-ahead is kept, each message started (renewed first) in its turn.
TEST(ConcurrencyChange, LoweringTheLimitKeepsTheReadAheadWhenOrderedBySession) {
  qrt::processor_stats s;
  lower_with_a_full_read_ahead(true, s);
  EXPECT_EQ(s.released_unstarted, 0u);
}

// 0 handlers would leave every message waiting: refused, naming the setting; the limit stays.
// After stop() a new limit is ignored.
TEST(ConcurrencyChange, ZeroIsRefusedAndAChangeAfterStopIsIgnored) {
  fixture f;
  qrt::processor p(f.client, f.q,
                   [](const received_message&) -> qrt::awaitable<qrt::result<void>> {
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 3, .receive_wait = 50ms});
  try {
    p.set_max_concurrent_calls(0);
    ADD_FAILURE() << "a limit of 0 was accepted";
  } catch (const qrt::exception& e) {
    EXPECT_EQ(e.get().code, qrt::errc::invalid_argument);
    EXPECT_NE(e.get().message.find("max_concurrent_calls"), std::string::npos) << e.what();
  }
  EXPECT_EQ(p.stats().max_concurrent_calls, 3u);
  p.set_max_concurrent_calls(5);  // before start(): the limit it starts with
  EXPECT_EQ(p.stats().max_concurrent_calls, 5u);
  p.start(f.rt.executor());
  f.rt.block_on(p.stop(5s));
  p.set_max_concurrent_calls(7);
  EXPECT_EQ(p.stats().max_concurrent_calls, 5u);
}

// Any limit above 0 is accepted, the largest ones too: the receive loop's room (the limit plus
// the read-ahead of 10) saturates instead of wrapping around; SIZE_MAX - 9 wrapped to 0, and the
// loop waited for room for ever.
TEST(ConcurrencyChange, TheLargestLimitsStillHandleEveryMessage) {
  fixture f;
  f.send_numbered(20);
  tally t;
  qrt::processor p(f.client, f.q,
                   [&](const received_message& m) -> qrt::awaitable<qrt::result<void>> {
                     t.add(m.body);
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 2, .prefetch_count = 10, .receive_wait = 50ms});
  p.set_max_concurrent_calls(SIZE_MAX - 9);
  p.start(f.rt.executor());
  EXPECT_TRUE(t.wait_for(20)) << "a limit of SIZE_MAX - 9 left the messages waiting";
  f.rt.block_on(p.stop(5s));
  expect_each_once(t, "m", 20);
  EXPECT_EQ(p.stats().max_concurrent_calls, SIZE_MAX - 9);
}

// The setter from several threads while the processor runs and another thread reads stats():
// nothing races (run under TSan), every message is handled once, and the limit in force is the
// last one set.
TEST(ConcurrencyChange, TheLimitMayBeChangedFromOtherThreadsWhileItRuns) {
  fixture f;
  constexpr int total = 300;
  f.send_numbered(total);
  tally handled;
  qrt::processor p(f.client, f.q,
                   [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                     co_await work_for(1ms);
                     handled.add(msg.body);
                     co_return qrt::result<void>{};
                   },
                   {.max_concurrent_calls = 4, .prefetch_count = 20, .receive_wait = 50ms});
  p.start(f.rt.executor());
  std::atomic<bool> done{false};
  std::vector<std::thread> changers;
  for (std::size_t t = 0; t < 3; ++t) {
    changers.emplace_back([&, t] {
      for (std::size_t i = 0; !done; ++i) {
        p.set_max_concurrent_calls(1 + (i + t) % 8);
        (void)p.stats();
        std::this_thread::yield();
      }
    });
  }
  const bool all = handled.wait_for(total);
  done = true;
  for (auto& t : changers) t.join();
  p.set_max_concurrent_calls(6);
  EXPECT_EQ(p.stats().max_concurrent_calls, 6u);
  f.rt.block_on(p.stop(5s));
  ASSERT_TRUE(all);
  EXPECT_EQ(p.stats().completed, static_cast<std::uint64_t>(total));
  expect_each_once(handled, "m", total);
  f.expect_queue_empty();
}

// The session processor: raised from 1 to 3 while three sessions wait, three sessions' handlers
// are inside at once, each session still in order.
TEST(ConcurrencyChange, RaisingTheSessionLimitTakesTheWaitingSessionsAtOnce) {
  session_fixture f;
  f.send(3, 2);
  gate g;
  session_order order;
  qrt::test::counter done;
  qrt::session_processor p(f.client, f.q,
                           [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                             order.add(msg.body);
                             g.pass();
                             done.add();
                             co_return qrt::result<void>{};
                           },
                           {.max_concurrent_sessions = 1, .accept_wait = 50ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(g.wait_inside(1));
  EXPECT_EQ(p.stats().max_concurrent_sessions, 1u);

  p.set_max_concurrent_sessions(3);
  EXPECT_EQ(p.stats().max_concurrent_sessions, 3u);
  EXPECT_TRUE(g.wait_inside(3)) << "the raised limit did not take the waiting sessions";
  g.open();
  ASSERT_TRUE(done.wait_for_at_least(6));
  f.rt.block_on(p.stop(5s));
  EXPECT_EQ(p.stats().max_sessions_held, 3u);
  order.expect_in_order(3, 2);
  f.expect_queue_empty();
}

// The session processor lowered from 4 to 1 with four sessions' handlers running: none is
// interrupted, and once the sessions above the limit have finished their batch (one message
// here) a single session is handled at a time; every message once, each session in order.
TEST(ConcurrencyChange, LoweringTheSessionLimitInterruptsNoHandlerAndHoldsTheNewLimit) {
  session_fixture f;
  constexpr int sessions = 4, per_session = 5;
  f.send(sessions, per_session);
  gate g;
  session_order order;
  tally handled;
  std::atomic<bool> lowered{false};
  std::atomic<int> inside{0}, most_after{0};
  qrt::session_processor p(f.client, f.q,
                           [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                             order.add(msg.body);
                             const int now = ++inside;
                             if (lowered) {
                               note_most(most_after, now);
                               co_await work_for(1ms);
                             } else {
                               g.pass();
                             }
                             --inside;
                             handled.add(msg.body);
                             co_return qrt::result<void>{};
                           },
                           {.max_concurrent_sessions = 4,
                            .max_messages_per_receive = 1,
                            .session_idle_timeout = 100ms,
                            .accept_wait = 50ms});
  p.start(f.rt.executor());
  ASSERT_TRUE(g.wait_inside(4));
  lowered = true;
  p.set_max_concurrent_sessions(1);
  g.open();
  ASSERT_TRUE(handled.wait_for(sessions * per_session));
  f.rt.block_on(p.stop(5s));

  EXPECT_EQ(g.entered(), 4);
  EXPECT_LE(most_after.load(), 1) << "a session was handled beside another after the limit fell";
  EXPECT_EQ(p.stats().max_concurrent_sessions, 1u);
  EXPECT_EQ(p.stats().completed, static_cast<std::uint64_t>(sessions * per_session));
  order.expect_in_order(sessions, per_session);
  f.expect_queue_empty();
}

// The session limit from other threads while the session processor runs (run under TSan):
// every message handled once, each session in order; 0 is refused; after stop() ignored.
TEST(ConcurrencyChange, TheSessionLimitMayBeChangedFromOtherThreadsWhileItRuns) {
  session_fixture f;
  constexpr int sessions = 6, per_session = 20;
  f.send(sessions, per_session);
  session_order order;
  tally handled;
  qrt::session_processor p(f.client, f.q,
                           [&](const received_message& msg) -> qrt::awaitable<qrt::result<void>> {
                             order.add(msg.body);
                             co_await work_for(1ms);
                             handled.add(msg.body);
                             co_return qrt::result<void>{};
                           },
                           {.max_concurrent_sessions = 2,
                            .max_messages_per_receive = 3,
                            .session_idle_timeout = 50ms,
                            .accept_wait = 50ms});
  try {
    p.set_max_concurrent_sessions(0);
    ADD_FAILURE() << "a limit of 0 was accepted";
  } catch (const qrt::exception& e) {
    EXPECT_EQ(e.get().code, qrt::errc::invalid_argument);
    EXPECT_NE(e.get().message.find("max_concurrent_sessions"), std::string::npos) << e.what();
  }
  p.start(f.rt.executor());
  std::atomic<bool> done{false};
  std::vector<std::thread> changers;
  for (std::size_t t = 0; t < 2; ++t) {
    changers.emplace_back([&, t] {
      for (std::size_t i = 0; !done; ++i) {
        p.set_max_concurrent_sessions(1 + (i + t) % 5);
        (void)p.stats();
        std::this_thread::yield();
      }
    });
  }
  const bool all = handled.wait_for(sessions * per_session);
  done = true;
  for (auto& t : changers) t.join();
  p.set_max_concurrent_sessions(3);
  EXPECT_EQ(p.stats().max_concurrent_sessions, 3u);
  f.rt.block_on(p.stop(5s));
  p.set_max_concurrent_sessions(4);
  EXPECT_EQ(p.stats().max_concurrent_sessions, 3u);
  ASSERT_TRUE(all);
  order.expect_in_order(sessions, per_session);
  f.expect_queue_empty();
}

// A session processor has a worker per session it may hold: a limit of millions, given to the
// constructor or the setter, is refused with the bound named, instead of taking the memory of
// as many workers at start().
TEST(ConcurrencyChange, ASessionLimitAboveTheBoundIsRefused) {
  session_fixture f;
  auto handler = [](const received_message&) -> qrt::awaitable<qrt::result<void>> {
    co_return qrt::result<void>{};
  };
  constexpr auto most = qrt::session_processor_options::most_concurrent_sessions;
  auto expect_refused = [&](auto&& make_or_set) {
    try {
      make_or_set();
      ADD_FAILURE() << "a limit of " << most + 1 << " sessions was accepted";
    } catch (const qrt::exception& e) {
      EXPECT_EQ(e.get().code, qrt::errc::invalid_argument);
      EXPECT_NE(e.get().message.find(std::to_string(most)), std::string::npos) << e.what();
    }
  };
  expect_refused([&] {
    qrt::session_processor p(f.client, f.q, handler, {.max_concurrent_sessions = most + 1});
  });
  qrt::session_processor p(f.client, f.q, handler, {.max_concurrent_sessions = most});
  expect_refused([&] { p.set_max_concurrent_sessions(SIZE_MAX); });
  EXPECT_EQ(p.stats().max_concurrent_sessions, most);
}

}  // namespace concurrency_change
