// Request and response bodies of the Service Bus $management node (and the $cbs put-token), as
// Proton messages. Pure: no links, no I/O; the provider sends what these build and hands the
// replies to the parsers.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <proton/message.hpp>
#include <qrt/provider.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "amqp/connection_types.hpp"
#include "amqp/message_codec.hpp"
#include "wire.hpp"

namespace qrt::servicebus::detail {

/// put-token on $cbs: `audience` is "sb://host/entity", `token` a SharedAccessSignature (type
/// "servicebus.windows.net:sastoken") or an Azure AD token (type "jwt").
proton::message put_token_request(std::string_view audience, std::string_view token,
                                  std::string_view type,
                                  std::chrono::system_clock::time_point expiry);

/// Each request carries operation, com.microsoft:tracking-id and, when given, the
/// associated-link-name (so the service can find the locks a link holds).
proton::message renew_lock_request(std::span<const uuid_bytes> lock_tokens,
                                   std::string_view associated_link);
proton::message peek_request(std::int64_t from_sequence, std::int32_t count,
                             const std::optional<std::string>& session);
/// `encoded_messages`: complete AMQP messages with message-id and x-opt-scheduled-enqueue-time.
struct scheduled_entry {
  std::vector<char> encoded;
  std::string message_id;
  std::optional<std::string> session;
};
proton::message schedule_request(const std::vector<scheduled_entry>& entries);
proton::message cancel_scheduled_request(std::span<const std::int64_t> sequence_numbers);
proton::message receive_by_sequence_request(std::span<const std::int64_t> sequence_numbers,
                                            const std::optional<std::string>& session);
/// disposition: "completed", "abandoned", "defered" (sic, the service's spelling), "suspended".
proton::message update_disposition_request(std::span<const uuid_bytes> lock_tokens,
                                           std::string_view disposition,
                                           std::string_view dead_letter_reason,
                                           std::string_view dead_letter_description,
                                           const std::optional<std::string>& session);
proton::message renew_session_lock_request(std::string_view session,
                                           std::string_view associated_link);
proton::message get_session_state_request(std::string_view session,
                                          std::string_view associated_link);
proton::message set_session_state_request(std::string_view session,
                                          const std::optional<std::string>& state,
                                          std::string_view associated_link);

/// What a $management request does, from its `operation` property, for the error it gets when
/// its answer never comes (a lost connection, a detached link, a close): peek-message,
/// get-session-state and enumerate-rules read; every other operation (renew-lock,
/// set-session-state, add-rule, an operation not listed) may change state at the service, so
/// one sent and unanswered may have been applied (docs/servicebus.md).
amqp::detail::request_kind management_request_kind(const proton::message& request);

/// The reply's status: statusCode/statusDescription/errorCondition on $management and
/// status-code/status-description on $cbs (both spellings are accepted). `what` names the
/// operation in errors.
result<int> response_status(const proton::message& reply, std::string_view what);

/// The reply to a renew-lock request for `tokens` lock tokens: one expiration per token, in the
/// request's order. A reply with any other number of expirations is a protocol error.
result<std::vector<time_point>> parse_renew_lock_response(const proton::message& reply,
                                                          std::size_t tokens);
result<time_point> parse_renew_session_lock_response(const proton::message& reply);
/// The reply to a schedule-message request for `messages` messages: one sequence number per
/// message. A reply with any other number is a protocol error.
result<std::vector<std::int64_t>> parse_schedule_response(const proton::message& reply,
                                                          std::size_t messages);
/// nullopt: the session has no state.
result<std::optional<std::string>> parse_session_state_response(const proton::message& reply);

/// peek-message and receive-by-sequence-number replies: each entry an encoded message and, for
/// received (locked) messages, its lock token. A 204 reply is an empty list.
/// An entry qrt cannot decode is kept with the reason instead of failing the whole reply: one
/// bad message affects only itself.
struct message_entry {
  amqp::detail::decoded_message message;
  std::optional<uuid_bytes> lock_token;
  std::optional<error> undecodable;  ///< why `message` is empty, when it could not be decoded
};
/// `at_most` is the count the request asked for; a reply with more entries is a protocol error.
result<std::vector<message_entry>> parse_messages_response(const proton::message& reply,
                                                           std::size_t at_most);

// ----- a subscription's rules (on "<topic>/Subscriptions/<name>/$management") -----

/// The rule every new subscription has: a true filter (every message passes).
inline constexpr std::string_view default_rule_name = "$Default";

/// com.microsoft:add-rule with a correlation filter: `label` for the subject (when set) and
/// `properties` for the attributes, matched by equality as subscription_filter means.
proton::message add_rule_request(std::string_view rule_name, const subscription_filter& filter);
proton::message remove_rule_request(std::string_view rule_name);
/// com.microsoft:enumerate-rules, `top` rules from `skip`.
proton::message enumerate_rules_request(std::int32_t top, std::int32_t skip);

/// One rule as enumerate-rules describes it.
struct rule_entry {
  enum class kind { true_filter, false_filter, sql_filter, correlation_filter, other };
  std::string name;
  kind filter = kind::other;
  std::optional<std::string> label;               ///< correlation filter: the subject
  std::map<std::string, std::string> properties;  ///< correlation filter: the attributes
  /// The correlation filter sets a field other than label and properties (correlation-id,
  /// message-id, to, reply-to, session-id, reply-to-session-id, content-type), or a property
  /// that is not text, or the rule has an action: more than a subscription_filter says.
  bool beyond_subscription_filter = false;
};
/// The reply to enumerate-rules for at most `top` rules (204: none). More entries than asked
/// for is a protocol error.
result<std::vector<rule_entry>> parse_enumerate_rules_response(const proton::message& reply,
                                                               std::size_t top);

}  // namespace qrt::servicebus::detail
