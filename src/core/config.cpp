#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>  // PTHREAD_STACK_MIN
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <qrt/config.hpp>
#include <set>

#include "bounded_file.hpp"
#include "config_binder.hpp"
#include "name_checks.hpp"
#include "redaction.hpp"
#include "yaml_document.hpp"

extern char** environ;

namespace qrt {
namespace {

// Keys come from files, flags and the environment too: shown as refused names are.
error field_error(std::string_view key, std::string_view what) {
  return fail(errc::configuration_error,
              "field '" + detail::printable_name(key) + "': " + std::string(what));
}

// Shown in errors: secret fields redacted, URLs without their userinfo, and the rest as a name
// is (cut, control bytes escaped): a value from a file or the environment reaches a library
// caller's log and a terminal.
std::string quoted_value(std::string_view key, const std::string& value) {
  return config::is_secret_key(key)
             ? std::string(detail::redacted)
             : "'" + detail::printable_text(config::printable_value(key, value), 256) + "'";
}

/// Warns once per process for each distinct list of ignored variables, however many providers
/// read the same configuration (the bench builds several).
void warn_ignored_environment(const std::vector<std::string>& names) {
  static std::mutex mutex;
  static std::set<std::vector<std::string>> warned;
  std::lock_guard lock(mutex);
  if (!warned.insert(names).second) return;
  std::string list;
  for (const auto& n : names) {
    if (!list.empty()) list += ", ";
    list += n;
  }
  std::cerr << "qrt: warning: ignoring environment variable" << (names.size() > 1 ? "s " : " ")
            << list << ": not a setting of this provider\n";
}

// Flattening a YAML file may give at most this many bytes of keys and values per byte of the
// file (plus a floor): aliases repeat what an anchor names, so a few hundred bytes of nested
// aliases would otherwise flatten to gigabytes.
constexpr std::size_t flattened_bytes_per_byte = 16;
constexpr std::size_t flattened_bytes_floor = 4096;

error too_large(std::size_t file_bytes) {
  return fail(errc::configuration_error,
              "the YAML configuration flattens to more than " +
                  std::to_string(flattened_bytes_per_byte) + " times its " +
                  std::to_string(file_bytes) +
                  " bytes (do anchors and aliases repeat a large part of it?)");
}

// An alias may name a map it is inside of: the nesting is then endless.
constexpr int max_nesting = 64;

result<void> flatten(const YAML::Node& node, const std::string& prefix, config& out,
                     std::size_t& budget, std::size_t file_bytes, int depth = 0) {
  // Every node visited is paid for, so aliases of empty maps cannot multiply the work either.
  if (prefix.size() + 1 > budget) return too_large(file_bytes);
  budget -= prefix.size() + 1;
  auto set = [&](std::string value) -> result<void> {
    if (value.size() > budget) return too_large(file_bytes);
    budget -= value.size();
    // No setting holds a NUL: where the value reaches the system (a path, a host) it would be
    // cut short there, silently naming something else.
    if (value.find('\0') != std::string::npos) return field_error(prefix, "holds a NUL byte");
    // A key given twice (or as "a.b" and as b inside a) would silently take one of the two
    // values: which one the user meant is theirs to say.
    if (out.contains(prefix)) return field_error(prefix, "given more than once");
    out.set(prefix, std::move(value));
    return {};
  };
  if (node.IsMap()) {
    if (depth == max_nesting) {
      return field_error(prefix, "maps nest deeper than " + std::to_string(max_nesting) +
                                     " levels (does an alias name a map it is inside of?)");
    }
    for (const auto& kv : node) {
      const auto key = kv.first.as<std::string>();
      if (key.find('\0') != std::string::npos) {
        return field_error(prefix.empty() ? key : prefix + "." + key,
                           "a key may not hold a NUL byte");
      }
      auto r = flatten(kv.second, prefix.empty() ? key : prefix + "." + key, out, budget,
                       file_bytes, depth + 1);
      if (!r) return r;
    }
    return {};
  }
  if (node.IsSequence()) {
    // Sequences of scalars become comma-separated lists ("queues: [a, b]").
    std::string joined;
    for (const auto& item : node) {
      if (!item.IsScalar()) return field_error(prefix, "lists may only hold plain values");
      const auto text = item.as<std::string>();
      // The list is read back by splitting at commas: an item with one would become two.
      if (text.find(',') != std::string::npos) {
        return field_error(prefix,
                           "a list item may not hold a comma, got " + quoted_value(prefix, text));
      }
      if (!joined.empty()) joined += ',';
      joined += text;
      if (joined.size() > budget) return too_large(file_bytes);
    }
    return set(std::move(joined));
  }
  if (node.IsNull()) return set("");
  return set(node.as<std::string>());
}

}  // namespace

namespace detail {

// A password pasted without percent-encoding may hold '/', '?' or '#' (base64 keys often hold
// '/'), which would end the authority early and show the password: so "user:password" ends at
// the URL's last '@' (before the next URL of a list), wherever it is. Text without a ':'
// before that '@' (an '@' in a path) stays as it is; redacting a little more than needed in
// the rare path with both is harmless, showing a password is not.
std::string without_userinfo(std::string_view text) {
  std::string out;
  std::size_t done = 0;
  for (std::size_t scheme_end = text.find("://"); scheme_end != std::string_view::npos;
       scheme_end = text.find("://", scheme_end + 3)) {
    const std::size_t authority = scheme_end + 3;
    std::size_t authority_end = text.find_first_of("/?#", authority);
    if (authority_end == std::string_view::npos) authority_end = text.size();
    std::size_t at = text.substr(authority, authority_end - authority).rfind('@');
    const std::size_t url_end = std::min(text.find("://", authority), text.size());
    const std::string_view url = text.substr(authority, url_end - authority);
    if (const std::size_t last = url.rfind('@');
        last != std::string_view::npos && last > authority_end - authority &&
        url.substr(0, last).find(':') != std::string_view::npos) {
      at = last;
    }
    if (at == std::string_view::npos) continue;
    out.append(text.substr(done, authority - done));
    out += redacted;
    done = authority + at;  // keeps the '@' and the host after it
  }
  out.append(text.substr(done));
  return out;
}

}  // namespace detail

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  double value = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, value);
  if (ec != std::errc{} || value < 0) return std::nullopt;
  std::string_view unit(ptr, static_cast<std::size_t>(last - ptr));
  double ms = 0;
  if (unit.empty() || unit == "ms")
    ms = value;
  else if (unit == "us")
    ms = value / 1000.0;
  else if (unit == "s")
    ms = value * 1000.0;
  else if (unit == "m" || unit == "min")
    ms = value * 60'000.0;
  else if (unit == "h")
    ms = value * 3'600'000.0;
  else
    return std::nullopt;
  // At most 100 years: a duration is added to clock readings in nanoseconds, where a larger one
  // would overflow. The comparison is written so that NaN ("nan" parses) fails it too.
  constexpr double longest_ms = 100.0 * 365.25 * 24 * 3600 * 1000;
  if (!(ms <= longest_ms)) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
}

