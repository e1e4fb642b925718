// The persistence log's record format: pure functions, no I/O
// (docs/adr/0003-persistence-format.md).
//
// A frame is a 12-byte header followed by the payload:
//   u32 payload_length | u32 crc32c(payload) | u32 crc32c(first 8 header bytes)
// all little-endian. The header has its own checksum so a reader can tell a damaged length from
// a damaged payload, and can scan cheaply for the next intact frame. The payload starts with a
// one-byte record type; its fields follow in a fixed order (see record.cpp).
#pragma once

#include <cstdint>
#include <qrt/error.hpp>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "../events.hpp"

namespace qrt::memory::log {

using detail::stored_message;

inline constexpr std::size_t frame_header_size = 12;
/// Larger payloads are refused by the encoder and treated as corruption by the reader.
inline constexpr std::uint32_t max_payload_size = 64u << 20;
/// The largest max_message_bytes a persisted provider accepts: a record also carries the queue
/// name, the message's other fields and, once dead-lettered, its reason and description; this
/// leaves a megabyte for them. Each message is still checked exactly (see enqueued_payload_size).
inline constexpr std::size_t max_persistable_message_bytes = max_payload_size - (1u << 20);

/// The largest message sequence number a record may carry. The provider numbers each queue's
/// messages from 1, so a log holds nothing near 2^63 unless it was damaged or forged; a number
/// at the very end of the range would wrap the queue's next one and the bounds of the table that
/// holds its messages by number.
inline constexpr std::uint64_t largest_sequence = (std::uint64_t{1} << 63) - 1;

/// A segment is rolled once it reaches this size (at most; tests use smaller ones).
inline constexpr std::uint64_t largest_segment_bytes = 64u << 20;
/// No segment the log writes is larger: the roll point, plus the one record that may cross it,
/// plus the zeros written ahead of the records. A larger file is refused by replay unread.
inline constexpr std::uint64_t largest_segment_file_bytes =
    largest_segment_bytes + max_payload_size + (2u << 20);

/// Every segment file starts with a magic naming its format version and its own index (u64
/// little-endian). Version 2 added topics (record types 7-10, subscription names); a segment of
/// version 1 holds a subset of what version 2 may, so both are read, and only version 2 is
/// written. A reader of version 1 refuses a version 2 segment by its magic instead of meeting
/// record types it does not know (docs/adr/0003-persistence-format.md).
inline constexpr std::string_view segment_magic{"QRTLOG02", 8};
inline constexpr std::string_view segment_magic_v1{"QRTLOG01", 8};
inline constexpr std::size_t segment_header_size = 16;

enum class record_type : std::uint8_t {
  queue_created = 1,
  queue_deleted = 2,
  enqueued = 3,
  delivered = 4,
  removed = 5,
  session_state_set = 6,
  topic_created = 7,
  topic_deleted = 8,
  subscription_created = 9,
  published = 10,
};

struct queue_created_record {
  queue_name queue;
  queue_options options;
  /// 0 when written by the provider; a checkpoint at the start of a segment carries the next
  /// sequence so numbering survives the deletion of the segments that held older messages.
  std::uint64_t next_sequence = 0;
};
struct queue_deleted_record {
  queue_name queue;
};
struct enqueued_record {
  queue_name queue;
  stored_message message;
};
struct delivered_record {
  queue_name queue;
  std::uint64_t sequence = 0;
  std::uint32_t delivery_count = 0;
};
struct removed_record {
  queue_name queue;
  std::uint64_t sequence = 0;
};
struct session_state_record {
  queue_name queue;
  session_id session;
  std::string state;
};

struct topic_created_record {
  topic_name topic;
};
/// The topic is gone; its subscriptions were deleted by queue_deleted records before it.
struct topic_deleted_record {
  topic_name topic;
};
/// A subscription: the queue that holds its messages (queue_created's fields) and its filter.
struct subscription_created_record {
  queue_name subscription;
  queue_options options;
  std::uint64_t next_sequence = 0;  ///< as queue_created_record's
  subscription_filter filter;
};
/// One published message and where it went: a copy in each listed subscription (named within
/// `topic`) under the listed sequence, all with the same enqueued time and delivery count 0.
/// One record, so a publish is on disk in every subscription or in none.
struct published_record {
  topic_name topic;
  stored_message message;  ///< sequence unused (0); enqueued time and content shared
  std::vector<std::pair<queue_name, std::uint64_t>> copies;  ///< subscription, its sequence
};

using record =
    std::variant<queue_created_record, queue_deleted_record, enqueued_record, delivered_record,
                 removed_record, session_state_record, topic_created_record, topic_deleted_record,
                 subscription_created_record, published_record>;

// Encoders append one complete frame to `out`. They fail only for a payload over
// max_payload_size (then `out` is left as it was).
result<void> append_queue_created(std::string& out, const queue_name& queue,
                                  const queue_options& options, std::uint64_t next_sequence);
result<void> append_queue_deleted(std::string& out, const queue_name& queue);
result<void> append_enqueued(std::string& out, const queue_name& queue, const stored_message& msg);
result<void> append_delivered(std::string& out, const queue_name& queue, std::uint64_t sequence,
                              std::uint32_t delivery_count);
result<void> append_removed(std::string& out, const queue_name& queue, std::uint64_t sequence);
result<void> append_session_state(std::string& out, const queue_name& queue,
                                  const session_id& session, const std::string& state);
result<void> append_topic_created(std::string& out, const topic_name& topic);
result<void> append_topic_deleted(std::string& out, const topic_name& topic);
result<void> append_subscription_created(std::string& out, const queue_name& subscription,
                                         const queue_options& options, std::uint64_t next_sequence,
                                         const subscription_filter& filter);
/// `copies`: each subscription (of `topic`) the message went to, with its sequence there.
result<void> append_published(std::string& out, const topic_name& topic, const stored_message& msg,
                              const std::vector<std::pair<queue_name, std::uint64_t>>& copies);
result<void> append_record(std::string& out, const record& r);

/// The payload size append_enqueued would write for `content` in `queue`, with `dead_letter`
/// (nullptr: none), without building it: what lets the provider refuse a message that could not
/// be persisted before it changes anything.
/// The payload size of the record append_published writes for `content` published to
/// `copies` (subscriptions of `topic`; the sequence numbers do not change the size).
std::size_t published_payload_size(const topic_name& topic, const message& content,
                                   const std::vector<queue_name>& copies);
std::size_t enqueued_payload_size(const queue_name& queue, const message& content,
                                  const dead_letter_info* dead_letter);

enum class frame_status {
  ok,          ///< a whole frame with matching checksums
  incomplete,  ///< fewer bytes than the header or the declared payload needs
  corrupt,     ///< a checksum does not match, or the length is impossible
};

struct frame_view {
  frame_status status = frame_status::corrupt;
  std::string_view payload;    ///< set when ok
  std::size_t frame_size = 0;  ///< header + payload when ok
  std::string problem;         ///< why, when not ok
};

/// Reads the frame at the start of `bytes`. Never reads past `bytes`.
frame_view read_frame(std::string_view bytes);

/// Decodes a payload read by read_frame. Any malformed input yields a protocol_error that says
/// what was wrong and at which payload byte; never a crash.
result<record> decode_record(std::string_view payload);

/// A segment file's header, and its check.
std::string segment_header(std::uint64_t segment_index);
result<std::uint64_t> parse_segment_header(std::string_view bytes);

}  // namespace qrt::memory::log
