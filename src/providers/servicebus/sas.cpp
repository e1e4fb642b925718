#include "sas.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <charconv>

namespace qrt::servicebus::detail {

std::string url_encode(std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3);
  for (unsigned char c : text) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
                            c == '!' || c == '~' || c == '*' || c == '\'' || c == '(' || c == ')';
    if (unreserved) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0x0f]);
    }
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const auto n = (static_cast<unsigned char>(bytes[i]) << 16) |
                   (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                   static_cast<unsigned char>(bytes[i + 2]);
    out += {alphabet[(n >> 18) & 63], alphabet[(n >> 12) & 63], alphabet[(n >> 6) & 63],
            alphabet[n & 63]};
  }
  if (const auto left = bytes.size() - i; left > 0) {
    unsigned n = static_cast<unsigned char>(bytes[i]) << 16;
    if (left == 2) n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += left == 2 ? alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest.data(), &length);
  return std::string(reinterpret_cast<const char*>(digest.data()), length);
}

std::string make_sas_token(std::string_view resource_uri, std::string_view key_name,
                           std::string_view key, std::chrono::system_clock::time_point expiry) {
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(expiry.time_since_epoch()).count();
  const std::string encoded_resource = url_encode(resource_uri);
  const std::string se = std::to_string(seconds);
  const std::string signature = base64_encode(hmac_sha256(key, encoded_resource + "\n" + se));
  return "SharedAccessSignature sr=" + encoded_resource + "&sig=" + url_encode(signature) +
         "&se=" + se + "&skn=" + url_encode(key_name);
}

std::chrono::system_clock::time_point sas_token_expiry(
    std::string_view token, std::chrono::system_clock::time_point fallback) {
  for (std::string_view marker : {"&se=", " se="}) {
    if (const auto at = token.find(marker); at != std::string_view::npos) {
      const auto digits = token.substr(at + marker.size());
      long long seconds = 0;
      auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), seconds);
      // Only an expiry the clock can hold: a larger (or negative) one would wrap around.
      constexpr auto latest = std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::system_clock::duration::max())
                                  .count();
      if (ec == std::errc{} && p != digits.data() && seconds >= 0 && seconds <= latest) {
        return std::chrono::system_clock::time_point{std::chrono::seconds{seconds}};
      }
    }
  }
  return fallback;
}

}  // namespace qrt::servicebus::detail
