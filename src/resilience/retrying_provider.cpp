// The provider decorator queue_client puts in front of every provider (client_options::retry).
#include <qrt/retry.hpp>
#include <utility>

#include "../core/borrowing_provider.hpp"
#include "../core/deadline.hpp"

namespace qrt {
namespace {

// Backpressure already waited for its deadline, and a held session is an answer: retrying
// either would only stretch a wait the caller chose.
using detail::worth_retrying;

/// One caller's wait (or timeout) shared by every attempt of a retried call, and the pauses
/// between them, so that retries cannot stretch a 20 s long poll or a 30 s send to minutes.
/// Each attempt gets what is left of it (at least a millisecond), and retry() starts no pause
/// that would end past it. Zero or less (no wait, or none given) is passed on unchanged and
/// bounds nothing.
class shared_wait {
 public:
  explicit shared_wait(milliseconds wait)
      : wait_(wait),
        deadline_(wait.count() <= 0
                      ? std::chrono::steady_clock::time_point::max()
                      : detail::deadline_after(std::chrono::steady_clock::now(), wait)) {}
  /// For the next attempt: the first gets the whole wait without reading the clock again
  /// (one read per call on the hot path, where most calls are first attempts that succeed).
  milliseconds left() const {
    if (std::exchange(first_, false) || wait_.count() <= 0) return wait_;
    return detail::time_left(deadline_, std::chrono::steady_clock::now());
  }
  /// For retry(): max() when the wait bounds nothing.
  std::chrono::steady_clock::time_point deadline() const noexcept { return deadline_; }

 private:
  milliseconds wait_;
  std::chrono::steady_clock::time_point deadline_;
  mutable bool first_ = true;  ///< each call has its own, used on its one strand of attempts
};

class retrying_session final : public session_receiver {
 public:
  retrying_session(std::shared_ptr<session_receiver> inner, retry_policy policy,
                   retry_sleeper sleeper)
      : inner_(std::move(inner)), policy_(policy), sleeper_(std::move(sleeper)) {}

  const session_id& id() const noexcept override { return inner_->id(); }
  time_point locked_until() const noexcept override { return inner_->locked_until(); }

  awaitable<result<std::vector<received_message>>> receive(std::size_t max_messages,
                                                           milliseconds wait) override {
    const shared_wait waits(wait);
    co_return co_await retry(
        policy_, [&] { return inner_->receive(max_messages, waits.left()); }, sleeper_,
        worth_retrying, waits.deadline());
  }
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements) override {
    // Not retried here: a session's settlement failing transiently usually means the link is
    // gone with the lock, and the processor decides what to do with the session.
    co_return co_await inner_->settle(std::move(settlements));
  }
  awaitable<result<time_point>> renew_session_lock() override {
    co_return co_await retry(
        policy_, [&] { return inner_->renew_session_lock(); }, sleeper_, worth_retrying);
  }
  awaitable<result<std::string>> get_state() override {
    co_return co_await retry(
        policy_, [&] { return inner_->get_state(); }, sleeper_, worth_retrying);
  }
  awaitable<result<void>> set_state(std::string state) override {
    co_return co_await retry(
        policy_, [&] { return inner_->set_state(state); }, sleeper_, worth_retrying);
  }
  awaitable<result<void>> close() override { co_return co_await inner_->close(); }

 private:
  std::shared_ptr<session_receiver> inner_;
  retry_policy policy_;
  retry_sleeper sleeper_;
};

std::string_view operation_of(settle_action a) {
  switch (a) {
    case settle_action::complete:
      return "complete";
    case settle_action::abandon:
      return "abandon";
    case settle_action::dead_letter:
      return "dead_letter";
  }
  return "settle";
}

class retrying_provider final : public provider {
 public:
  retrying_provider(provider_ptr inner, retry_policy policy, retry_sleeper sleeper,
                    retry_observer observer)
      : inner_(std::move(inner)),
        lender_(dynamic_cast<detail::borrowing_provider*>(inner_.get())),
        policy_(policy),
        sleeper_(std::move(sleeper)),
        observer_(std::move(observer)) {}

