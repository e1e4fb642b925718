// Shared Access Signature tokens for Service Bus claims-based security. Pure functions.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace qrt::servicebus::detail {

/// Percent-encodes like JavaScript's encodeURIComponent (what the official SDKs put in `sr`):
/// everything but A-Z a-z 0-9 - _ . ! ~ * ' ( ) becomes %XX (upper-case hex).
std::string url_encode(std::string_view text);

/// Standard base64 with padding.
std::string base64_encode(std::string_view bytes);

/// HMAC-SHA256 of `data` keyed with the bytes of `key` (the key string as given, not decoded).
std::string hmac_sha256(std::string_view key, std::string_view data);

/// "SharedAccessSignature sr=<enc(resource)>&sig=<enc(base64(hmac(key, enc(resource)+"\n"+se)))>
/// &se=<expiry seconds>&skn=<key name>". `expiry` is truncated to whole seconds.
std::string make_sas_token(std::string_view resource_uri, std::string_view key_name,
                           std::string_view key, std::chrono::system_clock::time_point expiry);

/// The expiry (`se`) of a SAS token, or `fallback` when it has none.
std::chrono::system_clock::time_point sas_token_expiry(
    std::string_view token, std::chrono::system_clock::time_point fallback);

}  // namespace qrt::servicebus::detail
