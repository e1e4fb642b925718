#include <algorithm>
#include <qrt/trace_context.hpp>
#include <random>

#include "core/random_id.hpp"

namespace qrt::tracing {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // W3C Trace Context allows lowercase only
}

template <std::size_t N>
bool parse_hex(std::string_view text, std::array<std::uint8_t, N>& out) {
  if (text.size() != 2 * N) return false;
  for (std::size_t i = 0; i < N; ++i) {
    const int hi = hex_value(text[2 * i]);
    const int lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return true;
}

void append_hex(std::string& out, const std::uint8_t* bytes, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[bytes[i] >> 4];
    out += digits[bytes[i] & 0xF];
  }
}

template <std::size_t N>
bool all_zero(const std::array<std::uint8_t, N>& a) {
  return std::all_of(a.begin(), a.end(), [](std::uint8_t b) { return b == 0; });
}

template <std::size_t N>
void fill_random(std::array<std::uint8_t, N>& out) {
  do {
    qrt::detail::random_bytes(out);
  } while (all_zero(out));
}

}  // namespace

std::optional<trace_context> trace_context::parse(std::string_view text) {
  // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55 characters.
  if (text.size() < 55) return std::nullopt;
  std::array<std::uint8_t, 1> version{};
  if (!parse_hex(text.substr(0, 2), version) || version[0] == 0xFF) return std::nullopt;
  if (version[0] == 0 && text.size() != 55) return std::nullopt;
  if (version[0] != 0 && text.size() > 55 && text[55] != '-') return std::nullopt;
  if (text[2] != '-' || text[35] != '-' || text[52] != '-') return std::nullopt;
  trace_context ctx;
  std::array<std::uint8_t, 1> flags{};
  if (!parse_hex(text.substr(3, 32), ctx.trace_id) ||
      !parse_hex(text.substr(36, 16), ctx.parent_id) || !parse_hex(text.substr(53, 2), flags)) {
    return std::nullopt;
  }
  if (all_zero(ctx.trace_id) || all_zero(ctx.parent_id)) return std::nullopt;
  ctx.flags = flags[0];
  return ctx;
}

std::string trace_context::to_traceparent() const {
  std::string out = "00-";
  out.reserve(55);
  append_hex(out, trace_id.data(), trace_id.size());
  out += '-';
  append_hex(out, parent_id.data(), parent_id.size());
  out += '-';
  append_hex(out, &flags, 1);
  return out;
}

trace_context trace_context::generate(bool sampled) {
  trace_context ctx;
  fill_random(ctx.trace_id);
  fill_random(ctx.parent_id);
  ctx.flags = sampled ? 1 : 0;
  return ctx;
}

trace_context trace_context::child() const {
  trace_context ctx = *this;
  fill_random(ctx.parent_id);
  return ctx;
}

void inject(message& msg, const trace_context& ctx) {
  msg.attributes[std::string(traceparent_attribute)] = ctx.to_traceparent();
}

std::optional<trace_context> extract(const message& msg) {
  auto it = msg.attributes.find(std::string(traceparent_attribute));
  if (it == msg.attributes.end()) return std::nullopt;
  return trace_context::parse(it->second);
}

}  // namespace qrt::tracing
