// How a provider reads its configuration: one table per provider, an entry per key it accepts
// ({key, where the value goes, how it is parsed and checked, a one-line description}). The table
// is the provider's only list of keys: its known_keys(), the refusal of unknown keys and the
// key reference all come from it, so a key cannot be read without being accepted and
// documented, or accepted without being read. Internal: providers include it from src/.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <qrt/config.hpp>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace qrt::detail {

/// A configuration_error naming `key`: "field 'key': what".
error config_field_error(std::string_view key, std::string_view what);

/// Bounds of a duration key. A value outside them is refused naming the key and the bounds.
struct duration_bounds {
  std::chrono::milliseconds min{0};                ///< inclusive
  std::optional<std::chrono::milliseconds> max{};  ///< inclusive; none: no upper bound
  bool whole_seconds = false;                      ///< for settings the service takes in seconds
};
/// Bounds of a setting that must be more than zero.
inline constexpr duration_bounds positive_duration{std::chrono::milliseconds{1}};

/// Reads duration key `key` from `cfg` (which must contain it) and checks it against `bounds`.
result<std::chrono::milliseconds> read_duration(const config& cfg, std::string_view key,
                                                const duration_bounds& bounds);
/// The index of `value` in `names`, else an error naming the key, the value and the names.
result<std::size_t> pick_name(std::string_view key, std::string_view value,
                              std::span<const std::string_view> names);
/// The most max_concurrent_sessions a configuration may ask for: a worker each
/// (qrt::session_processor_options::most_concurrent_sessions).
inline constexpr std::uint64_t most_concurrent_sessions = 10'000;
/// Checks one of qrt::processing_keys the way check_processing_keys() does.
result<void> check_processing_key(const config& cfg, std::string_view key);
/// Checks one of qrt::runtime_keys the way check_runtime_keys() does.
result<void> check_runtime_key(const config& cfg, std::string_view key);
/// Reads one of qrt::runtime_keys within its bounds (`fallback` when absent): the one reading
/// the providers check the key with and runtime_configuration::from_config takes it from.
result<std::uint64_t> read_runtime_key(const config& cfg, std::string_view key,
                                       std::uint64_t fallback);
/// The preset every provider accepts beside its own: it selects
/// runtime_configuration::for_low_resource() for the runtime built from the configuration and
/// leaves the provider's and the processors' options as they are. The rule of the shared
/// `preset` key: each reader (provider, processor, runtime) takes the names it has a preset for
/// and leaves the others alone, and the provider refuses a name that no reader knows.
inline constexpr std::string_view runtime_only_preset = "low_resource";
/// How a provider's key table describes the session processor's processing keys.
inline constexpr std::string_view session_key_doc =
    "a setting of a qrt::session_processor built from this config "
    "(session_processor_options::from_config); the provider only checks it";
/// The most worker_threads a configuration may ask for.
inline constexpr std::uint64_t most_worker_threads = 1024;
/// The largest thread_stack_size a configuration may ask for (1 GiB): a stack that large is a
/// mistake (a size meant in KiB written in bytes is small, not this), and each worker would
/// reserve that much address space. The least is the platform's (PTHREAD_STACK_MIN).
inline constexpr std::uint64_t most_thread_stack_size = std::uint64_t{1} << 30;

/// The type of the field a `Field` (see config_binder) reaches.
template <class Options, class Field>
using bound_field_type = std::remove_cvref_t<std::invoke_result_t<Field, Options&>>;

/// The table of keys of one provider's `Options`, and the reading of a config through it.
template <class Options>
class config_binder {
 public:
  /// Reads the present value of `key` into the options; errors name the key.
  using apply_fn = std::function<result<void>(const config& cfg, std::string_view key, Options&)>;

  /// One key: its name, a one-line description, and how it is read (none: accepted and
  /// documented, read by someone else, as `provider` is by the registry).
  struct entry {
    std::string_view key;
    std::string_view doc;
    apply_fn apply;
  };

  /// Entries are applied in this order, so a preset that replaces the options comes first.
  config_binder(std::initializer_list<entry> entries) : entries_(entries) {
    keys_.reserve(entries_.size());
    for (const auto& e : entries_) keys_.push_back(e.key);
  }

  /// Every key of the table, in its order.
  std::span<const std::string_view> keys() const noexcept { return keys_; }
  /// The table itself (the key reference is written from it).
  std::span<const entry> entries() const noexcept { return entries_; }

  /// Refuses a key not in the table (naming it), then reads each key present in `cfg` into
  /// `o`, in table order; keys not present leave `o` as it is.
  result<void> bind(const config& cfg, Options& o) const {
    if (auto known = cfg.reject_unknown(keys()); !known) return known.error();
    for (const auto& e : entries_) {
      if (!e.apply || !cfg.contains(e.key)) continue;
      if (auto r = e.apply(cfg, e.key, o); !r) return r.error();
    }
    return {};
  }

  template <class Field>
  using field_type = bound_field_type<Options, Field>;

