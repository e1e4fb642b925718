// The SQS JSON 1.0 protocol as pure functions: qrt messages <-> SQS wire messages, request
// bodies for each action, response parsers, the MD5 checksums SQS computes, and SQS error
// bodies -> qrt::error. Nothing here does I/O, reads a clock or keeps state.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <qrt/error.hpp>
#include <qrt/message.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace qrt::sqs::detail {

/// Untrusted text (from a server's answer) fit for an error message: at most 40 bytes,
/// printable ASCII only, "..." where it was cut. The SQS and SNS codecs quote through it.
std::string excerpt(std::string_view text);
/// A server's text (an error message or code) for a person to read: qrt::detail::peer_text of at
/// most 512 bytes (valid UTF-8, control characters and malformed bytes replaced), so that it can
/// neither forge lines in a log, drive a terminal, nor flood either.
std::string server_text(std::string_view text);

/// Message attribute names qrt reserves for the fields SQS has no slot for.
namespace reserved {
inline constexpr std::string_view correlation_id = "qrt.correlation_id";
inline constexpr std::string_view content_type = "qrt.content_type";
inline constexpr std::string_view subject = "qrt.subject";
/// "base64" when the body was not valid SQS text and travels base64-encoded.
inline constexpr std::string_view body_encoding = "qrt.body_encoding";
inline constexpr std::string_view dead_letter_reason = "qrt.dead_letter_reason";
inline constexpr std::string_view dead_letter_description = "qrt.dead_letter_description";
/// The id qrt reports for a message dead-lettered by qrt (its id in the source queue).
inline constexpr std::string_view message_id = "qrt.message_id";
/// User attribute names SQS does not accept as they are travel as this prefix plus the name in
/// unpadded base64url (whose alphabet SQS accepts).
inline constexpr std::string_view encoded_name_prefix = "qrt.k.";
}  // namespace reserved

/// The data type of an attribute whose value is empty (SQS refuses empty values).
inline constexpr std::string_view empty_value_type = "String.qrt-empty";

inline constexpr std::size_t max_attributes_per_message = 10;
inline constexpr std::size_t max_entries_per_batch = 10;
inline constexpr std::int64_t max_delay_seconds = 900;

/// One SQS message attribute. `value` is the text for String/Number types and the raw bytes
/// for Binary types (base64 only on the wire).
struct wire_attribute {
  std::string data_type = "String";
  std::string value;
  bool is_binary() const noexcept { return data_type.rfind("Binary", 0) == 0; }
  friend bool operator==(const wire_attribute&, const wire_attribute&) = default;
};
using wire_attributes = std::map<std::string, wire_attribute>;

/// A message as SQS sees it.
struct wire_message {
  std::string body;  ///< valid SQS text (base64 when the original bytes were not)
  wire_attributes attributes;
  std::string group_id;          ///< FIFO only
  std::string deduplication_id;  ///< FIFO only
  std::optional<std::int64_t> delay_seconds;

  /// Bytes SQS counts against its size limit: body, attribute names, types and values.
  std::size_t size() const noexcept;
};

struct fifo_defaults {
  std::string message_group;  ///< used for messages without a session
};

/// qrt -> SQS. `fifo` is whether the target queue is a FIFO queue; `now` resolves
/// scheduled_enqueue_time into DelaySeconds. A FIFO message without an id gets a random
/// deduplication id (so equal bodies are not collapsed).
result<wire_message> to_wire(const message& m, bool fifo, const fifo_defaults& defaults,
                             std::chrono::system_clock::time_point now);

/// True when every character is one SQS accepts in a body (#x9 #xA #xD #x20-#xD7FF
/// #xE000-#xFFFD #x10000-#x10FFFF, UTF-8 encoded).
bool is_valid_sqs_text(std::string_view text) noexcept;

/// The SQS attribute name for a user attribute name: itself when SQS accepts it and it is not
/// in qrt's namespace, else encoded (see reserved::encoded_name_prefix). nullopt when even the
/// encoded form is over SQS's 256 characters.
std::optional<std::string> sqs_attribute_name(std::string_view user_name);
/// The inverse of sqs_attribute_name: the user attribute name an SQS attribute name stands for;
/// nullopt for names qrt reserves for itself and for malformed encoded names.
std::optional<std::string> user_attribute_name(std::string_view sqs_name);

/// True for a name SQS accepts for a message attribute (and not one qrt reserves unless
/// `allow_reserved`).
bool is_valid_attribute_name(std::string_view name, bool allow_reserved = false) noexcept;

/// MD5 of the body as SQS reports it (MD5OfMessageBody / MD5OfBody), lower-case hex.
std::string md5_of_body(std::string_view body);
/// md5_of_body(body) == md5_hex, without building the hex text (checked per message).
bool md5_of_body_is(std::string_view body, std::string_view md5_hex);
/// MD5 of the message attributes by SQS's algorithm (sorted by name; each name, data type and
/// value length-prefixed, a transport byte 1 for String/Number and 2 for Binary). Empty when
/// there are no attributes.
std::string md5_of_attributes(const wire_attributes& attributes);

// ---- requests: JSON bodies for POST / with X-Amz-Target: AmazonSQS.<action> ----

std::string encode_send_message(std::string_view queue_url, const wire_message& m);
struct batch_send_entry {
  std::string id;
  wire_message message;
};
std::string encode_send_message_batch(std::string_view queue_url,
                                      const std::vector<batch_send_entry>& entries);

struct receive_request {
  std::string queue_url;
  int max_messages = 10;
  int wait_time_seconds = 0;
  std::optional<int> visibility_timeout;
  std::string receive_request_attempt_id;  ///< FIFO only; empty: none
};
std::string encode_receive_message(const receive_request& r);

