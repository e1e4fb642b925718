// Refusals of message fields that would mean different things to different providers, shared
// by the providers that honour the field (docs/contract.md, C27).
#pragma once

#include <optional>
#include <qrt/error.hpp>
#include <qrt/message.hpp>
#include <string>

namespace qrt::detail {

/// `invalid_argument` naming time_to_live when it is set but not positive. A time to live is how
/// long the message may wait: one of 0 or less would be "expired on arrival" to the embedded
/// provider and "never expires" to an AMQP broker (whose header has no such value), so no
/// provider takes it. nullopt for a positive time to live and for none.
inline std::optional<error> non_positive_time_to_live(const message& m) {
  if (!m.time_to_live || m.time_to_live->count() > 0) return std::nullopt;
  return fail(errc::invalid_argument, "time_to_live must be positive (it is " +
                                          std::to_string(m.time_to_live->count()) +
                                          " ms); leave it unset for a message that never expires");
}

}  // namespace qrt::detail