  // ---- entries, one per kind of value ----
  // A `Field` is a pointer to a member of Options, or a callable taking Options& and returning
  // a reference to the field (for a field of a nested struct).

  /// Text, taken as given.
  template <class Field>
  static entry text(std::string_view key, Field field, std::string_view doc) {
    return {key, doc, [field](const config& cfg, std::string_view k, Options& o) -> result<void> {
              auto v = cfg.get_string(k);
              if (!v) return v.error();
              std::invoke(field, o) = std::move(*v);
              return {};
            }};
  }

  /// true/false, 1/0, yes/no, on/off.
  template <class Field>
  static entry flag(std::string_view key, Field field, std::string_view doc) {
    return {key, doc, [field](const config& cfg, std::string_view k, Options& o) -> result<void> {
              auto v = cfg.get_bool(k, false);
              if (!v) return v.error();
              std::invoke(field, o) = *v;
              return {};
            }};
  }

  /// A whole number in [min, max] (which must fit the field's type).
  template <class Field>
  static entry integer(std::string_view key, Field field, std::uint64_t min, std::uint64_t max,
                       std::string_view doc) {
    return {key, doc,
            [field, min, max](const config& cfg, std::string_view k, Options& o) -> result<void> {
              auto v = cfg.get_uint(k, 0, min, max);
              if (!v) return v.error();
              auto& slot = std::invoke(field, o);
              slot = static_cast<std::remove_reference_t<decltype(slot)>>(*v);
              return {};
            }};
  }

  /// "250ms", "30s", "5m", "1h" (a bare number is milliseconds), within `bounds`. The field is
  /// milliseconds, seconds (bounds.whole_seconds) or an optional of either.
  template <class Field>
  static entry duration(std::string_view key, Field field, std::string_view doc,
                        duration_bounds bounds = {}) {
    return {key, doc,
            [field, bounds](const config& cfg, std::string_view k, Options& o) -> result<void> {
              auto v = read_duration(cfg, k, bounds);
              if (!v) return v.error();
              assign_duration(std::invoke(field, o), *v);
              return {};
            }};
  }

  /// One of a few names, each standing for a value of the field (an enum, usually).
  template <class Field>
  static entry choice(std::string_view key, Field field,
                      std::initializer_list<std::pair<std::string_view, field_type<Field>>> choices,
                      std::string_view doc) {
    using Value = field_type<Field>;
    std::vector<std::string_view> names;
    std::vector<Value> values;
    for (const auto& [name, value] : choices) {
      names.push_back(name);
      values.push_back(value);
    }
    return {key, doc,
            [field, names = std::move(names), values = std::move(values)](
                const config& cfg, std::string_view k, Options& o) -> result<void> {
              auto v = cfg.get_string(k);
              if (!v) return v.error();
              auto i = pick_name(k, *v, names);
              if (!i) return i.error();
              std::invoke(field, o) = values[*i];
              return {};
            }};
  }

  /// Anything else: `read(text, options)` parses and stores the value; its errors should name
  /// the key (config_field_error).
  template <class Read>
  requires std::invocable<Read, std::string_view, Options&>
  static entry custom(std::string_view key, Read read, std::string_view doc) {
    return {key, doc, [read](const config& cfg, std::string_view k, Options& o) -> result<void> {
              auto v = cfg.get_string(k);
              if (!v) return v.error();
              return read(std::string_view(*v), o);
            }};
  }

  /// Accepted and documented, read elsewhere (the registry reads `provider`).
  static entry accepted(std::string_view key, std::string_view doc) { return {key, doc, {}}; }

  /// One of qrt::processing_keys: accepted so that one config describes a client and its
  /// processor (processor_options::from_config reads it), and checked here so a bad value fails
  /// when the client is made.
  static entry processing(std::string_view key, std::string_view doc =
                                                    "a setting of a qrt::processor built from this "
                                                    "config (processor_options::from_config); the "
                                                    "provider only checks it") {
    return {key, doc, [](const config& cfg, std::string_view k, Options&) -> result<void> {
              return check_processing_key(cfg, k);
            }};
  }

  /// One of qrt::runtime_keys: accepted so that one config also sizes the runtime the client
  /// runs on (runtime_configuration::from_config reads it), and checked here so a bad value
  /// fails when the client is made.
  static entry runtime(std::string_view key,
                       std::string_view doc =
                           "a setting of a qrt::runtime built from this config "
                           "(runtime_configuration::from_config); the "
                           "provider runs on its caller's executor and only "
                           "checks it") {
    return {key, doc, [](const config& cfg, std::string_view k, Options&) -> result<void> {
              return check_runtime_key(cfg, k);
            }};
  }

 private:
  template <class Slot>
  static void assign_duration(Slot& slot, std::chrono::milliseconds v) {
    if constexpr (requires { typename Slot::value_type; }) {
      using value = typename Slot::value_type;
      slot = std::chrono::duration_cast<value>(v);
    } else {
      slot = std::chrono::duration_cast<Slot>(v);
    }
  }

  std::vector<entry> entries_;
  std::vector<std::string_view> keys_;
};

}  // namespace qrt::detail
