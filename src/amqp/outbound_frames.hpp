// The outgoing AMQP byte stream, frame by frame, with the message-format of chosen transfers
// set. Pure: no I/O, no Proton; unit-tested on hand-built frames.
//
// Why it exists: Qpid Proton writes every transfer frame with message-format 0 and has no API to
// change it, but a Service Bus batch is one delivery with message-format 0x80013700 (its body a
// run of data sections, each an encoded message). The connection owns the byte stream (Proton's
// connection_driver on an Asio socket, ADR 0031), so it passes Proton's output through here
// before it is written (and before TLS encrypts it) and the batch deliveries' transfer frames get
// their format. Everything else passes through unchanged.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>

namespace qrt::amqp::detail {

/// Service Bus's batch message format (the Azure SDKs' "AmqpBatchMessageFormat").
inline constexpr std::uint32_t batch_message_format = 0x80013700;

class outbound_frames {
 public:
  /// The message format a delivery with this tag must carry, or nullopt to leave its frames
  /// as they are. Asked once per delivery: on its first transfer frame.
  using format_lookup = std::function<std::optional<std::uint32_t>(std::span<const std::uint8_t>)>;

  explicit outbound_frames(format_lookup lookup) : lookup_(std::move(lookup)) {}

  /// Appends `bytes` (the stream in any split) to `out`: protocol headers and frames pass
  /// through, transfer frames of the deliveries the lookup names are re-encoded with their
  /// format. A frame split across calls is held back until it is complete. Bytes that do not
  /// parse as AMQP framing pass through untouched from there on (the peer will say what is
  /// wrong; this layer never drops or invents bytes).
  /// `formats_pending` false says the lookup would answer nullopt for any tag now: the
  /// transfers starting a delivery are then passed through without being parsed (frames of a
  /// delivery already being re-encoded still are). Every outgoing transfer passes here, and
  /// parsing one cost a send about as much as encoding its message.
  void write(std::span<const char> bytes, std::string& out, bool formats_pending = true);

  /// Bytes held back because their frame is not complete yet.
  std::size_t pending() const noexcept { return partial_.size(); }

 private:
  void frame(std::string_view f, std::string& out, bool formats_pending);

  format_lookup lookup_;
  std::string partial_;
  bool passthrough_ = false;
  /// Multi-frame deliveries being rewritten: (channel, handle) -> format, until more=false.
  std::map<std::pair<std::uint16_t, std::uint32_t>, std::uint32_t> continuing_;
};

/// Re-encodes one complete transfer frame with `format` as its message-format field; nullopt
/// when `frame` is not a well-formed transfer frame. Exposed for tests.
std::optional<std::string> with_message_format(std::string_view frame, std::uint32_t format);

}  // namespace qrt::amqp::detail
