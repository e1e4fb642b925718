// libFuzzer target for Service Bus connection strings (a flag, a file or an environment variable
// a user pastes) and the expiry read out of a ready-made SAS token. Properties:
// - a refusal is a configuration_error that says why;
// - what a connection string parses to is made of its bytes: no field longer than the input;
// - printed back as Name=value parts it parses to the same connection string (both with
//   credentials required and optional);
// - the values of SharedAccessKey and SharedAccessSignature never appear in an error: the input
//   is parsed again with those values replaced by a marker that no error may contain;
// - a SAS token's expiry is the fallback or a time after 1970, never a wrapped one.
#include <chrono>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "providers/servicebus/connection_string.hpp"
#include "providers/servicebus/sas.hpp"

using namespace qrt::servicebus::detail;
using qrt::errc;

namespace {

constexpr std::string_view marker = "CANARY7f3a9c";

std::string print(const connection_string& cs) {
  // An IPv6 host is kept without its brackets; an Endpoint needs them back.
  const bool ipv6 = cs.host.find(':') != std::string::npos;
  std::string out = "Endpoint=sb://" + (ipv6 ? "[" + cs.host + "]" : cs.host) + ":" +
                    std::to_string(cs.port) + "/;";
  if (!cs.key_name.empty()) out += "SharedAccessKeyName=" + cs.key_name + ";";
  if (!cs.key.empty()) out += "SharedAccessKey=" + cs.key + ";";
  if (!cs.shared_access_signature.empty()) {
    out += "SharedAccessSignature=" + cs.shared_access_signature + ";";
  }
  if (!cs.entity_path.empty()) out += "EntityPath=" + cs.entity_path + ";";
  if (cs.use_development_emulator) out += "UseDevelopmentEmulator=true";
  return out;
}

bool same(const connection_string& a, const connection_string& b) {
  return a.host == b.host && a.port == b.port && a.use_tls == b.use_tls &&
         a.key_name == b.key_name && a.key == b.key &&
         a.shared_access_signature == b.shared_access_signature && a.entity_path == b.entity_path &&
         a.use_development_emulator == b.use_development_emulator;
}

bool is_name(std::string_view part, std::string_view name) {
  const auto eq = part.find('=');
  if (eq == std::string_view::npos) return false;
  auto n = part.substr(0, eq);
  while (!n.empty() && (n.front() == ' ' || (n.front() >= '\t' && n.front() <= '\r')))
    n.remove_prefix(1);
  while (!n.empty() && (n.back() == ' ' || (n.back() >= '\t' && n.back() <= '\r')))
    n.remove_suffix(1);
  if (n.size() != name.size()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(n[i])) !=
        std::tolower(static_cast<unsigned char>(name[i])))
      return false;
  }
  return true;
}

// The input with every secret value replaced by the marker (a signature keeps its required
// prefix so the parser reads on).
std::string with_marked_secrets(std::string_view text) {
  std::string out;
  while (true) {
    const auto semi = text.find(';');
    const auto part = text.substr(0, semi);
    if (is_name(part, "SharedAccessKey")) {
      out += "SharedAccessKey=" + std::string(marker);
    } else if (is_name(part, "SharedAccessSignature")) {
      out += "SharedAccessSignature=SharedAccessSignature sr=x&sig=" + std::string(marker) +
             "&se=1&skn=k";
    } else {
      out += part;
    }
    if (semi == std::string_view::npos) break;
    out += ';';
    text.remove_prefix(semi + 1);
  }
  return out;
}

void check(std::string_view text, credentials needed) {
  auto cs = parse_connection_string(text, needed);
  if (!cs) {
    qrt::fuzz::check_refusal(cs.error(), errc::configuration_error);
  } else {
    for (const std::string* field :
         {&cs->host, &cs->key_name, &cs->key, &cs->shared_access_signature, &cs->entity_path}) {
      QRT_FUZZ_CHECK(field->size() <= text.size(), "every field is made of the input's bytes");
    }
    QRT_FUZZ_CHECK(!cs->host.empty() && cs->port != 0, "a parsed endpoint has a host and port");
    const std::string printed = print(*cs);
    auto again = parse_connection_string(printed, needed);
    QRT_FUZZ_CHECK(again && same(*again, *cs), "printed back, it parses to the same fields");
  }

  if (text.find(marker) != std::string_view::npos) return;  // echoing other fields is fine
  auto marked = parse_connection_string(with_marked_secrets(text), needed);
  if (!marked) {
    QRT_FUZZ_CHECK(marked.error().message.find(marker) == std::string::npos,
                   "no error echoes a key or a signature");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = qrt::fuzz::as_text(data, size);
  check(text, credentials::required);
  check(text, credentials::optional);

  using std::chrono::system_clock;
  const auto fallback = system_clock::time_point{} + std::chrono::hours(500'000);
  const auto expiry = sas_token_expiry(text, fallback);
  QRT_FUZZ_CHECK(expiry == fallback || expiry >= system_clock::time_point{},
                 "a SAS token's expiry is the fallback or a time after 1970 (none wrapped)");
  return 0;
}
