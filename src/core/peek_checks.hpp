// Refusals of peek arguments that would mean different things to different providers, shared by
// the client (for every provider) and the providers that check again for callers that reach them
// directly (docs/contract.md, C11).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <qrt/error.hpp>
#include <string>

namespace qrt::detail {

/// `invalid_argument` for a peek of no messages (like a receive of none, it could only return
/// nothing) or from a negative sequence number (no message has one: the embedded provider read
/// it as the oldest and Service Bus as its first, so a caller's arithmetic slip went unnoticed).
/// nullopt for a peek the providers all read alike.
inline std::optional<error> peek_refusal(std::size_t max_messages, std::int64_t from_sequence) {
  if (max_messages == 0)
    return fail(errc::invalid_argument, "peek: max_messages must be at least 1");
  if (from_sequence < 0) {
    return fail(errc::invalid_argument,
                "peek: from_sequence must be 0 (the oldest) or more (it is " +
                    std::to_string(from_sequence) + ")");
  }
  return std::nullopt;
}

}  // namespace qrt::detail