  std::string_view name() const noexcept override { return inner_->name(); }
  const capabilities& caps() const noexcept override { return inner_->caps(); }
  connection_stats connections() const noexcept override { return inner_->connections(); }
  std::optional<memory_stats> memory() const override { return inner_->memory(); }

  awaitable<result<void>> create_queue(const queue_name& queue,
                                       const queue_options& options) override {
    co_return co_await again("create_queue", &queue,
                             [&] { return inner_->create_queue(queue, options); });
  }
  awaitable<result<void>> delete_queue(const queue_name& queue) override {
    co_return co_await again("delete_queue", &queue, [&] { return inner_->delete_queue(queue); });
  }
  awaitable<result<queue_stats>> stats(const queue_name& queue) override {
    co_return co_await again("stats", &queue, [&] { return inner_->stats(queue); });
  }

  // A send that failed as a whole sent nothing (the provider contract), so resending it cannot
  // duplicate, unless it failed unconfirmed (it may have been stored): resent all the same, at
  // least once (docs/contract.md). Per-message failures inside a successful call are the
  // caller's to handle (qrt::send_batcher resends only those). A provider that can be lent the
  // messages (the embedded one) leaves them in place on a whole failure; any other gets a copy per
  // attempt.
  //
  // send() and receive() are not coroutines themselves, one frame fewer per call on the hot
  // path: what the attempts need moves into the callable, which lives in retry()'s frame. The
  // queue name is the caller's, alive until the call completes as for any provider call.
  //
  // `timeout` bounds the send, attempts and pauses together, as a receive's `wait` bounds the
  // receive's (shared_wait).
  awaitable<result<std::vector<send_outcome>>> send(const queue_name& queue,
                                                    std::vector<message> messages,
                                                    milliseconds timeout) override {
    const shared_wait waits(timeout);
    if (lender_) {
      return again(
          "send", &queue,
          [lender = lender_, &queue, messages = std::move(messages), waits]() mutable {
            return lender->send_from(queue, messages, waits.left());
          },
          worth_retrying, waits.deadline());
    }
    return again(
        "send", &queue,
        [inner = inner_.get(), &queue, messages = std::move(messages), waits] {
          return inner->send(queue, messages, waits.left());
        },
        worth_retrying, waits.deadline());
  }

  awaitable<result<std::vector<received_message>>> receive(const queue_name& queue,
                                                           std::size_t max_messages,
                                                           milliseconds wait) override {
    const shared_wait waits(wait);
    return again(
        "receive", &queue,
        [inner = inner_.get(), &queue, max_messages, waits] {
          return inner->receive(queue, max_messages, waits.left());
        },
        worth_retrying, waits.deadline());
  }

  awaitable<result<std::vector<received_message>>> peek(const queue_name& queue,
                                                        std::size_t max_messages,
                                                        std::int64_t from_sequence) override {
    co_return co_await again("peek", &queue,
                             [&] { return inner_->peek(queue, max_messages, from_sequence); });
  }

  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements) override {
    const std::size_t n = settlements.size();
    // The first attempt settles everything, lent where the provider can read it in place; its
    // results are the answer unless some entries are retried.
    std::vector<result<void>> results;
    if (lender_) {
      results = co_await lender_->settle_from(settlements);
    } else {
      results = co_await inner_->settle(settlements);
    }
    fit(results, n);
    std::vector<std::size_t> pending;
    std::optional<milliseconds> delay;
    // Per entry, its first attempt that failed unconfirmed: it may have been applied, whatever
    // later attempts find.
    std::vector<std::optional<error>> maybe_applied(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (to_retry(settlements[i], results[i], 1, delay)) {
        pending.push_back(i);
        if (results[i].error().code == errc::unconfirmed) maybe_applied[i] = results[i].error();
      }
    }
    for (std::uint32_t attempt = 2; !pending.empty(); ++attempt) {
      co_await pause(*delay);
      delay.reset();
      std::vector<settlement> batch;
      batch.reserve(pending.size());
      for (auto i : pending) batch.push_back(settlements[i]);
      auto outcomes = co_await inner_->settle(std::move(batch));
      fit(outcomes, pending.size());
      std::vector<std::size_t> failed;
      for (std::size_t k = 0; k < pending.size(); ++k) {
        const std::size_t i = pending[k];
        if (to_retry(settlements[i], outcomes[k], attempt, delay)) {
          failed.push_back(i);
          if (!maybe_applied[i] && outcomes[k].error().code == errc::unconfirmed) {
            maybe_applied[i] = outcomes[k].error();
          }
        } else if (!outcomes[k]) {
          results[i] = after_earlier_failure(detail::after_attempts(outcomes[k].error(), attempt),
                                             results[i].error(), maybe_applied[i]);
          continue;
        }
        results[pending[k]] = std::move(outcomes[k]);
      }
      pending = std::move(failed);
    }
    co_return results;
  }

