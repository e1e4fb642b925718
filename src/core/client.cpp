#include <qrt/client.hpp>

#include "name_checks.hpp"
#include "peek_checks.hpp"

namespace qrt {

namespace {
/// A provider's batch limits as plan_batches and fits_one_batch read them (0 in the
/// capabilities: no limit), and the one rule both split by.
struct batch_limits {
  std::size_t messages, bytes, one_message;
  explicit batch_limits(const capabilities& caps)
      : messages(caps.max_batch_messages == 0 ? SIZE_MAX : caps.max_batch_messages),
        bytes(caps.max_batch_bytes == 0 ? SIZE_MAX : caps.max_batch_bytes),
        one_message(caps.max_message_bytes == 0 ? SIZE_MAX : caps.max_message_bytes) {}
  bool too_large(std::size_t size) const noexcept { return size > one_message; }
  /// Whether a message of `size` must open a new batch after one holding `count` messages of
  /// `batch_bytes`. A batch's first message opens it whatever its size.
  bool opens_new_batch(std::size_t count, std::size_t batch_bytes,
                       std::size_t size) const noexcept {
    return count > 0 && (count >= messages || batch_bytes + size > bytes);
  }
};
}  // namespace

bool fits_one_batch(const std::vector<message>& messages, const capabilities& caps) {
  const batch_limits limits(caps);
  std::size_t total = 0;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const std::size_t size = messages[i].wire_size();
    if (limits.too_large(size) || limits.opens_new_batch(i, total, size)) return false;
    total += size;
  }
  return true;
}

batch_plan plan_batches(const std::vector<message>& messages, const capabilities& caps) {
  batch_plan plan;
  const batch_limits limits(caps);
  std::vector<std::size_t> current;
  std::size_t current_bytes = 0;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const std::size_t size = messages[i].wire_size();
    if (limits.too_large(size)) {
      plan.oversized.push_back(i);
      continue;
    }
    if (limits.opens_new_batch(current.size(), current_bytes, size)) {
      plan.batches.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(i);
    current_bytes += size;
  }
  if (!current.empty()) plan.batches.push_back(std::move(current));
  return plan;
}

namespace {
/// An awaitable that yields `value` at once: for the refusals of calls that otherwise hand the
/// provider's own awaitable straight back.
template <class T>
awaitable<T> answer(T value) {
  co_return value;
}
}  // namespace

// The receive and settle calls below are not coroutines: they return the provider's awaitable
// itself, so a batch's path has no frame of this layer's (each frame is a heap allocation). Their
// checks run when they are called rather than when the result is awaited.

// ---- session ----

awaitable<result<std::vector<received_message>>> session::receive(std::size_t max_messages,
                                                                  milliseconds wait) {
  if (max_messages == 0) {
    return answer<result<std::vector<received_message>>>(
        fail(errc::invalid_argument, "max_messages must be at least 1"));
  }
  return receiver_->receive(max_messages, wait);
}

awaitable<std::vector<result<void>>> session::settle(std::vector<settlement> settlements) {
  return receiver_->settle(std::move(settlements));
}

namespace {
// The one result of a settlement of one. A provider that answered none is broken, and says
// so as an error rather than as an exception out of the caller's co_await.
result<void> only_result(std::vector<result<void>>& results) {
  if (results.empty()) return fail(errc::protocol_error, "the provider returned no settle result");
  return std::move(results.front());
}
awaitable<result<void>> settle_one(session_receiver& r, settlement s) {
  std::vector<settlement> one;
  one.push_back(std::move(s));
  auto results = co_await r.settle(std::move(one));
  co_return only_result(results);
}
awaitable<result<void>> settle_one(provider& p, settlement s) {
  std::vector<settlement> one;
  one.push_back(std::move(s));
  auto results = co_await p.settle(std::move(one));
  co_return only_result(results);
}
}  // namespace