result<config> config::from_yaml(std::string_view text) {
  config out;
  try {
    auto document = detail::load_single_document(text, "the configuration");
    if (!document) return document.error();
    const YAML::Node& root = *document;
    if (root.IsNull()) return out;
    if (!root.IsMap()) return fail(errc::configuration_error, "configuration must be a YAML map");
    std::size_t budget = flattened_bytes_per_byte * text.size() + flattened_bytes_floor;
    auto r = flatten(root, "", out, budget, text.size());
    if (!r) return r.error();
  } catch (const YAML::Exception& e) {
    return fail(errc::configuration_error, std::string("malformed YAML: ") + e.what());
  }
  return out;
}

result<config> config::from_yaml_file(const std::string& path) {
  auto text = detail::read_file_at_most(path, detail::largest_settings_file, "configuration file");
  if (!text) return fail(errc::configuration_error, text.error().message);
  auto r = from_yaml(*text);
  if (!r) {
    auto e = r.error();
    e.message = path + ": " + e.message;
    return e;
  }
  return r;
}

result<config> config::from_pairs(const std::vector<std::string>& pairs) {
  config out;
  for (const auto& p : pairs) {
    auto eq = p.find('=');
    // What was given is shown, to say what is wrong, unless it may hold a secret: text naming a
    // secret setting may hold its value too (secret_access_key:..., "password hunter2"), and
    // what follows an '=' with no key is a value.
    if (eq == 0) {
      return fail(errc::configuration_error, "expected key=value, got '=' with no key before it");
    }
    if (eq == std::string::npos) {
      return fail(
          errc::configuration_error,
          "expected key=value, got " + (is_secret_key(p) ? std::string(detail::redacted)
                                                         : "'" + detail::printable_name(p) + "'"));
    }
    auto key = p.substr(0, eq);
    // As in a YAML file: a key given twice would silently take the last of its values, and
    // which one the user meant is theirs to say.
    if (out.contains(key)) return field_error(key, "given more than once");
    out.set(std::move(key), p.substr(eq + 1));
  }
  return out;
}

