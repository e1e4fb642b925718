// The interface every provider implements. Users normally hold a qrt::queue_client; this is
// for provider authors and decorators (retry, metrics, fault injection). See
// docs/adr/0001-async-model.md for why these are virtual awaitables.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <qrt/capabilities.hpp>
#include <qrt/message.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace qrt {

template <class T>
/// What every asynchronous qrt call returns: an Asio coroutine, run on any_io_executor.
using awaitable = boost::asio::awaitable<T>;

/// Per-queue settings a provider honours when it creates a queue (or reports when it reads one).
struct queue_options {
  milliseconds lock_duration{
      30'000};  ///< how long a received message (or a session) stays locked unless renewed
  std::uint32_t max_delivery_count = 10;  ///< 0: never dead-letter automatically
  std::optional<milliseconds>
      default_time_to_live;               ///< for messages sent without their own time_to_live
  bool dead_letter_on_expiration = true;  ///< expired messages go to the DLQ (else dropped)
  bool requires_session =
      false;  ///< every message must carry a session id; receive through accept_session
  std::size_t max_size = 0;           ///< messages; 0: the provider's default bound
  std::size_t max_message_bytes = 0;  ///< 0: the provider's limit
};

/// A snapshot of a queue's depth. Providers fill what they know; -1 means unknown.
struct queue_stats {
  std::int64_t active = -1;         ///< ready to be received
  std::int64_t in_flight = -1;      ///< locked by a receiver
  std::int64_t scheduled = -1;      ///< waiting for their enqueue time
  std::int64_t dead_lettered = -1;  ///< in the dead-letter queue
  std::uint64_t expired = 0;        ///< removed because their TTL ran out (dropped or DLQ'd)
};

/// A provider's network connections so far: traffic, failures and how long each recovery took.
/// Every field only grows. A provider without network connections (the embedded one) reports
/// zeros. qrt::metrics::instrument() exposes it (docs/adr/0070-metrics-recording.md).
struct connection_stats {
  std::uint64_t bytes_sent = 0;          ///< written to the provider's sockets (TLS: plaintext)
  std::uint64_t bytes_received = 0;      ///< read from them
  std::uint64_t connections_opened = 0;  ///< connections established, the first included
  /// Connects that failed and established connections that broke or timed out (not those qrt
  /// closed itself).
  std::uint64_t connection_failures = 0;
  /// Connections established after a failure: one per outage, however many attempts it took.
  std::uint64_t recoveries = 0;
  /// Summed over recoveries: from the outage's first failure to the next connection established.
  std::chrono::nanoseconds recovery_time_total{0};
  std::chrono::nanoseconds longest_recovery{0};  ///< the longest of those
};

/// The messages a provider keeps in this process's memory (the embedded provider's queues), as
/// its byte budget counts them: each message's body and attributes plus its bookkeeping
/// (docs/memory.md). qrt::metrics::instrument() exposes it (docs/adr/0070-metrics-recording.md).
struct memory_stats {
  std::uint64_t held_bytes = 0;   ///< stored now, dead-letter queues included
  std::uint64_t limit_bytes = 0;  ///< the provider's budget (max_memory_bytes); 0: none
};

/// Per-message outcome of a send: the id on success, the error otherwise.
using send_outcome = result<message_id>;

/// Which published messages a subscription receives: those whose subject equals `subject` (when
/// set) and whose attributes hold each listed key with exactly the listed value. An empty filter
/// matches every message. Equality is the one kind of filter every provider can express
/// (docs/adr/0050-topics-and-subscriptions.md); nothing richer is offered.
struct subscription_filter {
  std::optional<std::string> subject;             ///< required subject, when set
  std::map<std::string, std::string> attributes;  ///< required attribute values

  /// True when the filter matches nothing in particular (every message passes).
  bool empty() const noexcept { return !subject && attributes.empty(); }
  /// True when `m` passes the filter.
  bool matches(const message& m) const;

  friend bool operator==(const subscription_filter&, const subscription_filter&) = default;
};

/// What create_subscription sets up: the subscription's filter and the settings of the queue
/// that holds its messages (lock duration, delivery count, sessions, time to live).
struct subscription_options {
  subscription_filter filter;  ///< which published messages it receives
  queue_options queue;         ///< as for create_queue
};

/// One subscription of a topic, as list_subscriptions reports it.
struct subscription_info {
  queue_name name;             ///< queue_name::subscription(topic, its name)
  subscription_filter filter;  ///< as created
};

/// A locked session: messages of one session id, in order, to one holder at a time.
class session_receiver {
 public:
  virtual ~session_receiver() = default;

  /// The session this lock is for.
  virtual const session_id& id() const noexcept = 0;
  /// When the session lock runs out unless renewed.
  virtual time_point locked_until() const noexcept = 0;

