// The seam between the embedded provider's state machine and its persistence log.
//
// Every state change of a queue is reported to an event_sink, under that queue's lock, in the
// order it happened. The in-memory mode uses no sink; the persisted mode's sink appends each event
// to a log and replays the log on open (docs/adr/0003-persistence-format.md once it exists).
// Locks are never persisted: after a restart, every unsettled message is ready again with the
// delivery count it had.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <qrt/message.hpp>
#include <qrt/provider.hpp>
#include <set>
#include <string>
#include <vector>

namespace qrt::memory::detail {

/// The longest lock duration or time to live the provider stores (100 years): a longer one
/// would overflow when added to a clock reading in nanoseconds. Replay holds the log to it too.
inline constexpr milliseconds longest_duration{3'155'760'000'000};

/// Log sequence number of an appended event; 0 means "nothing to wait for".
using lsn = std::uint64_t;

/// A message as the queue stores it.
struct stored_message {
  std::uint64_t sequence = 0;  ///< unique and increasing within its queue (or DLQ)
  message content;
  time_point enqueued_time{};
  std::uint32_t delivery_count = 0;             ///< deliveries so far
  std::optional<dead_letter_info> dead_letter;  ///< set for messages in a DLQ
};

class event_sink {
 public:
  virtual ~event_sink() = default;

  // Each call appends one event and returns its lsn. Called with the queue's lock held, so it
  // must be quick and must never wait for I/O; waiting happens in flushed().
  virtual lsn queue_created(const queue_name& queue, const queue_options& options) = 0;
  virtual lsn queue_deleted(const queue_name& queue) = 0;
  /// A message entered `queue` (which may be a dead-letter queue).
  virtual lsn enqueued(const queue_name& queue, const stored_message& msg) = 0;
  /// A published message entered each of `copies` (subscriptions of `topic`, each with the
  /// sequence it got there): one event, so it is stored in all of them or in none. `msg`'s
  /// sequence is unused. Only called where stores_topics().
  virtual lsn published(const topic_name& topic, const stored_message& msg,
                        const std::vector<std::pair<queue_name, std::uint64_t>>& copies) {
    (void)topic;
    (void)msg;
    (void)copies;
    return 0;
  }
  /// A message was handed to a receiver; its delivery count is now `delivery_count`.
  virtual lsn delivered(const queue_name& queue, std::uint64_t sequence,
                        std::uint32_t delivery_count) = 0;
  /// A message left `queue` for good: completed, or expired and dropped, or moved to the DLQ
  /// (the move is `removed` from the queue plus `enqueued` into queue.dead_letter()).
  virtual lsn removed(const queue_name& queue, std::uint64_t sequence) = 0;
  virtual lsn session_state_set(const queue_name& queue, const session_id& session,
                                const std::string& state) = 0;

  // Topics (docs/adr/0050-topics-and-subscriptions.md). A subscription's messages, deliveries
  // and settlements are reported with the calls above under its queue_name; deleting one is
  // queue_deleted. A sink whose stores_topics() is false never receives these calls: the
  // provider then offers no topics rather than keep ones a restart would lose.

  /// True when the sink stores topics and subscriptions (the calls below).
  virtual bool stores_topics() const { return false; }
  virtual lsn topic_created(const topic_name& topic) {
    (void)topic;
    return 0;
  }
  /// The topic is gone; its subscriptions were each reported with queue_deleted before it.
  virtual lsn topic_deleted(const topic_name& topic) {
    (void)topic;
    return 0;
  }
  /// A subscription was created with its queue options and its filter.
  virtual lsn subscription_created(const queue_name& subscription,
                                   const subscription_options& options) {
    (void)subscription;
    (void)options;
    return 0;
  }

  /// The provider closed: what was appended is written (and synced), nothing more is, and the
  /// storage is let go so that another provider, of this process or another, may open it.
  /// Blocks until then; idempotent.
  virtual void close() {}

  /// Bracket one operation: every event appended between them (under one hold of a queue's
  /// lock, see queue_mutex) reaches the disk in the same write batch. A send of several
  /// messages, a batch of settlements, a move to the dead-letter queue (`enqueued` into the DLQ
  /// plus `removed`) is then on disk whole or, after a failed write, not at all: it cannot be
  /// half there after a restart while its caller was told it failed. Operations may overlap
  /// (different queues) and nest (one thread holding two queue locks); neither call waits.
  virtual void begin_operation() {}
  virtual void end_operation() {}

  /// Why `content` could not be stored in `queue`: its record would exceed the log's largest,
  /// now or once dead-lettered (with the longest reason and description). Checked before a
  /// send changes anything, so such a message fails alone and nothing else is affected.
  virtual std::optional<error> refuse(const queue_name& queue, const message& content) const {
    (void)queue;
    (void)content;
    return std::nullopt;
  }

  /// Why the publish of `content` to the subscriptions `copies` (of `topic`) could not be
  /// stored: the one record that carries it and every copy's place would exceed the log's
  /// largest (a message near the size limit published to thousands of subscriptions). Checked
  /// before a publish changes anything, so that message fails alone.
  virtual std::optional<error> refuse_publish(const topic_name& topic, const message& content,
                                              const std::vector<queue_name>& copies) const {
    (void)topic;
    (void)content;
    (void)copies;
    return std::nullopt;
  }

  /// Set once the sink could not store an event (a full disk, an I/O error). The provider's
  /// memory may then hold changes the disk lacks, so it refuses every further operation with
  /// this error: what a reopen replays is what was acknowledged.
  virtual std::optional<error> failure() const { return std::nullopt; }

  /// False while the log is at its disk limit (max_disk_bytes): sends wait as for a full queue.
  /// Settlements are always accepted, since they are what frees space.
  virtual bool has_room() const { return true; }

  /// `listener` is called (on the log's thread, with no queue lock held) whenever the log frees
  /// disk space, so sends waiting for room look again. nullptr removes it; once that call
  /// returns, the old listener is not running and is not called again.
  virtual void set_space_listener(std::function<void()> listener) { (void)listener; }

  /// Completes once every event up to and including `upto` is as durable as the configured
  /// durability mode promises (always: on disk; interval/none: at once).
  virtual awaitable<result<void>> flushed(lsn upto) = 0;
};

/// What a log replays into: the provider starts from this state.
struct recovered_queue {
  queue_options options;
  /// Set for a topic's subscription (its name is a queue_name::subscription): its filter.
  std::optional<subscription_filter> filter;
  std::vector<stored_message> messages;              ///< unsettled, in sequence order
  std::vector<stored_message> dead_letters;          ///< in sequence order
  std::map<session_id, std::string> session_states;  ///< non-empty states only
  std::uint64_t next_sequence = 1;                   ///< for the queue and its DLQ
};
/// The queues and subscriptions by name, plus the topics (a topic may have no subscription).
struct recovered_state : std::map<queue_name, recovered_queue> {
  std::set<topic_name> topics;
};

}  // namespace qrt::memory::detail
