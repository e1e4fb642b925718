// Reading AMQP 1.0 encoded values (part 1.6) for the message decoder and the value renderer
// (message_codec.hpp): a reader that never reads past its range, a view of one value, the
// type tests the section readers need, and the output budget every decoded byte is charged to.
// Inline in a header because they run for every field of every received message.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "amqp/codec_constants.hpp"
#include "amqp/message_codec.hpp"

namespace qrt::amqp::detail::codec {

/// Descriptors inside descriptors, and lists inside lists when a body is rendered as text, are
/// bounded so hostile input cannot exhaust the stack.
inline constexpr int max_nesting = 32;

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

inline std::uint16_t be16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(static_cast<unsigned>(p[0]) << 8 | p[1]);
}
inline std::uint32_t be32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
         static_cast<std::uint32_t>(p[2]) << 8 | p[3];
}
inline std::uint64_t be64(const std::uint8_t* p) {
  return static_cast<std::uint64_t>(be32(p)) << 32 | be32(p + 4);
}

inline std::string hex_byte(std::uint8_t b) {
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

inline std::string type_name(std::uint8_t code) {
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
inline constexpr std::array<constructor_layout, 256> layouts = make_layouts();

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

  /// Reads the next value as next() does; when it is a described value, the view of its inner
  /// value (what inside() and next() would read again) goes to `inner` as well.
  bool next_described(value_view& v, value_view& inner) {
    if (p_ == end_) return fail("truncated: a value was expected at offset " + pos());
    v = value_view{};
    v.offset = offset();
    const std::uint8_t code = *p_++;
    if (code != described_code) return parse(code, v, 0);
    v.code = code;
    return described(v, 0, &inner);
  }

  /// Moves past the next value when it is a null (one byte); false, moving nowhere, otherwise.
  /// Most fields of the sections a broker sends are null: skipped without a full read.
  bool skip_null() {
    if (p_ == end_ || *p_ != null_code) return false;
    ++p_;
    return true;
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

  bool described(value_view& v, int depth, value_view* inner_view = nullptr) {
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
    if (inner_view) *inner_view = in;
    return true;
  }

  const std::uint8_t* start_;
  const std::uint8_t* p_;
  const std::uint8_t* end_;
  std::size_t base_;
  std::string& problem_;
};

/// A reader over the elements of a list / map / described value read by `r`.
inline reader inside(const value_view& v, const std::uint8_t* input, std::string& problem) {
  return reader(v.data, v.size, static_cast<std::size_t>(v.data - input), problem);
}

/// The section's numeric descriptor; unknown_section for a symbolic one this version doesn't
/// know.
inline constexpr std::uint64_t unknown_section = ~std::uint64_t{0};
inline std::uint64_t section_code(const value_view& v) {
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

inline bool is_list(const value_view& v) {
  return v.code == list0_code || v.code == list8_code || v.code == list32_code;
}
inline bool is_map(const value_view& v) {
  return v.code == map8_code || v.code == map32_code;
}
inline bool is_text(const value_view& v) {
  return v.code == str8_code || v.code == str32_code || v.code == sym8_code || v.code == sym32_code;
}
inline bool is_binary(const value_view& v) {
  return v.code == vbin8_code || v.code == vbin32_code;
}

inline std::optional<std::uint32_t> as_uint(const value_view& v) {
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

inline std::optional<std::uint64_t> as_ulong(const value_view& v) {
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

inline std::optional<std::int64_t> as_long(const value_view& v) {
  switch (v.code) {
    case smalllong_code:
      return static_cast<std::int8_t>(v.data[0]);
    case long_code:
      return static_cast<std::int64_t>(be64(v.data));
    default:
      return std::nullopt;
  }
}

}  // namespace qrt::amqp::detail::codec
