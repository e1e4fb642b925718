#include "digest.hpp"

#include <openssl/evp.h>

#include <initializer_list>
#include <stdexcept>
#include <string>

namespace qrt::sqs::detail {

namespace {

// OpenSSL 3 looks an algorithm up (locks, a hash table) on every one-shot call given EVP_sha256()
// or EVP_md5(), which cost more than hashing a 256-byte body. Fetched once here, and digested
// through one context per thread, a digest costs the hashing and little else.
const EVP_MD* fetched(const char* name) {
  EVP_MD* md = EVP_MD_fetch(nullptr, name, nullptr);
  if (md == nullptr) throw std::runtime_error(std::string("OpenSSL has no ") + name);
  return md;  // kept for the process's life
}

const EVP_MD* sha256_algorithm() {
  static const EVP_MD* md = fetched("SHA256");
  return md;
}

const EVP_MD* md5_algorithm() {
  static const EVP_MD* md = fetched("MD5");
  return md;
}

EVP_MD_CTX* thread_context() {
  struct context {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~context() { EVP_MD_CTX_free(ctx); }
  };
  thread_local context c;
  if (c.ctx == nullptr) throw std::runtime_error("EVP_MD_CTX_new failed");
  return c.ctx;
}

// The digest of the concatenated `parts`.
template <std::size_t N>
std::array<unsigned char, N> digest(const EVP_MD* md,
                                    std::initializer_list<std::string_view> parts) {
  EVP_MD_CTX* ctx = thread_context();
  std::array<unsigned char, N> out{};
  unsigned int len = 0;
  bool ok = EVP_DigestInit_ex2(ctx, md, nullptr) == 1;
  for (auto part : parts) ok = ok && EVP_DigestUpdate(ctx, part.data(), part.size()) == 1;
  ok = ok && EVP_DigestFinal_ex(ctx, out.data(), &len) == 1 && len == N;
  if (!ok) throw std::runtime_error(std::string("digest ") + EVP_MD_get0_name(md) + " failed");
  return out;
}

}  // namespace

std::array<unsigned char, 32> sha256(std::string_view data) {
  return digest<32>(sha256_algorithm(), {data});
}

// HMAC-SHA256 (RFC 2104) over the fetched SHA-256: H((K ^ opad) || H((K ^ ipad) || data)).
std::array<unsigned char, 32> hmac_sha256(std::string_view key, std::string_view data) {
  constexpr std::size_t block = 64;
  std::array<unsigned char, block> inner_pad{}, outer_pad{};
  std::array<unsigned char, 32> hashed_key{};
  if (key.size() > block) {
    hashed_key = sha256(key);
    key = std::string_view(reinterpret_cast<const char*>(hashed_key.data()), hashed_key.size());
  }
  for (std::size_t i = 0; i < block; ++i) {
    const auto k = i < key.size() ? static_cast<unsigned char>(key[i]) : 0;
    inner_pad[i] = static_cast<unsigned char>(k ^ 0x36);
    outer_pad[i] = static_cast<unsigned char>(k ^ 0x5c);
  }
  auto view = [](const auto& bytes) {
    return std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  };
  const auto inner = digest<32>(sha256_algorithm(), {view(inner_pad), data});
  return digest<32>(sha256_algorithm(), {view(outer_pad), view(inner)});
}

std::array<unsigned char, 16> md5(std::string_view data) {
  return digest<16>(md5_algorithm(), {data});
}

std::string hex(const unsigned char* data, std::size_t size) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(size * 2, '\0');
  for (std::size_t i = 0; i < size; ++i) {
    out[2 * i] = digits[data[i] >> 4];
    out[2 * i + 1] = digits[data[i] & 0xf];
  }
  return out;
}

namespace {
constexpr std::string_view alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const auto n = (std::uint32_t(static_cast<unsigned char>(bytes[i])) << 16) |
                   (std::uint32_t(static_cast<unsigned char>(bytes[i + 1])) << 8) |
                   std::uint32_t(static_cast<unsigned char>(bytes[i + 2]));
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    out += alphabet[n & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t n = std::uint32_t(static_cast<unsigned char>(bytes[i])) << 16;
    if (rest == 2) n |= std::uint32_t(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += rest == 2 ? alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    int v[4];
    int padding = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + k];
      if (c == '=') {
        // Padding only in the last group, only in its last two places, and only at the end.
        if (i + 4 != text.size() || k < 2) return std::nullopt;
        v[k] = 0;
        ++padding;
      } else {
        if (padding > 0) return std::nullopt;
        v[k] = base64_value(c);
        if (v[k] < 0) return std::nullopt;
      }
    }
    const std::uint32_t n = (std::uint32_t(v[0]) << 18) | (std::uint32_t(v[1]) << 12) |
                            (std::uint32_t(v[2]) << 6) | std::uint32_t(v[3]);
    out += static_cast<char>((n >> 16) & 0xff);
    if (padding < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (padding < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

}  // namespace qrt::sqs::detail
