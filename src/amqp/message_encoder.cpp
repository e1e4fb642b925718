// Encoding qrt's messages and Service Bus batches (message_codec.hpp). Sizes are computed first
// so every value gets its smallest constructor and the output grows once.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "amqp/codec_constants.hpp"
#include "amqp/message_codec.hpp"

namespace qrt::amqp::detail {

using namespace codec;

namespace {

std::int64_t to_epoch_ms(time_point t) {
  return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}

/// Encoded size of a str / sym / vbin of `n` bytes.
constexpr std::size_t variable_size(std::size_t n) {
  return (n <= 0xff ? 2 : 5) + n;
}

/// Encoded size of a list or map whose elements take `body` bytes.
constexpr std::size_t compound_size(std::size_t body, std::size_t count) {
  return (body + 1 <= 0xff && count <= 0xff) ? 3 + body : 9 + body;
}

constexpr std::size_t uint_size(std::uint32_t v) {
  return v == 0 ? 1 : v <= 0xff ? 2 : 5;
}

constexpr std::size_t timestamp_size = 9;
constexpr std::size_t section_descriptor_size = 3;

/// Writes an encoding into room reserved for it in one step, sized beforehand by the same plan
/// that decides each value's constructor: no growth checks and no call per byte. A write past
/// the room, or room left over, means the plan and the writes disagree, a bug reported as one
/// rather than bytes written out of bounds or a malformed message sent.
class writer {
 public:
  writer(std::string& out, std::size_t size) {
    const std::size_t start = out.size();
    out.resize(start + size);
    next_ = out.data() + start;
    end_ = out.data() + out.size();
  }

  void code(std::uint8_t c) {
    room(1);
    *next_++ = static_cast<char>(c);
  }
  void u32(std::uint32_t v) {
    room(4);
    next_[0] = static_cast<char>(v >> 24);
    next_[1] = static_cast<char>(v >> 16);
    next_[2] = static_cast<char>(v >> 8);
    next_[3] = static_cast<char>(v);
    next_ += 4;
  }
  void u64(std::uint64_t v) {
    u32(static_cast<std::uint32_t>(v >> 32));
    u32(static_cast<std::uint32_t>(v));
  }
  void bytes(std::string_view b) {
    room(b.size());
    if (!b.empty()) std::memcpy(next_, b.data(), b.size());
    next_ += b.size();
  }
  /// Call once everything is written.
  void finish() const {
    if (next_ != end_) plan_mismatch();
  }

 private:
  void room(std::size_t n) const {
    if (static_cast<std::size_t>(end_ - next_) < n) plan_mismatch();
  }
  [[noreturn]] static void plan_mismatch() {
    throw std::logic_error("amqp message encoder: the encoded size differs from its plan");
  }

