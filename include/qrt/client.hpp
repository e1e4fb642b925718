// The asynchronous client: what services hold. Every call is an Asio awaitable returning
// qrt::result; see docs/adr/0001-async-model.md and docs/adr/0002-errors.md.
#pragma once

#include <memory>
#include <optional>
#include <qrt/provider.hpp>
#include <qrt/retry.hpp>
#include <vector>

namespace qrt {

/// Client-wide policies of a queue_client.
struct client_options {
  /// Bounds waits for room in a full queue and for the service on send.
  milliseconds send_timeout{30'000};
  /// Applied to transient and throttled provider errors (docs/adr/0060-resilience-layering.md).
  /// nullopt (or retry_policy::none()) turns retrying off.
  std::optional<retry_policy> retry = retry_policy::client_default();
  /// Told of each retry (for metrics: qrt::metrics::count_retries).
  retry_observer on_retry;
};

/// A locked session, from queue_client::accept_session. Closing (or destroying the last copy
/// without closing) releases the lock.
class session {
 public:
  session() = default;  // empty; only for containers and result<session>
  /// Wraps the provider's session receiver.
  explicit session(std::shared_ptr<session_receiver> receiver) : receiver_(std::move(receiver)) {}

  /// The session this lock is for.
  const session_id& id() const noexcept { return receiver_->id(); }
  /// When the session lock runs out unless renewed.
  time_point locked_until() const noexcept { return receiver_->locked_until(); }

  /// At most `max_messages` of this session's messages, in send order; waits at most `wait` for the
  /// first; an empty vector on timeout.
  awaitable<result<std::vector<received_message>>> receive(std::size_t max_messages,
                                                           milliseconds wait);
  /// Removes a message received from this session.
  awaitable<result<void>> complete(const receipt_handle& receipt);
  /// Releases a message for redelivery (delivery count + 1); it comes back first.
  awaitable<result<void>> abandon(const receipt_handle& receipt);
  /// Moves a message to the queue's dead-letter queue with `reason` and `description`.
  awaitable<result<void>> dead_letter(const receipt_handle& receipt, std::string reason,
                                      std::string description = {});
  /// Many settlements in one call; one result per settlement, in order.
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements);
  /// Extends the session lock; returns the new expiry.
  awaitable<result<time_point>> renew_lock();
  /// The session's state (any bytes; empty for a new session).
  awaitable<result<std::string>> get_state();
  /// Stores the session's state; an empty string clears it.
  awaitable<result<void>> set_state(std::string state);
  /// Releases the session lock; unsettled messages become available again.
  awaitable<result<void>> close();

  /// The provider's session receiver, for decorators and tests.
  session_receiver& receiver() noexcept { return *receiver_; }

 private:
  std::shared_ptr<session_receiver> receiver_;
};

/// The asynchronous client services hold: every call is an Asio awaitable returning qrt::result
/// (docs/contract.md states what each call guarantees). Copies share the provider; calls may run
/// concurrently from many coroutines and threads.
class queue_client {
 public:
  /// A client over `provider`, wrapped in the retry decorator unless options.retry is off.
  explicit queue_client(provider_ptr provider, client_options options = {});

  /// What the provider can do.
  const capabilities& caps() const noexcept { return provider_->caps(); }
  /// The provider's name ("memory", "sqs", "servicebus", "amqp", ...).
  std::string_view provider_name() const noexcept { return provider_->name(); }
  /// The provider as given, without the client's retry decorator.
  const provider_ptr& underlying() const noexcept { return given_; }

  /// Creates `queue` with `options` (where caps().queue_management).
  awaitable<result<void>> create_queue(const queue_name& queue, const queue_options& options = {});
  /// Deletes `queue` and its messages (where caps().queue_management).
  awaitable<result<void>> delete_queue(const queue_name& queue);
  /// How many messages `queue` holds, as far as the provider knows.
  awaitable<result<queue_stats>> stats(const queue_name& queue);

  /// One message; errc::message_too_large or queue_not_found means nothing was sent.
  awaitable<result<message_id>> send(const queue_name& queue, message msg);
  /// Any number of messages: split into batches within the provider's limits, sent in order,
  /// one outcome per message. The whole call fails only if nothing could be attempted and no
  /// message was refused as too large (errc::message_too_large is always reported per message).
  awaitable<result<std::vector<send_outcome>>> send_batch(const queue_name& queue,
                                                          std::vector<message> messages);

