// SNS as pure functions: the names qrt's topics and subscriptions get on SNS and SQS, the
// AWS Query requests (form-encoded POST bodies, Version 2010-03-31) for each action, a small
// bounded XML reader for SNS's answers, the answer parsers, subscription filters <-> SNS filter
// policies, and SNS error answers -> qrt::error. Nothing here does I/O, reads a clock or keeps
// state. SNS speaks the Query protocol only (the official SDK and fauxqs both use it), unlike
// SQS's JSON 1.0: see docs/sqs.md, "Topics".
#pragma once

#include <cstddef>
#include <initializer_list>
#include <map>
#include <optional>
#include <qrt/error.hpp>
#include <qrt/names.hpp>
#include <qrt/provider.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "codec.hpp"

namespace qrt::sqs::detail::sns {

// ---- names ----

/// A qrt name part (topic or subscription name) as SNS and SQS accept it ([A-Za-z0-9_-]):
/// letters, digits and '-' stay, '_' becomes "__" and '.' becomes "_d". Injective (every '_' of
/// the result starts a two-character escape), and never contains "--" (qrt names cannot).
std::string aws_name_part(std::string_view qrt_name);
/// The inverse of aws_name_part; nullopt for text it never produces.
std::optional<std::string> qrt_name_part(std::string_view aws_name);

/// SNS's limit on topic names.
inline constexpr std::size_t max_topic_name = 256;
/// SQS's limit on queue names.
inline constexpr std::size_t max_queue_name = 80;
/// What qrt appends to a subscription's queue name for its dead-letter queue.
inline constexpr std::string_view dead_letter_suffix = "--dlq";

/// True for a topic whose name ends in ".fifo": an SNS FIFO topic, whose subscriptions are SQS
/// FIFO queues (ordered message groups: sessions).
bool is_fifo_topic(const topic_name& topic) noexcept;

/// The SNS topic name of `topic`: aws_name_part of it, a FIFO topic's ".fifo" suffix kept as it
/// is. invalid_argument when over 256 characters.
result<std::string> topic_aws_name(const topic_name& topic);

/// The SQS queue holding subscription `subscription` (a queue_name::subscription):
/// aws_name_part(topic) + "--" + aws_name_part(name), then ".fifo" for a FIFO topic (whose
/// suffix is not mapped). "--" never occurs in a qrt queue name nor in an aws_name_part, so the
/// queue can neither be an ordinary qrt queue nor be read as another subscription. Its
/// dead-letter queue (`subscription.dead_letter()`) adds "--dlq" before any ".fifo".
/// invalid_argument when the dead-letter queue's name would be over SQS's 80 characters, or
/// when `subscription` is not a subscription.
result<std::string> subscription_queue_name(const queue_name& subscription);

/// The dead-letter queue of a subscription's SQS queue: "--dlq" added before any ".fifo".
std::string subscription_dead_letter_queue_name(std::string_view sqs_name);

/// The topic (".fifo" included for a FIFO topic) and subscription names of a subscription's SQS
/// queue (not its dead-letter queue); nullopt for any other queue name.
std::optional<std::pair<std::string, std::string>> parse_subscription_queue_name(
    std::string_view sqs_name);

/// True for an SQS queue name qrt made for a subscription or its dead-letter queue.
bool is_subscription_queue_name(std::string_view sqs_name) noexcept;

/// The last ':'-separated part of an ARN (a queue's or topic's name); empty when there is none.
std::string_view arn_resource(std::string_view arn) noexcept;

// ---- filters ----

/// SNS's limit on the keys of one filter policy.
inline constexpr std::size_t max_filter_keys = 5;

/// The FilterPolicy (on message attributes) that passes what `filter` passes: the subject as
/// the qrt.subject attribute, each attribute under the name qrt sends it with
/// (sqs_attribute_name), each with a one-value list. Empty text for an empty filter (no
/// policy). invalid_argument when SNS cannot express it: more than 5 keys, an empty value (qrt
/// sends those with a marker type SNS matches as a string "-"), or a value that is not valid SQS
/// text (those travel as Binary attributes, which policies cannot match).
result<std::string> encode_filter_policy(const subscription_filter& filter);
/// The filter a policy written by encode_filter_policy stands for; protocol_error for anything
/// else (a policy qrt did not write).
result<subscription_filter> decode_filter_policy(std::string_view policy);

// ---- requests: form bodies for POST / (Content-Type application/x-www-form-urlencoded) ----

inline constexpr std::string_view api_version = "2010-03-31";

/// CreateTopic; `fifo` adds the attribute FifoTopic=true.
std::string encode_create_topic(std::string_view name, bool fifo = false);
/// DeleteTopic and GetTopicAttributes.
std::string encode_topic_action(std::string_view action, std::string_view topic_arn);
std::string encode_list_topics(std::string_view next_token);
/// Publish of one message. The message is what to_wire makes of a qrt message for a standard
/// queue: SNS passes body and attributes on unchanged (raw delivery).
std::string encode_publish(std::string_view topic_arn, const wire_message& m);
std::string encode_publish_batch(std::string_view topic_arn,
                                 const std::vector<batch_send_entry>& entries);
/// Subscribe of an SQS queue with raw message delivery and, when not empty, `filter_policy`.
std::string encode_subscribe(std::string_view topic_arn, std::string_view queue_arn,
                             std::string_view filter_policy);
/// Unsubscribe and GetSubscriptionAttributes.
std::string encode_subscription_action(std::string_view action, std::string_view subscription_arn);
std::string encode_list_subscriptions_by_topic(std::string_view topic_arn,
                                               std::string_view next_token);
/// The policy an SQS queue needs before SNS may deliver `topic_arn`'s messages to it (AWS
/// checks it; fauxqs does not).
std::string queue_policy(std::string_view queue_arn, std::string_view topic_arn);

// ---- XML ----

/// Bounds of the XML reader: answers nest a few levels and hold at most a few hundred elements
/// (ListSubscriptionsByTopic: 100 subscriptions of 6 each).
inline constexpr std::size_t max_xml_depth = 16;
inline constexpr std::size_t max_xml_elements = 8192;

/// One element: its local name (any "prefix:" dropped), its character data (entities and
/// CDATA decoded; of an element with children only the text between them, which answers leave
/// blank) and its children (indexes into xml_document::elements).
struct xml_element {
  std::string name;
  std::string text;
  std::vector<std::size_t> children;
};

/// A parsed document; elements[0] is the root.
struct xml_document {
  std::vector<xml_element> elements;
  const xml_element& root() const { return elements.front(); }
  /// The first child of `e` named `name`, or nullptr.
  const xml_element* child(const xml_element& e, std::string_view name) const;
  /// Following a path of child names from `e`; nullptr when a step is missing.
  const xml_element* path(const xml_element& e,
                          std::initializer_list<std::string_view> names) const;
};

/// Reads one XML document: elements, attributes (skipped), character data, the five named
/// entities and character references, CDATA, comments and processing instructions. Refuses
/// (protocol_error saying what and where) a DOCTYPE (no entity definitions are ever expanded),
/// mismatched or unclosed tags, nesting deeper than max_xml_depth, more than max_xml_elements
/// elements, and anything else that is not well-formed. No recursion; memory is bounded by
/// the input's size.
result<xml_document> parse_xml(std::string_view body);

// ---- responses ----

result<std::string> decode_create_topic(std::string_view body);  ///< the TopicArn

struct topic_page {
  std::vector<std::string> topic_arns;
  std::string next_token;  ///< empty on the last page
};
result<topic_page> decode_list_topics(std::string_view body);

result<std::string> decode_publish(std::string_view body);  ///< the MessageId

struct publish_batch_result {
  std::map<std::string, std::string> successful;  ///< entry id -> MessageId
  std::map<std::string, batch_failure> failed;    ///< by entry id
};
/// At most max_entries_per_batch entries of each kind.
result<publish_batch_result> decode_publish_batch(std::string_view body);

result<std::string> decode_subscribe(std::string_view body);  ///< the SubscriptionArn

struct subscription_entry {
  std::string subscription_arn;
  std::string topic_arn;
  std::string protocol;
  std::string endpoint;
};
struct subscription_page {
  std::vector<subscription_entry> subscriptions;
  std::string next_token;  ///< empty on the last page
};
result<subscription_page> decode_list_subscriptions(std::string_view body);

/// GetSubscriptionAttributes and GetTopicAttributes: <Attributes><entry><key/><value/>...
result<std::map<std::string, std::string>> decode_attributes(std::string_view body);

/// An answer without a result (DeleteTopic, Unsubscribe): checks it is SNS's answer to
/// `action`.
result<void> decode_empty(std::string_view body, std::string_view action);

// ---- errors ----

/// Maps an SNS error code (and the HTTP status) onto qrt's codes and kinds. NotFound is
/// topic_not_found (the caller says otherwise when it asked about a subscription).
error map_error(std::string_view code, std::string_view message, unsigned http_status);

/// A non-2xx answer (<ErrorResponse><Error><Type/><Code/><Message/>) -> qrt::error. Accepts any
/// body; the server's message is cut to 512 bytes.
error decode_error(unsigned http_status, std::string_view body,
                   std::string_view retry_after_header);

}  // namespace qrt::sqs::detail::sns
