// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` value carried in
// a message's attributes from the sender to the handler, so a trace spans the queue.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <qrt/message.hpp>
#include <string>
#include <string_view>

namespace qrt::tracing {

/// The attribute key the context travels under (the same key the W3C HTTP header uses).
inline constexpr std::string_view traceparent_attribute = "traceparent";

/// One `traceparent` value: the trace, the span that sent the message, and the flags.
struct trace_context {
  std::array<std::uint8_t, 16> trace_id{};  ///< the whole trace
  std::array<std::uint8_t, 8> parent_id{};  ///< the span that sent the message
  std::uint8_t flags = 0;                   ///< bit 0: sampled

  /// Whether the sender sampled the trace.
  bool sampled() const noexcept { return (flags & 1) != 0; }

  /// "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>"; nullopt for anything malformed,
  /// for the all-zero ids W3C Trace Context forbids, and for version ff. Higher versions are read
  /// by their version-00 prefix, as W3C Trace Context asks.
  static std::optional<trace_context> parse(std::string_view traceparent);
  /// The version-00 text form.
  std::string to_traceparent() const;

  /// A new trace with a random trace id and span id.
  static trace_context generate(bool sampled = true);
  /// The same trace, with a new random span id: what a handler uses for its own span.
  trace_context child() const;

  friend bool operator==(const trace_context&, const trace_context&) = default;
};

/// Sets the message's traceparent attribute (replacing any previous one).
void inject(message& msg, const trace_context& ctx);
/// Reads it back; nullopt when absent or malformed (a malformed header starts a new trace).
std::optional<trace_context> extract(const message& msg);

}  // namespace qrt::tracing
