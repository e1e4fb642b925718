#include "random_id.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <random>

namespace qrt::detail {

namespace {

constexpr char hex_digits[] = "0123456789abcdef";

std::mt19937_64& generator() {
  // A single random_device word would leave only 2^32 possible sequences across every process
  // making ids; eight words seed the whole state space that matters here.
  thread_local std::mt19937_64 rng = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device(),
                       device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  return rng;
}

}  // namespace

std::uint64_t random_u64() {
  return generator()();
}

void random_bytes(std::span<std::uint8_t> out) {
  for (std::size_t i = 0; i < out.size(); i += 8) {
    std::uint64_t v = random_u64();
    for (std::size_t j = i; j < std::min(out.size(), i + 8); ++j, v >>= 8) {
      out[j] = static_cast<std::uint8_t>(v);
    }
  }
}

std::string random_hex_id() {
  // Written in place, the same digits as hex of random_bytes' 16 bytes (each word's low byte
  // first): one per message sent without an id, where 32 push_backs were a visible share of a
  // send.
  static constexpr auto pairs = [] {  // byte -> its two digits
    std::array<std::array<char, 2>, 256> t{};
    for (std::size_t b = 0; b < t.size(); ++b) t[b] = {hex_digits[b >> 4], hex_digits[b & 0x0f]};
    return t;
  }();
  std::string out(32, '\0');
  char* p = out.data();
  for (int word = 0; word < 2; ++word) {
    std::uint64_t v = random_u64();
    for (int i = 0; i < 8; ++i, v >>= 8, p += 2) {
      std::memcpy(p, pairs[static_cast<std::uint8_t>(v)].data(), 2);
    }
  }
  return out;
}

std::array<std::uint8_t, 16> random_uuid_bytes() {
  std::array<std::uint8_t, 16> b{};
  random_bytes(b);
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3f) | 0x80);  // RFC variant
  return b;
}

std::string random_uuid() {
  const auto b = random_uuid_bytes();
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(hex_digits[b[i] >> 4]);
    out.push_back(hex_digits[b[i] & 0x0f]);
  }
  return out;
}

}  // namespace qrt::detail
