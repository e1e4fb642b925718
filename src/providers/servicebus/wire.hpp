// Service Bus wire details that are pure data transformations: lock tokens, .NET ticks, and the
// mapping of AMQP error conditions / management status codes onto qrt errors.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <proton/message.hpp>
#include <qrt/error.hpp>
#include <qrt/message.hpp>
#include <span>
#include <string>
#include <string_view>

namespace qrt::servicebus::detail {

using uuid_bytes = std::array<std::uint8_t, 16>;

/// A lock token travels as a 16-byte delivery tag holding a GUID in .NET byte order (first three
/// groups little-endian); management bodies carry it as an AMQP uuid (RFC 4122 order). The text
/// form is the usual "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (lower case).
result<std::string> lock_token_from_delivery_tag(std::span<const std::uint8_t> tag);
result<uuid_bytes> uuid_from_lock_token(std::string_view token);
result<uuid_bytes> delivery_tag_from_lock_token(std::string_view token);
std::string lock_token_from_uuid(const uuid_bytes& uuid);

/// .NET DateTime ticks (100 ns since 0001-01-01 UTC), as in com.microsoft:locked-until-utc.
time_point from_dotnet_ticks(std::int64_t ticks);
std::int64_t to_dotnet_ticks(time_point t);

/// Maps an AMQP error condition (link detach, disposition, management errorCondition) onto a
/// qrt error. `what` names the entity or operation for the message; `description` is the peer's
/// text (Service Bus never puts secrets there).
error error_from_condition(std::string_view condition, std::string_view description,
                           std::string_view what);

/// Maps a $management / $cbs status code (and optional errorCondition) onto success or an error.
/// 200-299 succeed.
result<void> check_status(int status, std::string_view condition, std::string_view description,
                          std::string_view what);

}  // namespace qrt::servicebus::detail
