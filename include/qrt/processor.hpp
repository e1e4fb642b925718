// The message processor: receives from a queue and runs a handler with bounded concurrency,
// settling each message by the handler's result. See docs/adr/0061-processor-handlers.md.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <qrt/circuit_breaker.hpp>
#include <qrt/client.hpp>
#include <qrt/config.hpp>
#include <qrt/processing_observer.hpp>
#include <qrt/retry.hpp>

namespace qrt {

/// A handler processes one message. Success completes it; an error abandons or dead-letters it
/// (processor_options). The message (and its receipt) stays valid until the handler's awaitable
/// finishes; the processor keeps its lock renewed meanwhile. Exceptions count as failures.
using message_handler = std::function<awaitable<result<void>>(const received_message&)>;

/// What happens to a message whose handler failed (before the poison rule below).
enum class failure_action {
  abandon,      ///< release it for redelivery
  dead_letter,  ///< move it to the dead-letter queue at once
};

/// How a processor receives, runs handlers and settles; works with any provider.
struct processor_options {
  /// Handlers running at once, never exceeded; processor::set_max_concurrent_calls() changes
  /// it while the processor runs.
  std::size_t max_concurrent_calls = 16;
  /// Messages received ahead of a free handler slot. The processor lowers this to what it
  /// expects to start before their locks expire (from observed handler durations).
  std::size_t prefetch_count = 10;
  /// Locks are renewed while a handler runs, for at most this long per message.
  milliseconds max_auto_lock_renewal_duration{300'000};
  /// How long one receive waits for messages; at least 1 ms (less is taken as 1 ms: the
  /// processor's loop must wait for something, or it would poll an empty queue without end).
  milliseconds receive_wait{1'000};
  failure_action on_failure =
      failure_action::abandon;  ///< what a failed handler does to its message
  /// Poison detection: a failure on the max_delivery_count-th delivery dead-letters the message
  /// (reason "MaxDeliveryCountExceeded") instead of abandoning it. 0: leave it to the queue.
  std::uint32_t max_delivery_count = 0;
  /// A handler error of kind permanent dead-letters at once (reason "HandlerFailedPermanently").
  bool dead_letter_on_permanent_error = true;
  /// Wait this long (lock still renewed) before abandoning a failed message, so a failing
  /// dependency is not hammered by instant redeliveries.
  milliseconds abandon_delay{0};
  /// Handle at most this many messages in all, then receive no more (0: no limit). The
  /// processor never takes more than it has left from the queue, so what it never took stays
  /// there untouched; a message it gives back without starting a handler (its lock too short,
  /// or order_by_session) does not count, though its delivery count went up. Once
  /// `stats().handler_calls` reaches it, the processor waits for stop(). For one-shot workers.
  std::uint64_t max_messages = 0;
  /// Back-off between failed receives (after the client's own retries gave up), waited out in
  /// full: only stop() (or destroying the processor) ends it early.
  retry_policy retry = retry_policy::exponential_backoff(milliseconds{100}, milliseconds{5'000}, 2);
  /// Ordered processing without session locks: messages that share a session id (on SQS FIFO
  /// queues, a message group) are handled one at a time, in the order this processor received
  /// them, while messages of different sessions (and messages without one) run concurrently up
  /// to max_concurrent_calls. A message that goes back to the queue (abandoned, a settlement
  /// that failed, a lock too short to start) takes the later messages of its session that the
  /// processor holds back with it, so none of them overtakes it. Spreading keys over groups
  /// (session_id::for_shard) then processes a FIFO stream in parallel, each key in order.
  bool order_by_session = false;
  /// Optional: handler outcomes feed it (transient failures count), and while it is open the
  /// processor neither receives nor starts handlers; half-open, it starts only the probes.
  /// This is what keeps a down dependency from being hammered by redeliveries.
  std::shared_ptr<circuit_breaker> breaker;
  /// Receive, settle and lock-renewal failures, for logging (called on the processor's strand).
  std::function<void(const error&)> on_error;
  /// Told of every message a handler ran on, once settled: its outcome, the handler's duration
  /// and failure. For metrics: qrt::metrics::record_processing.
  processing_observer on_processed;

  /// 32 handlers, prefetch 50, renewal up to 10 min, back-off 100 ms .. 30 s x3.
  static processor_options for_high_throughput();
  /// 4 handlers, prefetch 1, renewal up to 1 min, fixed 50 ms back-off.
  static processor_options for_low_latency();
  /// The processing settings of a provider's configuration, so that a processor and its client
  /// come from one config: `preset` (high_throughput or low_latency select the presets above;
  /// other values are the provider's own), then max_concurrent_calls, prefetch_count and
  /// max_auto_lock_renewal_duration where present. Other keys belong to the provider. A
  /// malformed value is a configuration_error naming its key.
  static result<processor_options> from_config(const config& cfg);
};

/// What a processor did so far, for monitoring and tests.
struct processor_stats {
  std::uint64_t received = 0;       ///< messages received
  std::uint64_t handler_calls = 0;  ///< handlers started
  std::uint64_t completed = 0;      ///< messages completed after a successful handler
  std::uint64_t abandoned = 0;      ///< abandoned after a handler or settlement failure
  std::uint64_t dead_lettered =
      0;  ///< messages dead-lettered (failure action, permanent error or poison)
  std::uint64_t handler_failures = 0;  ///< handlers that returned an error or threw
  std::uint64_t lock_renewals = 0;     ///< successful lock renewals
  std::uint64_t locks_lost = 0;        ///< a running handler's lock could not be kept
  /// Prefetched and released without a handler: its lock was too short to start, or
  /// (order_by_session) an earlier message of its session went back to the queue.
  std::uint64_t released_unstarted = 0;
  std::uint64_t settle_failures = 0;        ///< settlements the provider refused
  std::uint64_t abandoned_at_shutdown = 0;  ///< messages released by stop()
  std::size_t in_flight = 0;                ///< handlers running now
  std::size_t max_in_flight = 0;            ///< most handlers ever running at once
  /// The handler limit in force: options.max_concurrent_calls, or the last value given to
  /// set_max_concurrent_calls().
  std::size_t max_concurrent_calls = 0;
};

/// What stop() did.
struct shutdown_report {
  std::size_t finished_in_time = 0;    ///< handlers that finished before the deadline
  std::size_t abandoned_running = 0;   ///< handlers still running at the deadline: released
  std::size_t abandoned_buffered = 0;  ///< prefetched messages never started: released
};

/// Receives from one queue and runs a handler on each message, at most max_concurrent_calls at
/// once, renewing locks while handlers run and settling by their result (docs/contract.md, P1-P4;
/// docs/adr/0061-processor-handlers.md).
class processor {
 public:
  /// `client` is copied (copies share the provider). Throws qrt::exception (invalid_argument)
  /// if `handler` is empty: such a processor would only fail every message it took.
  processor(queue_client client, queue_name queue, message_handler handler,
            processor_options options = {});
  ~processor();
  processor(const processor&) = delete;
  processor& operator=(const processor&) = delete;

  /// Starts receiving on `executor` (handlers run there; use a multi-threaded one for
  /// parallel CPU work). Once only.
  void start(boost::asio::any_io_executor executor);

  /// Graceful shutdown: stop receiving, release prefetched messages, let running handlers
  /// finish until `deadline` passes, then abandon (never dead-letter) what is still running.
  /// Handlers still running then finish unobserved: their outcome is ignored. Returns only
  /// once none of the processor's own calls is inside the provider (the receive in flight ends
  /// within receive_wait), so the executor it ran on may be destroyed as soon as it returns.
  ///
  /// Destruction order: once a stop() has returned, the processor holds nothing of the
  /// executor, so the executor (its io_context, or the qrt::runtime) and the processor may be
  /// destroyed in either order; handlers still running are destroyed with the executor, their
  /// outcome unobserved. Without a stop() that returned, destroy the processor first (its
  /// destructor tells the executor to end the loop), then the executor. A later stop() returns
  /// the first one's report and touches no executor, so it may come after the executor is gone.
  awaitable<shutdown_report> stop(milliseconds deadline);

  /// Changes max_concurrent_calls while the processor runs (or before start()), from any
  /// thread. Raised, it takes effect at once: waiting messages start and the next receive asks
  /// for more. Lowered, no running handler is interrupted; no handler starts until fewer than
  /// `calls` run, so the limit holds again once those above it have finished. Prefetched
  /// messages beyond what the new limit can start before their locks run short are given back
  /// to the queue at once (stats().released_unstarted), not held (with order_by_session they are
  /// kept, so that none is overtaken by a later message of its session). See docs/processing.md.
  /// 0 throws qrt::exception (invalid_argument): it would start nothing, ever. Once stop() has
  /// been called it is ignored (a no-op): the processor starts no handler any more.
  void set_max_concurrent_calls(std::size_t calls);

  /// What it did so far.
  processor_stats stats() const;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace qrt
