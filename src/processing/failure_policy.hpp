// How a failed message is settled; shared by qrt::processor and qrt::session_processor.
#pragma once

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

}  // namespace qrt::detail
