// The circuit breaker, on a controllable clock.
#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <mutex>
#include <qrt/circuit_breaker.hpp>
#include <qrt/runtime.hpp>
#include <stdexcept>
#include <thread>

using namespace std::chrono_literals;
using qrt::breaker_state;
using qrt::errc;

namespace {

struct fake_clock {
  std::chrono::steady_clock::time_point t{std::chrono::hours{1}};
  std::function<std::chrono::steady_clock::time_point()> fn() {
    return [this] { return t; };
  }
};

}  // namespace

// Contract P6: the breaker opens after N failures, rejects fast while open, and closes after a
// good probe, so redelivery loops do not hammer a failing dependency.
TEST(CircuitBreaker, OpensAfterNFailuresRejectsFastWhileOpenAndClosesAfterAGoodProbe) {
  fake_clock clock;
  std::vector<std::pair<breaker_state, breaker_state>> changes;
  qrt::circuit_breaker breaker(
      {.failure_threshold = 3,
       .open_duration = 10s,
       .half_open_probes = 1,
       .on_state_change = [&](auto from, auto to) { changes.emplace_back(from, to); },
       .now = clock.fn()});
  qrt::runtime rt;
  int calls = 0;
  bool healthy = false;
  auto call = [&] {
    return rt.block_on(breaker.run([&]() -> qrt::awaitable<qrt::result<int>> {
      ++calls;
      if (!healthy) co_return qrt::fail(errc::connection_failed, "down");
      co_return 1;
    }));
  };

  for (int i = 0; i < 3; ++i) EXPECT_FALSE(call());
  EXPECT_EQ(breaker.state(), breaker_state::open);
  EXPECT_EQ(calls, 3);

  auto rejected = call();
  ASSERT_FALSE(rejected);
  EXPECT_EQ(calls, 3) << "an open breaker must not call the dependency";
  EXPECT_EQ(rejected.error().code, errc::throttled);
  EXPECT_EQ(rejected.error().provider_code, "circuit_open");
  EXPECT_EQ(rejected.error().retry_after, 10'000ms);

  clock.t += 4s;
  EXPECT_FALSE(call());
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(breaker.time_until_probe(), 6s);

  clock.t += 6s;  // open_duration over: one probe, which fails -> open again
  EXPECT_FALSE(call());
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(breaker.state(), breaker_state::open);

  clock.t += 10s;
  healthy = true;
  EXPECT_TRUE(call());
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(breaker.state(), breaker_state::closed);
  EXPECT_TRUE(call());

  using s = breaker_state;
  EXPECT_EQ(changes, (std::vector<std::pair<s, s>>{{s::closed, s::open},
                                                   {s::open, s::half_open},
                                                   {s::half_open, s::open},
                                                   {s::open, s::half_open},
                                                   {s::half_open, s::closed}}));
}

// The state-change callback is user code: whatever it throws, the breaker changes state and the
// call that caused the change returns normally.
TEST(CircuitBreaker, ThrowingStateChangeCallbackNeitherEscapesNorStopsTheChange) {
  fake_clock clock;
  int changes = 0;
  qrt::circuit_breaker breaker({.failure_threshold = 1,
                                .open_duration = 1s,
                                .on_state_change =
                                    [&](auto, auto) {
                                      ++changes;
                                      if (changes % 2 == 0) throw std::runtime_error("log full");
                                      throw 5;
                                    },
                                .now = clock.fn()});
  EXPECT_NO_THROW(breaker.record_failure());
  EXPECT_EQ(breaker.state(), breaker_state::open);
  clock.t += 1s;
  bool allowed = false;
  EXPECT_NO_THROW(allowed = breaker.allow());
  EXPECT_TRUE(allowed) << "the probe after the open period must go through";
  EXPECT_EQ(breaker.state(), breaker_state::half_open);
  EXPECT_NO_THROW(breaker.record_success());
  EXPECT_EQ(breaker.state(), breaker_state::closed);
  EXPECT_EQ(changes, 3);
}

TEST(CircuitBreaker, HalfOpenLetsOnlyTheConfiguredNumberOfProbesThrough) {
  fake_clock clock;
  qrt::circuit_breaker breaker(
      {.failure_threshold = 1, .open_duration = 1s, .half_open_probes = 2, .now = clock.fn()});
  ASSERT_TRUE(breaker.allow());
  breaker.record_failure();
  EXPECT_FALSE(breaker.allow());
  clock.t += 1s;
  EXPECT_TRUE(breaker.allow());
  EXPECT_TRUE(breaker.allow());
  EXPECT_FALSE(breaker.allow()) << "a third concurrent probe";
  EXPECT_EQ(breaker.state(), breaker_state::half_open);
  breaker.record_success();
  EXPECT_EQ(breaker.state(), breaker_state::closed);
}

TEST(CircuitBreaker, OnlyConsecutiveDependencyFailuresCount) {
  fake_clock clock;
  qrt::circuit_breaker breaker({.failure_threshold = 3, .now = clock.fn()});
  qrt::runtime rt;
  auto outcome = [&](qrt::result<int> r) {
    return rt.block_on(breaker.run([r]() -> qrt::awaitable<qrt::result<int>> { co_return r; }));
  };
  const qrt::result<int> down = qrt::fail(errc::timeout, "slow");
  outcome(down);
  outcome(down);
  outcome(1);  // a success resets the count
  outcome(down);
  outcome(down);
  EXPECT_EQ(breaker.state(), breaker_state::closed);
  // A permanent error is the caller's mistake, not the dependency's health: the dependency
  // answered, so it counts like a success.
  for (int i = 0; i < 5; ++i) outcome(qrt::fail(errc::invalid_argument, "bad"));
  EXPECT_EQ(breaker.state(), breaker_state::closed);
  outcome(down);
  outcome(down);
  EXPECT_EQ(breaker.state(), breaker_state::closed);
  outcome(down);
  EXPECT_EQ(breaker.state(), breaker_state::open);
}

// Many callers reach a breaker whose open period has just run out at the same instant: exactly
// half_open_probes of them get through, the breaker goes half-open once, and the probes' results
// close it once. Repeated, so that the callers really do interleave.
TEST(CircuitBreaker, ConcurrentCallersAfterTheOpenPeriodLetExactlyTheProbesThrough) {
  constexpr int callers = 8;
  constexpr std::uint32_t probes = 3;
  constexpr int rounds = 200;
  fake_clock clock;  // moved only while no caller runs (between the latches)
  std::mutex changes_mutex;
  std::vector<std::pair<breaker_state, breaker_state>> changes;
  qrt::circuit_breaker breaker({.failure_threshold = 1,
                                .open_duration = 1s,
                                .half_open_probes = probes,
                                .on_state_change =
                                    [&](breaker_state from, breaker_state to) {
                                      std::lock_guard lock(changes_mutex);
                                      changes.emplace_back(from, to);
                                    },
                                .now = clock.fn()});
  for (int round = 0; round < rounds; ++round) {
    ASSERT_TRUE(breaker.allow());
    breaker.record_failure();
    ASSERT_EQ(breaker.state(), breaker_state::open);
    clock.t += 1s;
    {
      std::lock_guard lock(changes_mutex);
      changes.clear();
    }

    std::atomic<int> admitted{0};
    std::latch start(callers), everyone_asked(callers);
    std::vector<std::thread> threads;
    for (int c = 0; c < callers; ++c) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        const bool probe = breaker.allow();
        if (probe) admitted.fetch_add(1);
        // Probes finish only once every caller has asked: while they run, the breaker is
        // half-open for all of them.
        everyone_asked.arrive_and_wait();
        if (probe) breaker.record_success();
      });
    }
    for (auto& t : threads) t.join();

    ASSERT_EQ(admitted.load(), static_cast<int>(probes))
        << "round " << round << ": the half-open breaker let the wrong number of probes through";
    ASSERT_EQ(breaker.state(), breaker_state::closed) << "round " << round;
    std::lock_guard lock(changes_mutex);
    const std::vector<std::pair<breaker_state, breaker_state>> expected{
        {breaker_state::open, breaker_state::half_open},
        {breaker_state::half_open, breaker_state::closed}};
    ASSERT_EQ(changes, expected) << "round " << round;
  }
}

// The longest open period (a breaker that does not probe on its own for as long as a duration
// can say) keeps the breaker open: the comparison with the time it has been open must not
// overflow the clock's nanoseconds (undefined behaviour) and let a probe through at once.
TEST(CircuitBreaker, TheLongestOpenPeriodKeepsTheBreakerOpen) {
  fake_clock clock;
  qrt::circuit_breaker breaker({.failure_threshold = 1,
                                .open_duration = std::chrono::milliseconds::max(),
                                .now = clock.fn()});
  ASSERT_TRUE(breaker.allow());
  breaker.record_failure();
  clock.t += 24h * 365;
  EXPECT_FALSE(breaker.allow());
  EXPECT_EQ(breaker.state(), breaker_state::open);
  EXPECT_EQ(breaker.time_until_probe(),
            std::chrono::milliseconds::max() - std::chrono::milliseconds(24h * 365));
}