  awaitable<result<time_point>> renew_lock(const receipt_handle& receipt) override {
    co_return co_await again("renew", nullptr, [&] { return inner_->renew_lock(receipt); });
  }

  awaitable<result<std::shared_ptr<session_receiver>>> accept_session(
      const queue_name& queue, std::optional<session_id> session, milliseconds wait) override {
    // errc::timeout here means "no session had messages within `wait`": an answer.
    const shared_wait waits(wait);
    auto r = co_await again(
        "accept_session", &queue,
        [&] { return inner_->accept_session(queue, session, waits.left()); },
        [](const error& e) { return worth_retrying(e) && e.code != errc::timeout; },
        waits.deadline());
    if (!r) co_return r.error();
    co_return std::shared_ptr<session_receiver>(
        std::make_shared<retrying_session>(std::move(*r), policy_, sleeper_));
  }

  awaitable<void> close() override { co_await inner_->close(); }

  // Publish/subscribe: the management calls retry as create_queue does, publish as send does
  // (a publish that failed as a whole published nothing, docs/contract.md). The retry observer
  // is told no queue for topic calls; a subscription's calls name the subscription.
  awaitable<result<void>> create_topic(const topic_name& topic) override {
    co_return co_await again("create_topic", nullptr, [&] { return inner_->create_topic(topic); });
  }
  awaitable<result<void>> delete_topic(const topic_name& topic) override {
    co_return co_await again("delete_topic", nullptr, [&] { return inner_->delete_topic(topic); });
  }
  awaitable<result<std::vector<send_outcome>>> publish(const topic_name& topic,
                                                       std::vector<message> messages,
                                                       milliseconds timeout) override {
    // As send: a whole failure published nothing, so the next attempt publishes every message
    // again, lent where the provider can read them in place, else a copy per attempt; and the
    // timeout bounds the attempts and pauses together.
    const shared_wait waits(timeout);
    if (lender_) {
      return again(
          "publish", nullptr,
          [lender = lender_, &topic, messages = std::move(messages), waits]() mutable {
            return lender->publish_from(topic, messages, waits.left());
          },
          worth_retrying, waits.deadline());
    }
    return again(
        "publish", nullptr,
        [inner = inner_.get(), &topic, messages = std::move(messages), waits] {
          return inner->publish(topic, messages, waits.left());
        },
        worth_retrying, waits.deadline());
  }
  awaitable<result<void>> create_subscription(const queue_name& subscription,
                                              const subscription_options& options) override {
    co_return co_await again("create_subscription", &subscription,
                             [&] { return inner_->create_subscription(subscription, options); });
  }
  awaitable<result<void>> delete_subscription(const queue_name& subscription) override {
    co_return co_await again("delete_subscription", &subscription,
                             [&] { return inner_->delete_subscription(subscription); });
  }
  awaitable<result<std::vector<subscription_info>>> list_subscriptions(
      const topic_name& topic) override {
    co_return co_await again("list_subscriptions", nullptr,
                             [&] { return inner_->list_subscriptions(topic); });
  }

