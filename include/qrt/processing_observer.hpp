// What a processor tells an observer about each message its handler ran on: the hook through
// which processors feed metrics (qrt::metrics::record_processing) without depending on them.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <qrt/error.hpp>
#include <qrt/names.hpp>
#include <string_view>

namespace qrt {

/// How a processor left a message its handler ran on.
enum class processing_outcome {
  completed,      ///< the handler succeeded and the complete was acknowledged
  abandoned,      ///< given back: the handler failed, or the processor stopped before settling
  dead_lettered,  ///< the handler failed for good, or on the last allowed delivery
  settle_failed,  ///< the settlement failed; the message comes back (at-least-once)
};

/// "completed", "abandoned", "dead_lettered" or "settle_failed".
constexpr std::string_view to_string(processing_outcome o) noexcept {
  switch (o) {
    case processing_outcome::completed:
      return "completed";
    case processing_outcome::abandoned:
      return "abandoned";
    case processing_outcome::dead_lettered:
      return "dead_lettered";
    case processing_outcome::settle_failed:
      return "settle_failed";
  }
  return "unknown";
}

/// One message a handler ran on, once the processor has settled it.
struct processed_message {
  const queue_name& queue;                    ///< the queue the processor receives from
  processing_outcome outcome;                 ///< how the processor left the message
  std::chrono::nanoseconds handler_duration;  ///< from the handler's start to its result
  const error* handler_error = nullptr;       ///< the handler's failure; null when it succeeded
  /// From the message's received_message::enqueued_time to when the processor left it (settled
  /// it, or gave up on it), on the wall clock qrt::clock: the end-to-end latency. Empty when
  /// the provider gave no enqueued time (the default time_point{}, or one at or before the
  /// epoch, which no real queue reports). Zero, never negative, when the enqueued time is
  /// later than this host's clock at settlement: the provider's clock is ahead of ours by more
  /// than the message waited, so the wait is unknown but was shorter than the skew.
  std::optional<std::chrono::nanoseconds> since_enqueued{};
};

/// Told of every processed message, on the processor's strand: it must not block. An exception
/// it throws is swallowed (it cannot stop the processor).
using processing_observer = std::function<void(const processed_message&)>;

/// What happened to a session a session processor holds.
enum class session_event_kind {
  accepted,      ///< a session was taken; `waited` is how long accept_session took
  lock_renewed,  ///< its lock was renewed
  released,      ///< it was let go (idle, lost, or the processor stopped)
};

/// One session event, as session_processor_options::on_session is told of it.
struct session_event {
  const queue_name& queue;            ///< the queue the sessions belong to
  session_event_kind what;            ///< what happened
  std::chrono::nanoseconds waited{};  ///< accepted: how long accept_session took
  /// released: how long the processor held the session, from its accept to its release (on
  /// the steady clock, so never negative). Zero for the other events.
  std::chrono::nanoseconds held{};
};

/// Told of every session event, on the processor's strand: it must not block. An exception it
/// throws is swallowed. For metrics: qrt::metrics::record_sessions.
using session_observer = std::function<void(const session_event&)>;

}  // namespace qrt
