// Hashes the SQS provider needs (SigV4's SHA-256 and HMAC, SQS's MD5 checksums, base64), as
// pure functions over bytes. OpenSSL does the arithmetic; nothing here touches I/O.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "core/random_id.hpp"

namespace qrt::sqs::detail {

std::array<unsigned char, 32> sha256(std::string_view data);
std::array<unsigned char, 32> hmac_sha256(std::string_view key, std::string_view data);
std::array<unsigned char, 16> md5(std::string_view data);

std::string hex(const unsigned char* data, std::size_t size);
template <std::size_t N>
std::string hex(const std::array<unsigned char, N>& digest) {
  return hex(digest.data(), N);
}

std::string base64_encode(std::string_view bytes);
/// nullopt when `text` is not valid (padded, standard alphabet) base64.
std::optional<std::string> base64_decode(std::string_view text);

/// A random version-4 UUID (dedup ids, receive attempt ids, batch entry ids).
using qrt::detail::random_uuid;

}  // namespace qrt::sqs::detail
