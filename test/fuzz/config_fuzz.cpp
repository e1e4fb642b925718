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
//   milliseconds reads the same;
// - a YAML file (the input written to a temporary file) reads as the same text does, and its
//   refusals are the same, naming the file;
// - merging the sources the way the CLI does (environment, then file, then flags) keeps each key's
//   value from the last source that sets it, and where it came from; it adds no key, gives the
//   same result every time, and merging the last source again changes nothing;
// - reject_unknown accepts a configuration whose keys are all known, and otherwise refuses with a
//   configuration_error naming a key of the input that is not known, except for keys that came
//   from the environment, which it ignores;
// - check_processing_keys accepts exactly the configurations whose processing keys read in their
//   documented ranges, and a refusal names the key that does not; check_runtime_keys the same
//   for worker_threads and thread_stack_size.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <qrt/config.hpp>
#include <set>
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

// The file the YAML reader reads: one per process, written again for each input.
const std::string& yaml_file_path() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    std::string pattern = std::string(dir && *dir ? dir : "/tmp") + "/qrt-config-fuzz-XXXXXX";
    const int fd = ::mkstemp(pattern.data());
    QRT_FUZZ_CHECK(fd >= 0, "the target can make its temporary file");
    ::close(fd);
    return pattern;
  }();
  static const bool removed_at_exit = [] {
    return std::atexit([] { std::remove(yaml_file_path().c_str()); }) == 0;
  }();
  (void)removed_at_exit;
  return path;
}

void check_yaml_file(std::string_view text) {
  const std::string& path = yaml_file_path();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  QRT_FUZZ_CHECK(f != nullptr, "the target can write its temporary file");
  QRT_FUZZ_CHECK(std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fclose(f) == 0,
                 "the target can write its temporary file");
  const auto from_file = config::from_yaml_file(path);
  const auto from_text = config::from_yaml(text);
  if (from_text) {
    QRT_FUZZ_CHECK(from_file.has_value() && from_file->values() == from_text->values(),
                   "a YAML file reads as its text does");
    return;
  }
  QRT_FUZZ_CHECK(!from_file, "a YAML file is refused as its text is");
  qrt::fuzz::check_refusal(from_file.error(), errc::configuration_error);
  QRT_FUZZ_CHECK(from_file.error().message == path + ": " + from_text.error().message,
                 "a YAML file's refusal is its text's, naming the file");
}

std::vector<std::string> keys_of(const config& c) {
  std::vector<std::string> keys;
  for (const auto& field : c.values()) keys.push_back(field.first);
  return keys;
}

// reject_unknown with every key known, and with every other key known. `from_environment`: every
// key of `c` came from the environment (and unknown ones are ignored, not refused).
void check_reject_unknown(const config& c, bool from_environment) {
  const auto keys = keys_of(c);
  const std::vector<std::string_view> all(keys.begin(), keys.end());
  QRT_FUZZ_CHECK(c.reject_unknown(all).has_value(),
                 "a configuration whose keys are all known is accepted");
  QRT_FUZZ_CHECK(c.unknown_environment_variables(all).empty(),
                 "no variable is ignored when every key is known");
  std::vector<std::string_view> half;
  for (std::size_t i = 0; i < keys.size(); i += 2) half.push_back(keys[i]);
  const std::size_t unknown = keys.size() - half.size();
  if (from_environment) {
    // Checked through the list reject_unknown would warn about: it warns on stderr, once per
    // distinct list, which would fill the fuzzer's output and memory with warnings.
    QRT_FUZZ_CHECK(c.unknown_environment_variables(half).size() == unknown,
                   "every unknown key from the environment is an ignored variable");
    return;
  }
  const auto r = c.reject_unknown(half);
  QRT_FUZZ_CHECK(r.has_value() == (unknown == 0), "a configuration with an unknown key is refused");
  if (r) return;
  qrt::fuzz::check_refusal(r.error(), errc::configuration_error);
  bool names_an_unknown_key = false;
  for (std::size_t i = 1; i < keys.size(); i += 2) {
    names_an_unknown_key |=
        r.error().message.find("field '" + qrt::detail::printable_name(keys[i]) + "'") !=
        std::string::npos;
  }
  QRT_FUZZ_CHECK(names_an_unknown_key, "a refusal names a key of the input that is not known");
}

