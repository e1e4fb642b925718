// How a failed message is settled; shared by qrt::processor and qrt::session_processor.
#pragma once

#include <chrono>
#include <exception>
#include <optional>
#include <qrt/error.hpp>
#include <qrt/processor.hpp>
#include <string>

namespace qrt::detail {

/// `handler`, or a qrt::exception (invalid_argument) naming `who` if it is empty. An empty
/// handler would fail every message it is given (std::bad_function_call), so a processor built
/// with one would take messages off the queue only to abandon them until they are dead-lettered
/// as poison. Refused when the processor is built, before it can touch a message.
inline message_handler require_handler(message_handler handler, const char* who) {
  if (!handler) {
    throw qrt::exception(
        fail(errc::invalid_argument, std::string(who) + ": the message handler is empty"));
  }
  return handler;
}

/// The dead-letter reason for a failed message, or empty to abandon it.
inline std::string failure_reason(const received_message& msg, const error& e,
                                  std::uint32_t max_delivery_count, failure_action on_failure,
                                  bool dead_letter_on_permanent_error) {
  if (max_delivery_count > 0 && msg.delivery_count >= max_delivery_count) {
    return "MaxDeliveryCountExceeded";
  }
  if (on_failure == failure_action::dead_letter) return "HandlerFailed";
  if (dead_letter_on_permanent_error && e.kind == error_kind::permanent) {
    return "HandlerFailedPermanently";
  }
  return {};
}

/// What a handler's exception means: that message failed, like a handler returning an error.
/// Anything may be thrown (an int, a library's own type); nothing a handler throws may escape,
/// or it would end the processor's coroutine with its concurrency slot and lock renewal held.
///
/// A returned error says whether retrying can help; a throw does not. A qrt::exception (what
/// result<T>::value() throws) carries its error, so its kind is kept. Any other exception is
/// taken as transient: the message is abandoned and redelivered, and poison detection
/// (max_delivery_count) dead-letters it if it keeps failing. Calling it permanent would
/// dead-letter it on the first throw (with dead_letter_on_permanent_error, the default), without
/// a single redelivery, for what is often a passing failure (a dependency down, a timeout).
inline error handler_failure(std::exception_ptr thrown) {
  try {
    std::rethrow_exception(thrown);
  } catch (const qrt::exception& e) {
    error kept = e.get();
    kept.message = "handler threw: " + kept.message;
    return kept;
  } catch (const std::exception& e) {
    error unknown = fail(errc::provider_error, std::string("handler threw: ") + e.what());
    unknown.kind = error_kind::transient;
    return unknown;
  } catch (...) {
    error unknown =
        fail(errc::provider_error, "handler threw an exception not derived from std::exception");
    unknown.kind = error_kind::transient;
    return unknown;
  }
}

/// Runs the user's error callback; an exception from it is dropped, since the processor must
/// keep running and has nowhere else to report it.
template <class Callback>
void report_to(const Callback& on_error, const error& e) noexcept {
  if (!on_error) return;
  try {
    on_error(e);
  } catch (...) {  // NOLINT(bugprone-empty-catch): see above
  }
}

/// The time from `enqueued` to `now` as processed_message::since_enqueued documents it: empty
/// for a missing enqueued time, zero for one later than `now`. Both checks come before the
/// subtraction, which then cannot overflow (a decoder saturates an absurd timestamp at
/// time_point::min() or max()).
inline std::optional<std::chrono::nanoseconds> time_since_enqueued(time_point enqueued,
                                                                   time_point now) noexcept {
  if (enqueued <= time_point{}) return std::nullopt;
  if (enqueued >= now) return std::chrono::nanoseconds{0};
  return std::chrono::duration_cast<std::chrono::nanoseconds>(now - enqueued);
}

/// Tells the processing observer how a handled message was left, what its handler returned and
/// how long ago it was enqueued; an exception from it is dropped, as from the error callback.
template <class Duration>
void tell_processed(const processing_observer& observer, const queue_name& queue,
                    processing_outcome how, Duration handler_duration,
                    const result<void>& handler_outcome, time_point enqueued_time) noexcept {
  if (!observer) return;
  try {
    const auto took = std::chrono::duration_cast<std::chrono::nanoseconds>(handler_duration);
    const auto since_enqueued = time_since_enqueued(enqueued_time, clock::now());
    if (handler_outcome) {
      observer(processed_message{queue, how, took, nullptr, since_enqueued});
    } else {
      const error failure = handler_outcome.error();
      observer(processed_message{queue, how, took, &failure, since_enqueued});
    }
  } catch (...) {  // NOLINT(bugprone-empty-catch): an observer cannot stop the processor
  }
}

/// Tells the session observer of a session event; an exception from it is dropped.
template <class Duration = std::chrono::nanoseconds>
void tell_session(const session_observer& observer, const queue_name& queue,
                  session_event_kind what, Duration waited = {}, Duration held = {}) noexcept {
  if (!observer) return;
  try {
    using std::chrono::duration_cast;
    using std::chrono::nanoseconds;
    observer(session_event{queue, what, duration_cast<nanoseconds>(waited),
                           duration_cast<nanoseconds>(held)});
  } catch (...) {  // NOLINT(bugprone-empty-catch): an observer cannot stop the processor
  }
}

}  // namespace qrt::detail