awaitable<result<void>> session::complete(const receipt_handle& receipt) {
  co_return co_await settle_one(*receiver_, settlement::complete(receipt));
}
awaitable<result<void>> session::abandon(const receipt_handle& receipt) {
  co_return co_await settle_one(*receiver_, settlement::abandon(receipt));
}
awaitable<result<void>> session::dead_letter(const receipt_handle& receipt, std::string reason,
                                             std::string description) {
  co_return co_await settle_one(
      *receiver_, settlement::dead_letter(receipt, std::move(reason), std::move(description)));
}
awaitable<result<time_point>> session::renew_lock() {
  co_return co_await receiver_->renew_session_lock();
}
awaitable<result<std::string>> session::get_state() {
  co_return co_await receiver_->get_state();
}
awaitable<result<void>> session::set_state(std::string state) {
  co_return co_await receiver_->set_state(std::move(state));
}
awaitable<result<void>> session::close() {
  co_return co_await receiver_->close();
}

// ---- queue_client ----

queue_client::queue_client(provider_ptr provider, client_options options)
    : given_(std::move(provider)),
      provider_(options.retry && options.retry->max_attempts > 1
                    ? make_retrying_provider(given_, *options.retry, {}, options.on_retry)
                    : given_),
      options_(options) {}

awaitable<result<void>> queue_client::create_queue(const queue_name& queue,
                                                   const queue_options& options) {
  if (auto refused = detail::unnamed(queue, "queue name")) co_return *refused;
  co_return co_await provider_->create_queue(queue, options);
}
awaitable<result<void>> queue_client::delete_queue(const queue_name& queue) {
  if (auto refused = detail::unnamed(queue, "queue name")) co_return *refused;
  if (queue.is_dead_letter()) co_return detail::dead_letter_queue_not_deletable(queue);
  co_return co_await provider_->delete_queue(queue);
}
awaitable<result<queue_stats>> queue_client::stats(const queue_name& queue) {
  if (auto refused = unreadable(queue)) co_return *refused;
  co_return co_await provider_->stats(queue);
}

namespace {

// send() and publish() differ only in where a batch goes: `deliver(messages)` hands one batch
// to the provider (send to a queue, publish to a topic). The callables hold references to the
// caller's arguments, which outlive these coroutines because each is awaited at once.

template <class Deliver>
awaitable<result<message_id>> deliver_one(const capabilities& c, std::string_view provider,
                                          message msg, Deliver deliver) {
  if (c.max_message_bytes != 0 && msg.wire_size() > c.max_message_bytes) {
    co_return fail(errc::message_too_large, "message of " + std::to_string(msg.wire_size()) +
                                                " bytes exceeds " + std::string(provider) +
                                                "'s limit of " +
                                                std::to_string(c.max_message_bytes) + " bytes");
  }
  std::vector<message> one;
  one.push_back(std::move(msg));
  auto r = co_await deliver(std::move(one));
  if (!r) co_return r.error();
  if (r->size() != 1) co_return fail(errc::protocol_error, "provider returned no send outcome");
  co_return std::move(r->front());
}

template <class Deliver>
awaitable<result<std::vector<send_outcome>>> deliver_in_batches(const capabilities& c,
                                                                std::vector<message> messages,
                                                                Deliver deliver) {
  if (messages.empty()) co_return std::vector<send_outcome>{};
  if (fits_one_batch(messages, c)) {
    // The common case: one batch within limits goes through as it is, without a plan, an
    // outcome vector or a copy (a batch send makes none of them, per call).
    const std::size_t count = messages.size();
    auto r = co_await deliver(std::move(messages));
    if (r && r->size() != count) {
      co_return fail(errc::protocol_error, "provider returned a wrong number of send outcomes");
    }
    co_return r;
  }
  auto plan = plan_batches(messages, c);
  std::vector<send_outcome> outcomes(messages.size(), send_outcome{message_id{}});
  for (auto i : plan.oversized) {
    outcomes[i] =
        fail(errc::message_too_large,
             "message " + std::to_string(i) + " of " + std::to_string(messages[i].wire_size()) +
                 " bytes exceeds the limit of " + std::to_string(c.max_message_bytes) + " bytes");
  }
  bool attempted_any = false;
  for (std::size_t b = 0; b < plan.batches.size(); ++b) {
    const auto& batch = plan.batches[b];
    std::vector<message> chunk;
    chunk.reserve(batch.size());
    for (auto i : batch) chunk.push_back(std::move(messages[i]));
    auto r = co_await deliver(std::move(chunk));
    if (!r) {
      // Nothing of this chunk was sent. Before anything was sent the call fails as a whole (a
      // missing queue reads as one error), unless a message was refused as oversized: its
      // permanent refusal must not hide behind this chunk's error, which may be transient (a
      // caller would resend it with the rest for ever). Otherwise stop here so the queue never
      // sees the batches out of order, and report this chunk and the rest per message.
      if (!attempted_any && plan.oversized.empty()) co_return r.error();
      for (std::size_t rest = b; rest < plan.batches.size(); ++rest) {
        for (auto i : plan.batches[rest]) outcomes[i] = r.error();
      }
      break;
    }
    attempted_any = true;
    if (r->size() != batch.size()) {
      co_return fail(errc::protocol_error, "provider returned a wrong number of send outcomes");
    }
    for (std::size_t k = 0; k < batch.size(); ++k) outcomes[batch[k]] = std::move((*r)[k]);
  }
  co_return outcomes;
}

// A subscription holds what its topic's publishes put there; a send straight into it would
// bypass the filter and the fan-out (docs/adr/0050-topics-and-subscriptions.md).
error not_sendable(const queue_name& queue) {
  return fail(errc::invalid_argument,
              queue.to_string() + " is a subscription: publish to its topic " + queue.topic());
}

}  // namespace