  char* next_ = nullptr;
  char* end_ = nullptr;
};

void put_variable(writer& out, std::uint8_t code8, std::uint8_t code32, std::string_view bytes) {
  if (bytes.size() <= 0xff) {
    out.code(code8);
    out.code(static_cast<std::uint8_t>(bytes.size()));
  } else {
    out.code(code32);
    out.u32(static_cast<std::uint32_t>(bytes.size()));
  }
  out.bytes(bytes);
}

void put_string(writer& out, std::string_view s) {
  put_variable(out, str8_code, str32_code, s);
}
void put_symbol(writer& out, std::string_view s) {
  put_variable(out, sym8_code, sym32_code, s);
}
void put_binary(writer& out, std::string_view b) {
  put_variable(out, vbin8_code, vbin32_code, b);
}

void put_timestamp(writer& out, std::int64_t ms) {
  out.code(timestamp_code);
  out.u64(static_cast<std::uint64_t>(ms));
}

void put_uint(writer& out, std::uint32_t v) {
  if (v == 0) {
    out.code(uint0_code);
  } else if (v <= 0xff) {
    out.code(smalluint_code);
    out.code(static_cast<std::uint8_t>(v));
  } else {
    out.code(uint_code);
    out.u32(v);
  }
}

void put_compound(writer& out, std::uint8_t code8, std::uint8_t code32, std::size_t body,
                  std::size_t count) {
  if (body + 1 <= 0xff && count <= 0xff) {
    out.code(code8);
    out.code(static_cast<std::uint8_t>(body + 1));
    out.code(static_cast<std::uint8_t>(count));
  } else {
    out.code(code32);
    out.u32(static_cast<std::uint32_t>(body + 4));
    out.u32(static_cast<std::uint32_t>(count));
  }
}

void put_section(writer& out, section s) {
  out.code(described_code);
  out.code(smallulong_code);
  out.code(static_cast<std::uint8_t>(s));
}

/// The header's ttl in milliseconds, 0 for none. Proton writes no ttl for 0, and the field is
/// a uint: longer TTLs are capped rather than wrapped.
std::uint32_t ttl_ms(const message& m) {
  if (!m.time_to_live || m.time_to_live->count() <= 0) return 0;
  return static_cast<std::uint32_t>(
      std::min<std::int64_t>(m.time_to_live->count(), std::numeric_limits<std::uint32_t>::max()));
}

/// Message-annotations with the scheduled time and partition key, when either is set.
struct annotations_plan {
  std::optional<std::int64_t> scheduled_ms;
  std::string_view partition_key;
  std::size_t body = 0;
  std::size_t count = 0;

  annotations_plan(std::optional<time_point> scheduled, std::string_view key) : partition_key(key) {
    if (scheduled) {
      scheduled_ms = to_epoch_ms(*scheduled);
      body += variable_size(scheduled_enqueue_time_key.size()) + timestamp_size;
      count += 2;
    }
    if (!partition_key.empty()) {
      body += variable_size(partition_key_key.size()) + variable_size(partition_key.size());
      count += 2;
    }
  }
  std::size_t size() const {
    return count == 0 ? 0 : section_descriptor_size + compound_size(body, count);
  }
  void write(writer& out) const {
    if (count == 0) return;
    put_section(out, message_annotations_section);
    put_compound(out, map8_code, map32_code, body, count);
    if (scheduled_ms) {
      put_symbol(out, scheduled_enqueue_time_key);
      put_timestamp(out, *scheduled_ms);
    }
    if (!partition_key.empty()) {
      put_symbol(out, partition_key_key);
      put_string(out, partition_key);
    }
  }
};

std::size_t optional_text_size(std::string_view s) {
  return s.empty() ? 1 : variable_size(s.size());
}

}  // namespace

void encode_message(const message& m, const encode_extras& extras, std::string& out) {
  const std::uint32_t ttl = ttl_ms(m);
  const std::int64_t created = to_epoch_ms(extras.creation_time.value_or(clock::now()));
  const std::string_view group = m.session ? std::string_view(m.session->str()) : "";

  // header: durable = true, then (priority = null, ttl) when a TTL is set.
  const std::size_t header_body = ttl == 0 ? 1 : 2 + uint_size(ttl);
  const std::size_t header_count = ttl == 0 ? 1 : 3;

  const annotations_plan annotations(extras.scheduled_enqueue_time, extras.partition_key);

  // properties: message-id, user-id, to, subject, reply-to, correlation-id, content-type,
  // content-encoding, absolute-expiry-time, creation-time[, group-id]; the nulls after the last
  // set field are left out.
  std::size_t properties_body = optional_text_size(m.id) + 1 + 1 + optional_text_size(m.subject) +
                                1 + optional_text_size(m.correlation_id) +
                                optional_text_size(m.content_type) + 1 + 1 + timestamp_size;
  std::size_t properties_count = 10;
  if (!group.empty()) {
    properties_body += variable_size(group.size());
    properties_count = 11;
  }

  std::size_t application_body = 0;
  for (const auto& [key, value] : m.attributes) {
    application_body += variable_size(key.size()) + variable_size(value.size());
  }
  const std::size_t application_count = m.attributes.size() * 2;

  writer w(out,
           section_descriptor_size + compound_size(header_body, header_count) + annotations.size() +
               section_descriptor_size + compound_size(properties_body, properties_count) +
               (application_count == 0 ? 0
                                       : section_descriptor_size +
                                             compound_size(application_body, application_count)) +
               section_descriptor_size + variable_size(m.body.size()));

  put_section(w, header_section);
  put_compound(w, list8_code, list32_code, header_body, header_count);
  w.code(true_code);
  if (ttl != 0) {
    w.code(null_code);
    put_uint(w, ttl);
  }

  annotations.write(w);

  auto put_optional = [&](std::string_view s, void (*put)(writer&, std::string_view)) {
    if (s.empty()) {
      w.code(null_code);
    } else {
      put(w, s);
    }
  };
  put_section(w, properties_section);
  put_compound(w, list8_code, list32_code, properties_body, properties_count);
  put_optional(m.id, put_string);
  w.code(null_code);  // user-id
  w.code(null_code);  // to
  put_optional(m.subject, put_string);
  w.code(null_code);  // reply-to
  put_optional(m.correlation_id, put_string);
  put_optional(m.content_type, put_symbol);
  w.code(null_code);  // content-encoding
  w.code(null_code);  // absolute-expiry-time
  put_timestamp(w, created);
  if (!group.empty()) put_string(w, group);

  if (application_count != 0) {
    put_section(w, application_properties_section);
    put_compound(w, map8_code, map32_code, application_body, application_count);
    for (const auto& [key, value] : m.attributes) {
      put_string(w, key);
      put_string(w, value);
    }
  }

  put_section(w, data_section);
  put_binary(w, m.body);
  w.finish();
}

batch_envelope batch_envelope::of_first(const message& first, const encode_extras& extras) {
  return batch_envelope{first.id, first.session, extras.partition_key};
}

namespace {

struct envelope_properties_plan {
  std::string_view id;
  std::string_view group;
  std::size_t body = 0;
  std::size_t count = 0;

