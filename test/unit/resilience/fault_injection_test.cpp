// The fault-injecting decorator over the real embedded provider.
#include <gtest/gtest.h>

#include <limits>
#include <optional>
#include <qrt/client.hpp>
#include <qrt/fault_injection.hpp>
#include <qrt/memory.hpp>
#include <qrt/runtime.hpp>

using namespace std::chrono_literals;
using qrt::errc;
using qrt::fault_ops;

namespace {

struct fixture {
  qrt::runtime rt;
  qrt::provider_ptr memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  std::shared_ptr<qrt::fault_injecting_provider> faulty;
  qrt::queue_client client;
  qrt::queue_client direct{memory, {.retry = std::nullopt}};
  qrt::queue_name q = qrt::queue_name::from("q");

  explicit fixture(qrt::fault_options o = {})
      : faulty(qrt::make_fault_injecting_provider(memory, o)),
        client(faulty, {.retry = std::nullopt}) {
    EXPECT_TRUE(rt.block_on(direct.create_queue(q)));
  }
  std::int64_t depth() { return rt.block_on(direct.stats(q)).value().active; }
};

}  // namespace

TEST(FaultInjection, ErrorRateOneFailsEveryCallBeforeTheProviderSeesIt) {
  fixture f({.transient_error_rate = 1.0, .error_ops = fault_ops::send});
  for (int i = 0; i < 5; ++i) {
    auto r = f.rt.block_on(f.client.send(f.q, qrt::message{.body = "x"}));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::connection_failed);
    EXPECT_TRUE(r.error().is_transient());
  }
  EXPECT_EQ(f.depth(), 0) << "an injected failure has no effect";
  EXPECT_EQ(f.faulty->stats().transient_errors, 5u);
  // Receives are not in error_ops: they pass.
  EXPECT_TRUE(f.rt.block_on(f.client.receive(f.q, 1, 0ms)));
}

TEST(FaultInjection, ThrottlesCarryRetryAfterAndRatesAreReproducible) {
  auto failures = [](std::uint64_t seed) {
    fixture f({.throttle_rate = 0.3, .throttle_retry_after = 250ms, .seed = seed});
    std::vector<bool> pattern;
    for (int i = 0; i < 50; ++i) {
      auto r = f.rt.block_on(f.client.stats(f.q));
      pattern.push_back(!r);
      if (!r) {
        EXPECT_EQ(r.error().code, errc::throttled);
        EXPECT_EQ(r.error().retry_after, 250ms);
      }
    }
    return pattern;
  };
  auto a = failures(7);
  EXPECT_EQ(a, failures(7));
  const auto n = std::count(a.begin(), a.end(), true);
  EXPECT_GT(n, 0);
  EXPECT_LT(n, 50);
}

TEST(FaultInjection, DisconnectFailsEverythingUntilReconnected) {
  fixture f;
  f.faulty->disconnect_for(1h);
  EXPECT_EQ(f.rt.block_on(f.client.send(f.q, qrt::message{.body = "x"})).error().code,
            errc::connection_failed);
  EXPECT_EQ(f.rt.block_on(f.client.receive(f.q, 1, 0ms)).error().code, errc::connection_failed);
  f.faulty->reconnect();
  EXPECT_TRUE(f.rt.block_on(f.client.send(f.q, qrt::message{.body = "x"})));
  EXPECT_EQ(f.faulty->stats().disconnected_calls, 2u);
}

TEST(FaultInjection, ScheduledFailuresHitOnlyTheChosenOperations) {
  fixture f;
  f.faulty->fail_next(fault_ops::settle, 1, qrt::fail(errc::connection_failed, "reset"));
  ASSERT_TRUE(f.rt.block_on(f.client.send(f.q, qrt::message{.body = "x"})));
  auto got = f.rt.block_on(f.client.receive(f.q, 1, 1s)).value();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(f.rt.block_on(f.client.complete(got[0].receipt)));
  EXPECT_TRUE(f.rt.block_on(f.client.complete(got[0].receipt)));
  EXPECT_EQ(f.depth(), 0);
}

