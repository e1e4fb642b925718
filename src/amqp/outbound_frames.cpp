#include "amqp/outbound_frames.hpp"

#include <array>
#include <cstring>
#include <string_view>

namespace qrt::amqp::detail {

namespace {

constexpr std::uint8_t transfer_code = 0x14;  // the transfer performative's descriptor
constexpr std::size_t frame_header_size = 8;

std::uint32_t read_be32(std::string_view s, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<std::uint8_t>(s[at + i]);
  return v;
}

void append_be32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

std::uint8_t byte_at(std::string_view s, std::size_t at) {
  return static_cast<std::uint8_t>(s[at]);
}

/// Encoded size of the AMQP value starting at `at` (constructor included), or nullopt when it
/// runs past the end or the constructor is not one AMQP defines.
std::optional<std::size_t> value_size(std::string_view s, std::size_t at, int depth = 0) {
  if (at >= s.size() || depth > 8) return std::nullopt;
  const std::uint8_t code = byte_at(s, at);
  std::size_t n = 0;
  if (code == 0x00) {  // described: descriptor, then the value
    auto descriptor = value_size(s, at + 1, depth + 1);
    if (!descriptor) return std::nullopt;
    auto value = value_size(s, at + 1 + *descriptor, depth + 1);
    if (!value) return std::nullopt;
    return 1 + *descriptor + *value;
  }
  switch (code & 0xF0) {
    case 0x40:
      n = 1;
      break;
    case 0x50:
      n = 2;
      break;
    case 0x60:
      n = 3;
      break;
    case 0x70:
      n = 5;
      break;
    case 0x80:
      n = 9;
      break;
    case 0x90:
      n = 17;
      break;
    case 0xA0:
    case 0xC0:
    case 0xE0:
      if (at + 2 > s.size()) return std::nullopt;
      n = 2 + byte_at(s, at + 1);
      break;
    case 0xB0:
    case 0xD0:
    case 0xF0:
      if (at + 5 > s.size()) return std::nullopt;
      n = 5 + static_cast<std::size_t>(read_be32(s, at + 1));
      break;
    default:
      return std::nullopt;
  }
  if (at + n > s.size()) return std::nullopt;
  return n;
}

/// The transfer performative has 11 fields; room for a few a later AMQP version might append. A
/// list with more is left as it is (passed through).
constexpr std::size_t max_transfer_fields = 16;

/// The parts of a transfer frame this layer reads or rebuilds (views into the frame: parsing
/// allocates nothing, and every outgoing transfer is parsed).
struct transfer_frame {
  std::uint16_t channel = 0;
  std::string_view head;  ///< frame header's doff/type/channel + extended header + descriptor
  std::array<std::string_view, max_transfer_fields> fields{};
  std::size_t field_count = 0;
  std::string_view payload;  ///< the message bytes after the performative
};

std::optional<transfer_frame> parse_transfer(std::string_view f) {
  if (f.size() < frame_header_size || byte_at(f, 5) != 0) return std::nullopt;  // AMQP frames only
  const std::size_t body = std::size_t{byte_at(f, 4)} * 4;
  if (body < frame_header_size || body + 3 > f.size()) return std::nullopt;
  std::size_t at = body;
  if (byte_at(f, at) != 0x00) return std::nullopt;
  if (byte_at(f, at + 1) == 0x53 && byte_at(f, at + 2) == transfer_code) {
    at += 3;
  } else if (byte_at(f, at + 1) == 0x80 && body + 10 <= f.size() &&
             std::string_view(f.data() + at + 2, 7) == std::string_view("\0\0\0\0\0\0\0", 7) &&
             byte_at(f, at + 9) == transfer_code) {
    at += 10;
  } else {
    return std::nullopt;
  }
  transfer_frame t;
  t.channel = static_cast<std::uint16_t>((byte_at(f, 6) << 8) | byte_at(f, 7));
  t.head = f.substr(4, at - 4);
  if (at >= f.size()) return std::nullopt;
  std::size_t count = 0;
  std::size_t end = 0;
  switch (byte_at(f, at)) {
    case 0x45:
      end = at + 1;
      at = end;
      break;
    case 0xC0:
      if (at + 3 > f.size()) return std::nullopt;
      end = at + 2 + byte_at(f, at + 1);
      count = byte_at(f, at + 2);
      at += 3;
      break;
    case 0xD0:
      if (at + 9 > f.size()) return std::nullopt;
      end = at + 5 + read_be32(f, at + 1);
      count = read_be32(f, at + 5);
      at += 9;
      break;
    default:
      return std::nullopt;
  }
  if (end > f.size() || count > max_transfer_fields) return std::nullopt;
  for (std::size_t i = 0; i < count; ++i) {
    auto n = value_size(f, at);
    if (!n || at + *n > end) return std::nullopt;
    t.fields[t.field_count++] = f.substr(at, *n);
    at += *n;
  }
  if (at != end) return std::nullopt;
  t.payload = f.substr(end);
  return t;
}

std::optional<std::uint32_t> as_uint(std::string_view v) {
  if (v.empty()) return std::nullopt;
  switch (byte_at(v, 0)) {
    case 0x43:
      return 0;
    case 0x52:
      return v.size() == 2 ? std::optional<std::uint32_t>(byte_at(v, 1)) : std::nullopt;
    case 0x70:
      return v.size() == 5 ? std::optional<std::uint32_t>(read_be32(v, 1)) : std::nullopt;
    default:
      return std::nullopt;
  }
}

std::span<const std::uint8_t> as_binary(std::string_view v) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(v.data());
  if (v.size() >= 2 && byte_at(v, 0) == 0xA0) return {p + 2, v.size() - 2};
  if (v.size() >= 5 && byte_at(v, 0) == 0xB0) return {p + 5, v.size() - 5};
  return {};
}

bool as_bool(std::string_view v) {
  if (v.empty()) return false;
  if (byte_at(v, 0) == 0x41) return true;
  return byte_at(v, 0) == 0x56 && v.size() == 2 && byte_at(v, 1) != 0;
}

// The transfer performative's fields, by position (AMQP 1.0, 2.7.5).
constexpr std::size_t handle_field = 0;
constexpr std::size_t tag_field = 2;
constexpr std::size_t format_field = 3;
constexpr std::size_t more_field = 5;

std::string rebuild(const transfer_frame& t, std::uint32_t format) {
  std::string encoded_format;
  encoded_format.push_back(static_cast<char>(0x70));
  append_be32(encoded_format, format);
  auto fields = t.fields;
  static constexpr char null_value = 0x40;
  std::size_t count = t.field_count;
  while (count <= format_field) fields[count++] = std::string_view(&null_value, 1);
  fields[format_field] = encoded_format;
  std::size_t list_bytes = 4;  // the count
  for (std::size_t i = 0; i < count; ++i) list_bytes += fields[i].size();
  const std::size_t frame_size = 4 + t.head.size() + 5 + list_bytes + t.payload.size();
  std::string out;
  out.reserve(frame_size);
  append_be32(out, static_cast<std::uint32_t>(frame_size));
  out.append(t.head);
  out.push_back(static_cast<char>(0xD0));
  append_be32(out, static_cast<std::uint32_t>(list_bytes));
  append_be32(out, static_cast<std::uint32_t>(count));
  for (std::size_t i = 0; i < count; ++i) out.append(fields[i]);
  out.append(t.payload);
  return out;
}

}  // namespace