  explicit envelope_properties_plan(const batch_envelope& env)
      : id(env.message_id), group(env.session ? std::string_view(env.session->str()) : "") {
    if (!group.empty()) {
      count = 11;  // group-id is field 10
      body = optional_text_size(id) + 9 + variable_size(group.size());
    } else if (!id.empty()) {
      count = 1;
      body = variable_size(id.size());
    }
  }
  std::size_t size() const {
    return count == 0 ? 0 : section_descriptor_size + compound_size(body, count);
  }
  void write(writer& out) const {
    if (count == 0) return;
    put_section(out, properties_section);
    put_compound(out, list8_code, list32_code, body, count);
    if (id.empty()) {
      out.code(null_code);
    } else {
      put_string(out, id);
    }
    if (count == 11) {
      for (int i = 1; i < 10; ++i) out.code(null_code);
      put_string(out, group);
    }
  }
};

}  // namespace

std::size_t batch_envelope_size(const batch_envelope& env) {
  return annotations_plan(std::nullopt, env.partition_key).size() +
         envelope_properties_plan(env).size();
}

std::size_t batch_entry_size(std::size_t encoded_size) {
  return section_descriptor_size + variable_size(encoded_size);
}

void encode_batch(std::span<const std::string> encoded_messages, const batch_envelope& env,
                  std::string& out) {
  // Each plan once: it sizes the room and then writes into it.
  const annotations_plan annotations(std::nullopt, env.partition_key);
  const envelope_properties_plan properties(env);
  std::size_t total = annotations.size() + properties.size();
  for (const auto& m : encoded_messages) total += batch_entry_size(m.size());
  writer w(out, total);
  annotations.write(w);
  properties.write(w);
  for (const auto& m : encoded_messages) {
    put_section(w, data_section);
    put_binary(w, m);
  }
  w.finish();
}

}  // namespace qrt::amqp::detail
