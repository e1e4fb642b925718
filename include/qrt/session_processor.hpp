// The session processor: several sessions at once, each strictly in order, one message at a
// time per session. See docs/adr/0061-processor-handlers.md.
#pragma once

#include <qrt/processor.hpp>

namespace qrt {

struct session_processor_options {
  std::size_t max_concurrent_sessions = 8;    ///< sessions held (and handled) at once
  std::size_t max_messages_per_receive = 10;  ///< batch read within one session lock
  /// A held session with no message for this long is released so another can be taken.
  milliseconds session_idle_timeout{1'000};
  milliseconds accept_wait{1'000};  ///< one wait for the next session with messages
  /// The session lock is renewed while the session is held, for at most this long.
  milliseconds max_auto_lock_renewal_duration{300'000};
  // Failure handling, as in processor_options. A failed message is abandoned together with the
  // rest of its batch, so the session's order holds: it comes back first.
  failure_action on_failure = failure_action::abandon;
  std::uint32_t max_delivery_count = 0;
  bool dead_letter_on_permanent_error = true;
  milliseconds abandon_delay{0};
  retry_policy retry = retry_policy::exponential_backoff(milliseconds{100}, milliseconds{5'000}, 2);
  std::function<void(const error&)> on_error;
};

struct session_processor_stats {
  std::uint64_t sessions_accepted = 0;
  std::uint64_t sessions_released_idle = 0;
  std::uint64_t sessions_lost = 0;  ///< lock lost or a settlement failed: released early
  std::uint64_t handler_calls = 0;
  std::uint64_t completed = 0;
  std::uint64_t abandoned = 0;
  std::uint64_t dead_lettered = 0;
  std::uint64_t handler_failures = 0;
  std::uint64_t session_lock_renewals = 0;
  std::size_t max_sessions_held = 0;
};

class session_processor {
 public:
  session_processor(queue_client client, queue_name queue, message_handler handler,
                    session_processor_options options = {});
  ~session_processor();
  session_processor(const session_processor&) = delete;
  session_processor& operator=(const session_processor&) = delete;

  /// Starts max_concurrent_sessions workers on `executor`. Once only.
  void start(boost::asio::any_io_executor executor);
  /// Stop accepting sessions; running handlers finish until `deadline`, the rest of each
  /// session's batch is abandoned (never dead-lettered) and the sessions are released.
  awaitable<shutdown_report> stop(milliseconds deadline);

  session_processor_stats stats() const;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace qrt