awaitable<result<message_id>> queue_client::send(const queue_name& queue, message msg) {
  if (auto refused = detail::unnamed(queue, "queue name")) co_return *refused;
  if (queue.is_subscription()) co_return not_sendable(queue);
  provider* p = provider_.get();
  const milliseconds timeout = options_.send_timeout;
  co_return co_await deliver_one(caps(), provider_name(), std::move(msg),
                                 [p, &queue, timeout](std::vector<message> batch) {
                                   return p->send(queue, std::move(batch), timeout);
                                 });
}

awaitable<result<std::vector<send_outcome>>> queue_client::send_batch(
    const queue_name& queue, std::vector<message> messages) {
  if (auto refused = detail::unnamed(queue, "queue name")) co_return *refused;
  if (queue.is_subscription()) co_return not_sendable(queue);
  provider* p = provider_.get();
  const milliseconds timeout = options_.send_timeout;
  co_return co_await deliver_in_batches(caps(), std::move(messages),
                                        [p, &queue, timeout](std::vector<message> batch) {
                                          return p->send(queue, std::move(batch), timeout);
                                        });
}

// ---- publish/subscribe ----

std::optional<error> queue_client::without_topics(std::string_view call) const {
  if (caps().topics) return std::nullopt;
  return fail(errc::unsupported, std::string(provider_name()) + " has no topics (caps().topics; " +
                                     std::string(call) + ")");
}

std::optional<error> queue_client::unreadable(const queue_name& queue) const {
  if (auto refused = detail::unnamed(queue, "queue name")) return refused;
  if (!queue.is_subscription()) return std::nullopt;
  if (auto refused = without_topics(queue.to_string())) return refused;
  return std::nullopt;
}

awaitable<result<void>> queue_client::create_topic(const topic_name& topic) {
  if (auto refused = without_topics("create_topic")) co_return *refused;
  if (auto refused = detail::unnamed(topic, "topic name")) co_return *refused;
  co_return co_await provider_->create_topic(topic);
}

awaitable<result<void>> queue_client::delete_topic(const topic_name& topic) {
  if (auto refused = without_topics("delete_topic")) co_return *refused;
  if (auto refused = detail::unnamed(topic, "topic name")) co_return *refused;
  co_return co_await provider_->delete_topic(topic);
}

awaitable<result<message_id>> queue_client::publish(const topic_name& topic, message msg) {
  if (auto refused = without_topics("publish")) co_return *refused;
  if (auto refused = detail::unnamed(topic, "topic name")) co_return *refused;
  provider* p = provider_.get();
  const milliseconds timeout = options_.send_timeout;
  co_return co_await deliver_one(caps(), provider_name(), std::move(msg),
                                 [p, &topic, timeout](std::vector<message> batch) {
                                   return p->publish(topic, std::move(batch), timeout);
                                 });
}

awaitable<result<std::vector<send_outcome>>> queue_client::publish_batch(
    const topic_name& topic, std::vector<message> messages) {
  if (auto refused = without_topics("publish")) co_return *refused;
  if (auto refused = detail::unnamed(topic, "topic name")) co_return *refused;
  provider* p = provider_.get();
  const milliseconds timeout = options_.send_timeout;
  co_return co_await deliver_in_batches(caps(), std::move(messages),
                                        [p, &topic, timeout](std::vector<message> batch) {
                                          return p->publish(topic, std::move(batch), timeout);
                                        });
}