std::optional<std::string> with_message_format(std::string_view frame, std::uint32_t format) {
  if (frame.size() < frame_header_size || read_be32(frame, 0) != frame.size()) return std::nullopt;
  auto t = parse_transfer(frame);
  if (!t) return std::nullopt;
  return rebuild(*t, format);
}

void outbound_frames::frame(std::string_view f, std::string& out, bool formats_pending) {
  if (!formats_pending && continuing_.empty()) {
    out.append(f);  // no delivery can be one to re-encode, nor continue one
    return;
  }
  auto t = parse_transfer(f);
  if (!t || t->field_count <= handle_field) {
    out.append(f);
    return;
  }
  const auto handle = as_uint(t->fields[handle_field]);
  if (!handle) {
    out.append(f);
    return;
  }
  const auto key = std::make_pair(t->channel, *handle);
  std::optional<std::uint32_t> format;
  if (auto it = continuing_.find(key); it != continuing_.end()) {
    format = it->second;
  } else if (t->field_count > tag_field && lookup_) {
    auto tag = as_binary(t->fields[tag_field]);
    if (!tag.empty()) format = lookup_(tag);
  }
  if (!format) {
    out.append(f);
    return;
  }
  out.append(rebuild(*t, *format));
  const bool more = t->field_count > more_field && as_bool(t->fields[more_field]);
  if (more) {
    continuing_[key] = *format;
  } else {
    continuing_.erase(key);
  }
}

void outbound_frames::write(std::span<const char> bytes, std::string& out, bool formats_pending) {
  if (passthrough_) {
    out.append(bytes.data(), bytes.size());
    return;
  }
  std::string joined;
  std::string_view rest(bytes.data(), bytes.size());
  if (!partial_.empty()) {
    joined = std::move(partial_);
    partial_.clear();
    joined.append(bytes.data(), bytes.size());
    rest = joined;
  }
  while (rest.size() >= frame_header_size) {
    if (rest.substr(0, 4) == "AMQP") {  // a protocol header (AMQP, or SASL before it)
      out.append(rest.substr(0, frame_header_size));
      rest.remove_prefix(frame_header_size);
      continue;
    }
    const std::uint32_t size = read_be32(rest, 0);
    if (size < frame_header_size) {
      passthrough_ = true;
      out.append(rest);
      return;
    }
    if (rest.size() < size) break;
    frame(rest.substr(0, size), out, formats_pending);
    rest.remove_prefix(size);
  }
  partial_.assign(rest);
}

}  // namespace qrt::amqp::detail
