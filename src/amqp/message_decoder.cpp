// Decoding received messages and Service Bus batches (message_codec.hpp): the sections of a
// payload walked once (for_each_section, shared by decode_message and split_batch), each known
// section read into the message by its reader, every byte produced charged to the message's
// output budget.
#include <limits>
#include <string_view>

#include "amqp/message_codec.hpp"
#include "amqp/value_reader.hpp"
#include "amqp/value_text.hpp"
#include "core/name_checks.hpp"

namespace qrt::amqp::detail {

using namespace codec;

namespace {

/// Calls `field(i, f)` for each non-null field of a section's list, in order; false when the
/// list is malformed or `field` says so.
template <class Field>
bool for_each_field(const value_view& list, const std::uint8_t* input, std::string& problem,
                    Field&& field) {
  reader fields = inside(list, input, problem);
  for (std::uint32_t i = 0; i < list.count; ++i) {
    if (fields.skip_null()) continue;
    value_view f;
    if (!fields.next(f)) return false;
    if (!f.is_null() && !field(i, f)) return false;
  }
  return true;
}

/// Calls `entry(k, v)` for each key and value of a section's map, in order; false when the map
/// is malformed or `entry` says so.
template <class Entry>
bool for_each_entry(const value_view& map, const std::uint8_t* input, std::string& problem,
                    Entry&& entry) {
  reader entries = inside(map, input, problem);
  for (std::uint32_t i = 0; i < map.count; i += 2) {
    value_view k, v;
    if (!entries.next(k) || !entries.next(v)) return false;
    if (!entry(k, v)) return false;
  }
  return true;
}

bool read_header(const value_view& list, received_message& m, const std::uint8_t* input,
                 std::string& problem) {
  return for_each_field(list, input, problem, [&](std::uint32_t i, const value_view& f) {
    if (i == 2) {  // ttl
      const auto ttl = as_uint(f);
      if (!ttl) {
        problem = "header.ttl is a " + type_name(f.code) + " (uint expected)";
        return false;
      }
      if (*ttl > 0) m.time_to_live = milliseconds(*ttl);
    } else if (i == 4) {  // delivery-count
      const auto count = as_uint(f);
      if (!count) {
        problem = "header.delivery-count is a " + type_name(f.code) + " (uint expected)";
        return false;
      }
      m.delivery_count = *count + 1;
    }
    return true;
  });
}

bool read_properties(const value_view& list, received_message& m, const std::uint8_t* input,
                     output_budget& budget, std::string& problem) {
  const bool read = for_each_field(list, input, problem, [&](std::uint32_t i, const value_view& f) {
    switch (i) {
      case 0:
        if (!id_text(f, m.id, "message-id", problem)) return false;
        break;
      case 3:
        if (!text_field(f, m.subject, "properties.subject", problem)) return false;
        break;
      case 5:
        if (!id_text(f, m.correlation_id, "correlation-id", problem)) return false;
        break;
      case 6:
        if (!text_field(f, m.content_type, "properties.content-type", problem)) return false;
        break;
      case 9: {  // creation-time: the enqueue time until the broker annotates one
        if (f.code != timestamp_code) {
          problem = "properties.creation-time is a " + type_name(f.code) + " (timestamp expected)";
          return false;
        }
        const auto ms = static_cast<std::int64_t>(be64(f.data));
        if (ms > 0) m.enqueued_time = time_from_epoch_ms(ms);
        break;
      }
      case 10: {
        std::string group;
        if (!text_field(f, group, "properties.group-id", problem)) return false;
        if (group.empty()) break;
        // A group id qrt cannot name as a session is kept visible as an attribute.
        if (auto s = session_id::parse(group)) {
          m.session = *s;
        } else {
          m.attributes["amqp.group-id"] = std::move(group);
        }
        break;
      }
      default:
        break;  // user-id, to, reply-to, content-encoding, expiry, group-sequence, ...
    }
    return true;
  });
  if (!read) return false;
  const auto group = m.attributes.find("amqp.group-id");
  return budget.spend(m.id.size() + m.correlation_id.size() + m.subject.size() +
                          m.content_type.size() +
                          (group == m.attributes.end() ? 0 : group->second.size()),
                      problem);
}

bool read_application_properties(const value_view& map, received_message& m,
                                 const std::uint8_t* input, output_budget& budget,
                                 std::string& problem) {
  std::string value;
  return for_each_entry(map, input, problem, [&](const value_view& k, const value_view& v) {
    if (!is_text(k)) {
      problem = "an application-properties key at offset " + std::to_string(k.offset) + " is a " +
                type_name(k.code) + " (string expected)";
      return false;
    }
    if (!scalar_text(v, value)) {
      problem = "application property '" + peer_text(k.bytes()) + "' is a " + type_name(v.code) +
                " (only simple types are allowed)";
      return false;
    }
    if (!budget.spend(k.size + value.size(), problem)) return false;
    m.attributes[std::string(k.bytes())] = value;
    return true;
  });
}

bool read_annotations(const value_view& map, broker_annotations& out, const std::uint8_t* input,
                      output_budget& budget, std::string& problem) {
  return for_each_entry(map, input, problem, [&](const value_view& k, const value_view& v) {
    // Keys are symbols (ulong keys are reserved); values of an unexpected type are not ours.
    if (k.code != sym8_code && k.code != sym32_code) return true;
    const std::string_view key = k.bytes();
    if (key == "x-opt-sequence-number") {
      if (auto n = as_long(v)) out.sequence_number = *n;
    } else if (v.code == timestamp_code && key == "x-opt-enqueued-time") {
      out.enqueued_time = time_from_epoch_ms(static_cast<std::int64_t>(be64(v.data)));
    } else if (v.code == timestamp_code && key == "x-opt-locked-until") {
      out.locked_until = time_from_epoch_ms(static_cast<std::int64_t>(be64(v.data)));
    } else if (v.code == timestamp_code && key == scheduled_enqueue_time_key) {
      out.scheduled_enqueue_time = time_from_epoch_ms(static_cast<std::int64_t>(be64(v.data)));
    } else if (is_text(v) && key == "x-opt-deadletter-source") {
      if (!budget.spend(v.size, problem)) return false;
      out.deadletter_source = std::string(v.bytes());
    } else if (is_text(v) && key == partition_key_key) {
      if (!budget.spend(v.size, problem)) return false;
      out.partition_key = std::string(v.bytes());
    }
    return true;
  });
}

error malformed(const std::string& problem) {
  return fail(errc::protocol_error, "malformed AMQP message: " + problem, "amqp:decode-error");
}

/// A well-formed message refused because decoding it would spend more than its output budget.
error too_large_when_decoded(const std::string& problem) {
  return fail(errc::protocol_error, "AMQP message refused: " + problem, "amqp:decode-error");
}

/// One message section: its value's view, its numeric code, and where it starts.
struct section_view {
  std::uint64_t code = unknown_section;
  std::size_t offset = 0;
  value_view content;  ///< the section's value (list, map, binary, any)
};

/// Walks the sections of a payload: each must be a described value; its content is read only
/// for the sections `wanted` asks for (split_batch skips everything but data). Calls
/// `section(s)` for those; false, with the reason in `problem`, when the payload is malformed or
/// `section` says so.
template <class Wanted, class Section>
bool for_each_section(std::span<const std::uint8_t> payload, std::string& problem, Wanted&& wanted,
                      Section&& section) {
  reader sections(payload.data(), payload.size(), 0, problem);
  while (!sections.at_end()) {
    value_view s;
    value_view content;  // read with the section: not read a second time
    if (!sections.next_described(s, content)) return false;
    if (s.code != described_code) {
      problem = "a " + type_name(s.code) + " at offset " + std::to_string(s.offset) +
                " where a message section was expected";
      return false;
    }
    section_view view{section_code(s), s.offset, content};
    if (!wanted(view.code)) continue;
    if (!section(view)) return false;
  }
  return true;
}

/// Says, in `problem`, that the section holds a value of the wrong type.
bool expect(bool ok, const section_view& s, std::string_view name, std::string_view type,
            std::string& problem) {
  if (!ok) {
    problem = std::string(name) + " section at offset " + std::to_string(s.offset) + " holds a " +
              type_name(s.content.code) + " (" + std::string(type) + " expected)";
  }
  return ok;
}

}  // namespace

std::string peer_text(std::string_view text) {
  return qrt::detail::peer_text(text, max_peer_text);
}

time_point time_from_epoch_ms(std::int64_t ms) {
  using rep = clock::duration::rep;
  constexpr auto per_ms = std::chrono::duration_cast<clock::duration>(milliseconds(1)).count();
  if (ms > std::numeric_limits<rep>::max() / per_ms) return time_point::max();
  if (ms < std::numeric_limits<rep>::min() / per_ms) return time_point::min();
  return time_point(std::chrono::duration_cast<clock::duration>(milliseconds(ms)));
}

result<decoded_message> decode_message(std::span<const std::uint8_t> bytes) {
  decoded_message out;
  if (auto read = decode_message_into(bytes, out); !read) return read.error();
  return out;
}

result<void> decode_message_into(std::span<const std::uint8_t> bytes, decoded_message& out) {
  received_message& m = out.message;
  m.delivery_count = 1;  // no header: never delivered before
  std::string problem;
  output_budget budget(bytes.size());
  // Refusals name the problem; one over the output budget says so rather than "malformed".
  const auto malformed = [&budget](const std::string& why) {
    return budget.exceeded() ? too_large_when_decoded(why) : detail::malformed(why);
  };
  const std::uint8_t* input = bytes.data();
  enum class body_kind { none, data, value, sequence } body = body_kind::none;
  // A second body section must be of the first one's kind (several data, or several sequences).
  const auto follows = [&](body_kind kind, const section_view& s, std::string_view name) {
    if (body == body_kind::none || (body == kind && kind != body_kind::value)) {
      body = kind;
      return true;
    }
    problem = std::string(name.front() == 'a' ? "an " : "a ") + std::string(name) +
              " section at offset " + std::to_string(s.offset) +
              (kind == body_kind::value ? " follows another body section"
                                        : " follows another kind of body");
    return false;
  };

  if (bytes.empty()) return malformed("empty payload (no sections)");
  const auto any_section = [](std::uint64_t) { return true; };
  const bool read = for_each_section(bytes, problem, any_section, [&](const section_view& s) {
    const value_view& v = s.content;
    switch (s.code) {
      case header_section:
        return expect(is_list(v), s, "header", "list", problem) &&
               read_header(v, m, input, problem);
      case message_annotations_section:
        return expect(is_map(v), s, "message-annotations", "map", problem) &&
               read_annotations(v, out.annotations, input, budget, problem);
      case properties_section:
        return expect(is_list(v), s, "properties", "list", problem) &&
               read_properties(v, m, input, budget, problem);
      case application_properties_section:
        return expect(is_map(v), s, "application-properties", "map", problem) &&
               read_application_properties(v, m, input, budget, problem);
      case data_section:
        if (!expect(is_binary(v), s, "data", "binary", problem) ||
            !follows(body_kind::data, s, "data") || !budget.spend(v.size, problem)) {
          return false;
        }
        m.body.append(v.bytes());
        return true;
      case amqp_value_section:
        if (!follows(body_kind::value, s, "amqp-value")) return false;
        if (is_text(v) || is_binary(v)) {
          if (!budget.spend(v.size, problem)) return false;
          m.body.assign(v.bytes());
          return true;
        }
        return v.is_null() || render_text(bytes, budget, v, m.body, problem);
      case amqp_sequence_section:
        return expect(is_list(v), s, "amqp-sequence", "list", problem) &&
               follows(body_kind::sequence, s, "amqp-sequence") &&
               render_text(bytes, budget, v, m.body, problem);
      default:
        return true;  // delivery-annotations, footer, and sections this version doesn't know
    }
  });
  if (!read) return malformed(problem);
  return {};
}

result<std::vector<std::span<const std::uint8_t>>> split_batch(
    std::span<const std::uint8_t> payload) {
  std::vector<std::span<const std::uint8_t>> out;
  std::string problem;
  const auto data_only = [](std::uint64_t code) { return code == data_section; };
  const bool read = for_each_section(payload, problem, data_only, [&](const section_view& s) {
    if (!expect(is_binary(s.content), s, "data", "binary", problem)) return false;
    out.emplace_back(s.content.data, s.content.size);
    return true;
  });
  if (!read) return malformed(problem);
  return out;
}

}  // namespace qrt::amqp::detail
