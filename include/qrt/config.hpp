// Configuration as validated key/value text, from YAML, "key=value" flags or QRT_* environment
// variables. Providers read typed fields from it and refuse anything malformed or unknown with an
// error naming the field. Secret fields print redacted.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <qrt/error.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qrt {

/// Configuration as key/value text, from YAML, "key=value" pairs or QRT_* environment variables;
/// providers read typed fields from it, and errors name the field.
class config {
 public:
  config() = default;
  /// From literal pairs: `config{{"provider", "memory"}, {"queues", "orders"}}`.
  config(std::initializer_list<std::pair<const std::string, std::string>> values)
      : values_(values) {}

  /// Nested YAML maps flatten to dotted keys: {sqs: {region: x}} -> "sqs.region"; a list of
  /// plain values becomes one comma-separated value (an item holding a comma is refused). The
  /// text must be one YAML document: a second one (after "---" or "...") is refused, not dropped.
  static result<config> from_yaml(std::string_view text);
  /// Reads a YAML file of at most 1 MiB (a pipe or a device is read no further; a directory is
  /// refused); errors name the file.
  static result<config> from_yaml_file(const std::string& path);
  /// Each item "key=value"; a key given twice is refused, as in a YAML file.
  static result<config> from_pairs(const std::vector<std::string>& pairs);
  /// QRT_PROVIDER=sqs -> "provider"; QRT_SQS__REGION -> "sqs.region" (double underscore = dot).
  /// Each key remembers the variable it came from: the environment is shared with other tools,
  /// so reject_unknown() ignores (with a warning) what it does not know instead of failing.
  /// Names are read case-insensitively, so two variables may name one key (QRT_REGION and
  /// QRT_Region): that is a configuration_error naming the key and both variables (never their
  /// values), returned here as from_yaml() and from_pairs() return a key given twice, since
  /// which one won would otherwise depend on the order of the environment.
  static result<config> from_environment(std::string_view prefix = "QRT_");

  /// Values from `other` override ours (and so does where they came from).
  void merge(const config& other);
  /// Sets (or replaces) one field.
  void set(std::string key, std::string value) {
    from_environment_.erase(key);
    values_[std::move(key)] = std::move(value);
  }
  /// Whether `key` is set.
  bool contains(std::string_view key) const { return values_.find(key) != values_.end(); }
  /// The raw text of `key`, if set.
  std::optional<std::string> get(std::string_view key) const;

  /// The text of `key`, else `fallback`; a missing field without a fallback is a
  /// configuration_error naming it.
  result<std::string> get_string(std::string_view key,
                                 std::optional<std::string> fallback = {}) const;
  /// An unsigned number in [min, max], else `fallback` when unset; anything else is a
  /// configuration_error naming the field.
  result<std::uint64_t> get_uint(std::string_view key, std::uint64_t fallback,
                                 std::uint64_t min = 0, std::uint64_t max = UINT64_MAX) const;
  /// A number, else `fallback` when unset; anything else is a configuration_error.
  result<double> get_double(std::string_view key, double fallback) const;
  /// true/false, 1/0, yes/no or on/off (any case), else `fallback` when unset.
  result<bool> get_bool(std::string_view key, bool fallback) const;
  /// "250ms", "30s", "5m", "1h"; a bare number is milliseconds.
  result<std::chrono::milliseconds> get_duration(std::string_view key,
                                                 std::chrono::milliseconds fallback) const;

  /// Fails naming the first key that is not in `known` (a typo must not be silently ignored).
  /// Keys that came from environment variables are the exception: one unknown there is ignored,
  /// and the variables ignored are named (never their values) in one warning on stderr, once
  /// per process for each set of names.
  result<void> reject_unknown(std::span<const std::string_view> known) const;
  /// As above, for a list written in place.
  result<void> reject_unknown(std::initializer_list<std::string_view> known) const {
    return reject_unknown(std::span<const std::string_view>(known.begin(), known.size()));
  }
  /// The environment variables reject_unknown() would ignore for `known` (their names).
  std::vector<std::string> unknown_environment_variables(
      std::span<const std::string_view> known) const;
  /// As above, for a list written in place.
  std::vector<std::string> unknown_environment_variables(
      std::initializer_list<std::string_view> known) const {
    return unknown_environment_variables(
        std::span<const std::string_view>(known.begin(), known.size()));
  }

  /// Every field, by key.
  const std::map<std::string, std::string, std::less<>>& values() const noexcept { return values_; }

  /// "key=value" lines, secrets shown as "<redacted>", and so is the userinfo of a URL value
  /// (the "user:password" before the host in endpoint=amqps://user:password\@host).
  std::string to_string() const;
  /// Whether `key` names a secret (keys, passwords, tokens, connection strings), which prints
  /// redacted.
  static bool is_secret_key(std::string_view key) noexcept;
  /// `value` as it may be shown for `key`: "<redacted>" for a secret key, else the value with
  /// any URL userinfo replaced by "<redacted>".
  static std::string printable_value(std::string_view key, std::string_view value);

 private:
  std::map<std::string, std::string, std::less<>> values_;
  /// key -> the environment variable its value came from (only for such keys).
  std::map<std::string, std::string, std::less<>> from_environment_;
};

/// Parses a duration written as in config files; nullopt when malformed.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

/// The keys of a processor's settings that any provider's configuration may carry, so one
/// config describes a client and its processor: max_concurrent_calls (1-10000), prefetch_count
/// (0-100000) and max_auto_lock_renewal_duration (a duration), which qrt::processor_options::
/// from_config reads, and the session processor's max_concurrent_sessions (1-10000),
/// session_idle_timeout and max_session_hold (durations), which
/// qrt::session_processor_options::from_config reads with max_auto_lock_renewal_duration.
/// Providers accept them and refuse a malformed value with this check, naming the key, so a bad
/// value fails when the client is made, not later.
inline constexpr std::string_view processing_keys[] = {
    "max_concurrent_calls",    "prefetch_count",       "max_auto_lock_renewal_duration",
    "max_concurrent_sessions", "session_idle_timeout", "max_session_hold"};
/// Checks the processing keys present in `cfg` (configuration_error naming the key).
result<void> check_processing_keys(const config& cfg);

/// The keys of a qrt::runtime's settings that any provider's configuration may carry, so one
/// config also sizes the runtime its client runs on: worker_threads (1-1024) and
/// thread_stack_size (bytes, PTHREAD_STACK_MIN to 1 GiB; 0: the platform's default).
/// qrt::runtime_configuration::from_config reads them; providers run on their caller's executor
/// and only check them, as they check the processing keys, naming the key.
inline constexpr std::string_view runtime_keys[] = {"worker_threads", "thread_stack_size"};
/// Checks the runtime keys present in `cfg` (configuration_error naming the key).
result<void> check_runtime_keys(const config& cfg);

}  // namespace qrt
