// Validated names: a queue (or a topic's subscription, read as a queue), a topic, a session, a
// message id. Invalid names never reach a provider.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <qrt/error.hpp>
#include <string>
#include <string_view>

namespace qrt {

/// A topic's name: the same rules as a queue's name (1-260 ASCII letters, digits, '-', '_', '.';
/// no leading, trailing or consecutive hyphens). A distinct type, so a topic is never passed
/// where a queue is meant (docs/adr/0050-topics-and-subscriptions.md).
class topic_name {
 public:
  /// Validates `text`; invalid_argument with the reason otherwise.
  static result<topic_name> parse(std::string_view text);
  /// For literals known to be valid; throws qrt::exception otherwise.
  static topic_name from(std::string_view text) { return parse(text).value(); }

  topic_name() = default;
  /// The name as text.
  const std::string& str() const noexcept { return name_; }

  friend auto operator<=>(const topic_name&, const topic_name&) = default;

 private:
  std::string name_;
};

/// A queue's name: 1-260 ASCII letters, digits, '-', '_', '.'; no leading, trailing or
/// consecutive hyphens; a ".fifo" suffix is allowed (SQS FIFO queues). The dead-letter queue of
/// a queue is addressed as `q.dead_letter()`; it prints as "<name>/$DeadLetterQueue".
///
/// A topic's subscription is read through a queue_name too: `queue_name::subscription(topic,
/// name)` names it, it prints as "<topic>/Subscriptions/<name>" (Service Bus's own path), and
/// every reading operation takes it unchanged (docs/adr/0050-topics-and-subscriptions.md).
class queue_name {
 public:
  /// Validates `text`; invalid_argument with the reason otherwise.
  static result<queue_name> parse(std::string_view text);
  /// For literals known to be valid; throws qrt::exception otherwise.
  static queue_name from(std::string_view text) { return parse(text).value(); }
  /// The subscription `name` of `topic`. A subscription's name follows the queue-name rules and
  /// is at most 50 characters (Service Bus's limit, so a name is valid on every provider);
  /// invalid_argument with the reason otherwise.
  static result<queue_name> subscription(const topic_name& topic, std::string_view name);

  queue_name() = default;

  /// The path without the dead-letter suffix: the queue's name, or for a subscription
  /// "<topic>/Subscriptions/<name>".
  const std::string& str() const noexcept { return name_; }
  /// True for a topic's subscription (and for its dead-letter queue).
  bool is_subscription() const noexcept { return !topic_.empty(); }
  /// The topic of a subscription; empty text for a queue.
  const std::string& topic() const noexcept { return topic_; }
  /// The subscription's own name (without its topic); the queue's name for a queue.
  std::string_view subscription_name() const noexcept;
  /// True for the dead-letter queue of a queue.
  bool is_dead_letter() const noexcept { return dead_letter_; }
  /// True when the name ends in ".fifo" (an SQS FIFO queue; never a subscription).
  bool is_fifo() const noexcept;
  /// The dead-letter sub-queue of this queue (idempotent).
  queue_name dead_letter() const {
    queue_name q = *this;
    q.dead_letter_ = true;
    return q;
  }
  /// The queue whose dead-letter queue this is (or itself).
  queue_name parent() const {
    queue_name q = *this;
    q.dead_letter_ = false;
    return q;
  }
  /// "orders", "orders/$DeadLetterQueue", "events/Subscriptions/audit" or
  /// "events/Subscriptions/audit/$DeadLetterQueue".
  std::string to_string() const;

  friend auto operator<=>(const queue_name&, const queue_name&) = default;

 private:
  std::string name_;   ///< the whole path (a subscription's includes its topic)
  std::string topic_;  ///< empty for a queue
  bool dead_letter_ = false;
};

/// A session id (Service Bus session, SQS message group): 1-128 printable ASCII characters.
class session_id {
 public:
  /// Validates `text`; invalid_argument with the reason otherwise.
  static result<session_id> parse(std::string_view text);
  /// For literals known to be valid; throws qrt::exception otherwise.
  static session_id from(std::string_view text) { return parse(text).value(); }
  /// The session "shard-<n>" (n in [0, shards)) that `key` belongs to: one key's messages share
  /// a session (an SQS FIFO message group) and keep their order, while the keys spread over
  /// `shards` sessions that are processed in parallel (processor_options::order_by_session, or
  /// a session processor). n is the 64-bit FNV-1a hash of the key's bytes modulo `shards`, so
  /// any sender, in any language, can compute the same shard. `shards` 0 counts as 1.
  static session_id for_shard(std::string_view key, std::uint32_t shards);

  session_id() = default;
  /// The id as text.
  const std::string& str() const noexcept { return id_; }
  friend auto operator<=>(const session_id&, const session_id&) = default;

 private:
  std::string id_;
};

/// A message id assigned by the provider (or by the sender); opaque text.
using message_id = std::string;

}  // namespace qrt

template <>
/// Hashes a queue name (a queue and its dead-letter queue differ).
struct std::hash<qrt::queue_name> {
  /// The hash of `q`.
  std::size_t operator()(const qrt::queue_name& q) const noexcept {
    return std::hash<std::string>{}(q.str()) ^ static_cast<std::size_t>(q.is_dead_letter());
  }
};
template <>
/// Hashes a topic name.
struct std::hash<qrt::topic_name> {
  /// The hash of `t`.
  std::size_t operator()(const qrt::topic_name& t) const noexcept {
    return std::hash<std::string>{}(t.str());
  }
};

template <>
/// Hashes a session id.
struct std::hash<qrt::session_id> {
  /// The hash of `s`.
  std::size_t operator()(const qrt::session_id& s) const noexcept {
    return std::hash<std::string>{}(s.str());
  }
};