 private:
  /// retry() with the observer told of each retry: the retryable check sees the failure
  /// first, the sleeper runs only when a retry follows. Not a coroutine itself: the callables
  /// move into retry()'s frame, so no temporary lives across a suspension here (GCC 12
  /// destroys such temporaries of a co_await expression twice).
  template <class Attempt>
  auto again(std::string_view operation, const queue_name* queue, Attempt attempt,
             bool (*retryable)(const error&) = worth_retrying,
             std::chrono::steady_clock::time_point give_up_at =
                 std::chrono::steady_clock::time_point::max()) -> decltype(attempt()) {
    if (!observer_) return retry(policy_, std::move(attempt), sleeper_, retryable, give_up_at);
    auto cause = std::make_shared<error>();
    retry_sleeper observed = [this, operation, queue, cause](milliseconds d) -> awaitable<void> {
      observer_(operation, queue, *cause);
      co_await pause(d);
    };
    std::function<bool(const error&)> check = [cause, retryable](const error& e) {
      *cause = e;
      return retryable(e);
    };
    return retry(policy_, std::move(attempt), std::move(observed), std::move(check), give_up_at);
  }
  /// One result per settlement: a provider that returned too few fails the rest.
  static void fit(std::vector<result<void>>& outcomes, std::size_t n) {
    if (outcomes.size() < n) {
      outcomes.resize(n, fail(errc::protocol_error, "provider returned too few settle results"));
    }
    outcomes.resize(n, result<void>{});  // too many: the extra ones answer nothing
  }
  /// A settlement refused for its receipt after an attempt that failed in transit may have been
  /// applied by that attempt (the service settled it, the answer was lost): the error says so,
  /// for an operator who would otherwise expect the message back. After an attempt that failed
  /// unconfirmed (it reached the service), the refusal is what that attempt leaves behind when
  /// it was applied, or a lock that ran out meanwhile: the outcome is still unknown, so the
  /// caller gets `unconfirmed`, not a receipt error that reads as "not settled" (a processor
  /// would count a message it completed as one it failed to).
  static error after_earlier_failure(error e, const error& earlier,
                                     const std::optional<error>& unconfirmed) {
    const bool receipt_refused = e.code == errc::invalid_receipt ||
                                 e.code == errc::receipt_expired ||
                                 e.code == errc::session_lock_lost;
    if (receipt_refused && unconfirmed) {
      error unknown = *unconfirmed;
      unknown.message += "; a retry found its receipt refused (" + std::string(to_string(e.code)) +
                         ": " + e.message + ")";
      return unknown;
    }
    if (e.code == errc::invalid_receipt || e.code == errc::session_lock_lost) {
      e.message += "; an earlier attempt failed with " + std::string(to_string(earlier.code)) +
                   " and may have settled it";
    }
    return e;
  }
  /// Whether settlement `s`, which ended in `r` at attempt `attempt`, is retried; if so, the
  /// observer is told and `delay` grows to the longest wait any retried entry asks for.
  bool to_retry(const settlement& s, const result<void>& r, std::uint32_t attempt,
                std::optional<milliseconds>& delay) {
    if (r || !worth_retrying(r.error())) return false;
    auto d = policy_.next_delay(r.error(), attempt, detail::unit_random());
    if (!d) return false;
    delay = delay ? std::max(*delay, *d) : *d;
    if (observer_) observer_(operation_of(s.action), nullptr, r.error());
    return true;
  }
  awaitable<void> pause(milliseconds d) {
    if (sleeper_) {
      co_await sleeper_(d);
    } else {
      co_await sleep_for(d);
    }
  }

  provider_ptr inner_;
  detail::borrowing_provider* lender_;  ///< inner_ itself, where it can send from a lent vector
  retry_policy policy_;
  retry_sleeper sleeper_;
  retry_observer observer_;
};

}  // namespace

provider_ptr make_retrying_provider(provider_ptr inner, retry_policy policy, retry_sleeper sleeper,
                                    retry_observer observer) {
  return std::make_shared<retrying_provider>(std::move(inner), policy, std::move(sleeper),
                                             std::move(observer));
}

}  // namespace qrt