  /// At most `max_messages` (at least 1) locked messages; waits at most `wait` for the first and
  /// returns as soon as one is there; an empty vector on timeout.
  awaitable<result<std::vector<received_message>>> receive(const queue_name& queue,
                                                           std::size_t max_messages,
                                                           milliseconds wait);
  /// Reads up to `max_messages` (at least 1) without locking them, from `from_sequence` on (0: the
  /// oldest; a negative one is errc::invalid_argument); errc::unsupported where caps().peek is
  /// false.
  awaitable<result<std::vector<received_message>>> peek(const queue_name& queue,
                                                        std::size_t max_messages,
                                                        std::int64_t from_sequence = 0);

  /// Removes the message.
  awaitable<result<void>> complete(const receipt_handle& receipt);
  /// Releases the message for redelivery now (delivery count + 1).
  awaitable<result<void>> abandon(const receipt_handle& receipt);
  /// Moves the message to its queue's dead-letter queue, keeping `reason` and `description`.
  awaitable<result<void>> dead_letter(const receipt_handle& receipt, std::string reason,
                                      std::string description = {});
  /// Many settlements in one call (one lock / one round trip where the provider can).
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements);
  /// Extends the receipt's lock; returns the new expiry.
  awaitable<result<time_point>> renew_lock(const receipt_handle& receipt);

  /// `which` names a session, or nullopt for the next available one.
  awaitable<result<session>> accept_session(const queue_name& queue,
                                            std::optional<session_id> which, milliseconds wait);

  // Publish/subscribe (docs/adr/0050-topics-and-subscriptions.md, docs/contract.md). Every call
  // fails with errc::unsupported where caps().topics is false. A subscription is read with the
  // calls above through queue_name::subscription(); send() to it is refused (publish to its
  // topic instead).

  /// Creates `topic`.
  awaitable<result<void>> create_topic(const topic_name& topic);
  /// Deletes `topic`, its subscriptions and their messages.
  awaitable<result<void>> delete_topic(const topic_name& topic);
  /// One message to every subscription of `topic` whose filter it matches; as send() otherwise.
  awaitable<result<message_id>> publish(const topic_name& topic, message msg);
  /// Any number of messages, split into batches within the provider's limits as send_batch()
  /// splits them; one outcome per message.
  awaitable<result<std::vector<send_outcome>>> publish_batch(const topic_name& topic,
                                                             std::vector<message> messages);
  /// Creates `subscription` (a queue_name::subscription). A non-empty filter needs
  /// caps().subscription_filters; options.queue.requires_session needs
  /// caps().subscription_sessions.
  awaitable<result<void>> create_subscription(const queue_name& subscription,
                                              const subscription_options& options = {});
  /// Deletes `subscription`, its messages and its dead-letter queue.
  awaitable<result<void>> delete_subscription(const queue_name& subscription);
  /// The subscriptions of `topic`, ordered by name, with their filters.
  awaitable<result<std::vector<subscription_info>>> list_subscriptions(const topic_name& topic);

  /// Closes the provider: waiting calls fail with errc::closed. Idempotent.
  awaitable<void> close();

 private:
  /// The refusal of a topic call where caps().topics is false (nullopt otherwise).
  std::optional<error> without_topics(std::string_view call) const;
  /// The refusal of a reading call on a subscription where caps().topics is false.
  std::optional<error> unreadable(const queue_name& queue) const;

  provider_ptr given_;
  provider_ptr provider_;  ///< given_, wrapped in the retry decorator when options_.retry is set
  client_options options_;
};

/// Splits `messages` into consecutive batches that respect `caps` (count and bytes). Messages
/// over max_message_bytes are reported separately by index. Pure; used by queue_client and
/// providers' own batchers.
struct batch_plan {
  std::vector<std::vector<std::size_t>> batches;  ///< indexes into the input, in order
  std::vector<std::size_t> oversized;             ///< indexes of messages too large to send
};
/// The batches (and oversized messages) of `messages` under the limits in `caps`.
batch_plan plan_batches(const std::vector<message>& messages, const capabilities& caps);
/// True when `messages` go as one batch under the limits in `caps`, none of them too large: what
/// plan_batches would answer with one batch and no oversized message, without building the plan.
bool fits_one_batch(const std::vector<message>& messages, const capabilities& caps);

}  // namespace qrt