struct receipt_entry {
  std::string id;
  std::string receipt_handle;
  int visibility_timeout = 0;  ///< ChangeMessageVisibilityBatch only
};
std::string encode_delete_message_batch(std::string_view queue_url,
                                        const std::vector<receipt_entry>& entries);
std::string encode_change_visibility(std::string_view queue_url, std::string_view receipt_handle,
                                     int visibility_timeout);
std::string encode_change_visibility_batch(std::string_view queue_url,
                                           const std::vector<receipt_entry>& entries);
std::string encode_get_queue_url(std::string_view queue_name);
std::string encode_create_queue(std::string_view queue_name,
                                const std::map<std::string, std::string>& attributes,
                                const std::map<std::string, std::string>& tags = {});
std::string encode_queue_url_only(std::string_view queue_url);  // DeleteQueue, PurgeQueue
std::string encode_get_queue_attributes(std::string_view queue_url,
                                        const std::vector<std::string>& names);

// ---- responses ----

struct send_result {
  std::string message_id;
  std::string md5_of_body;
  std::string md5_of_attributes;
  std::string sequence_number;
};
result<send_result> decode_send_message(std::string_view body);

struct batch_failure {
  std::string id;
  std::string code;
  std::string message;
  bool sender_fault = false;
};
struct batch_result {
  std::map<std::string, send_result> successful;  ///< by entry id (send: ids and MD5s)
  std::map<std::string, batch_failure> failed;    ///< by entry id
};
/// SendMessageBatch, DeleteMessageBatch and ChangeMessageVisibilityBatch answers.
result<batch_result> decode_batch_result(std::string_view body);

struct wire_received {
  std::string message_id;
  std::string receipt_handle;
  std::string body;
  std::string md5_of_body;
  std::string md5_of_attributes;
  std::map<std::string, std::string> system_attributes;  ///< ApproximateReceiveCount, ...
  wire_attributes attributes;
  /// Set when this message's entry in the answer is malformed beyond its id and receipt
  /// handle (a field of the wrong type, an attribute that is not valid base64): the message
  /// can only be released, not read. Says what is wrong, never quoting more than a few bytes.
  std::string problem;
};
/// At most max_entries_per_batch messages (SQS's own limit); an answer with more is refused.
/// A message whose entry lacks a string MessageId or ReceiptHandle fails the whole answer
/// (nothing could release it); any other fault of one entry sets only its `problem`.
result<std::vector<wire_received>> decode_receive_message(std::string_view body);

/// Checks both MD5s; a mismatch is errc::protocol_error naming the message.
result<void> verify_checksums(const wire_received& m);

/// SQS -> qrt. Decodes reserved attributes (and a base64 body); fills delivery_count and
/// enqueued_time from the system attributes. The receipt is left for the caller. Fails
/// (errc::protocol_error naming the message and the problem) for a message qrt cannot decode:
/// an unknown qrt.body_encoding, a body flagged base64 that is not, a malformed encoded
/// attribute name.
result<received_message> from_wire(const wire_received& m);

/// SQS -> qrt for a message from_wire refuses, so it can still be read where it cannot be
/// dead-lettered (from a dead-letter queue): the body and every attribute exactly as SQS holds
/// them, under their SQS names (qrt.body_encoding included); qrt's dead-letter reason and
/// message id are read as from_wire reads them. Never fails.
received_message from_wire_verbatim(const wire_received& m);

/// The dead-letter reason qrt gives a message it received but cannot decode.
inline constexpr std::string_view undecodable_reason = "UndecodableMessage";

result<std::string> decode_queue_url(std::string_view body);
/// ListQueueTags' answer: the tags (string values only; others are skipped).
result<std::map<std::string, std::string>> decode_queue_tags(std::string_view body);
result<std::map<std::string, std::string>> decode_queue_attributes(std::string_view body);

// ---- errors ----

/// The SQS error code without namespace ("com.amazonaws.sqs#QueueDoesNotExist" ->
/// "QueueDoesNotExist"); `query_error` is the x-amzn-query-error header when present.
std::string normalize_error_code(std::string_view type, std::string_view query_error = {});

/// Maps an SQS error code (and the HTTP status) onto qrt's codes and kinds.
error map_error(std::string_view code, std::string_view message, unsigned http_status);

/// The longest wait a server's Retry-After can ask of qrt; longer ones are cut to this.
inline constexpr std::chrono::seconds max_retry_after_header{60};

/// A Retry-After header's delay-seconds (surrounding spaces allowed), at most
/// max_retry_after_header (a number too large for any integer type included). nullopt for
/// everything else: empty, negative, fractional, trailing garbage, or an HTTP-date (the caller's
/// own back-off applies).
std::optional<std::chrono::seconds> parse_retry_after(std::string_view header);

/// The end of reading an error answer, the same for SQS (JSON) and SNS (XML): a code and a
/// message made up from the status where the body gave none (`body_format` names what the body
/// was not, when `body_readable` is false), both cut to 512 bytes, mapped by `map`, and the
/// Retry-After header's delay.
error finish_error(std::string code, std::string message, unsigned http_status, bool body_readable,
                   std::string_view body_format, std::string_view retry_after_header,
                   error (*map)(std::string_view code, std::string_view message,
                                unsigned http_status));

/// A non-2xx answer -> qrt::error. Accepts any body (garbage gives protocol-level detail, never
/// a crash); the server's message is cut to 512 bytes. `retry_after_header` is the
/// Retry-After header's value when present (see parse_retry_after).
error decode_error(unsigned http_status, std::string_view body, std::string_view query_error_header,
                   std::string_view retry_after_header);

}  // namespace qrt::sqs::detail
