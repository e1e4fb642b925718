// What is sent, what is received, and the receipt that settles it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <qrt/names.hpp>
#include <string>

namespace qrt {

/// The clock of enqueue times, lock expiries and schedules (wall time: services share it).
using clock = std::chrono::system_clock;
/// A point in time on qrt::clock.
using time_point = clock::time_point;
using std::chrono::milliseconds;

/// A message to send. `body` holds raw bytes: any byte values, not only UTF-8.
struct message {
  std::string body;                               ///< the payload: any bytes
  std::map<std::string, std::string> attributes;  ///< user properties, string key/value
  std::optional<session_id> session;              ///< ordered, exclusive group (SQS: group id)
  std::string correlation_id;  ///< round-trips unchanged; not among the attributes
  std::string content_type;    ///< e.g. "application/json"; round-trips unchanged
  std::string subject;         ///< a label (Service Bus: Label); round-trips unchanged
  /// Sender-chosen id (SQS FIFO deduplication, Service Bus duplicate detection).
  /// Empty: the provider assigns one.
  message_id id;
  std::optional<milliseconds>
      time_to_live;  ///< after this long the message expires (where caps().time_to_live)
  std::optional<time_point>
      scheduled_enqueue_time;  ///< not delivered before this time (where caps().scheduling)

  /// Bytes the provider's size limits count: body plus attribute keys and values.
  std::size_t wire_size() const noexcept;
};

/// Identifies one delivery of one message for settlement. Opaque to users; each provider
/// fills the fields it needs. A receipt outlives nothing: once settled, or once its lock
/// expires, using it fails with invalid_receipt or receipt_expired.
struct receipt_handle {
  std::uint64_t owner = 0;  ///< the provider instance that issued it (0: none)
  std::uint64_t queue = 0;  ///< provider-private queue key
  std::uint64_t item = 0;   ///< provider-private message key
  std::uint64_t lock = 0;   ///< provider-private lock generation
  std::string token;        ///< provider-private text token (SQS receipt handle, lock token)

  /// False for an empty receipt (a peeked message's).
  bool valid() const noexcept { return owner != 0; }
  friend bool operator==(const receipt_handle&, const receipt_handle&) = default;
};

/// Why a message is in a dead-letter queue.
struct dead_letter_info {
  std::string reason;       ///< why, in a word or a code ("MaxDeliveryCountExceeded")
  std::string description;  ///< more detail, for people
};

/// A received message: the content as sent plus the broker's view of this delivery.
struct received_message : message {
  receipt_handle receipt;                       ///< empty for peeked messages
  std::uint32_t delivery_count = 0;             ///< 1 on first delivery
  time_point enqueued_time{};                   ///< when the queue accepted it
  time_point locked_until{};                    ///< when the receipt stops working
  std::int64_t sequence_number = 0;             ///< provider-assigned, increasing per queue
  std::optional<dead_letter_info> dead_letter;  ///< set for messages read from a DLQ
};

/// How to settle one received message.
enum class settle_action {
  complete,     ///< remove it
  abandon,      ///< release it for redelivery now (delivery count + 1 on next receive)
  dead_letter,  ///< move it to the dead-letter queue with a reason
};

/// One settlement of a received message, for settle() calls that settle many at once.
struct settlement {
  receipt_handle receipt;                          ///< the delivery to settle
  settle_action action = settle_action::complete;  ///< what to do with it
  std::string reason;                              ///< dead_letter only
  std::string description;                         ///< dead_letter only

  /// Complete the delivery of `r`.
  static settlement complete(receipt_handle r) {
    return {std::move(r), settle_action::complete, {}, {}};
  }
  /// Abandon the delivery of `r`.
  static settlement abandon(receipt_handle r) {
    return {std::move(r), settle_action::abandon, {}, {}};
  }
  /// Dead-letter the delivery of `r` with `reason` and `description`.
  static settlement dead_letter(receipt_handle r, std::string reason, std::string description) {
    return {std::move(r), settle_action::dead_letter, std::move(reason), std::move(description)};
  }
};

}  // namespace qrt
