// Values as text (value_text.hpp): scalars, ids, and Proton's notation for any other value.
#include "amqp/value_text.hpp"

#include <algorithm>
#include <sstream>

#include "amqp/message_codec.hpp"

namespace qrt::amqp::detail::codec {

namespace {

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

}  // namespace

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

namespace {

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

}  // namespace

bool render_text(std::span<const std::uint8_t> input, output_budget& budget, const value_view& v,
                 std::string& out, std::string& problem) {
  return text_renderer(input, budget, problem).render(v, out);
}

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

}  // namespace qrt::amqp::detail::codec