result<config> config::from_environment(std::string_view prefix) {
  config out;
  for (char** env = environ; env && *env; ++env) {
    std::string_view entry(*env);
    if (entry.substr(0, prefix.size()) != prefix) continue;
    auto eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    std::string key;
    auto name = entry.substr(prefix.size(), eq - prefix.size());
    for (std::size_t i = 0; i < name.size(); ++i) {
      if (name[i] == '_' && i + 1 < name.size() && name[i + 1] == '_') {
        key += '.';
        ++i;
      } else {
        key += static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
      }
    }
    if (key.empty()) continue;
    std::string variable(entry.substr(0, eq));
    // Names are case-insensitive here (QRT_REGION and QRT_Region both set "region"): which of two
    // such variables won would depend on their order in the environment, so neither does. Only
    // the names are shown: a value may be a secret.
    if (auto seen = out.from_environment_.find(key); seen != out.from_environment_.end()) {
      if (seen->second == variable) {
        return field_error(key, "environment variable " + detail::printable_name(variable) +
                                    " is set more than once");
      }
      const auto& [first, second] = std::minmax(seen->second, variable);
      return field_error(key, "set by both environment variables " + detail::printable_name(first) +
                                  " and " + detail::printable_name(second) + "; unset one of them");
    }
    out.from_environment_[key] = std::move(variable);
    out.values_[std::move(key)] = std::string(entry.substr(eq + 1));
  }
  return out;
}

void config::merge(const config& other) {
  for (const auto& [k, v] : other.values_) {
    values_[k] = v;
    if (auto env = other.from_environment_.find(k); env != other.from_environment_.end())
      from_environment_[k] = env->second;
    else
      from_environment_.erase(k);
  }
}

std::optional<std::string> config::get(std::string_view key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

result<std::string> config::get_string(std::string_view key,
                                       std::optional<std::string> fallback) const {
  if (auto v = get(key)) return *v;
  if (fallback) return *fallback;
  return field_error(key, "is required");
}

result<std::uint64_t> config::get_uint(std::string_view key, std::uint64_t fallback,
                                       std::uint64_t min, std::uint64_t max) const {
  auto v = get(key);
  if (!v) return fallback;
  const std::string_view text = *v;
  std::uint64_t out = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec != std::errc{} || ptr != text.data() + text.size()) {
    return field_error(key, "expected a whole number, got " + quoted_value(key, *v));
  }
  if (out < min || out > max) {
    return field_error(key, "must be between " + std::to_string(min) + " and " +
                                std::to_string(max) + ", got " + quoted_value(key, *v));
  }
  return out;
}

result<double> config::get_double(std::string_view key, double fallback) const {
  auto v = get(key);
  if (!v) return fallback;
  const std::string_view text = *v;
  double out = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec != std::errc{} || ptr != text.data() + text.size() || !std::isfinite(out)) {
    return field_error(key, "expected a number, got " + quoted_value(key, *v));
  }
  return out;
}

result<bool> config::get_bool(std::string_view key, bool fallback) const {
  auto v = get(key);
  if (!v) return fallback;
  std::string s = *v;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "true" || s == "1" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "0" || s == "no" || s == "off") return false;
  return field_error(key, "expected true or false, got " + quoted_value(key, *v));
}

