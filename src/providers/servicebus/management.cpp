#include "management.hpp"

#include <algorithm>
#include <atomic>
#include <iterator>
#include <map>
#include <proton/binary.hpp>
#include <proton/codec/decoder.hpp>
#include <proton/codec/map.hpp>
#include <proton/codec/vector.hpp>
#include <proton/error.hpp>
#include <proton/scalar.hpp>
#include <proton/symbol.hpp>
#include <proton/timestamp.hpp>
#include <proton/type_id.hpp>
#include <proton/uuid.hpp>
#include <proton/value.hpp>
#include <random>

#include "core/random_id.hpp"

namespace qrt::servicebus::detail {
namespace {

using body_map = std::map<std::string, proton::value>;

std::string tracking_id() {
  return qrt::detail::random_uuid();
}

proton::uuid to_proton(const uuid_bytes& b) {
  proton::uuid u;
  std::copy(b.begin(), b.end(), u.begin());
  return u;
}

proton::message request(std::string_view operation, const body_map& body,
                        std::string_view associated_link) {
  proton::message m;
  m.properties().put("operation", std::string(operation));
  m.properties().put("com.microsoft:tracking-id", tracking_id());
  if (!associated_link.empty())
    m.properties().put("associated-link-name", std::string(associated_link));
  m.body(body);
  return m;
}

std::vector<proton::uuid> uuids(std::span<const uuid_bytes> tokens) {
  std::vector<proton::uuid> out;
  for (const auto& t : tokens) out.push_back(to_proton(t));
  return out;
}

// The most entries a reply body map may have. The service's replies carry one to three
// (expirations, messages, sequence-numbers, session-state); the bound keeps a hostile reply from
// costing more than one pass over it.
constexpr std::size_t max_reply_entries = 64;

// A reply body as a string-keyed map; anything else is a protocol error. Read entry by entry
// with Proton's decoder: converting to std::map<proton::value, proton::value> first compares
// whole values with each other, and a few hundred bytes of nested zero-width arrays as keys made
// that take minutes (found by fuzzing), stalling the connection that received the reply.
result<body_map> reply_body(const proton::message& reply, std::string_view what) {
  try {
    const proton::value& body = reply.body();
    if (body.empty() || body.type() == proton::NULL_TYPE) return body_map{};
    proton::codec::decoder decoder(body);
    proton::codec::start map;
    decoder >> map;
    if (map.type != proton::MAP) throw proton::conversion_error("a " + type_name(map.type));
    const std::size_t entries = map.size / 2;
    if (entries > max_reply_entries) {
      return fail(errc::protocol_error, std::string(what) + ": reply body map has " +
                                            std::to_string(entries) + " entries (at most " +
                                            std::to_string(max_reply_entries) + " expected)");
    }
    body_map out;
    for (std::size_t i = 0; i < entries; ++i) {
      proton::value key;
      proton::value value;
      decoder >> key >> value;
      if (key.type() == proton::STRING)
        out.emplace(proton::get<std::string>(key), std::move(value));
      else if (key.type() == proton::SYMBOL)
        out.emplace(std::string(proton::get<proton::symbol>(key)), std::move(value));
    }
    decoder >> proton::codec::finish();
    return out;
  } catch (const std::exception& e) {
    return fail(errc::protocol_error,
                std::string(what) + ": reply body is not a map (" + e.what() + ")");
  }
}

std::int64_t as_int64(const proton::value& v) {
  switch (v.type()) {
    case proton::LONG:
      return proton::get<std::int64_t>(v);
    case proton::ULONG:
      return static_cast<std::int64_t>(proton::get<std::uint64_t>(v));
    case proton::INT:
      return proton::get<std::int32_t>(v);
    case proton::UINT:
      return proton::get<std::uint32_t>(v);
    case proton::BINARY: {
      const auto b = proton::get<proton::binary>(v);  // the SDK's Long.toBytesBE form
      if (b.size() > sizeof(std::int64_t)) {
        throw proton::conversion_error("a binary long of " + std::to_string(b.size()) +
                                       " bytes (at most 8 expected)");
      }
      std::int64_t n = 0;
      for (auto c : b) n = (n << 8) | static_cast<std::uint8_t>(c);
      return n;
    }
    default:
      throw proton::conversion_error("expected a long");
  }
}

/// The element count of an array or list in a reply, read from its header before any element is
/// converted, and checked against what the request asked for. Elements of a zero-width type
/// (uint0, null, true) cost no bytes each: a 100-byte reply claimed 17,152 sequence numbers for
/// one scheduled message (found by fuzzing). The request, not the reply, says how many there are.
void check_element_count(const proton::value& v, std::string_view field, std::size_t expected,
                         bool exactly) {
  proton::codec::decoder decoder(v);
  proton::codec::start header;
  decoder >> header;
  if (header.type != proton::ARRAY && header.type != proton::LIST)
    throw proton::conversion_error(std::string(field) + " is a " + type_name(header.type));
  if (header.size == expected || (!exactly && header.size < expected)) return;
  throw proton::conversion_error(std::string(field) + " has " + std::to_string(header.size) +
                                 " elements (" + (exactly ? "" : "at most ") +
                                 std::to_string(expected) + " requested)");
}

/// A reply's timestamp, saturated at the clock's range: the service answers DateTime.MaxValue
/// (year 9999, past the nanosecond clock's year 2262) for locks that never expire.
time_point as_time(const proton::timestamp& t) {
  return amqp::detail::time_from_epoch_ms(t.milliseconds());
}
time_point as_time(const proton::value& v) {
  return as_time(proton::get<proton::timestamp>(v));
}

/// Runs a reply parser: whatever reading the reply throws (Proton's conversion errors, or
/// anything else a hostile reply provokes) becomes a protocol_error naming the operation; no
/// exception leaves a parser.
template <class F>
auto guarded(std::string_view what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return fail(errc::protocol_error, std::string(what) + ": malformed reply (" + e.what() + ")");
  }
}

}  // namespace