void check_processing(const config& c) {
  const auto r = qrt::check_processing_keys(c);
  std::vector<std::string_view> bad;
  if (!c.get_uint("max_concurrent_calls", 1, 1, 10'000)) bad.push_back("max_concurrent_calls");
  if (!c.get_uint("prefetch_count", 0, 0, 100'000)) bad.push_back("prefetch_count");
  if (!c.get_uint("max_concurrent_sessions", 1, 1, 10'000))
    bad.push_back("max_concurrent_sessions");
  for (std::string_view key :
       {"max_auto_lock_renewal_duration", "session_idle_timeout", "max_session_hold"}) {
    if (!c.get_duration(key, {})) bad.push_back(key);
  }
  QRT_FUZZ_CHECK(r.has_value() == bad.empty(),
                 "processing keys are accepted exactly when each reads in its range");
  if (r) return;
  qrt::fuzz::check_refusal(r.error(), errc::configuration_error);
  QRT_FUZZ_CHECK(std::any_of(bad.begin(), bad.end(),
                             [&](std::string_view key) {
                               return r.error().message.find("field '" + std::string(key) + "'") !=
                                      std::string::npos;
                             }),
                 "a refusal of the processing keys names one that does not read");
}

// The runtime's keys, which every provider's configuration may carry: accepted exactly when
// worker_threads is absent or a whole number of threads from 1 to 1024 and thread_stack_size is
// absent or a byte count from PTHREAD_STACK_MIN to 1 GiB, and a refusal names one that is not.
void check_runtime(const config& c) {
  const auto r = qrt::check_runtime_keys(c);
  std::vector<std::string_view> bad;
  if (!c.get_uint("worker_threads", 1, 1, 1024)) bad.push_back("worker_threads");
  if (!c.get_uint("thread_stack_size", PTHREAD_STACK_MIN, PTHREAD_STACK_MIN, 1u << 30)) {
    bad.push_back("thread_stack_size");
  }
  QRT_FUZZ_CHECK(r.has_value() == bad.empty(),
                 "runtime keys are accepted exactly when each reads in its range");
  if (r) return;
  qrt::fuzz::check_refusal(r.error(), errc::configuration_error);
  QRT_FUZZ_CHECK(std::any_of(bad.begin(), bad.end(),
                             [&](std::string_view key) {
                               return r.error().message.find("field '" + std::string(key) + "'") !=
                                      std::string::npos;
                             }),
                 "a refusal of the runtime keys names one that does not read");
}

// The keys of `c` that came from environment variables, read back from the variables' names.
std::set<std::string> environment_keys(const config& c) {
  std::set<std::string> keys;
  for (const auto& variable : c.unknown_environment_variables({})) {
    const std::string_view name = std::string_view(variable).substr(4);  // after "QRT_"
    std::string key;
    for (std::size_t i = 0; i < name.size(); ++i) {
      if (name[i] == '_' && i + 1 < name.size() && name[i + 1] == '_') {
        key += '.';
        ++i;
      } else {
        key += static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
      }
    }
    keys.insert(std::move(key));
  }
  return keys;
}

// `later` merged over `earlier`, as the CLI merges its sources.
void check_merge(const config& earlier, const config& later) {
  config merged = earlier;
  merged.merge(later);
  for (const auto& [k, v] : later.values()) {
    QRT_FUZZ_CHECK(merged.get(k) == v, "a merge keeps the later source's value");
  }
  std::set<std::string> from_environment = environment_keys(later);
  const auto earlier_from_environment = environment_keys(earlier);
  for (const auto& [k, v] : earlier.values()) {
    if (later.contains(k)) continue;
    QRT_FUZZ_CHECK(merged.get(k) == v, "a merge keeps what only the earlier source sets");
    if (earlier_from_environment.count(k)) from_environment.insert(k);
  }
  for (const auto& field : merged.values()) {
    QRT_FUZZ_CHECK(earlier.contains(field.first) || later.contains(field.first),
                   "a merge adds no key");
  }
  QRT_FUZZ_CHECK(environment_keys(merged) == from_environment,
                 "a merged key came from the environment exactly when its value did");
  config again = earlier;
  again.merge(later);
  QRT_FUZZ_CHECK(again.values() == merged.values(), "a merge gives the same result every time");
  again.merge(later);
  QRT_FUZZ_CHECK(again.values() == merged.values() && again.unknown_environment_variables({}) ==
                                                          merged.unknown_environment_variables({}),
                 "merging the later source again changes nothing");
}

// The sources together, as the CLI reads them: the environment, then a file, then flags.
void check_sources(std::string_view text, const std::vector<std::string>& each) {
  const auto yaml = config::from_yaml(text);
  const auto flags = config::from_pairs(each);
  const auto environment = from_entries(each);
  if (yaml) {
    check_reject_unknown(*yaml, false);
    check_processing(*yaml);
    check_runtime(*yaml);
  }
  if (flags) {
    check_reject_unknown(*flags, false);
    check_processing(*flags);
    check_runtime(*flags);
  }
  if (environment) check_reject_unknown(*environment, true);
  const config none;
  const config& env = environment ? *environment : none;
  const config& file = yaml ? *yaml : none;
  const config& pairs = flags ? *flags : none;
  check_merge(env, file);
  check_merge(file, pairs);
  check_merge(env, pairs);
  check_merge(pairs, env);
  config all = env;
  all.merge(file);
  check_merge(all, pairs);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = qrt::fuzz::as_text(data, size);
  check_yaml(text);
  check_yaml_file(text);
  const auto each = lines(text);
  check_flags(each);
  check_environment(each);
  check_sources(text, each);
  for (const auto& line : each) check_duration(line);
  check_duration(text);
  return 0;
}
