#include "wire.hpp"

#include <limits>
#include <proton/codec/decoder.hpp>
#include <proton/error.hpp>
#include <proton/symbol.hpp>
#include <proton/timestamp.hpp>
#include <proton/value.hpp>

#include "amqp/message_codec.hpp"

namespace qrt::servicebus::detail {
namespace {

constexpr std::int64_t ticks_at_unix_epoch = 621'355'968'000'000'000;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Swaps between RFC 4122 order and .NET's Guid.ToByteArray() order (an involution).
uuid_bytes swap_dotnet_order(const uuid_bytes& in) {
  uuid_bytes out = in;
  out[0] = in[3], out[1] = in[2], out[2] = in[1], out[3] = in[0];
  out[4] = in[5], out[5] = in[4];
  out[6] = in[7], out[7] = in[6];
  return out;
}

}  // namespace

std::string lock_token_from_uuid(const uuid_bytes& uuid) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < uuid.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(hex[uuid[i] >> 4]);
    out.push_back(hex[uuid[i] & 0x0f]);
  }
  return out;
}

result<std::string> lock_token_from_delivery_tag(std::span<const std::uint8_t> tag) {
  if (tag.size() != 16) {
    return fail(errc::protocol_error, std::string("delivery tag of ") + std::to_string(tag.size()) +
                                          " bytes is not a Service Bus lock token (16 bytes)");
  }
  uuid_bytes raw{};
  std::copy(tag.begin(), tag.end(), raw.begin());
  return lock_token_from_uuid(swap_dotnet_order(raw));
}

result<uuid_bytes> uuid_from_lock_token(std::string_view token) {
  uuid_bytes out{};
  std::size_t n = 0;
  for (std::size_t i = 0; i < token.size(); ++i) {
    const char c = token[i];
    if (c == '-' && (i == 8 || i == 13 || i == 18 || i == 23) && token.size() == 36) continue;
    const int hi = hex_value(c);
    const int lo = i + 1 < token.size() ? hex_value(token[i + 1]) : -1;
    if (hi < 0 || lo < 0 || n >= out.size()) {
      return fail(errc::invalid_receipt,
                  std::string("'") + std::string(token) + "' is not a lock token (a GUID)");
    }
    out[n++] = static_cast<std::uint8_t>(hi << 4 | lo);
    ++i;
  }
  if (n != out.size() || (token.size() != 36 && token.size() != 32)) {
    return fail(errc::invalid_receipt,
                std::string("'") + std::string(token) + "' is not a lock token (a GUID)");
  }
  return out;
}

result<uuid_bytes> delivery_tag_from_lock_token(std::string_view token) {
  auto uuid = uuid_from_lock_token(token);
  if (!uuid) return uuid.error();
  return swap_dotnet_order(*uuid);
}

time_point from_dotnet_ticks(std::int64_t ticks) {
  // Saturate rather than wrap: DateTime.MaxValue (year 9999) is past the nanosecond clock's
  // range, and the value comes from the peer.
  using ticks_duration = std::chrono::duration<std::int64_t, std::ratio<1, 10'000'000>>;
  using rep = clock::duration::rep;
  constexpr rep per_tick = std::chrono::duration_cast<clock::duration>(ticks_duration(1)).count();
  if (ticks < std::numeric_limits<std::int64_t>::min() + ticks_at_unix_epoch) {
    return time_point::min();
  }
  const std::int64_t since_epoch = ticks - ticks_at_unix_epoch;
  if (since_epoch > std::numeric_limits<rep>::max() / per_tick) return time_point::max();
  if (since_epoch < std::numeric_limits<rep>::min() / per_tick) return time_point::min();
  return time_point{std::chrono::duration_cast<clock::duration>(ticks_duration(since_epoch))};
}

std::int64_t to_dotnet_ticks(time_point t) {
  const auto hundred_ns =
      std::chrono::duration_cast<std::chrono::duration<std::int64_t, std::ratio<1, 10'000'000>>>(
          t.time_since_epoch());
  return hundred_ns.count() + ticks_at_unix_epoch;
}

error error_from_condition(std::string_view condition, std::string_view description,
                           std::string_view what) {
  // The condition and description come from the service: bounded and printable in errors.
  const std::string text =
      std::string(what) + (description.empty() ? "" : ": ") + amqp::detail::peer_text(description);
  const std::string code = amqp::detail::peer_text(condition);
  if (condition == "amqp:not-found" || condition == "com.microsoft:entity-not-found") {
    return error{errc::queue_not_found, text, code};
  }
  if (condition == "com.microsoft:server-busy") {
    error e{errc::throttled, text, code};
    e.retry_after = std::chrono::seconds(10);  // the service's documented back-off for ServerBusy
    return e;
  }
  if (condition == "com.microsoft:message-lock-lost")
    return error{errc::receipt_expired, text, code};
  if (condition == "com.microsoft:session-lock-lost")
    return error{errc::session_lock_lost, text, code};
  if (condition == "com.microsoft:session-cannot-be-locked")
    return error{errc::session_locked, text, code};
  if (condition == "amqp:unauthorized-access") return error{errc::permission, text, code};
  if (condition == "com.microsoft:timeout" || condition == "com.microsoft:operation-timeout") {
    return error{errc::timeout, text, code};
  }
  if (condition == "amqp:link:message-size-exceeded")
    return error{errc::message_too_large, text, code};
  if (condition == "com.microsoft:message-not-found")
    return error{errc::invalid_receipt, text, code};
  if (condition == "amqp:resource-limit-exceeded" || condition == "com.microsoft:quota-exceeded") {
    return error{errc::queue_full, text, code};
  }
  if (condition == "amqp:connection:forced" || condition == "amqp:connection:framing-error" ||
      condition == "amqp:link:detach-forced" || condition == "amqp:link:stolen" ||
      condition == "amqp:session:window-violation") {
    return error{errc::connection_failed, text, code};
  }
  if (condition == "amqp:decode-error" || condition == "amqp:invalid-field" ||
      condition == "amqp:not-allowed" || condition == "com.microsoft:argument-error" ||
      condition == "com.microsoft:argument-out-of-range") {
    return error{errc::invalid_argument, text, code};
  }
  if (condition == "amqp:not-implemented") return error{errc::unsupported, text, code};
  error e{errc::provider_error, text, code};
  if (condition == "amqp:internal-error") e.kind = error_kind::transient;
  return e;
}

result<void> check_status(int status, std::string_view condition, std::string_view description,
                          std::string_view what) {
  if (status >= 200 && status < 300) return {};
  if (!condition.empty()) return error_from_condition(condition, description, what);
  const std::string code = std::to_string(status);
  const std::string text =
      std::string(what) + " failed with status " + code +
      (description.empty() ? "" : std::string(": ") + amqp::detail::peer_text(description));
  switch (status) {
    case 401:
    case 403:
      return error{errc::permission, text, code};
    case 404:
      return error{errc::queue_not_found, text, code};
    case 408:
      return error{errc::timeout, text, code};
    case 410:
      return error{errc::receipt_expired, text, code};
    case 400:
      return error{errc::invalid_argument, text, code};
    case 503: {
      error e{errc::throttled, text, code};
      e.retry_after = std::chrono::seconds(10);
      return e;
    }
    default: {
      error e{errc::provider_error, text, code};
      if (status >= 500) e.kind = error_kind::transient;
      return e;
    }
  }
}

}  // namespace qrt::servicebus::detail
