// libFuzzer target for the configuration readers (src/core/config.cpp): a YAML file, key=value
// flags (one per line) and QRT_* environment entries (one per line), and the typed reads every
// provider makes of the fields. Properties:
// - a refusal is a configuration_error that says why;
// - the configuration read is bounded by the input: a YAML file's flattened fields are at most
//   16 times its size (plus 4 KiB), so anchors and aliases cannot multiply it; flags and
//   environment entries give at most one field each;
// - a secret field's value never shows: neither in to_string() nor in a typed read's error (the
//   fields are read again with every secret value marked, and no output may hold the marker);
// - key=value flags printed by to_string() read back the same (secrets aside); environment
//   entries printed back as QRT_ names read back the same; a duration printed back in
//   milliseconds reads the same.
#include <chrono>
#include <qrt/config.hpp>
#include <string>
#include <vector>

#include "core/name_checks.hpp"
#include "fuzz_check.hpp"

extern char** environ;

using qrt::config;
using qrt::errc;

namespace {

constexpr std::string_view marker = "CANARY7f3a9c";

std::vector<std::string> lines(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    const auto line = text.substr(0, nl);
    if (!line.empty()) out.emplace_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

std::size_t bytes_of(const config& c) {
  std::size_t n = 0;
  for (const auto& [k, v] : c.values()) n += k.size() + v.size();
  return n;
}

// Every typed read of every field: errors name the field; a secret's value is never shown.
void check_reads(const config& c) {
  config marked;
  for (const auto& [k, v] : c.values()) {
    marked.set(k, config::is_secret_key(k) ? std::string(marker) + v : v);
  }
  for (const auto& field : marked.values()) {
    const std::string& k = field.first;
    const bool secret = config::is_secret_key(k) && k.find(marker) == std::string::npos;
    auto check = [&](const qrt::error& e) {
      qrt::fuzz::check_refusal(e, errc::configuration_error);
      // Keys are untrusted too: an error shows one as it shows a refused name (printable, cut).
      QRT_FUZZ_CHECK(e.message.find(qrt::detail::printable_name(k)) != std::string::npos,
                     "an error names the field");
      QRT_FUZZ_CHECK(!secret || e.message.find(marker) == std::string::npos,
                     "an error never shows a secret's value");
    };
    if (auto r = marked.get_uint(k, 0); !r) check(r.error());
    if (auto r = marked.get_double(k, 0); !r) check(r.error());
    if (auto r = marked.get_bool(k, false); !r) check(r.error());
    if (auto r = marked.get_duration(k, {}); !r) check(r.error());
  }
  // The marker may show through a field that is not secret (its name or value), never otherwise.
  bool shown_elsewhere = false;
  for (const auto& [k, v] : marked.values()) {
    shown_elsewhere |= !config::is_secret_key(k) &&
                       (k.find(marker) != std::string::npos || v.find(marker) != std::string::npos);
    shown_elsewhere |= k.find(marker) != std::string::npos;
  }
  QRT_FUZZ_CHECK(shown_elsewhere || marked.to_string().find(marker) == std::string::npos,
                 "to_string() never shows a secret's value");
}

void check_yaml(std::string_view text) {
  auto c = config::from_yaml(text);
  if (!c) {
    qrt::fuzz::check_refusal(c.error(), errc::configuration_error);
    return;
  }
  QRT_FUZZ_CHECK(bytes_of(*c) <= 16 * text.size() + 4096,
                 "a YAML file flattens to at most 16 times its size plus 4 KiB");
  check_reads(*c);
}

void check_flags(const std::vector<std::string>& pairs) {
  auto c = config::from_pairs(pairs);
  if (!c) {
    qrt::fuzz::check_refusal(c.error(), errc::configuration_error);
    return;
  }
  QRT_FUZZ_CHECK(c->values().size() <= pairs.size(), "at most one field per flag");
  check_reads(*c);
  auto again = config::from_pairs(lines(c->to_string()));
  QRT_FUZZ_CHECK(again.has_value(), "what to_string() prints reads as flags");
  for (const auto& [k, v] : c->values()) {
    QRT_FUZZ_CHECK(again->get(k) == config::printable_value(k, v),
                   "flags printed by to_string() read back the same");
  }
}

// config::from_environment reads `environ`: the target points it at the entries for the call.
qrt::result<config> from_entries(const std::vector<std::string>& entries) {
  std::vector<char*> block;
  for (const auto& e : entries) block.push_back(const_cast<char*>(e.c_str()));
  block.push_back(nullptr);
  char** const saved = environ;
  environ = block.data();
  auto c = config::from_environment("QRT_");
  environ = saved;
  return c;
}

void check_environment(const std::vector<std::string>& entries) {
  const auto read = from_entries(entries);
  if (!read) {
    // Two variables for one key: refused naming the variables, never showing their values.
    QRT_FUZZ_CHECK(read.error().code == errc::configuration_error,
                   "a refused environment is a configuration error");
    return;
  }
  const auto& c = *read;
  QRT_FUZZ_CHECK(c.values().size() <= entries.size(), "at most one field per variable");
  std::vector<std::string> printed;
  for (const auto& [k, v] : c.values()) {
    QRT_FUZZ_CHECK(!k.empty(), "a field has a name");
    if (k.find("_.") != std::string::npos || k.find("._") != std::string::npos) continue;
    std::string name = "QRT_";
    for (const char ch : k) {
      if (ch == '.')
        name += "__";
      else
        name += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    }
    printed.push_back(name + "=" + v);
  }
  const auto again = from_entries(printed);
  QRT_FUZZ_CHECK(again.has_value(), "environment entries printed back are one per key");
  for (const auto& [k, v] : c.values()) {
    if (k.find("_.") != std::string::npos || k.find("._") != std::string::npos) continue;
    QRT_FUZZ_CHECK(again->get(k) == v, "environment entries printed back read the same");
  }
  check_reads(c);
}

void check_duration(std::string_view text) {
  const auto d = qrt::parse_duration(text);
  if (!d) return;
  QRT_FUZZ_CHECK(d->count() >= 0, "a duration is never negative");
  QRT_FUZZ_CHECK(qrt::parse_duration(std::to_string(d->count()) + "ms") == d,
                 "a duration printed back in milliseconds reads the same");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = qrt::fuzz::as_text(data, size);
  check_yaml(text);
  const auto each = lines(text);
  check_flags(each);
  check_environment(each);
  for (const auto& line : each) check_duration(line);
  check_duration(text);
  return 0;
}
