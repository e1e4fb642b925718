// The session processor: several sessions at once, each strictly in order, one message at a
// time per session. See docs/adr/0061-processor-handlers.md.
#pragma once

#include <qrt/processor.hpp>

namespace qrt {

/// When a session processor settles the messages of one batch.
enum class batch_settlement {
  per_message,  ///< each message as soon as its handler finished
  per_batch,    ///< all of the batch's settlements in one call
};

/// How a session processor takes sessions, runs handlers and settles.
struct session_processor_options {
  /// Sessions held (and handled) at once, 1 to most_concurrent_sessions (each has a worker of
  /// its own); more throws qrt::exception (invalid_argument) from the constructor.
  std::size_t max_concurrent_sessions = 8;
  /// The largest max_concurrent_sessions (and set_max_concurrent_sessions()) accepted.
  static constexpr std::size_t most_concurrent_sessions = 10'000;

  std::size_t max_messages_per_receive = 10;  ///< batch read within one session lock
  /// A held session with no message for this long is released so another can be taken.
  milliseconds session_idle_timeout{1'000};
  /// How long one session is held while it keeps having messages; 0: no bound (a busy session
  /// is held until it is idle, lost or stopped). Once a session has been held this long, its
  /// worker releases it after the batch in hand is handled and settled (its later messages stay
  /// in the queue, in order, for the next holder) and accepts again, so that with more busy
  /// sessions than max_concurrent_sessions the others get a turn. Which session comes next is
  /// the provider's choice (the embedded provider's is the one whose oldest message came first,
  /// which may be the one just released). See docs/processing.md.
  milliseconds max_session_hold{0};
  /// One wait for the next session with messages. This and session_idle_timeout are at least
  /// 1 ms (less is taken as 1 ms: the loops must wait for something).
  milliseconds accept_wait{1'000};
  /// The session lock is renewed while the session is held, for at most this long.
  milliseconds max_auto_lock_renewal_duration{300'000};
  // Failure handling, as in processor_options. A failed message is abandoned together with the
  // rest of its batch, so the session's order holds: it comes back first.
  failure_action on_failure = failure_action::abandon;  ///< as processor_options::on_failure
  std::uint32_t max_delivery_count = 0;  ///< as processor_options::max_delivery_count
  bool dead_letter_on_permanent_error =
      true;                       ///< as processor_options::dead_letter_on_permanent_error
  milliseconds abandon_delay{0};  ///< as processor_options::abandon_delay
  /// Back-off after a failed accept, and after a session that ended in a failure (receive or
  /// settlement failed, lock lost) before the next accept.
  retry_policy retry = retry_policy::exponential_backoff(milliseconds{100}, milliseconds{5'000}, 2);
  /// How a batch's messages are settled (session-aware batch acknowledgment).
  /// per_message: each message is settled as its handler finishes, one provider call each.
  /// per_batch: the batch's settlements go in one call, after its last handler (or with the
  /// failure that ends it): fewer round trips, but a session lost before that call delivers the
  /// batch's handled messages again (at least once). See docs/processing.md.
  batch_settlement settle = batch_settlement::per_message;
  std::function<void(const error&)> on_error;  ///< as processor_options::on_error
  processing_observer on_processed;            ///< as processor_options::on_processed
  /// Told when a session is accepted (with how long that took), renewed and released.
  session_observer on_session;

  /// 32 sessions, 50 messages per receive, session renewal up to 10 min, back-off
  /// 100 ms .. 30 s x3 (processor_options::for_high_throughput's renewal and back-off).
  /// Settlement stays per_message: per_batch saves calls but changes what a lost session
  /// delivers again, so it is chosen in code.
  static session_processor_options for_high_throughput();
  /// 4 sessions, renewal up to 1 min, fixed 50 ms back-off; 10 messages per receive as by
  /// default: a session's messages wait for this holder in any case, so reading them ahead
  /// delays none of them and saves a receive per message.
  static session_processor_options for_low_latency();
  /// The session processing settings of a provider's configuration, as
  /// processor_options::from_config: `preset` (high_throughput or low_latency select the presets
  /// above; other values are the provider's own), then, where present,
  /// max_auto_lock_renewal_duration (here the session lock's renewal), max_concurrent_sessions
  /// (1 to most_concurrent_sessions), session_idle_timeout and max_session_hold (durations, as
  /// "30s"; a bare number is milliseconds). max_concurrent_calls and prefetch_count are not
  /// read: they size a plain processor's handlers and read-ahead, not sessions held or a
  /// session's batch, and one config may serve both kinds. All are qrt::processing_keys, which
  /// every provider accepts. A malformed value is a configuration_error naming its key.
  static result<session_processor_options> from_config(const config& cfg);
};

/// What a session processor did so far, for monitoring and tests.
struct session_processor_stats {
  std::uint64_t sessions_accepted = 0;  ///< sessions taken
  std::uint64_t sessions_released_idle =
      0;  ///< sessions released after session_idle_timeout without a message
  std::uint64_t sessions_released_hold =
      0;  ///< sessions released after max_session_hold so that others get a turn
  std::uint64_t sessions_lost = 0;  ///< lock lost or a settlement failed: released early
  std::uint64_t handler_calls = 0;  ///< handlers started
  std::uint64_t completed = 0;      ///< messages completed after a successful handler
  std::uint64_t abandoned =
      0;  ///< messages abandoned after a failure (with the rest of their batch)
  std::uint64_t dead_lettered = 0;          ///< messages dead-lettered
  std::uint64_t handler_failures = 0;       ///< handlers that returned an error or threw
  std::uint64_t session_lock_renewals = 0;  ///< successful session lock renewals
  std::size_t max_sessions_held = 0;        ///< most sessions ever held at once
  /// The session limit in force: options.max_concurrent_sessions, or the last value given to
  /// set_max_concurrent_sessions().
  std::size_t max_concurrent_sessions = 0;
};

/// Takes up to max_concurrent_sessions sessions at once and handles each one's messages one at a
/// time, in order (docs/contract.md, P5; docs/adr/0061-processor-handlers.md).
class session_processor {
 public:
  /// Handles the sessions of `queue` with `handler`; `client` is copied (copies share the
  /// provider). Throws qrt::exception (invalid_argument) if `handler` is empty.
  session_processor(queue_client client, queue_name queue, message_handler handler,
                    session_processor_options options = {});
  ~session_processor();
  session_processor(const session_processor&) = delete;
  session_processor& operator=(const session_processor&) = delete;

  /// Starts max_concurrent_sessions workers on `executor`. Once only.
  void start(boost::asio::any_io_executor executor);
  /// Stop accepting sessions; running handlers finish until `deadline`, the rest of each
  /// session's batch is abandoned (never dead-lettered) and the sessions are released; a
  /// back-off or an abandon_delay under way ends at once (its message abandoned). Returns
  /// only once no worker's call is inside the provider (a wait for a session ends within
  /// accept_wait), so the executor it ran on may be destroyed as soon as it returns.
  ///
  /// Destruction order: once a stop() has returned, the session processor holds nothing of the
  /// executor, so the executor (its io_context, or the qrt::runtime) and the processor may be
  /// destroyed in either order; handlers still running and the workers ending are destroyed
  /// with the executor. Without a stop() that returned, destroy the processor first (its
  /// destructor wakes the workers on the executor), then the executor. A later stop() returns
  /// the first one's report and touches no executor, so it may come after the executor is gone.
  awaitable<shutdown_report> stop(milliseconds deadline);

  /// Changes max_concurrent_sessions while the processor runs (or before start()), from any
  /// thread. Raised, more sessions are taken at once. Lowered, no handler is interrupted: a
  /// held session over the limit is released once its current batch is handled and settled
  /// (its later messages stay in the queue, in order, for the next holder), and none is taken
  /// while the limit is reached. 0 throws qrt::exception (invalid_argument): it would take no
  /// session, ever; so does more than session_processor_options::most_concurrent_sessions (a
  /// worker each). Once stop() has been called it is ignored (a no-op). See
  /// docs/processing.md.
  void set_max_concurrent_sessions(std::size_t sessions);

  /// What it did so far.
  session_processor_stats stats() const;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace qrt
