// Retry policies. Backoff is checked with recorded delays, never with real sleeps.
#include <gtest/gtest.h>

#include <qrt/client.hpp>
#include <qrt/fault_injection.hpp>
#include <qrt/memory.hpp>
#include <qrt/metrics.hpp>
#include <qrt/retry.hpp>
#include <qrt/runtime.hpp>

#include "../support/forwarding_provider.hpp"
#include "core/borrowing_provider.hpp"

using namespace std::chrono_literals;
using qrt::errc;
using qrt::error;
using qrt::retry_policy;

namespace {

error transient() {
  return qrt::fail(errc::connection_failed, "connection reset");
}

// Runs `qrt::retry` over an attempt that fails `failures` times, recording every delay asked for.
struct recorded_run {
  qrt::result<int> outcome;
  int attempts = 0;
  std::vector<qrt::milliseconds> delays;
};

recorded_run run_with_failures(const retry_policy& policy, int failures, error failure,
                               std::chrono::steady_clock::time_point give_up_at =
                                   std::chrono::steady_clock::time_point::max()) {
  qrt::runtime rt;
  recorded_run out;
  out.outcome = rt.block_on([&]() -> qrt::awaitable<qrt::result<int>> {
    co_return co_await qrt::retry(
        policy,
        [&]() -> qrt::awaitable<qrt::result<int>> {
          if (out.attempts++ < failures) co_return failure;
          co_return 42;
        },
        [&](qrt::milliseconds d) -> qrt::awaitable<void> {
          out.delays.push_back(d);  // recorded, not slept: the clock does not move here
          co_return;
        },
        {}, give_up_at);
  }());
  return out;
}

// A provider that can be lent a call's vectors (as the embedded one can), over a memory
// provider: its first `send_failures` lent sends fail as a whole and leave the messages as they
// were, its first `settle_failures` lent settles fail every entry. It counts which calls the
// retrying layer used.
class lending_provider final : public qrt::test::forwarding_provider,
                               public qrt::detail::borrowing_provider {
 public:
  lending_provider(qrt::provider_ptr inner, int send_failures, int settle_failures,
                   int publish_failures = 0)
      : forwarding_provider(std::move(inner)),
        inner_lender_(dynamic_cast<qrt::detail::borrowing_provider*>(inner_.get())),
        failures_(send_failures),
        settle_failures_(settle_failures),
        publish_failures_(publish_failures) {}

  int lent = 0;                               ///< send_from calls
  int copied = 0;                             ///< send calls (a vector of its own)
  int lent_settles = 0;                       ///< settle_from calls
  int copied_settles = 0;                     ///< settle calls
  int lent_publishes = 0;                     ///< publish_from calls
  int copied_publishes = 0;                   ///< publish calls
  bool settles_apply_before_failing = false;  ///< a failed lent settle has been carried out
  error settle_failure = transient();         ///< what a failed lent settle reports

  qrt::awaitable<qrt::result<std::vector<qrt::send_outcome>>> send(
      const qrt::queue_name& q, std::vector<qrt::message> messages,
      qrt::milliseconds timeout) override {
    ++copied;
    return inner_->send(q, std::move(messages), timeout);
  }
  qrt::awaitable<qrt::result<std::vector<qrt::send_outcome>>> send_from(
      const qrt::queue_name& q, std::vector<qrt::message>& messages,
      qrt::milliseconds timeout) override {
    ++lent;
    if (failures_-- > 0) co_return transient();
    co_return co_await inner_lender_->send_from(q, messages, timeout);
  }
  qrt::awaitable<std::vector<qrt::result<void>>> settle(
      std::vector<qrt::settlement> settlements) override {
    ++copied_settles;
    return inner_->settle(std::move(settlements));
  }
  qrt::awaitable<std::vector<qrt::result<void>>> settle_from(
      const std::vector<qrt::settlement>& settlements) override {
    ++lent_settles;
    if (settle_failures_-- > 0) {
      // Applied, and then the answer lost: the settlement took effect all the same.
      if (settles_apply_before_failing) (void)co_await inner_lender_->settle_from(settlements);
      co_return std::vector<qrt::result<void>>(settlements.size(), settle_failure);
    }
    co_return co_await inner_lender_->settle_from(settlements);
  }
  qrt::awaitable<qrt::result<std::vector<qrt::send_outcome>>> publish(
      const qrt::topic_name& t, std::vector<qrt::message> messages,
      qrt::milliseconds timeout) override {
    ++copied_publishes;
    return inner_->publish(t, std::move(messages), timeout);
  }
  qrt::awaitable<qrt::result<std::vector<qrt::send_outcome>>> publish_from(
      const qrt::topic_name& t, std::vector<qrt::message>& messages,
      qrt::milliseconds timeout) override {
    ++lent_publishes;
    if (publish_failures_-- > 0) co_return transient();
    co_return co_await inner_lender_->publish_from(t, messages, timeout);
  }

 private:
  qrt::detail::borrowing_provider* inner_lender_;
  int failures_;
  int settle_failures_;
  int publish_failures_;
};

}  // namespace