result<std::chrono::milliseconds> config::get_duration(std::string_view key,
                                                       std::chrono::milliseconds fallback) const {
  auto v = get(key);
  if (!v) return fallback;
  if (auto d = parse_duration(*v)) return *d;
  return field_error(key,
                     "expected a duration such as 250ms, 30s or 5m, got " + quoted_value(key, *v));
}

std::vector<std::string> config::unknown_environment_variables(
    std::span<const std::string_view> known) const {
  std::vector<std::string> names;
  for (const auto& [k, variable] : from_environment_) {
    if (std::find(known.begin(), known.end(), k) == known.end()) names.push_back(variable);
  }
  return names;
}

result<void> config::reject_unknown(std::span<const std::string_view> known) const {
  for (const auto& [k, v] : values_) {
    if (from_environment_.count(k)) continue;  // another tool's variable, not a typo of ours
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      std::string list;
      for (auto n : known) {
        if (!list.empty()) list += ", ";
        list += n;
      }
      return field_error(k, "unknown field (known: " + list + ")");
    }
  }
  if (auto ignored = unknown_environment_variables(known); !ignored.empty())
    warn_ignored_environment(ignored);
  return {};
}

bool config::is_secret_key(std::string_view key) noexcept {
  std::string k(key);
  std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return std::tolower(c); });
  for (std::string_view marker :
       {"secret", "password", "token", "key", "connection_string", "signature", "credential"}) {
    if (k.find(marker) != std::string::npos) {
      // "*_key_id" names an identifier, not a secret (aws access key id).
      return !(marker == "key" && k.find("key_id") != std::string::npos);
    }
  }
  return false;
}

std::string config::printable_value(std::string_view key, std::string_view value) {
  return is_secret_key(key) ? std::string(detail::redacted) : detail::without_userinfo(value);
}

std::string config::to_string() const {
  std::string out;
  for (const auto& [k, v] : values_) {
    out += k;
    out += '=';
    out += printable_value(k, v);
    out += '\n';
  }
  return out;
}

result<void> check_processing_keys(const config& cfg) {
  for (auto key : processing_keys) {
    if (!cfg.contains(key)) continue;
    if (auto r = detail::check_processing_key(cfg, key); !r) return r.error();
  }
  return {};
}

result<void> check_runtime_keys(const config& cfg) {
  for (auto key : runtime_keys) {
    if (!cfg.contains(key)) continue;
    if (auto r = detail::check_runtime_key(cfg, key); !r) return r.error();
  }
  return {};
}

namespace detail {

result<std::uint64_t> read_runtime_key(const config& cfg, std::string_view key,
                                       std::uint64_t fallback) {
  if (key == "thread_stack_size") {
    // 0 asks for the platform's default (what undoes a preset's size), as in
    // runtime_configuration. Otherwise a plain byte count; below the platform's least, no
    // thread could be started with it.
    if (auto v = cfg.get(key); v && *v == "0") return std::uint64_t{0};
    return cfg.get_uint(key, fallback, static_cast<std::uint64_t>(PTHREAD_STACK_MIN),
                        most_thread_stack_size);
  }
  return cfg.get_uint(key, fallback, 1, most_worker_threads);  // worker_threads
}

result<void> check_runtime_key(const config& cfg, std::string_view key) {
  if (auto v = read_runtime_key(cfg, key, 0); !v) return v.error();
  return {};
}

result<void> check_processing_key(const config& cfg, std::string_view key) {
  if (key == "max_concurrent_calls") {
    if (auto calls = cfg.get_uint(key, 1, 1, 10'000); !calls) return calls.error();
  } else if (key == "prefetch_count") {
    if (auto prefetch = cfg.get_uint(key, 0, 0, 100'000); !prefetch) return prefetch.error();
  } else if (key == "max_concurrent_sessions") {
    if (auto sessions = cfg.get_uint(key, 1, 1, most_concurrent_sessions); !sessions) {
      return sessions.error();
    }
  } else if (auto duration = cfg.get_duration(key, {}); !duration) {
    // max_auto_lock_renewal_duration, session_idle_timeout, max_session_hold
    return duration.error();
  }
  return {};
}

}  // namespace detail

}  // namespace qrt