proton::message put_token_request(std::string_view audience, std::string_view token,
                                  std::string_view type,
                                  std::chrono::system_clock::time_point expiry) {
  proton::message m;
  m.properties().put("operation", "put-token");
  m.properties().put("type", std::string(type));
  m.properties().put("name", std::string(audience));
  m.properties().put("expiration",
                     proton::timestamp(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           expiry.time_since_epoch())
                                           .count()));
  m.body(std::string(token));
  return m;
}

proton::message renew_lock_request(std::span<const uuid_bytes> lock_tokens,
                                   std::string_view associated_link) {
  return request("com.microsoft:renew-lock", {{"lock-tokens", uuids(lock_tokens)}},
                 associated_link);
}

proton::message peek_request(std::int64_t from_sequence, std::int32_t count,
                             const std::optional<std::string>& session) {
  body_map body{{"from-sequence-number", from_sequence}, {"message-count", count}};
  if (session) body.emplace("session-id", *session);
  return request("com.microsoft:peek-message", body, {});
}

proton::message schedule_request(const std::vector<scheduled_entry>& entries) {
  std::vector<proton::value> list;
  for (const auto& e : entries) {
    body_map entry{{"message", proton::binary(e.encoded.begin(), e.encoded.end())},
                   {"message-id", e.message_id}};
    if (e.session) entry.emplace("session-id", *e.session);
    list.emplace_back(entry);
  }
  return request("com.microsoft:schedule-message", {{"messages", list}}, {});
}

proton::message cancel_scheduled_request(std::span<const std::int64_t> sequence_numbers) {
  return request("com.microsoft:cancel-scheduled-message",
                 {{"sequence-numbers",
                   std::vector<std::int64_t>(sequence_numbers.begin(), sequence_numbers.end())}},
                 {});
}