TEST(RetryPolicy, ExponentialLinearAndFixedDelaysAreCappedAtMaxDelay) {
  auto exp = retry_policy::exponential_backoff(100ms, 1000ms, 2.0);
  EXPECT_EQ(exp.base_delay(1), 100ms);
  EXPECT_EQ(exp.base_delay(2), 200ms);
  EXPECT_EQ(exp.base_delay(4), 800ms);
  EXPECT_EQ(exp.base_delay(5), 1000ms);
  EXPECT_EQ(exp.base_delay(200), 1000ms) << "a huge exponent must not overflow";

  auto lin = retry_policy::linear(100ms, 50ms, 300ms);
  EXPECT_EQ(lin.base_delay(1), 100ms);
  EXPECT_EQ(lin.base_delay(3), 200ms);
  EXPECT_EQ(lin.base_delay(9), 300ms);

  auto fixed = retry_policy::fixed_interval(50ms);
  EXPECT_EQ(fixed.base_delay(1), 50ms);
  EXPECT_EQ(fixed.base_delay(7), 50ms);
}

TEST(RetryPolicy, JitterOnlyShortensADelayByItsConfiguredShare) {
  auto p = retry_policy::exponential_backoff(1000ms, 10'000ms, 2.0);
  p.jitter = 0.25;
  EXPECT_EQ(*p.next_delay(transient(), 1, 0.0), 1000ms);
  EXPECT_EQ(*p.next_delay(transient(), 1, 0.5), 875ms);
  EXPECT_GE(*p.next_delay(transient(), 1, 0.999999), 750ms);
}

TEST(RetryPolicy, RetriesBackOffAsConfigured) {
  auto p = retry_policy::exponential_backoff(100ms, 30'000ms, 3.0);  // the high-throughput preset's
  p.jitter = 0;
  p.max_attempts = 5;
  auto run = run_with_failures(p, 3, transient());
  ASSERT_TRUE(run.outcome);
  EXPECT_EQ(*run.outcome, 42);
  EXPECT_EQ(run.attempts, 4);
  EXPECT_EQ(run.delays, (std::vector<qrt::milliseconds>{100ms, 300ms, 900ms}));
}

TEST(RetryPolicy, GivesUpAfterMaxAttemptsWithTheLastError) {
  auto p = retry_policy::fixed_interval(50ms);
  p.jitter = 0;
  p.max_attempts = 3;
  auto run = run_with_failures(p, 10, transient());
  ASSERT_FALSE(run.outcome);
  EXPECT_EQ(run.outcome.error().code, errc::connection_failed);
  EXPECT_EQ(run.attempts, 3);
  EXPECT_EQ(run.delays, (std::vector<qrt::milliseconds>{50ms, 50ms}));
  // One attempt's own words ("no answer within 60 s") would read as the whole wait.
  EXPECT_EQ(run.outcome.error().message, "connection reset (the last of 3 attempts)");
}

// A caller's deadline bounds the pauses too: no pause starts that would end at or past it.
// The recording sleeper does not sleep, so only the first pause could end past it here.
TEST(RetryPolicy, NoPauseStartsThatWouldEndPastTheCallersDeadline) {
  auto p = retry_policy::fixed_interval(60'000ms);
  p.jitter = 0;
  auto cut_short =
      run_with_failures(p, 10, transient(), std::chrono::steady_clock::now() + 10'000ms);
  ASSERT_FALSE(cut_short.outcome);
  EXPECT_EQ(cut_short.attempts, 1) << "a 60 s pause was started with 10 s left";
  EXPECT_TRUE(cut_short.delays.empty());
  EXPECT_EQ(cut_short.outcome.error().message, "connection reset");

  p = retry_policy::fixed_interval(1'000ms);
  p.jitter = 0;
  auto within = run_with_failures(p, 10, transient(), std::chrono::steady_clock::now() + 600'000ms);
  EXPECT_EQ(within.attempts, 4) << "pauses that fit the deadline are taken as the policy says";
  EXPECT_EQ(within.delays, (std::vector<qrt::milliseconds>(3, 1'000ms)));
}

// A policy without a practical cap (max_delay = milliseconds::max()) computes delays that are
// held at the longest delay qrt waits, a hundred years: never one that overflows into a
// negative or zero pause (a retry at once), nor clock arithmetic that overflows.
TEST(RetryPolicy, DelaysOfAPolicyWithoutACapAreHeldAtTheLongestWait) {
  auto p = retry_policy::fixed_interval(qrt::milliseconds::max());
  p.jitter = 0;
  const auto longest = std::chrono::duration_cast<qrt::milliseconds>(std::chrono::years(100));
  EXPECT_EQ(p.base_delay(1), longest);
  EXPECT_EQ(p.next_delay(transient(), 1, 0.5), longest);
  auto grows = retry_policy::exponential_backoff(100ms, qrt::milliseconds::max(), 10.0);
  grows.max_attempts = 40;
  EXPECT_EQ(grows.base_delay(30), longest);

  auto cut_short = run_with_failures(p, 10, transient(), std::chrono::steady_clock::now() + 10s);
  EXPECT_EQ(cut_short.attempts, 1) << "a pause of the longest wait was started with 10 s left";
  EXPECT_TRUE(cut_short.delays.empty());
}

TEST(RetryPolicy, NeverRetriesAPermanentError) {
  auto run = run_with_failures(retry_policy::client_default(), 10,
                               qrt::fail(errc::queue_not_found, "queue 'x' does not exist"));
  ASSERT_FALSE(run.outcome);
  EXPECT_EQ(run.outcome.error().code, errc::queue_not_found);
  EXPECT_EQ(run.attempts, 1);
  EXPECT_TRUE(run.delays.empty());
  EXPECT_EQ(run.outcome.error().message, "queue 'x' does not exist") << "one attempt, as it said";
}

TEST(RetryPolicy, ThrottledErrorWaitsTheServicesRetryAfterEvenBeyondMaxDelay) {
  auto p = retry_policy::fixed_interval(50ms);
  error throttled = qrt::fail(errc::throttled, "slow down");
  throttled.retry_after = 2'500ms;
  auto run = run_with_failures(p, 1, throttled);
  ASSERT_TRUE(run.outcome);
  EXPECT_EQ(run.delays, (std::vector<qrt::milliseconds>{2'500ms}));
}

// A service's retry_after is untrusted: an absurd one waits at most max_retry_after, a negative
// one not at all, and the extremes of the type never overflow.
TEST(RetryPolicy, AServicesRetryAfterIsClampedToTheLongestHonouredWait) {
  const auto p = retry_policy::fixed_interval(50ms);
  error throttled = qrt::fail(errc::throttled, "slow down");
  const std::pair<qrt::milliseconds, qrt::milliseconds> cases[] = {
      {std::chrono::hours(24 * 365), qrt::max_retry_after},
      {qrt::milliseconds::max(), qrt::max_retry_after},
      {-5s, 0ms},
      {qrt::milliseconds::min(), 0ms},
      {qrt::max_retry_after, qrt::max_retry_after},
  };
  for (const auto& [asked, waited] : cases) {
    throttled.retry_after = asked;
    EXPECT_EQ(p.next_delay(throttled, 1, 0.5), waited) << asked.count();
    // The processors' receive and accept loops wait by the same rule.
    EXPECT_EQ(p.delay_after(throttled, 1), waited) << asked.count();
  }
  // Without a retry_after the loops back off by the policy.
  EXPECT_EQ(p.delay_after(qrt::fail(errc::connection_failed, "down"), 3), p.base_delay(3));
}

// The client applies retries to transient provider errors by default (contract C31), and a
// retried send is not duplicated: an injected failure happens before the provider saw the call.
TEST(ClientRetry, TransientProviderErrorsAreRetriedByDefaultAndNothingIsDuplicated) {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto faulty = qrt::make_fault_injecting_provider(memory);
  qrt::client_options options;
  options.retry = retry_policy::fixed_interval(1ms);  // quick; same decorator as the default
  qrt::queue_client client(faulty, options);
  const auto q = qrt::queue_name::from("orders");
  ASSERT_TRUE(rt.block_on(client.create_queue(q)));

  faulty->fail_next(qrt::fault_ops::send | qrt::fault_ops::receive, 2, transient());
  auto id = rt.block_on(client.send(q, qrt::message{.body = "once"}));
  ASSERT_TRUE(id) << id.error().to_string();
  auto got = rt.block_on(client.receive(q, 10, 1s));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->front().body, "once");
  EXPECT_EQ(faulty->stats().scheduled_failures, 2u);

  faulty->fail_next(qrt::fault_ops::send, 1, qrt::fail(errc::permission, "denied"));
  auto refused = rt.block_on(client.send(q, qrt::message{.body = "no"}));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::permission);
  EXPECT_EQ(faulty->stats().scheduled_failures, 3u) << "a permanent error is tried once";
}

// A provider whose sends, publishes, receives and session accepts always fail with a transient
// error, recording the timeout or wait each attempt got; its settlements fail too.
class timeout_recorder final : public qrt::test::forwarding_provider {
 public:
  using forwarding_provider::forwarding_provider;
  qrt::awaitable<qrt::result<std::vector<qrt::send_outcome>>> send(
      const qrt::queue_name&, std::vector<qrt::message>, qrt::milliseconds timeout) override {
    timeouts.push_back(timeout);
    co_return transient();
  }
  qrt::awaitable<qrt::result<std::vector<qrt::received_message>>> receive(
      const qrt::queue_name&, std::size_t, qrt::milliseconds wait) override {
    timeouts.push_back(wait);
    co_return transient();
  }
  qrt::awaitable<qrt::result<std::shared_ptr<qrt::session_receiver>>> accept_session(
      const qrt::queue_name&, std::optional<qrt::session_id>, qrt::milliseconds wait) override {
    timeouts.push_back(wait);
    co_return transient();
  }
  qrt::awaitable<qrt::result<std::vector<qrt::send_outcome>>> publish(
      const qrt::topic_name&, std::vector<qrt::message>, qrt::milliseconds timeout) override {
    timeouts.push_back(timeout);
    co_return transient();
  }
  qrt::awaitable<std::vector<qrt::result<void>>> settle(
      std::vector<qrt::settlement> settlements) override {
    ++settle_calls;
    co_return std::vector<qrt::result<void>>(settlements.size(), transient());
  }
  std::vector<qrt::milliseconds> timeouts;
  int settle_calls = 0;
};

// Each attempt was given less than the one before it: what was left, not the whole again.
void expect_shrinking(const std::vector<qrt::milliseconds>& given, qrt::milliseconds first) {
  ASSERT_EQ(given.size(), 4u);
  EXPECT_EQ(given[0], first);
  for (std::size_t i = 1; i < given.size(); ++i) {
    EXPECT_LT(given[i], given[i - 1]) << "attempt " << i + 1 << " was given the whole wait again";
  }
}

// The send's timeout bounds its attempts together: each retry gets what is left of it, not the
// whole again (four attempts of a 30 s send took two minutes). A publish's the same.
TEST(ClientRetry, EachRetryOfASendOrPublishGetsWhatIsLeftOfItsTimeout) {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto recorder = std::make_shared<timeout_recorder>(memory);
  qrt::client_options options;
  options.send_timeout = 600'000ms;
  options.retry = retry_policy::fixed_interval(5ms);
  qrt::queue_client client(recorder, options);
  auto sent = rt.block_on(client.send(qrt::queue_name::from("q"), qrt::message{.body = "x"}));
  ASSERT_FALSE(sent);
  expect_shrinking(recorder->timeouts, 600'000ms);
  EXPECT_EQ(sent.error().message, "connection reset (the last of 4 attempts)");

  recorder->timeouts.clear();
  auto published =
      rt.block_on(client.publish(qrt::topic_name::from("t"), qrt::message{.body = "x"}));
  ASSERT_FALSE(published);
  expect_shrinking(recorder->timeouts, 600'000ms);
}

// ... and its pauses: with 10 s of a send's timeout left, a 60 s back-off is not started (the
// send gives up after its first attempt instead of sleeping past its own timeout).
TEST(ClientRetry, ASendDoesNotPausePastItsTimeout) {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto recorder = std::make_shared<timeout_recorder>(memory);
  auto policy = retry_policy::fixed_interval(60'000ms);
  policy.jitter = 0;
  std::vector<qrt::milliseconds> pauses;
  auto retrying = qrt::make_retrying_provider(
      recorder, policy, [&pauses](qrt::milliseconds d) -> qrt::awaitable<void> {
        pauses.push_back(d);
        co_return;
      });
  std::vector<qrt::message> one(1, qrt::message{.body = "x"});
  auto sent = rt.block_on(retrying->send(qrt::queue_name::from("q"), std::move(one), 10'000ms));
  ASSERT_FALSE(sent);
  EXPECT_EQ(recorder->timeouts.size(), 1u);
  EXPECT_TRUE(pauses.empty()) << "a 60 s pause was started with 10 s of the timeout left";
}

// A settlement that kept failing says how many attempts it had, as a call does.
TEST(ClientRetry, ASettlementThatKeptFailingSaysHowManyAttemptsItHad) {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto recorder = std::make_shared<timeout_recorder>(memory);
  qrt::client_options options;
  options.retry = retry_policy::fixed_interval(1ms);
  qrt::queue_client client(recorder, options);
  const auto receipt =
      qrt::receipt_handle{1, 1, 1, 1, {}};  // never reaches a provider that reads it
  std::vector<qrt::settlement> settlements{qrt::settlement::complete(receipt)};
  auto settled = rt.block_on(client.settle(std::move(settlements)));
  ASSERT_EQ(settled.size(), 1u);
  ASSERT_FALSE(settled[0]);
  EXPECT_EQ(settled[0].error().code, errc::connection_failed);
  EXPECT_EQ(settled[0].error().message, "connection reset (the last of 4 attempts)");
  EXPECT_EQ(recorder->settle_calls, 4);
}

// A receive's wait, and a session accept's, bound their attempts the same way: a long poll
// retried after a dropped connection waits out what is left of the caller's wait, not all of
// it again. A receive that does not wait (0) stays one that does not wait.
TEST(ClientRetry, EachRetryOfAReceiveOrAcceptGetsWhatIsLeftOfItsWait) {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto recorder = std::make_shared<timeout_recorder>(memory);
  qrt::client_options options;
  options.retry = retry_policy::fixed_interval(5ms);
  qrt::queue_client client(recorder, options);
  const auto q = qrt::queue_name::from("q");

  ASSERT_FALSE(rt.block_on(client.receive(q, 10, 600'000ms)));
  expect_shrinking(recorder->timeouts, 600'000ms);

  recorder->timeouts.clear();
  ASSERT_FALSE(rt.block_on(client.accept_session(q, std::nullopt, 600'000ms)));
  expect_shrinking(recorder->timeouts, 600'000ms);

  recorder->timeouts.clear();
  ASSERT_FALSE(rt.block_on(client.receive(q, 10, 0ms)));
  EXPECT_EQ(recorder->timeouts, std::vector<qrt::milliseconds>(4, 0ms));
}

// A provider that can be lent the messages is not handed a copy per attempt; after a whole
// failure the retry sends the same messages again, intact and once. Settlements likewise.
TEST(ClientRetry, ARetriedSendOrSettleLendsItsVectorsInsteadOfCopyingThem) {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto lending = std::make_shared<lending_provider>(memory, 2, 1);
  qrt::client_options options;
  options.retry = retry_policy::fixed_interval(1ms);
  qrt::queue_client client(lending, options);
  const auto q = qrt::queue_name::from("orders");
  ASSERT_TRUE(rt.block_on(client.create_queue(q)));

  std::vector<qrt::message> batch;
  batch.push_back(qrt::message{.body = "first"});
  batch.push_back(qrt::message{.body = "second"});
  auto sent = rt.block_on(client.send_batch(q, std::move(batch)));
  ASSERT_TRUE(sent) << sent.error().to_string();
  ASSERT_EQ(sent->size(), 2u);
  EXPECT_EQ(lending->lent, 3) << "two whole failures, then the send";
  EXPECT_EQ(lending->copied, 0);
  auto got = rt.block_on(client.receive(q, 10, 1s));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].body, "first");
  EXPECT_EQ((*got)[1].body, "second");
  auto more = rt.block_on(client.receive(q, 10, 0ms));
  ASSERT_TRUE(more);
  EXPECT_TRUE(more->empty()) << "nothing was sent twice";

  // The settlements are lent too; the entries of a failed attempt are retried (here with a
  // vector of their own) until they succeed.
  std::vector<qrt::settlement> settlements;
  for (const auto& m : *got) settlements.push_back(qrt::settlement::complete(m.receipt));
  auto settled = rt.block_on(client.settle(std::move(settlements)));
  ASSERT_EQ(settled.size(), 2u);
  EXPECT_TRUE(settled[0] && settled[1]);
  EXPECT_EQ(lending->lent_settles, 1);
  EXPECT_EQ(lending->copied_settles, 1);
  auto stats = rt.block_on(client.stats(q));
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->active, 0);
  EXPECT_EQ(stats->in_flight, 0);
}

// A settlement whose answer was lost in transit may have been applied: retried, its receipt is
// refused. The error keeps its code (the receipt is no longer valid) and says that the earlier
// attempt may have settled the message, which is what happened here.
TEST(ClientRetry, ARetriedSettlementRefusedForItsReceiptSaysItMayHaveBeenApplied) {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto lending = std::make_shared<lending_provider>(memory, 0, 1);
  lending->settles_apply_before_failing = true;
  qrt::client_options options;
  options.retry = retry_policy::fixed_interval(1ms);
  qrt::queue_client client(lending, options);
  const auto q = qrt::queue_name::from("orders");
  ASSERT_TRUE(rt.block_on(client.create_queue(q)));
  ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = "once"})));
  auto got = rt.block_on(client.receive(q, 1, 1s));
  ASSERT_TRUE(got && got->size() == 1u);

  auto completed = rt.block_on(client.complete((*got)[0].receipt));
  ASSERT_FALSE(completed);
  EXPECT_EQ(completed.error().code, errc::invalid_receipt) << completed.error().to_string();
  EXPECT_NE(completed.error().message.find("an earlier attempt failed with connection_failed and "
                                           "may have settled it"),
            std::string::npos)
      << completed.error().to_string();
  auto stats = rt.block_on(client.stats(q));
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->active + stats->in_flight, 0) << "the first attempt did complete the message";
}

// A settlement that failed unconfirmed reached the service: retried, its receipt is refused,
// as when the first attempt was applied (here it was) or the lock ran out meanwhile. The outcome
// is still unknown, so the caller gets unconfirmed (with what the retry found), not a receipt
// error that reads as "not settled" and would have a processor count a completed message as a
// failed settlement of one it still holds.
TEST(ClientRetry, ARetriedSettlementRefusedAfterAnUnconfirmedAttemptStaysUnconfirmed) {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto lending = std::make_shared<lending_provider>(memory, 0, 1);
  lending->settles_apply_before_failing = true;
  lending->settle_failure =
      error{errc::unconfirmed, "the link from 'orders' ended before the broker confirmed it",
            "amqp:link:detach-forced"};
  qrt::client_options options;
  options.retry = retry_policy::fixed_interval(1ms);
  qrt::queue_client client(lending, options);
  const auto q = qrt::queue_name::from("orders");
  ASSERT_TRUE(rt.block_on(client.create_queue(q)));
  ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = "once"})));
  auto got = rt.block_on(client.receive(q, 1, 1s));
  ASSERT_TRUE(got && got->size() == 1u);

  auto completed = rt.block_on(client.complete((*got)[0].receipt));
  ASSERT_FALSE(completed);
  const error& e = completed.error();
  EXPECT_EQ(e.code, errc::unconfirmed) << e.to_string();
  EXPECT_TRUE(e.is_transient()) << e.to_string();
  EXPECT_EQ(e.provider_code, "amqp:link:detach-forced") << e.to_string();
  EXPECT_NE(e.message.find("ended before the broker confirmed it"), std::string::npos)
      << e.to_string();
  EXPECT_NE(e.message.find("a retry found its receipt refused (invalid_receipt"), std::string::npos)
      << e.to_string();
  EXPECT_EQ(lending->lent_settles + lending->copied_settles, 2) << "one retry, then the answer";
  auto stats = rt.block_on(client.stats(q));
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->active + stats->in_flight, 0) << "the first attempt did complete the message";
}

// A publish that failed as a whole is retried from the same lent vector, as a send is: every
// subscription gets each message once, and no attempt copied the messages.
TEST(ClientRetry, ARetriedPublishLendsItsMessagesAndPublishesEachOnce) {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto lending = std::make_shared<lending_provider>(memory, 0, 0, 2);
  qrt::client_options options;
  options.retry = retry_policy::fixed_interval(1ms);
  qrt::queue_client client(lending, options);
  const auto topic = qrt::topic_name::from("events");
  const auto audit = qrt::queue_name::subscription(topic, "audit").value();
  ASSERT_TRUE(rt.block_on(client.create_topic(topic)));
  ASSERT_TRUE(rt.block_on(client.create_subscription(audit)));

  std::vector<qrt::message> batch;
  batch.push_back(qrt::message{.body = "first"});
  batch.push_back(qrt::message{.body = "second"});
  auto published = rt.block_on(client.publish_batch(topic, std::move(batch)));
  ASSERT_TRUE(published) << published.error().to_string();
  ASSERT_EQ(published->size(), 2u);
  EXPECT_EQ(lending->lent_publishes, 3) << "two whole failures, then the publish";
  EXPECT_EQ(lending->copied_publishes, 0);
  auto got = rt.block_on(client.receive(audit, 10, 1s));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].body, "first");
  EXPECT_EQ((*got)[1].body, "second");
  auto more = rt.block_on(client.receive(audit, 10, 0ms));
  ASSERT_TRUE(more);
  EXPECT_TRUE(more->empty()) << "nothing was published twice";
}

TEST(ClientRetry, CanBeTurnedOff) {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto faulty = qrt::make_fault_injecting_provider(memory);
  qrt::queue_client client(faulty, qrt::client_options{.retry = std::nullopt});
  const auto q = qrt::queue_name::from("orders");
  ASSERT_TRUE(rt.block_on(client.create_queue(q)));
  faulty->fail_next(qrt::fault_ops::send, 1, transient());
  auto r = rt.block_on(client.send(q, qrt::message{.body = "x"}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::connection_failed);
}

TEST(ClientRetry, EveryRetryIsCountedInTheRetriesMetricByOperationAndQueue) {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto faulty = qrt::make_fault_injecting_provider(memory);
  qrt::metrics::registry registry;
  qrt::metrics::runtime_metrics metrics(registry);
  qrt::client_options options;
  options.retry = retry_policy::fixed_interval(1ms);
  options.on_retry = qrt::metrics::count_retries(metrics, "memory");
  qrt::queue_client client(faulty, options);
  const auto q = qrt::queue_name::from("orders");
  ASSERT_TRUE(rt.block_on(client.create_queue(q)));

  auto throttled = qrt::fail(errc::throttled, "slow down");
  faulty->fail_next(qrt::fault_ops::send, 2, throttled);
  ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = "x"})));
  auto got = rt.block_on(client.receive(q, 1, 1s));
  ASSERT_TRUE(got && got->size() == 1u);
  faulty->fail_next(qrt::fault_ops::settle, 1, throttled);
  ASSERT_TRUE(rt.block_on(client.complete(got->front().receipt)));

  EXPECT_EQ(metrics.retries.with({"orders", "memory", "send"}).value(), 2u);
  EXPECT_EQ(metrics.retries.with({"unknown", "memory", "complete"}).value(), 1u);
  EXPECT_EQ(metrics.retries.with({"orders", "memory", "receive"}).value(), 0u);
  EXPECT_NE(registry.expose().find("queue_runtime_retries_total{queue=\"orders\""),
            std::string::npos);
}

// A provider (and its sessions) that answers a settlement with no result at all: broken.
class answers_no_settle_result final : public qrt::test::forwarding_provider {
 public:
  using forwarding_provider::forwarding_provider;
  qrt::awaitable<std::vector<qrt::result<void>>> settle(std::vector<qrt::settlement>) override {
    co_return std::vector<qrt::result<void>>{};
  }
};

// complete() of one message through a provider that answered no result fails with
// protocol_error; before, the client read a result that was not there (std::out_of_range out of
// the caller's co_await), which ended a processor's handler task without settling.
TEST(ClientSettle, AProviderThatAnswersNoResultIsAnErrorNotAnException) {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto broken = std::make_shared<answers_no_settle_result>(memory);
  qrt::queue_client client(broken, {.retry = std::nullopt});
  const auto q = qrt::queue_name::from("q");
  ASSERT_TRUE(rt.block_on(client.create_queue(q)));
  ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = "x"})));
  auto got = rt.block_on(client.receive(q, 1, 1s));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  auto completed = rt.block_on(client.complete(got->front().receipt));
  ASSERT_FALSE(completed);
  EXPECT_EQ(completed.error().code, errc::protocol_error) << completed.error().to_string();
}
