// Service Bus connection strings: "Endpoint=sb://NS.servicebus.windows.net/;SharedAccessKeyName=..;
// SharedAccessKey=..;EntityPath=..;UseDevelopmentEmulator=true". Pure parsing, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <qrt/error.hpp>
#include <string>
#include <string_view>

namespace qrt::servicebus::detail {

struct connection_string {
  std::string host;                     ///< "ns.servicebus.windows.net" or "127.0.0.1"
  std::uint16_t port = 5671;            ///< 5671 (amqps) unless given, or 5672 for the emulator
  bool use_tls = true;                  ///< false only with UseDevelopmentEmulator=true
  std::string key_name;                 ///< SharedAccessKeyName
  std::string key;                      ///< SharedAccessKey (secret)
  std::string shared_access_signature;  ///< a ready-made token (secret), instead of key name/key
  std::string entity_path;              ///< EntityPath, empty when absent
  bool use_development_emulator = false;

  /// "sb://host:port/" without a path: the base of every token audience.
  std::string endpoint_uri() const;
  /// "sb://host[:port]/entity": the audience (and SAS resource) for one entity.
  std::string audience(std::string_view entity) const;
};

/// Whether the connection string must carry SAS credentials (it need not when tokens come from a
/// managed identity or a token hook).
enum class credentials { required, optional };

/// localhost, an IPv4 address in 127.0.0.0/8 or the IPv6 loopback (::1).
bool is_loopback_host(std::string_view host);

/// Fails with errc::configuration_error naming the offending field. The key and signature values
/// never appear in an error message, and neither does the Endpoint's text (it may carry a user
/// and password). UseDevelopmentEmulator=true (TLS off) is accepted only for a loopback host.
result<connection_string> parse_connection_string(std::string_view text,
                                                  credentials needed = credentials::required);

}  // namespace qrt::servicebus::detail