proton::message receive_by_sequence_request(std::span<const std::int64_t> sequence_numbers,
                                            const std::optional<std::string>& session) {
  body_map body{{"sequence-numbers",
                 std::vector<std::int64_t>(sequence_numbers.begin(), sequence_numbers.end())},
                {"receiver-settle-mode", std::uint32_t{1}}};  // peek-lock
  if (session) body.emplace("session-id", *session);
  return request("com.microsoft:receive-by-sequence-number", body, {});
}

proton::message update_disposition_request(std::span<const uuid_bytes> lock_tokens,
                                           std::string_view disposition,
                                           std::string_view dead_letter_reason,
                                           std::string_view dead_letter_description,
                                           const std::optional<std::string>& session) {
  body_map body{{"lock-tokens", uuids(lock_tokens)},
                {"disposition-status", std::string(disposition)}};
  if (!dead_letter_reason.empty())
    body.emplace("deadletter-reason", std::string(dead_letter_reason));
  if (!dead_letter_description.empty()) {
    body.emplace("deadletter-description", std::string(dead_letter_description));
  }
  if (session) body.emplace("session-id", *session);
  return request("com.microsoft:update-disposition", body, {});
}

proton::message renew_session_lock_request(std::string_view session,
                                           std::string_view associated_link) {
  return request("com.microsoft:renew-session-lock", {{"session-id", std::string(session)}},
                 associated_link);
}

proton::message get_session_state_request(std::string_view session,
                                          std::string_view associated_link) {
  return request("com.microsoft:get-session-state", {{"session-id", std::string(session)}},
                 associated_link);
}

proton::message set_session_state_request(std::string_view session,
                                          const std::optional<std::string>& state,
                                          std::string_view associated_link) {
  body_map body{{"session-id", std::string(session)}};
  if (state)
    body.emplace("session-state", proton::binary(state->begin(), state->end()));
  else
    body.emplace("session-state", proton::value{});
  return request("com.microsoft:set-session-state", body, associated_link);
}

amqp::detail::request_kind management_request_kind(const proton::message& request) {
  static constexpr std::string_view reads[] = {"com.microsoft:peek-message",
                                               "com.microsoft:get-session-state",
                                               "com.microsoft:enumerate-rules"};
  amqp::detail::request_kind kind;
  const auto& properties = request.properties();
  if (properties.exists("operation")) {
    const proton::value v = properties.get("operation");
    if (v.type() == proton::STRING) kind.operation = proton::get<std::string>(v);
  }
  kind.changes_state =
      std::find(std::begin(reads), std::end(reads), kind.operation) == std::end(reads);
  return kind;
}

result<int> response_status(const proton::message& reply, std::string_view what) {
  return guarded(what, [&]() -> result<int> {
    const auto& props = reply.properties();
    proton::scalar status;
    for (const char* key : {"statusCode", "status-code"}) {
      if (props.exists(key)) {
        status = props.get(key);
        break;
      }
    }
    if (status.empty())
      return fail(errc::protocol_error, std::string(what) + ": reply has no status code");
    // An integer of any width; a float would convert with undefined behaviour when huge, and a
    // code outside 0-999 must not wrap into the 2xx range.
    const auto type = status.type();
    const bool integer = type == proton::BYTE || type == proton::UBYTE || type == proton::SHORT ||
                         type == proton::USHORT || type == proton::INT || type == proton::UINT ||
                         type == proton::LONG || type == proton::ULONG;
    const auto wide = integer ? proton::coerce<std::int64_t>(status) : -1;
    if (!integer || wide < 0 || wide > 999) {
      return fail(errc::protocol_error,
                  std::string(what) + ": reply's status code is not a number in 0-999");
    }
    const int code = static_cast<int>(wide);
    auto text = [&](const char* a, const char* b) -> std::string {
      for (const char* key : {a, b}) {
        if (props.exists(key)) {
          const auto v = props.get(key);
          if (v.type() == proton::STRING) return proton::get<std::string>(v);
          if (v.type() == proton::SYMBOL) return std::string(proton::get<proton::symbol>(v));
        }
      }
      return {};
    };
    auto ok = check_status(code, text("errorCondition", "error-condition"),
                           text("statusDescription", "status-description"), what);
    if (!ok) return ok.error();
    return code;
  });
}