  /// At most `max_messages` of this session's messages, in send order; waits at most `wait`.
  virtual awaitable<result<std::vector<received_message>>> receive(std::size_t max_messages,
                                                                   milliseconds wait) = 0;
  /// Settles messages received from this session; one result per settlement, in order.
  virtual awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements) = 0;
  /// Extends the session lock; returns the new expiry.
  virtual awaitable<result<time_point>> renew_session_lock() = 0;
  /// The session's state (empty for a new session).
  virtual awaitable<result<std::string>> get_state() = 0;
  /// Stores the session's state; an empty string clears it.
  virtual awaitable<result<void>> set_state(std::string state) = 0;
  /// Releases the session lock; unsettled messages become available again.
  virtual awaitable<result<void>> close() = 0;
};

/// The interface every provider implements (and every decorator: retry, metrics, fault injection).
/// Users normally hold a queue_client; docs/contract.md states what each operation guarantees.
class provider {
 public:
  virtual ~provider() = default;

  /// The provider's name, as in configuration ("memory", "sqs", ...).
  virtual std::string_view name() const noexcept = 0;
  /// What the provider can do.
  virtual const capabilities& caps() const noexcept = 0;
  /// Its network connections so far; decorators forward to the provider they wrap.
  virtual connection_stats connections() const noexcept { return {}; }
  /// What it keeps in this process's memory; nullopt for a provider whose messages live in a
  /// broker. Decorators forward to the provider they wrap.
  virtual std::optional<memory_stats> memory() const { return std::nullopt; }

  /// Creates `queue`; errc::unsupported where caps().queue_management is false.
  virtual awaitable<result<void>> create_queue(const queue_name& queue,
                                               const queue_options& options) = 0;
  /// Deletes `queue` and its messages.
  virtual awaitable<result<void>> delete_queue(const queue_name& queue) = 0;
  /// A snapshot of the queue's depth.
  virtual awaitable<result<queue_stats>> stats(const queue_name& queue) = 0;

  /// Sends messages in order. Fails as a whole only when nothing was sent (queue missing,
  /// connection down before the first byte); otherwise reports each message's outcome.
  /// `timeout` bounds any wait for room (backpressure) or for the service.
  virtual awaitable<result<std::vector<send_outcome>>> send(const queue_name& queue,
                                                            std::vector<message> messages,
                                                            milliseconds timeout) = 0;

  /// At most `max_messages`; waits at most `wait` for the first one; an empty vector on timeout.
  virtual awaitable<result<std::vector<received_message>>> receive(const queue_name& queue,
                                                                   std::size_t max_messages,
                                                                   milliseconds wait) = 0;

  /// Reads without locking, from `from_sequence` on (0: the oldest). `max_messages` 0 and a
  /// negative `from_sequence` are errc::invalid_argument (docs/contract.md, C11).
  virtual awaitable<result<std::vector<received_message>>> peek(const queue_name& queue,
                                                                std::size_t max_messages,
                                                                std::int64_t from_sequence) = 0;

  /// Settles each receipt; one result per settlement, in order.
  virtual awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements) = 0;

  /// Extends a receipt's lock; returns the new expiry.
  virtual awaitable<result<time_point>> renew_lock(const receipt_handle& receipt) = 0;

  /// Locks a session: `session` names one, or nullopt takes the next available session that has
  /// messages, waiting at most `wait`. A held session fails with errc::session_locked.
  virtual awaitable<result<std::shared_ptr<session_receiver>>> accept_session(
      const queue_name& queue, std::optional<session_id> session, milliseconds wait) = 0;

  /// Stops background work and fails waiting calls with errc::closed. Idempotent.
  virtual awaitable<void> close() = 0;

  // Publish/subscribe (docs/adr/0050-topics-and-subscriptions.md). Not pure: a provider without
  // topics keeps the defaults, which fail with errc::unsupported, and caps().topics says so.
  // A subscription is read with the calls above, through queue_name::subscription().

  /// Creates `topic` (where caps().topics).
  virtual awaitable<result<void>> create_topic(const topic_name& topic);
  /// Deletes `topic` with its subscriptions and their messages.
  virtual awaitable<result<void>> delete_topic(const topic_name& topic);
  /// Publishes messages in order: each goes to every subscription whose filter it matches, as
  /// they stand when it is published. Outcomes and whole-call failure as for send();
  /// errc::topic_not_found when the topic does not exist.
  virtual awaitable<result<std::vector<send_outcome>>> publish(const topic_name& topic,
                                                               std::vector<message> messages,
                                                               milliseconds timeout);
  /// Creates the subscription `subscription` (a queue_name::subscription) with `options`. It
  /// receives what is published from then on, never anything published before.
  virtual awaitable<result<void>> create_subscription(const queue_name& subscription,
                                                      const subscription_options& options);
  /// Deletes a subscription and its messages, its dead-letter queue included.
  virtual awaitable<result<void>> delete_subscription(const queue_name& subscription);
  /// The subscriptions of `topic`, ordered by name.
  virtual awaitable<result<std::vector<subscription_info>>> list_subscriptions(
      const topic_name& topic);
};

/// Providers are shared: clients, processors and decorators hold them.
using provider_ptr = std::shared_ptr<provider>;

}  // namespace qrt