awaitable<result<void>> queue_client::create_subscription(const queue_name& subscription,
                                                          const subscription_options& options) {
  if (auto refused = without_topics("create_subscription")) co_return *refused;
  if (!subscription.is_subscription() || subscription.is_dead_letter()) {
    co_return fail(
        errc::invalid_argument,
        subscription.to_string() + " is not a subscription name (queue_name::subscription)");
  }
  const auto& c = caps();
  if (!options.filter.empty() && !c.subscription_filters) {
    co_return fail(errc::unsupported,
                   std::string(provider_name()) +
                       " cannot filter subscriptions (caps().subscription_filters)");
  }
  if (options.queue.requires_session && !c.subscription_sessions) {
    co_return fail(errc::unsupported,
                   std::string(provider_name()) +
                       " has no sessions on subscriptions (caps().subscription_sessions)");
  }
  co_return co_await provider_->create_subscription(subscription, options);
}

awaitable<result<void>> queue_client::delete_subscription(const queue_name& subscription) {
  if (auto refused = without_topics("delete_subscription")) co_return *refused;
  if (!subscription.is_subscription() || subscription.is_dead_letter()) {
    co_return fail(
        errc::invalid_argument,
        subscription.to_string() + " is not a subscription name (queue_name::subscription)");
  }
  co_return co_await provider_->delete_subscription(subscription);
}

awaitable<result<std::vector<subscription_info>>> queue_client::list_subscriptions(
    const topic_name& topic) {
  if (auto refused = without_topics("list_subscriptions")) co_return *refused;
  if (auto refused = detail::unnamed(topic, "topic name")) co_return *refused;
  co_return co_await provider_->list_subscriptions(topic);
}

awaitable<result<std::vector<received_message>>> queue_client::receive(const queue_name& queue,
                                                                       std::size_t max_messages,
                                                                       milliseconds wait) {
  using answer_type = result<std::vector<received_message>>;
  if (max_messages == 0) {
    return answer<answer_type>(fail(errc::invalid_argument, "max_messages must be at least 1"));
  }
  if (auto refused = unreadable(queue)) return answer<answer_type>(std::move(*refused));
  return provider_->receive(queue, max_messages, wait);
}

awaitable<result<std::vector<received_message>>> queue_client::peek(const queue_name& queue,
                                                                    std::size_t max_messages,
                                                                    std::int64_t from_sequence) {
  if (!caps().peek) {
    co_return fail(errc::unsupported, std::string(provider_name()) + " does not support peek");
  }
  if (auto refused = detail::peek_refusal(max_messages, from_sequence)) co_return *refused;
  if (auto refused = unreadable(queue)) co_return *refused;
  co_return co_await provider_->peek(queue, max_messages, from_sequence);
}

awaitable<result<void>> queue_client::complete(const receipt_handle& receipt) {
  co_return co_await settle_one(*provider_, settlement::complete(receipt));
}
awaitable<result<void>> queue_client::abandon(const receipt_handle& receipt) {
  co_return co_await settle_one(*provider_, settlement::abandon(receipt));
}
awaitable<result<void>> queue_client::dead_letter(const receipt_handle& receipt, std::string reason,
                                                  std::string description) {
  co_return co_await settle_one(
      *provider_, settlement::dead_letter(receipt, std::move(reason), std::move(description)));
}
awaitable<std::vector<result<void>>> queue_client::settle(std::vector<settlement> settlements) {
  return provider_->settle(std::move(settlements));
}
awaitable<result<time_point>> queue_client::renew_lock(const receipt_handle& receipt) {
  co_return co_await provider_->renew_lock(receipt);
}

awaitable<result<session>> queue_client::accept_session(const queue_name& queue,
                                                        std::optional<session_id> which,
                                                        milliseconds wait) {
  if (caps().sessions == session_support::none) {
    co_return fail(errc::unsupported, std::string(provider_name()) + " has no sessions");
  }
  if (auto refused = unreadable(queue)) co_return *refused;
  auto r = co_await provider_->accept_session(queue, std::move(which), wait);
  if (!r) co_return r.error();
  co_return session(std::move(*r));
}

awaitable<void> queue_client::close() {
  co_await provider_->close();
}

}  // namespace qrt
