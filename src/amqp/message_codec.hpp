// AMQP 1.0 message encoding and decoding without Proton: qrt's messages straight to and from the
// bytes of a transfer's payload (AMQP 1.0 part 3.2 sections, part 1.6 type encodings). It keeps
// the mapping of mapping.hpp (to_proton / from_proton) field for field, so the core can send
// pre-encoded bytes and read deliveries without a pn_message per message. Pure functions: no
// I/O, no threads, no Proton types. Tested against Proton as the independent reference
// (test/unit/amqp/message_codec_test.cpp). See docs/adr/0032-amqp-message-codec.md.
//
// Its files: message_encoder.cpp (encoding, batches), message_decoder.cpp (the section walk and
// the section readers), value_reader.hpp (reading encoded values, the output budget),
// value_text.hpp/.cpp (values as Proton renders them), codec_constants.hpp (the numbers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <qrt/error.hpp>
#include <qrt/message.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qrt::amqp::detail {

/// What encode_message adds beyond the qrt::message itself.
struct encode_extras {
  /// properties.creation-time; unset: the clock at encoding (what to_proton does).
  std::optional<time_point> creation_time;
  /// message-annotation x-opt-scheduled-enqueue-time (Service Bus holds the message until then).
  std::optional<time_point> scheduled_enqueue_time;
  /// message-annotation x-opt-partition-key (Service Bus partitioned entities); empty: none.
  std::string partition_key;
};

/// Appends the AMQP encoding of `m` to `out`, mapped as to_proton maps it: header (durable, ttl
/// when set), message-annotations (only when `extras` carries any), properties (message-id,
/// correlation-id, content-type, subject, creation-time, group-id = session; trailing nulls
/// omitted), application-properties (attributes as string values), and the body as one data
/// section. `m.id` must already be set by the caller.
void encode_message(const message& m, const encode_extras& extras, std::string& out);

/// The Service Bus batch envelope's own fields; the Azure SDKs copy them from the batch's first
/// message (the service uses them for duplicate detection and session/partition routing).
struct batch_envelope {
  std::string message_id;             ///< properties.message-id; empty: none
  std::optional<session_id> session;  ///< properties.group-id
  std::string partition_key;          ///< annotation x-opt-partition-key; empty: none

  /// The envelope the SDKs build for a batch starting with `first` (encoded with `extras`).
  static batch_envelope of_first(const message& first, const encode_extras& extras);
};

/// Appends the payload of a Service Bus batch transfer (message-format batch_message_format,
/// outbound_frames.hpp) to `out`: the envelope's message-annotations and properties, then each
/// of `encoded_messages` (as written by encode_message) as one data section, in order.
void encode_batch(std::span<const std::string> encoded_messages, const batch_envelope& env,
                  std::string& out);

/// Bytes encode_batch writes for `env` before the first data section.
std::size_t batch_envelope_size(const batch_envelope& env);

/// Bytes one encoded message of `encoded_size` bytes adds to a batch (its data section). A batch
/// is batch_envelope_size(env) + the sum of these; the caller keeps it within the link's
/// max-message-size.
std::size_t batch_entry_size(std::size_t encoded_size);

/// The broker's message-annotations qrt reads (Service Bus names them x-opt-*).
struct broker_annotations {
  std::optional<std::int64_t> sequence_number;       ///< x-opt-sequence-number (long)
  std::optional<time_point> enqueued_time;           ///< x-opt-enqueued-time (timestamp)
  std::optional<time_point> locked_until;            ///< x-opt-locked-until (timestamp)
  std::optional<time_point> scheduled_enqueue_time;  ///< x-opt-scheduled-enqueue-time
  std::optional<std::string> deadletter_source;      ///< x-opt-deadletter-source (string)
  std::optional<std::string> partition_key;          ///< x-opt-partition-key (string)
};

struct decoded_message {
  /// Filled as from_proton fills it: body from the data section(s) (concatenated) or an
  /// amqp-value string/symbol/binary (other values as text), ids as id_to_string renders them,
  /// application properties as attributes (non-string values as text), delivery_count = the
  /// header's count + 1, enqueued_time = creation-time. Receipt and sequence number stay empty.
  received_message message;
  broker_annotations annotations;
};

/// The output budget of decoding one payload: decode_message writes at most this many bytes
/// (body, ids, attributes and annotations together) for a payload of `payload_size` bytes.
/// Rendering a value as text may legitimately take several times its encoded size (an escaped
/// byte is 4 characters, a one-byte `false` 5); only arrays of zero-width elements could need
/// more, and those are what the budget refuses.
inline constexpr std::size_t decode_output_per_input_byte = 16;
inline constexpr std::size_t decode_output_floor = 64 * 1024;
constexpr std::size_t decode_output_budget(std::size_t payload_size) {
  return payload_size * decode_output_per_input_byte + decode_output_floor;
}

/// Decodes one message (a transfer's payload). Malformed input (truncated, unknown or misplaced
/// constructors, sizes or counts past the end, wrongly typed fields) gives a protocol_error that
/// names the problem ("malformed AMQP message: ..."); a message whose decoded form would exceed
/// decode_output_budget gives a protocol_error saying so ("AMQP message refused: ..."). Both
/// carry the provider code amqp:decode-error. It never reads past `bytes`.
/// Sections and annotation entries qrt doesn't use are skipped.
result<decoded_message> decode_message(std::span<const std::uint8_t> bytes);

/// decode_message into `out`, which must be as a default-constructed decoded_message is: the
/// engine decodes each delivery straight into its place in the receiver's buffer rather than
/// moving the dozen strings of a message there. On failure `out` holds part of the message.
result<void> decode_message_into(std::span<const std::uint8_t> bytes, decoded_message& out);

/// Most bytes of a peer's own text (an error description, a condition name, a status
/// description, a key from a message) that qrt puts into one error message.
inline constexpr std::size_t max_peer_text = 1024;

/// `text` from a peer made fit for an error message or a log line: qrt::detail::peer_text (valid
/// UTF-8 without control characters) of at most max_peer_text bytes, the rest counted, not shown,
/// so a hostile peer can neither grow qrt's errors without bound nor forge lines in a log.
std::string peer_text(std::string_view text);

/// Milliseconds since the epoch (an AMQP timestamp) as a time_point, saturating at the clock's
/// range instead of wrapping: brokers send DateTime.MaxValue (year 9999) and beyond.
time_point time_from_epoch_ms(std::int64_t ms);

/// The encoded messages inside a batch payload (encode_batch's output): one span per data
/// section, in order, pointing into `payload`. The Service Bus test peer's view of a batch.
result<std::vector<std::span<const std::uint8_t>>> split_batch(
    std::span<const std::uint8_t> payload);

}  // namespace qrt::amqp::detail