result<std::vector<time_point>> parse_renew_lock_response(const proton::message& reply,
                                                          std::size_t tokens) {
  constexpr std::string_view what = "renew-lock";
  if (auto s = response_status(reply, what); !s) return s.error();
  auto body = reply_body(reply, what);
  if (!body) return body.error();
  return guarded(what, [&]() -> result<std::vector<time_point>> {
    const auto it = body->find("expirations");
    if (it == body->end())
      return fail(errc::protocol_error, "renew-lock: reply has no expirations");
    check_element_count(it->second, "expirations", tokens, true);
    std::vector<proton::timestamp> stamps;
    proton::get(it->second, stamps);
    std::vector<time_point> out;
    for (auto t : stamps) out.push_back(as_time(t));
    return out;
  });
}

result<time_point> parse_renew_session_lock_response(const proton::message& reply) {
  constexpr std::string_view what = "renew-session-lock";
  if (auto s = response_status(reply, what); !s) return s.error();
  auto body = reply_body(reply, what);
  if (!body) return body.error();
  return guarded(what, [&]() -> result<time_point> {
    const auto it = body->find("expiration");
    if (it == body->end())
      return fail(errc::protocol_error, "renew-session-lock: reply has no expiration");
    return as_time(it->second);
  });
}

result<std::vector<std::int64_t>> parse_schedule_response(const proton::message& reply,
                                                          std::size_t messages) {
  constexpr std::string_view what = "schedule-message";
  if (auto s = response_status(reply, what); !s) return s.error();
  auto body = reply_body(reply, what);
  if (!body) return body.error();
  return guarded(what, [&]() -> result<std::vector<std::int64_t>> {
    const auto it = body->find("sequence-numbers");
    if (it == body->end())
      return fail(errc::protocol_error, "schedule-message: reply has no sequence-numbers");
    check_element_count(it->second, "sequence-numbers", messages, true);
    std::vector<proton::value> items;
    proton::get(it->second, items);
    std::vector<std::int64_t> out;
    for (const auto& v : items) out.push_back(as_int64(v));
    return out;
  });
}

result<std::optional<std::string>> parse_session_state_response(const proton::message& reply) {
  constexpr std::string_view what = "get-session-state";
  if (auto s = response_status(reply, what); !s) return s.error();
  auto body = reply_body(reply, what);
  if (!body) return body.error();
  return guarded(what, [&]() -> result<std::optional<std::string>> {
    const auto it = body->find("session-state");
    if (it == body->end() || it->second.empty() || it->second.type() == proton::NULL_TYPE) {
      return std::optional<std::string>{};
    }
    const auto b = proton::get<proton::binary>(it->second);
    return std::optional<std::string>{std::string(b.begin(), b.end())};
  });
}

