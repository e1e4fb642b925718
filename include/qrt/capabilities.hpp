// What a provider can do, so callers and the conformance suite adapt instead of failing.
#pragma once

#include <chrono>
#include <cstddef>
#include <string_view>

namespace qrt {

/// How a provider supports sessions (ordered, exclusive processing per session id).
enum class session_support {
  none,      ///< no sessions
  emulated,  ///< ordered groups without a real lock object (SQS FIFO message groups)
  native,    ///< sessions with an exclusive, renewable lock (Service Bus, embedded)
};

/// What a provider can do. queue_client refuses what a provider lacks with errc::unsupported, and
/// the conformance suite skips those tests (docs/contract.md, C33).
struct capabilities {
  session_support sessions = session_support::none;  ///< whether and how sessions work
  std::size_t max_batch_messages = 1;                ///< entries per send/receive call on the wire
  std::size_t max_batch_bytes = 0;                   ///< total bytes per send call on the wire
  std::size_t max_message_bytes = 0;                 ///< one message, body plus attributes
  bool peek = false;                                 ///< peek() reads without locking
  bool scheduling = false;                           ///< scheduled_enqueue_time honoured
  bool time_to_live = false;                         ///< time_to_live honoured
  bool abandon = true;                               ///< immediate release for redelivery
  bool lock_renewal = false;                         ///< renew_lock extends a receipt
  bool dead_letter_queue = false;   ///< native DLQ with reason kept, readable via dead_letter()
  bool max_delivery_count = false;  ///< auto dead-letter after N deliveries
  bool session_state = false;       ///< sessions carry state (get_state / set_state)
  bool queue_management = false;    ///< create_queue / delete_queue work
  /// A receipt's lock runs out after the queue's lock_duration while the receiver still holds
  /// the message (it is then redelivered). False where a lock lasts as long as the receiving
  /// link (AMQP 1.0 brokers such as RabbitMQ). True by default: most providers have it.
  bool timed_locks = true;
  /// A settlement (complete, abandon, dead-letter) reported done was confirmed by the service,
  /// so a completed message is never delivered again. False where the broker does not confirm
  /// settlements (an AMQP 1.0 broker that refuses rcv-settle-mode second, such as RabbitMQ
  /// 3.10): the outcome is final when sent, and a complete sent just before the connection
  /// drops can fail to arrive, in which case the message is delivered again (at least once).
  bool confirmed_settlement = true;

  // Publish/subscribe (docs/adr/0050-topics-and-subscriptions.md). A subscription is read as a
  // queue, so the queue capabilities above hold for subscriptions too.

  /// create_topic, publish and the subscription calls work.
  bool topics = false;
  /// create_subscription honours a subscription_filter (subject and attribute equality).
  bool subscription_filters = false;
  /// A subscription, and what it holds, outlives the connection that created it. False where a
  /// subscription lasts as long as its receiving link (RabbitMQ over AMQP 1.0).
  bool durable_subscriptions = false;
  /// A subscription can require sessions and is then read through accept_session.
  bool subscription_sessions = false;
};

/// "none", "emulated" or "native".
std::string_view to_string(session_support s) noexcept;

}  // namespace qrt
