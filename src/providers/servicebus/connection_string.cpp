#include "connection_string.hpp"

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <charconv>

namespace qrt::servicebus::detail {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

error bad(std::string msg) {
  return fail(errc::configuration_error, "connection string: " + std::move(msg));
}

result<void> parse_endpoint(std::string_view value, connection_string& cs, bool& explicit_port) {
  // Accept sb://, amqps:// and amqp:// (emulators); the scheme does not choose TLS: the
  // UseDevelopmentEmulator flag does, as in the official SDKs. Nothing of the value is echoed in
  // an error: a mistyped endpoint may hold a user and password, or a key pasted in the wrong
  // place.
  std::string_view rest = value;
  const auto scheme_end = rest.find("://");
  if (scheme_end == std::string_view::npos) return bad("Endpoint must look like sb://<namespace>/");
  const auto scheme = rest.substr(0, scheme_end);
  if (!iequals(scheme, "sb") && !iequals(scheme, "amqps") && !iequals(scheme, "amqp")) {
    return bad("Endpoint scheme must be sb://, amqps:// or amqp://");
  }
  rest.remove_prefix(scheme_end + 3);
  const auto host_end = rest.find('/');
  std::string_view authority = rest.substr(0, host_end);
  if (authority.find('@') != std::string_view::npos) {
    return bad(
        "Endpoint must not carry a user or password ('user:password@host'); give the key in "
        "SharedAccessKeyName/SharedAccessKey or SharedAccessSignature");
  }
  if (authority.empty()) return bad("Endpoint has no host");
  std::string_view host = authority;
  std::string_view port_text;
  if (authority.front() == '[') {  // an IPv6 literal: [::1] or [::1]:5672
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("Endpoint host has an unclosed '['");
    host = authority.substr(1, close - 1);
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("Endpoint has text after its IPv6 host");
      port_text = after.substr(1);
      explicit_port = true;
    }
    // The address parser reads a C string: a NUL inside the brackets would end it early and
    // let the bytes after it through as part of the host. Only an address's own characters
    // (hex digits, ':', '.', and '%' with a scope id's letters and digits) are taken.
    const bool address_chars = std::all_of(host.begin(), host.end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             c == ':' || c == '.' || c == '%';
    });
    boost::system::error_code ec;
    if (address_chars) boost::asio::ip::make_address_v6(std::string(host), ec);
    if (!address_chars || ec || host.empty()) {
      return bad("Endpoint host is not a valid IPv6 address");
    }
  } else {
    if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      host = authority.substr(0, colon);
      explicit_port = true;
    }
    if (host.empty()) return bad("Endpoint has no host");
    for (char c : host) {
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_')) {
        return bad("Endpoint host has characters other than letters, digits, '.', '-' and '_'");
      }
    }
  }
  if (explicit_port) {
    unsigned port = 0;
    auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc{} || p != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      return bad("Endpoint port is not a number in 1-65535");
    }
    cs.port = static_cast<std::uint16_t>(port);
  }
  cs.host = std::string(host);
  return {};
}

}  // namespace

bool is_loopback_host(std::string_view host) {
  if (iequals(host, "localhost")) return true;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(std::string(host), ec);
  return !ec && address.is_loopback();
}

std::string connection_string::endpoint_uri() const {
  const bool default_port = (use_tls && port == 5671) || (!use_tls && port == 5672);
  const bool ipv6 = host.find(':') != std::string::npos;
  return "sb://" + (ipv6 ? "[" + host + "]" : host) +
         (default_port ? "" : std::string(":") + std::to_string(port)) + "/";
}

std::string connection_string::audience(std::string_view entity) const {
  return endpoint_uri() + std::string(entity);
}

result<connection_string> parse_connection_string(std::string_view text, credentials needed) {
  connection_string cs;
  bool have_endpoint = false;
  bool have_port = false;
  std::optional<std::string> emulator_text;
  std::string_view rest = text;
  while (!rest.empty()) {
    const auto semi = rest.find(';');
    std::string_view part = trim(rest.substr(0, semi));
    rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
    if (part.empty()) continue;
    const auto eq = part.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      // The part may be a key or a signature typed in the wrong place: never echo it.
      return bad("a part without 'Name=value' (each part is Name=value, separated by ';')");
    }
    const auto name = trim(part.substr(0, eq));
    const auto value = trim(part.substr(eq + 1));  // values keep inner '=' (base64 keys)
    if (iequals(name, "Endpoint")) {
      if (auto r = parse_endpoint(value, cs, have_port); !r) return r.error();
      have_endpoint = true;
    } else if (iequals(name, "SharedAccessKeyName")) {
      cs.key_name = std::string(value);
    } else if (iequals(name, "SharedAccessKey")) {
      cs.key = std::string(value);
    } else if (iequals(name, "SharedAccessSignature")) {
      cs.shared_access_signature = std::string(value);
    } else if (iequals(name, "EntityPath")) {
      cs.entity_path = std::string(value);
    } else if (iequals(name, "UseDevelopmentEmulator")) {
      emulator_text = std::string(value);
    } else {
      return bad(std::string("unknown field '") + std::string(name) + "'");
    }
  }
  if (!have_endpoint) return bad("Endpoint is missing");
  if (emulator_text) {
    if (iequals(*emulator_text, "true"))
      cs.use_development_emulator = true;
    else if (!iequals(*emulator_text, "false"))
      return bad("UseDevelopmentEmulator must be true or false");
  }
  if (cs.use_development_emulator) {
    // The flag turns TLS off, which is only safe for an emulator on this machine.
    if (!is_loopback_host(cs.host)) {
      return bad(
          "UseDevelopmentEmulator=true turns TLS off and is accepted only for a local emulator "
          "(localhost, 127.0.0.0/8 or ::1); Endpoint host '" +
          cs.host + "' is not one");
    }
    cs.use_tls = false;
    if (!have_port) cs.port = 5672;
  }
  const bool has_key = !cs.key_name.empty() || !cs.key.empty();
  if (has_key && !cs.shared_access_signature.empty()) {
    return bad(
        "give either SharedAccessKeyName/SharedAccessKey or SharedAccessSignature, not both");
  }
  if (cs.shared_access_signature.empty()) {
    if (!has_key && needed == credentials::optional) return cs;
    if (cs.key_name.empty()) return bad("SharedAccessKeyName is missing");
    if (cs.key.empty()) return bad("SharedAccessKey is missing");
  } else if (cs.shared_access_signature.rfind("SharedAccessSignature ", 0) != 0) {
    return bad("SharedAccessSignature must start with 'SharedAccessSignature '");
  }
  return cs;
}

}  // namespace qrt::servicebus::detail