TEST(FaultInjection, ScheduledDisconnectWindowsFailEveryCallInside) {
  // A window as long as its period covers all time: every call falls inside.
  fixture f({.disconnect_every = 1h, .disconnect_duration = 1h});
  EXPECT_EQ(f.rt.block_on(f.client.stats(f.q)).error().code, errc::connection_failed);
  EXPECT_EQ(f.faulty->stats().disconnected_calls, 1u);
  f.faulty->set_options({});
  EXPECT_TRUE(f.rt.block_on(f.client.stats(f.q)));
}

// "Disconnected until reconnect()" is a disconnect as long as a duration can be: it holds, rather
// than overflowing the clock arithmetic (undefined behaviour) into a time already past.
TEST(FaultInjection, ADisconnectTooLongToAddLastsUntilReconnected) {
  fixture f;
  f.faulty->disconnect_for(std::chrono::milliseconds::max());
  EXPECT_EQ(f.rt.block_on(f.client.stats(f.q)).error().code, errc::connection_failed);
  f.faulty->reconnect();
  EXPECT_TRUE(f.rt.block_on(f.client.stats(f.q)));
  EXPECT_EQ(f.faulty->stats().disconnected_calls, 1u);
}

// Scheduled windows with the longest period: the first window starts when the decorator is
// made, so the first call falls inside it.
TEST(FaultInjection, AScheduledDisconnectWithTheLongestPeriodStartsAtOnce) {
  fixture f({.disconnect_every = std::chrono::milliseconds::max(), .disconnect_duration = 1h});
  EXPECT_EQ(f.rt.block_on(f.client.stats(f.q)).error().code, errc::connection_failed);
  EXPECT_EQ(f.faulty->stats().disconnected_calls, 1u);
}

// Options that cannot mean what they say are refused, naming the field: a rate that is not a
// probability (NaN, below 0, above 1), rates whose one shared draw cannot honour both, a
// negative duration. Refused by set_options, the options in force stay.
TEST(FaultInjection, OptionsThatAreNotProbabilitiesOrDurationsAreRefusedNamingTheField) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct bad {
    qrt::fault_options options;
    const char* field;
  };
  const bad cases[] = {
      {{.transient_error_rate = nan}, "transient_error_rate"},
      {{.transient_error_rate = -0.1}, "transient_error_rate"},
      {{.transient_error_rate = 1.5}, "transient_error_rate"},
      {{.throttle_rate = nan}, "throttle_rate"},
      {{.throttle_rate = std::numeric_limits<double>::infinity()}, "throttle_rate"},
      {{.transient_error_rate = 0.7, .throttle_rate = 0.7}, "throttle_rate"},
      {{.latency = -1ms}, "latency"},
      {{.throttle_retry_after = -1ms}, "throttle_retry_after"},
      {{.disconnect_every = -1ms, .disconnect_duration = 1ms}, "disconnect_every"},
      {{.disconnect_duration = -1ms}, "disconnect_duration"},
  };
  fixture f({.transient_error_rate = 1.0, .error_ops = fault_ops::send});
  for (const auto& c : cases) {
    std::optional<qrt::error> made;
    try {
      (void)qrt::make_fault_injecting_provider(f.memory, c.options);
    } catch (const qrt::exception& e) {
      made = e.get();
    }
    ASSERT_TRUE(made.has_value()) << c.field << ": accepted";
    EXPECT_EQ(made->code, errc::invalid_argument);
    EXPECT_NE(made->message.find(c.field), std::string::npos) << made->message;

    EXPECT_THROW(f.faulty->set_options(c.options), qrt::exception) << c.field;
    auto r = f.rt.block_on(f.client.send(f.q, qrt::message{.body = "x"}));
    ASSERT_FALSE(r) << c.field << ": the options in force changed";
    EXPECT_EQ(r.error().code, errc::connection_failed);
  }
  // The edges are probabilities.
  EXPECT_NO_THROW(qrt::make_fault_injecting_provider(
      f.memory, {.transient_error_rate = 0.0, .throttle_rate = 1.0}));
  EXPECT_NO_THROW(qrt::make_fault_injecting_provider(
      f.memory, {.transient_error_rate = 0.5, .throttle_rate = 0.5}));
}
