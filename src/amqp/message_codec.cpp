#include "amqp/message_codec.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <sstream>
#include <string_view>

namespace qrt::amqp::detail {

namespace {

// ---------------------------------------------------------------------------------------------
// Type constructors (AMQP 1.0 part 1.6) and section descriptors (part 3.2).

enum code : std::uint8_t {
  described_code = 0x00,
  null_code = 0x40,
  true_code = 0x41,
  false_code = 0x42,
  uint0_code = 0x43,
  ulong0_code = 0x44,
  list0_code = 0x45,
  ubyte_code = 0x50,
  byte_code = 0x51,
  smalluint_code = 0x52,
  smallulong_code = 0x53,
  smallint_code = 0x54,
  smalllong_code = 0x55,
  boolean_code = 0x56,
  ushort_code = 0x60,
  short_code = 0x61,
  uint_code = 0x70,
  int_code = 0x71,
  float_code = 0x72,
  char_code = 0x73,
  decimal32_code = 0x74,
  ulong_code = 0x80,
  long_code = 0x81,
  double_code = 0x82,
  timestamp_code = 0x83,
  decimal64_code = 0x84,
  decimal128_code = 0x94,
  uuid_code = 0x98,
  vbin8_code = 0xa0,
  str8_code = 0xa1,
  sym8_code = 0xa3,
  vbin32_code = 0xb0,
  str32_code = 0xb1,
  sym32_code = 0xb3,
  list8_code = 0xc0,
  map8_code = 0xc1,
  list32_code = 0xd0,
  map32_code = 0xd1,
  array8_code = 0xe0,
  array32_code = 0xf0,
};

enum section : std::uint64_t {
  header_section = 0x70,
  delivery_annotations_section = 0x71,
  message_annotations_section = 0x72,
  properties_section = 0x73,
  application_properties_section = 0x74,
  data_section = 0x75,
  amqp_sequence_section = 0x76,
  amqp_value_section = 0x77,
  footer_section = 0x78,
};

constexpr std::string_view scheduled_enqueue_time_key = "x-opt-scheduled-enqueue-time";
constexpr std::string_view partition_key_key = "x-opt-partition-key";

// ---------------------------------------------------------------------------------------------
// Encoding. Sizes are computed first so every value gets its smallest constructor and the output
// grows once.

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

void put_u32(std::string& out, std::uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 4);
}

void put_u64(std::string& out, std::uint64_t v) {
  put_u32(out, static_cast<std::uint32_t>(v >> 32));
  put_u32(out, static_cast<std::uint32_t>(v));
}

void put_code(std::string& out, std::uint8_t c) {
  out.push_back(static_cast<char>(c));
}

void put_variable(std::string& out, std::uint8_t code8, std::uint8_t code32,
                  std::string_view bytes) {
  if (bytes.size() <= 0xff) {
    put_code(out, code8);
    put_code(out, static_cast<std::uint8_t>(bytes.size()));
  } else {
    put_code(out, code32);
    put_u32(out, static_cast<std::uint32_t>(bytes.size()));
  }
  out.append(bytes);
}

void put_string(std::string& out, std::string_view s) {
  put_variable(out, str8_code, str32_code, s);
}
void put_symbol(std::string& out, std::string_view s) {
  put_variable(out, sym8_code, sym32_code, s);
}
void put_binary(std::string& out, std::string_view b) {
  put_variable(out, vbin8_code, vbin32_code, b);
}

void put_timestamp(std::string& out, std::int64_t ms) {
  put_code(out, timestamp_code);
  put_u64(out, static_cast<std::uint64_t>(ms));
}

void put_uint(std::string& out, std::uint32_t v) {
  if (v == 0) {
    put_code(out, uint0_code);
  } else if (v <= 0xff) {
    put_code(out, smalluint_code);
    put_code(out, static_cast<std::uint8_t>(v));
  } else {
    put_code(out, uint_code);
    put_u32(out, v);
  }
}

void put_compound(std::string& out, std::uint8_t code8, std::uint8_t code32, std::size_t body,
                  std::size_t count) {
  if (body + 1 <= 0xff && count <= 0xff) {
    put_code(out, code8);
    put_code(out, static_cast<std::uint8_t>(body + 1));
    put_code(out, static_cast<std::uint8_t>(count));
  } else {
    put_code(out, code32);
    put_u32(out, static_cast<std::uint32_t>(body + 4));
    put_u32(out, static_cast<std::uint32_t>(count));
  }
}

void put_section(std::string& out, section s) {
  put_code(out, described_code);
  put_code(out, smallulong_code);
  put_code(out, static_cast<std::uint8_t>(s));
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
  void write(std::string& out) const {
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

  out.reserve(out.size() + section_descriptor_size + compound_size(header_body, header_count) +
              annotations.size() + section_descriptor_size +
              compound_size(properties_body, properties_count) +
              (application_count == 0
                   ? 0
                   : section_descriptor_size + compound_size(application_body, application_count)) +
              section_descriptor_size + variable_size(m.body.size()));

  put_section(out, header_section);
  put_compound(out, list8_code, list32_code, header_body, header_count);
  put_code(out, true_code);
  if (ttl != 0) {
    put_code(out, null_code);
    put_uint(out, ttl);
  }

  annotations.write(out);

  auto put_optional = [&](std::string_view s, void (*put)(std::string&, std::string_view)) {
    if (s.empty()) {
      put_code(out, null_code);
    } else {
      put(out, s);
    }
  };
  put_section(out, properties_section);
  put_compound(out, list8_code, list32_code, properties_body, properties_count);
  put_optional(m.id, put_string);
  put_code(out, null_code);  // user-id
  put_code(out, null_code);  // to
  put_optional(m.subject, put_string);
  put_code(out, null_code);  // reply-to
  put_optional(m.correlation_id, put_string);
  put_optional(m.content_type, put_symbol);
  put_code(out, null_code);  // content-encoding
  put_code(out, null_code);  // absolute-expiry-time
  put_timestamp(out, created);
  if (!group.empty()) put_string(out, group);

  if (application_count != 0) {
    put_section(out, application_properties_section);
    put_compound(out, map8_code, map32_code, application_body, application_count);
    for (const auto& [key, value] : m.attributes) {
      put_string(out, key);
      put_string(out, value);
    }
  }

  put_section(out, data_section);
  put_binary(out, m.body);
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
  void write(std::string& out) const {
    if (count == 0) return;
    put_section(out, properties_section);
    put_compound(out, list8_code, list32_code, body, count);
    if (id.empty()) {
      put_code(out, null_code);
    } else {
      put_string(out, id);
    }
    if (count == 11) {
      for (int i = 1; i < 10; ++i) put_code(out, null_code);
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
  std::size_t total = batch_envelope_size(env);
  for (const auto& m : encoded_messages) total += batch_entry_size(m.size());
  out.reserve(out.size() + total);
  annotations_plan(std::nullopt, env.partition_key).write(out);
  envelope_properties_plan(env).write(out);
  for (const auto& m : encoded_messages) {
    put_section(out, data_section);
    put_binary(out, m);
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding.

namespace {

/// Descriptors inside descriptors, and lists inside lists when a body is rendered as text, are
/// bounded so hostile input cannot exhaust the stack.
constexpr int max_nesting = 32;

/// What one message may still produce while it is decoded (decode_output_budget): every byte
/// written to the decoded message is charged here, so no input, however crafted, renders to more
/// than a small multiple of its own size.
class output_budget {
 public:
  explicit output_budget(std::size_t payload_size)
      : payload_size_(payload_size), limit_(decode_output_budget(payload_size)), left_(limit_) {}

  /// Charges `n` bytes; false, with the reason in `problem`, once the message has spent more
  /// than its budget.
  bool spend(std::size_t n, std::string& problem) {
    if (n <= left_) {
      left_ -= n;
      return true;
    }
    exceeded_ = true;
    left_ = 0;
    problem = "its decoded form would exceed " + std::to_string(limit_) + " bytes (" +
              std::to_string(decode_output_per_input_byte) + " x its " +
              std::to_string(payload_size_) + "-byte payload + " +
              std::to_string(decode_output_floor) + ")";
    return false;
  }

  /// True once a charge was refused: the message is over budget rather than malformed.
  bool exceeded() const { return exceeded_; }

 private:
  std::size_t payload_size_;
  std::size_t limit_;
  std::size_t left_;
  bool exceeded_ = false;
};

std::uint16_t be16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(static_cast<unsigned>(p[0]) << 8 | p[1]);
}
std::uint32_t be32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
         static_cast<std::uint32_t>(p[2]) << 8 | p[3];
}
std::uint64_t be64(const std::uint8_t* p) {
  return static_cast<std::uint64_t>(be32(p)) << 32 | be32(p + 4);
}

std::string hex_byte(std::uint8_t b) {
  static constexpr char digits[] = "0123456789abcdef";
  return {digits[b >> 4], digits[b & 0xF]};
}

/// One encoded value: its constructor and where its bytes are. For a described value, `data`
/// and `size` span the described (inner) value, constructor included.
struct value_view {
  std::uint8_t code = 0;
  std::size_t offset = 0;              ///< where the value starts in the whole input
  const std::uint8_t* data = nullptr;  ///< fixed-width bytes, str/sym/bin bytes, elements
  std::size_t size = 0;
  std::uint32_t count = 0;             ///< list / map / array elements
  std::uint64_t descriptor = 0;        ///< described values: the numeric descriptor, or
  std::string_view descriptor_symbol;  ///< the symbolic one

  bool is_null() const { return code == null_code; }
  std::string_view bytes() const { return {reinterpret_cast<const char*>(data), size}; }
};

std::string type_name(std::uint8_t code) {
  switch (code) {
    case described_code:
      return "described value";
    case null_code:
      return "null";
    case true_code:
    case false_code:
    case boolean_code:
      return "boolean";
    case ubyte_code:
      return "ubyte";
    case byte_code:
      return "byte";
    case ushort_code:
      return "ushort";
    case short_code:
      return "short";
    case uint0_code:
    case smalluint_code:
    case uint_code:
      return "uint";
    case ulong0_code:
    case smallulong_code:
    case ulong_code:
      return "ulong";
    case smallint_code:
    case int_code:
      return "int";
    case smalllong_code:
    case long_code:
      return "long";
    case float_code:
      return "float";
    case double_code:
      return "double";
    case char_code:
      return "char";
    case decimal32_code:
      return "decimal32";
    case decimal64_code:
      return "decimal64";
    case decimal128_code:
      return "decimal128";
    case timestamp_code:
      return "timestamp";
    case uuid_code:
      return "uuid";
    case vbin8_code:
    case vbin32_code:
      return "binary";
    case str8_code:
    case str32_code:
      return "string";
    case sym8_code:
    case sym32_code:
      return "symbol";
    case list0_code:
    case list8_code:
    case list32_code:
      return "list";
    case map8_code:
    case map32_code:
      return "map";
    case array8_code:
    case array32_code:
      return "array";
    default:
      return "constructor 0x" + hex_byte(code);
  }
}

/// How a constructor's value is laid out (part 1.6 groups constructors by their high nibble, but
/// unknown codes inside a group are refused rather than skipped by width).
enum class layout_kind : std::uint8_t { invalid, fixed, variable, compound, described };
struct constructor_layout {
  layout_kind kind = layout_kind::invalid;
  std::uint8_t width = 0;  ///< fixed: value bytes; variable / compound: size (and count) bytes
};

constexpr std::array<constructor_layout, 256> make_layouts() {
  std::array<constructor_layout, 256> t{};
  t[described_code] = {layout_kind::described, 0};
  for (const std::uint8_t c :
       {null_code, true_code, false_code, uint0_code, ulong0_code, list0_code}) {
    t[c] = {layout_kind::fixed, 0};
  }
  for (const std::uint8_t c : {ubyte_code, byte_code, smalluint_code, smallulong_code,
                               smallint_code, smalllong_code, boolean_code}) {
    t[c] = {layout_kind::fixed, 1};
  }
  for (const std::uint8_t c : {ushort_code, short_code}) t[c] = {layout_kind::fixed, 2};
  for (const std::uint8_t c : {uint_code, int_code, float_code, char_code, decimal32_code}) {
    t[c] = {layout_kind::fixed, 4};
  }
  for (const std::uint8_t c :
       {ulong_code, long_code, double_code, timestamp_code, decimal64_code}) {
    t[c] = {layout_kind::fixed, 8};
  }
  for (const std::uint8_t c : {decimal128_code, uuid_code}) t[c] = {layout_kind::fixed, 16};
  for (const std::uint8_t c : {vbin8_code, str8_code, sym8_code}) t[c] = {layout_kind::variable, 1};
  for (const std::uint8_t c : {vbin32_code, str32_code, sym32_code}) {
    t[c] = {layout_kind::variable, 4};
  }
  for (const std::uint8_t c : {list8_code, map8_code, array8_code}) {
    t[c] = {layout_kind::compound, 1};
  }
  for (const std::uint8_t c : {list32_code, map32_code, array32_code}) {
    t[c] = {layout_kind::compound, 4};
  }
  return t;
}
constexpr std::array<constructor_layout, 256> layouts = make_layouts();

/// Reads encoded values from a byte range without ever reading past it. A failure leaves the
/// reason in `problem`.
class reader {
 public:
  reader(const std::uint8_t* begin, std::size_t size, std::size_t base, std::string& problem)
      : start_(begin), p_(begin), end_(begin + size), base_(base), problem_(problem) {}

  bool at_end() const { return p_ == end_; }
  std::size_t offset() const { return base_ + static_cast<std::size_t>(p_ - start_); }

  /// Reads the next value (a described one with its descriptor) and moves past it.
  bool next(value_view& v, int depth = 0) {
    if (p_ == end_) return fail("truncated: a value was expected at offset " + pos());
    v = value_view{};
    v.offset = offset();
    const std::uint8_t code = *p_++;
    return parse(code, v, depth);
  }

  /// Reads the next element of an array, whose elements share the constructor `code`.
  bool next_element(std::uint8_t code, value_view& v) {
    v = value_view{};
    v.offset = offset();
    return parse(code, v, 0);
  }

  bool fail(std::string what) {
    problem_ = std::move(what);
    return false;
  }

 private:
  bool parse(std::uint8_t code, value_view& v, int depth) {
    v.code = code;
    const constructor_layout layout = layouts[code];
    switch (layout.kind) {
      case layout_kind::fixed:
        if (remaining() < layout.width) return truncated(v, layout.width);
        v.data = p_;
        v.size = layout.width;
        p_ += layout.width;
        return true;
      case layout_kind::variable:
        return sized(v, layout.width, 0);
      case layout_kind::compound:
        return sized(v, layout.width, layout.width);
      case layout_kind::described:
        if (depth > max_nesting) return fail("descriptors nested more than 32 deep");
        return described(v, depth);
      case layout_kind::invalid:
        break;
    }
    return unknown(v);
  }

  // The failure paths build their messages out of line, keeping the hot path's frame small.
  [[gnu::cold, gnu::noinline]] bool truncated(const value_view& v, std::size_t width) {
    return fail("truncated: a " + type_name(v.code) + " at offset " + std::to_string(v.offset) +
                " needs " + std::to_string(width) + " bytes, " + std::to_string(remaining()) +
                " left");
  }
  [[gnu::cold, gnu::noinline]] bool unknown(const value_view& v) {
    return fail("unknown type constructor 0x" + hex_byte(v.code) + " at offset " +
                std::to_string(v.offset));
  }

  std::size_t remaining() const { return static_cast<std::size_t>(end_ - p_); }
  std::string pos() const { return std::to_string(offset()); }

  /// str/sym/bin (count_width 0) or list/map/array: a size field, then (for compound types) a
  /// count, then the bytes.
  bool sized(value_view& v, std::size_t size_width, std::size_t count_width) {
    if (remaining() < size_width) return bad_size(v, size_problem::cut_off, 0);
    const std::size_t size = size_width == 1 ? *p_ : be32(p_);
    p_ += size_width;
    if (size > remaining()) return bad_size(v, size_problem::past_end, size);
    if (size < count_width) return bad_size(v, size_problem::no_room_for_count, size);
    v.data = p_ + count_width;
    v.size = size - count_width;
    if (count_width != 0) {
      v.count = count_width == 1 ? *p_ : be32(p_);
      const bool is_array = v.code == array8_code || v.code == array32_code;
      // Every list or map element takes at least its constructor byte.
      if (!is_array && v.count > v.size) return bad_size(v, size_problem::too_many_elements, 0);
      if ((v.code == map8_code || v.code == map32_code) && v.count % 2 != 0) {
        return bad_size(v, size_problem::odd_map, 0);
      }
      if (is_array && v.size == 0 && v.count != 0) {
        return bad_size(v, size_problem::no_element_constructor, 0);
      }
    }
    p_ += size;
    return true;
  }

  enum class size_problem {
    cut_off,
    past_end,
    no_room_for_count,
    too_many_elements,
    odd_map,
    no_element_constructor
  };
  [[gnu::cold, gnu::noinline]] bool bad_size(const value_view& v, size_problem problem,
                                             std::size_t size) {
    const std::string what = "a " + type_name(v.code) + " at offset " + std::to_string(v.offset);
    switch (problem) {
      case size_problem::cut_off:
        return fail("truncated: the size of " + what + " is cut off");
      case size_problem::past_end:
        return fail(what + " claims " + std::to_string(size) + " bytes, only " +
                    std::to_string(remaining()) + " left");
      case size_problem::no_room_for_count:
        return fail(what + " is too small (" + std::to_string(size) + " bytes) to hold its count");
      case size_problem::too_many_elements:
        return fail(what + " claims " + std::to_string(v.count) + " elements in " +
                    std::to_string(v.size) + " bytes");
      case size_problem::odd_map:
        return fail(what + " has an odd element count (" + std::to_string(v.count) + ")");
      case size_problem::no_element_constructor:
        return fail(what + " has elements but no element constructor");
    }
    return false;
  }

  bool described(value_view& v, int depth) {
    value_view d;
    if (!next(d, depth + 1)) return false;
    switch (d.code) {
      case ulong0_code:
        v.descriptor = 0;
        break;
      case smallulong_code:
        v.descriptor = d.data[0];
        break;
      case ulong_code:
        v.descriptor = be64(d.data);
        break;
      case sym8_code:
      case sym32_code:
        v.descriptor_symbol = d.bytes();
        break;
      default:
        return fail("a descriptor at offset " + std::to_string(d.offset) + " is a " +
                    type_name(d.code) + " (ulong or symbol expected)");
    }
    const std::uint8_t* inner = p_;
    value_view in;
    if (!next(in, depth + 1)) return false;
    v.data = inner;
    v.size = static_cast<std::size_t>(p_ - inner);
    return true;
  }

  const std::uint8_t* start_;
  const std::uint8_t* p_;
  const std::uint8_t* end_;
  std::size_t base_;
  std::string& problem_;
};

/// A reader over the elements of a list / map / described value read by `r`.
reader inside(const value_view& v, const std::uint8_t* input, std::string& problem) {
  return reader(v.data, v.size, static_cast<std::size_t>(v.data - input), problem);
}

/// The section's numeric descriptor; unknown_section for a symbolic one this version doesn't
/// know.
constexpr std::uint64_t unknown_section = ~std::uint64_t{0};
std::uint64_t section_code(const value_view& v) {
  if (v.descriptor_symbol.empty()) return v.descriptor;
  static constexpr std::array<std::pair<std::string_view, section>, 9> names{{
      {"amqp:header:list", header_section},
      {"amqp:delivery-annotations:map", delivery_annotations_section},
      {"amqp:message-annotations:map", message_annotations_section},
      {"amqp:properties:list", properties_section},
      {"amqp:application-properties:map", application_properties_section},
      {"amqp:data:binary", data_section},
      {"amqp:amqp-sequence:list", amqp_sequence_section},
      {"amqp:value:*", amqp_value_section},
      {"amqp:footer:map", footer_section},
  }};
  for (const auto& [name, code] : names) {
    if (v.descriptor_symbol == name) return code;
  }
  return unknown_section;
}

bool is_list(const value_view& v) {
  return v.code == list0_code || v.code == list8_code || v.code == list32_code;
}
bool is_map(const value_view& v) {
  return v.code == map8_code || v.code == map32_code;
}
bool is_text(const value_view& v) {
  return v.code == str8_code || v.code == str32_code || v.code == sym8_code || v.code == sym32_code;
}
bool is_binary(const value_view& v) {
  return v.code == vbin8_code || v.code == vbin32_code;
}

std::optional<std::uint32_t> as_uint(const value_view& v) {
  switch (v.code) {
    case uint0_code:
      return 0u;
    case smalluint_code:
      return v.data[0];
    case uint_code:
      return be32(v.data);
    default:
      return std::nullopt;
  }
}

std::optional<std::uint64_t> as_ulong(const value_view& v) {
  switch (v.code) {
    case ulong0_code:
      return 0u;
    case smallulong_code:
      return v.data[0];
    case ulong_code:
      return be64(v.data);
    default:
      return std::nullopt;
  }
}

std::optional<std::int64_t> as_long(const value_view& v) {
  switch (v.code) {
    case smalllong_code:
      return static_cast<std::int8_t>(v.data[0]);
    case long_code:
      return static_cast<std::int64_t>(be64(v.data));
    default:
      return std::nullopt;
  }
}

std::string uuid_text(const std::uint8_t* p) {
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out += hex_byte(p[i]);
  }
  return out;
}

template <class T>
std::string stream_text(T value) {
  std::ostringstream s;
  s << value;
  return s.str();
}

/// Decimals as Proton prints them: "decimal32(0x...)", the digits in the order Proton's C++
/// binding holds the bytes (reversed from the wire for decimal32/64, which Proton passes through
/// an integer; as on the wire for decimal128).
std::string decimal_text(const value_view& v) {
  std::string out = type_name(v.code) + "(0x";
  if (v.code == decimal128_code) {
    for (std::size_t i = 0; i < v.size; ++i) out += hex_byte(v.data[i]);
  } else {
    for (std::size_t i = v.size; i-- > 0;) out += hex_byte(v.data[i]);
  }
  return out + ")";
}

/// A scalar as from_proton renders a non-string application property (proton::to_string).
/// Strings and symbols are their text; binary its raw bytes. False for non-scalars.
bool scalar_text(const value_view& v, std::string& out) {
  switch (v.code) {
    case null_code:
      out = "null";
      return true;
    case true_code:
      out = "true";
      return true;
    case false_code:
      out = "false";
      return true;
    case boolean_code:
      out = v.data[0] != 0 ? "true" : "false";
      return true;
    case ubyte_code:
      out = std::to_string(v.data[0]);
      return true;
    case byte_code:
      out = std::to_string(static_cast<std::int8_t>(v.data[0]));
      return true;
    case ushort_code:
      out = std::to_string(be16(v.data));
      return true;
    case short_code:
      out = std::to_string(static_cast<std::int16_t>(be16(v.data)));
      return true;
    case uint0_code:
    case smalluint_code:
    case uint_code:
      out = std::to_string(*as_uint(v));
      return true;
    case ulong0_code:
    case smallulong_code:
    case ulong_code:
      out = std::to_string(*as_ulong(v));
      return true;
    case smallint_code:
      out = std::to_string(static_cast<std::int8_t>(v.data[0]));
      return true;
    case int_code:
      out = std::to_string(static_cast<std::int32_t>(be32(v.data)));
      return true;
    case smalllong_code:
    case long_code:
      out = std::to_string(*as_long(v));
      return true;
    case timestamp_code:
      out = std::to_string(static_cast<std::int64_t>(be64(v.data)));
      return true;
    case float_code: {
      float f;
      const std::uint32_t bits = be32(v.data);
      std::memcpy(&f, &bits, sizeof f);
      out = stream_text(f);
      return true;
    }
    case double_code: {
      double d;
      const std::uint64_t bits = be64(v.data);
      std::memcpy(&d, &bits, sizeof d);
      out = stream_text(d);
      return true;
    }
    case char_code:  // Proton prints a char's code point as a number
      out = std::to_string(static_cast<std::int32_t>(be32(v.data)));
      return true;
    case decimal32_code:
    case decimal64_code:
    case decimal128_code:
      out = decimal_text(v);
      return true;
    case uuid_code:
      out = uuid_text(v.data);
      return true;
    case str8_code:
    case str32_code:
    case sym8_code:
    case sym32_code:
    case vbin8_code:
    case vbin32_code:
      out.assign(v.bytes());
      return true;
    default:
      return false;
  }
}

/// Quoted text inside a rendered compound body, as Proton writes it: "text" and b"bytes", with
/// quotes, backslashes, apostrophes and anything unprintable as \xNN.
void quoted_text(std::string_view s, std::string& out) {
  out.push_back('"');
  for (const char c : s) {
    const auto b = static_cast<std::uint8_t>(c);
    if (b < 0x20 || b >= 0x7f || c == '"' || c == '\\' || c == '\'') {
      out += "\\x" + hex_byte(b);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

/// Proton's name for an array's element type ("@PN_INT[1, 2]").
std::string_view proton_type_name(std::uint8_t code) {
  switch (layouts[code].kind == layout_kind::invalid ? 0 : code) {
    case null_code:
      return "PN_NULL";
    case true_code:
    case false_code:
    case boolean_code:
      return "PN_BOOL";
    case ubyte_code:
      return "PN_UBYTE";
    case byte_code:
      return "PN_BYTE";
    case ushort_code:
      return "PN_USHORT";
    case short_code:
      return "PN_SHORT";
    case uint0_code:
    case smalluint_code:
    case uint_code:
      return "PN_UINT";
    case smallint_code:
    case int_code:
      return "PN_INT";
    case char_code:
      return "PN_CHAR";
    case ulong0_code:
    case smallulong_code:
    case ulong_code:
      return "PN_ULONG";
    case smalllong_code:
    case long_code:
      return "PN_LONG";
    case timestamp_code:
      return "PN_TIMESTAMP";
    case float_code:
      return "PN_FLOAT";
    case double_code:
      return "PN_DOUBLE";
    case decimal32_code:
      return "PN_DECIMAL32";
    case decimal64_code:
      return "PN_DECIMAL64";
    case decimal128_code:
      return "PN_DECIMAL128";
    case uuid_code:
      return "PN_UUID";
    case vbin8_code:
    case vbin32_code:
      return "PN_BINARY";
    case str8_code:
    case str32_code:
      return "PN_STRING";
    case sym8_code:
    case sym32_code:
      return "PN_SYMBOL";
    case list0_code:
    case list8_code:
    case list32_code:
      return "PN_LIST";
    case map8_code:
    case map32_code:
      return "PN_MAP";
    case array8_code:
    case array32_code:
      return "PN_ARRAY";
    default:
      return "PN_INVALID";
  }
}

/// A symbol as Proton writes it: bare when it is all letters, else quoted.
void symbol_text(std::string_view s, std::string& out) {
  out.push_back(':');
  const bool bare = std::all_of(
      s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); });
  if (bare) {
    out.append(s);
  } else {
    quoted_text(s, out);
  }
}

/// Renders any value as text: the body of a message whose amqp-value / amqp-sequence holds
/// something other than a string, symbol or binary (from_proton keeps Proton's rendering of it
/// so nothing is dropped). Follows Proton's rendering: [a, b], {k=v}, "text", b"bytes", :symbol,
/// @descriptor value, @PN_TYPE[array elements]. What it writes is charged to the message's output
/// budget as it goes: arrays of zero-width values (null, true, uint0) would otherwise render
/// to the square of the input.
class text_renderer {
 public:
  text_renderer(std::span<const std::uint8_t> input, output_budget& budget, std::string& problem)
      : input_(input), budget_(budget), problem_(problem) {}

  /// Renders `v` at the end of `out`, charging what it writes to the budget.
  bool render(const value_view& v, std::string& out) {
    charged_ = out.size();
    return value(v, out, 0) && charge(out);
  }

 private:
  bool value(const value_view& v, std::string& out, int depth) {
    if (depth > max_nesting) {
      problem_ = "values nested more than 32 deep at offset " + std::to_string(v.offset);
      return false;
    }
    switch (v.code) {
      case described_code: {
        out += "@";
        if (v.descriptor_symbol.empty()) {
          out += std::to_string(v.descriptor);
        } else {
          symbol_text(v.descriptor_symbol, out);
        }
        out += " ";
        reader inner = inside(v, input_.data(), problem_);
        return next(inner, out, depth + 1);
      }
      case str8_code:
      case str32_code:
        quoted_text(v.bytes(), out);
        return true;
      case vbin8_code:
      case vbin32_code:
        out += "b";
        quoted_text(v.bytes(), out);
        return true;
      case sym8_code:
      case sym32_code:
        symbol_text(v.bytes(), out);
        return true;
      case list0_code:
      case list8_code:
      case list32_code:
        return elements(v, out, depth, "[", "]");
      case map8_code:
      case map32_code:
        return elements(v, out, depth, "{", "}");
      case array8_code:
      case array32_code:
        return array(v, out, depth);
      default: {
        std::string text;
        if (!scalar_text(v, text)) {
          problem_ = "a " + type_name(v.code) + " at offset " + std::to_string(v.offset) +
                     " cannot be rendered as text";
          return false;
        }
        out += text;
        return true;
      }
    }
  }

  /// Charges what was written since the last charge. Called after every element, so a refused
  /// message overshoots its budget by at most one element's text.
  bool charge(const std::string& out) {
    const std::size_t written = out.size() - charged_;
    charged_ = out.size();
    return budget_.spend(written, problem_);
  }

  bool next(reader& r, std::string& out, int depth) {
    value_view v;
    return r.next(v) && value(v, out, depth);
  }

  bool elements(const value_view& v, std::string& out, int depth, std::string_view open,
                std::string_view close) {
    const bool pairs = open == "{";
    out += open;
    reader items = inside(v, input_.data(), problem_);
    for (std::uint32_t i = 0; i < v.count; ++i) {
      if (i != 0) out += pairs && i % 2 == 1 ? "=" : ", ";
      if (!next(items, out, depth + 1) || !charge(out)) return false;
    }
    out += close;
    return true;
  }

  bool array(const value_view& v, std::string& out, int depth) {
    if (v.size == 0) {  // no element constructor: nothing to name
      out += "[]";
      return true;
    }
    // Elements share the constructor at the front; only their bytes follow it.
    const std::uint8_t element_code = v.data[0];
    if (element_code == described_code) {
      problem_ = "an array of described values at offset " + std::to_string(v.offset) +
                 " cannot be rendered as text";
      return false;
    }
    out += "@";
    out += proton_type_name(element_code);
    out += "[";
    reader items(v.data + 1, v.size - 1, static_cast<std::size_t>(v.data + 1 - input_.data()),
                 problem_);
    for (std::uint32_t i = 0; i < v.count; ++i) {
      if (i != 0) out += ", ";
      value_view e;
      // Zero-width elements (null, true, uint0) take no input bytes, so only the budget bounds
      // what an array of them renders to.
      if (!items.next_element(element_code, e) || !value(e, out, depth + 1) || !charge(out)) {
        return false;
      }
    }
    out += "]";
    return true;
  }

  std::span<const std::uint8_t> input_;
  output_budget& budget_;
  std::string& problem_;
  std::size_t charged_ = 0;  ///< out.size() when the budget was last charged
};

/// An id as id_to_string renders it: text as it is, ulong in decimal, uuid canonical, binary as
/// lowercase hex; other scalars as Proton prints them.
bool id_text(const value_view& v, std::string& out, std::string_view field, std::string& problem) {
  switch (v.code) {
    case null_code:
      out.clear();
      return true;
    case vbin8_code:
    case vbin32_code:
      out.clear();
      out.reserve(v.size * 2);
      for (std::size_t i = 0; i < v.size; ++i) out += hex_byte(v.data[i]);
      return true;
    default:
      if (scalar_text(v, out)) return true;
      problem = "properties." + std::string(field) + " is a " + type_name(v.code) +
                " (string, ulong, uuid or binary expected)";
      return false;
  }
}

bool text_field(const value_view& v, std::string& out, std::string_view field,
                std::string& problem) {
  if (v.is_null()) return true;
  if (!is_text(v)) {
    problem = std::string(field) + " is a " + type_name(v.code) + " (string expected)";
    return false;
  }
  out.assign(v.bytes());
  return true;
}

bool read_header(const value_view& list, received_message& m, const std::uint8_t* input,
                 std::string& problem) {
  reader fields = inside(list, input, problem);
  for (std::uint32_t i = 0; i < list.count; ++i) {
    value_view f;
    if (!fields.next(f)) return false;
    if (f.is_null()) continue;
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
  }
  return true;
}

bool read_properties(const value_view& list, received_message& m, const std::uint8_t* input,
                     output_budget& budget, std::string& problem) {
  reader fields = inside(list, input, problem);
  for (std::uint32_t i = 0; i < list.count; ++i) {
    value_view f;
    if (!fields.next(f)) return false;
    if (f.is_null()) continue;
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
  }
  const auto group = m.attributes.find("amqp.group-id");
  return budget.spend(m.id.size() + m.correlation_id.size() + m.subject.size() +
                          m.content_type.size() +
                          (group == m.attributes.end() ? 0 : group->second.size()),
                      problem);
}

bool read_application_properties(const value_view& map, received_message& m,
                                 const std::uint8_t* input, output_budget& budget,
                                 std::string& problem) {
  reader entries = inside(map, input, problem);
  std::string value;
  for (std::uint32_t i = 0; i < map.count; i += 2) {
    value_view k, v;
    if (!entries.next(k) || !entries.next(v)) return false;
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
  }
  return true;
}

bool read_annotations(const value_view& map, broker_annotations& out, const std::uint8_t* input,
                      output_budget& budget, std::string& problem) {
  reader entries = inside(map, input, problem);
  for (std::uint32_t i = 0; i < map.count; i += 2) {
    value_view k, v;
    if (!entries.next(k) || !entries.next(v)) return false;
    // Keys are symbols (ulong keys are reserved); values of an unexpected type are not ours.
    if (k.code != sym8_code && k.code != sym32_code) continue;
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
  }
  return true;
}

error malformed(const std::string& problem) {
  return fail(errc::protocol_error, "malformed AMQP message: " + problem, "amqp:decode-error");
}

/// A well-formed message refused because decoding it would spend more than its output budget.
error too_large_when_decoded(const std::string& problem) {
  return fail(errc::protocol_error, "AMQP message refused: " + problem, "amqp:decode-error");
}

}  // namespace

std::string peer_text(std::string_view text) {
  const std::string_view shown = text.substr(0, max_peer_text);
  std::string out;
  out.reserve(shown.size());
  for (const char c : shown) {
    const auto b = static_cast<unsigned char>(c);
    out.push_back(b < 0x20 || b == 0x7f ? '?' : c);
  }
  if (text.size() > shown.size()) {
    out += "... (" + std::to_string(text.size() - shown.size()) + " more bytes)";
  }
  return out;
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
  received_message& m = out.message;
  m.delivery_count = 1;  // no header: never delivered before
  std::string problem;
  output_budget budget(bytes.size());
  // Refusals name the problem; one over the output budget says so rather than "malformed".
  const auto malformed = [&budget](const std::string& why) {
    return budget.exceeded() ? too_large_when_decoded(why) : detail::malformed(why);
  };
  const std::uint8_t* input = bytes.data();
  reader sections(bytes.data(), bytes.size(), 0, problem);
  enum class body_kind { none, data, value, sequence } body = body_kind::none;

  if (bytes.empty()) return malformed("empty payload (no sections)");
  while (!sections.at_end()) {
    value_view s;
    if (!sections.next(s)) return malformed(problem);
    if (s.code != described_code) {
      return malformed("a " + type_name(s.code) + " at offset " + std::to_string(s.offset) +
                       " where a message section was expected");
    }
    const std::uint64_t code = section_code(s);
    reader content = inside(s, input, problem);
    value_view v;
    if (!content.next(v)) return malformed(problem);
    auto expect = [&](bool ok, std::string_view name, std::string_view type) {
      if (!ok) {
        problem = std::string(name) + " section at offset " + std::to_string(s.offset) +
                  " holds a " + type_name(v.code) + " (" + std::string(type) + " expected)";
      }
      return ok;
    };
    switch (code) {
      case header_section:
        if (!expect(is_list(v), "header", "list") || !read_header(v, m, input, problem)) {
          return malformed(problem);
        }
        break;
      case message_annotations_section:
        if (!expect(is_map(v), "message-annotations", "map") ||
            !read_annotations(v, out.annotations, input, budget, problem)) {
          return malformed(problem);
        }
        break;
      case properties_section:
        if (!expect(is_list(v), "properties", "list") ||
            !read_properties(v, m, input, budget, problem)) {
          return malformed(problem);
        }
        break;
      case application_properties_section:
        if (!expect(is_map(v), "application-properties", "map") ||
            !read_application_properties(v, m, input, budget, problem)) {
          return malformed(problem);
        }
        break;
      case data_section:
        if (!expect(is_binary(v), "data", "binary")) return malformed(problem);
        if (body != body_kind::none && body != body_kind::data) {
          return malformed("a data section at offset " + std::to_string(s.offset) +
                           " follows another kind of body");
        }
        body = body_kind::data;
        if (!budget.spend(v.size, problem)) return malformed(problem);
        m.body.append(v.bytes());
        break;
      case amqp_value_section:
        if (body != body_kind::none) {
          return malformed("an amqp-value section at offset " + std::to_string(s.offset) +
                           " follows another body section");
        }
        body = body_kind::value;
        if (is_text(v) || is_binary(v)) {
          if (!budget.spend(v.size, problem)) return malformed(problem);
          m.body.assign(v.bytes());
        } else if (!v.is_null() && !text_renderer(bytes, budget, problem).render(v, m.body)) {
          return malformed(problem);
        }
        break;
      case amqp_sequence_section:
        if (!expect(is_list(v), "amqp-sequence", "list")) return malformed(problem);
        if (body != body_kind::none && body != body_kind::sequence) {
          return malformed("an amqp-sequence section at offset " + std::to_string(s.offset) +
                           " follows another kind of body");
        }
        body = body_kind::sequence;
        if (!text_renderer(bytes, budget, problem).render(v, m.body)) return malformed(problem);
        break;
      default:
        break;  // delivery-annotations, footer, and sections this version doesn't know
    }
  }
  return out;
}

result<std::vector<std::span<const std::uint8_t>>> split_batch(
    std::span<const std::uint8_t> payload) {
  std::vector<std::span<const std::uint8_t>> out;
  std::string problem;
  reader sections(payload.data(), payload.size(), 0, problem);
  while (!sections.at_end()) {
    value_view s;
    if (!sections.next(s)) return malformed(problem);
    if (s.code != described_code) {
      return malformed("a " + type_name(s.code) + " at offset " + std::to_string(s.offset) +
                       " where a message section was expected");
    }
    if (section_code(s) != data_section) continue;
    reader content = inside(s, payload.data(), problem);
    value_view v;
    if (!content.next(v)) return malformed(problem);
    if (!is_binary(v)) {
      return malformed("data section at offset " + std::to_string(s.offset) + " holds a " +
                       type_name(v.code) + " (binary expected)");
    }
    out.emplace_back(v.data, v.size);
  }
  return out;
}

}  // namespace qrt::amqp::detail