result<std::vector<message_entry>> parse_messages_response(const proton::message& reply,
                                                           std::size_t at_most) {
  constexpr std::string_view what = "message request";
  auto status = response_status(reply, what);
  if (!status) return status.error();
  if (*status == 204) return std::vector<message_entry>{};
  auto body = reply_body(reply, what);
  if (!body) return body.error();
  return guarded(what, [&]() -> result<std::vector<message_entry>> {
    const auto it = body->find("messages");
    if (it == body->end()) return std::vector<message_entry>{};
    check_element_count(it->second, "messages", at_most, false);
    std::vector<proton::value> items;
    proton::get(it->second, items);
    std::vector<message_entry> out;
    for (const auto& item : items) {
      std::map<std::string, proton::value> entry;
      proton::get(item, entry);
      const auto m = entry.find("message");
      if (m == entry.end())
        return fail(errc::protocol_error, "message request: entry without message");
      const auto bytes = proton::get<proton::binary>(m->second);
      auto decoded = amqp::detail::decode_message(std::span<const std::uint8_t>(
          reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
      message_entry e;
      if (decoded) {
        e.message = std::move(*decoded);
      } else {
        e.undecodable =
            error{errc::protocol_error,
                  std::string(what) + ": undecodable message: " + decoded.error().message};
      }
      if (const auto t = entry.find("lock-token"); t != entry.end()) {
        const auto u = proton::get<proton::uuid>(t->second);
        uuid_bytes b{};
        std::copy(u.begin(), u.end(), b.begin());
        e.lock_token = b;
      }
      out.push_back(std::move(e));
    }
    return out;
  });
}

}  // namespace qrt::servicebus::detail

// ----- rules -----

namespace qrt::servicebus::detail {
namespace {

// Descriptor codes of the rule descriptions enumerate-rules answers with (Service Bus's own;
// the official SDKs decode the same ones).
constexpr std::uint64_t rule_description_code = 0x0000013700000004;
constexpr std::uint64_t empty_rule_action_code = 0x0000013700000005;
constexpr std::uint64_t sql_filter_code = 0x0000001370000006;
constexpr std::uint64_t true_filter_code = 0x0000001370000007;
constexpr std::uint64_t false_filter_code = 0x0000001370000008;
constexpr std::uint64_t correlation_filter_code = 0x0000001370000009;

/// The correlation filter's fields in their list order; index 4 is the label, 8 the properties.
constexpr std::size_t correlation_label = 4;
constexpr std::size_t correlation_properties = 8;

std::uint64_t descriptor_code(const proton::value& descriptor) {
  if (descriptor.type() == proton::ULONG) return proton::get<std::uint64_t>(descriptor);
  // A symbolic descriptor is not one of the codes above.
  return 0;
}

/// Opens a described value: returns its descriptor code and leaves `d` at the described value.
std::uint64_t enter_described(proton::codec::decoder& d) {
  proton::codec::start s;
  d >> s;
  if (s.type != proton::DESCRIBED) {
    throw proton::conversion_error("expected a described value, got a " + type_name(s.type));
  }
  proton::value descriptor;
  d >> descriptor;
  return descriptor_code(descriptor);
}

/// The elements of the list `d` is at (a described value's list), each whole. The service's
/// rule descriptions, filters and actions have at most 9 fields; a list claiming more than
/// `max_fields` is refused before any element is copied.
constexpr std::size_t max_fields = 16;
std::vector<proton::value> read_list(proton::codec::decoder& d) {
  proton::codec::start s;
  d >> s;
  if (s.type != proton::LIST) throw proton::conversion_error("expected a list");
  if (s.size > max_fields) {
    throw proton::conversion_error("a list of " + std::to_string(s.size) + " fields (at most " +
                                   std::to_string(max_fields) + " expected)");
  }
  std::vector<proton::value> out(s.size);
  for (auto& v : out) d >> v;
  d >> proton::codec::finish();
  return out;
}

std::optional<std::string> text_of(const proton::value& v) {
  if (v.type() == proton::STRING) return proton::get<std::string>(v);
  if (v.type() == proton::SYMBOL) return std::string(proton::get<proton::symbol>(v));
  return std::nullopt;
}

void read_filter(const proton::value& filter, rule_entry& rule) {
  proton::codec::decoder d(filter);
  const std::uint64_t code = enter_described(d);
  const auto fields = read_list(d);
  d >> proton::codec::finish();
  switch (code) {
    case true_filter_code:
      rule.filter = rule_entry::kind::true_filter;
      return;
    case false_filter_code:
      rule.filter = rule_entry::kind::false_filter;
      return;
    case sql_filter_code:
      rule.filter = rule_entry::kind::sql_filter;
      rule.beyond_subscription_filter = true;
      return;
    case correlation_filter_code:
      break;
    default:
      rule.filter = rule_entry::kind::other;
      rule.beyond_subscription_filter = true;
      return;
  }
  rule.filter = rule_entry::kind::correlation_filter;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const auto& f = fields[i];
    if (f.empty() || f.type() == proton::NULL_TYPE) continue;
    if (i == correlation_label) {
      rule.label = text_of(f);
      if (!rule.label) rule.beyond_subscription_filter = true;
    } else if (i == correlation_properties) {
      proton::codec::decoder pd(f);
      proton::codec::start map;
      pd >> map;
      if (map.type != proton::MAP) throw proton::conversion_error("properties is not a map");
      for (std::size_t e = 0; e < map.size / 2; ++e) {
        proton::value key;
        proton::value value;
        pd >> key >> value;
        const auto k = text_of(key);
        const auto v = text_of(value);
        if (k && v) {
          rule.properties[*k] = *v;
        } else {
          rule.beyond_subscription_filter = true;  // a typed value qrt's attributes cannot hold
        }
      }
      pd >> proton::codec::finish();
    } else {
      rule.beyond_subscription_filter = true;
    }
  }
}

}  // namespace

proton::message add_rule_request(std::string_view rule_name, const subscription_filter& filter) {
  body_map correlation;
  if (filter.subject) correlation.emplace("label", *filter.subject);
  if (!filter.attributes.empty()) {
    std::map<std::string, proton::value> properties;
    for (const auto& [key, value] : filter.attributes) properties.emplace(key, value);
    correlation.emplace("properties", properties);
  }
  const body_map description{{"correlation-filter", correlation}};
  return request("com.microsoft:add-rule",
                 {{"rule-name", std::string(rule_name)}, {"rule-description", description}}, {});
}

proton::message remove_rule_request(std::string_view rule_name) {
  return request("com.microsoft:remove-rule", {{"rule-name", std::string(rule_name)}}, {});
}

proton::message enumerate_rules_request(std::int32_t top, std::int32_t skip) {
  return request("com.microsoft:enumerate-rules", {{"top", top}, {"skip", skip}}, {});
}

result<std::vector<rule_entry>> parse_enumerate_rules_response(const proton::message& reply,
                                                               std::size_t top) {
  constexpr std::string_view what = "enumerate-rules";
  auto status = response_status(reply, what);
  if (!status) return status.error();
  if (*status == 204) return std::vector<rule_entry>{};
  auto body = reply_body(reply, what);
  if (!body) return body.error();
  return guarded(what, [&]() -> result<std::vector<rule_entry>> {
    const auto it = body->find("rules");
    if (it == body->end()) return std::vector<rule_entry>{};
    check_element_count(it->second, "rules", top, false);
    std::vector<proton::value> items;
    proton::get(it->second, items);
    std::vector<rule_entry> out;
    for (const auto& item : items) {
      std::map<std::string, proton::value> entry;
      proton::get(item, entry);
      const auto description = entry.find("rule-description");
      if (description == entry.end())
        return fail(errc::protocol_error, "enumerate-rules: entry without rule-description");
      proton::codec::decoder d(description->second);
      if (enter_described(d) != rule_description_code)
        return fail(errc::protocol_error, "enumerate-rules: not a rule description");
      // [filter, action, name, created-at]
      const auto fields = read_list(d);
      if (fields.size() < 3)
        return fail(errc::protocol_error, "enumerate-rules: rule description lacks fields");
      rule_entry rule;
      const auto name = text_of(fields[2]);
      if (!name) return fail(errc::protocol_error, "enumerate-rules: rule without a name");
      rule.name = *name;
      read_filter(fields[0], rule);
      if (!fields[1].empty() && fields[1].type() != proton::NULL_TYPE) {
        proton::codec::decoder ad(fields[1]);
        if (enter_described(ad) != empty_rule_action_code) rule.beyond_subscription_filter = true;
      }
      out.push_back(std::move(rule));
    }
    return out;
  });
}

}  // namespace qrt::servicebus::detail
