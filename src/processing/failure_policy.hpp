// How a failed message is settled; shared by qrt::processor and qrt::session_processor.
#pragma once

#include <exception>
#include <qrt/processor.hpp>
#include <string>

namespace qrt::detail {

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
inline error handler_failure(std::exception_ptr thrown) {
  try {
    std::rethrow_exception(thrown);
  } catch (const std::exception& e) {
    return fail(errc::provider_error, std::string("handler threw: ") + e.what());
  } catch (...) {
    return fail(errc::provider_error, "handler threw an exception not derived from std::exception");
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

}  // namespace qrt::detail
