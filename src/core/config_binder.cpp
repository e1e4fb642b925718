#include "config_binder.hpp"

#include <string>

#include "name_checks.hpp"

namespace qrt::detail {

namespace {

// The shortest exact way to write `d` in config syntax: "1h", "5m", "30s" or "250ms".
std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1'000 == 0) return std::to_string(ms / 1'000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace

error config_field_error(std::string_view key, std::string_view what) {
  return error{errc::configuration_error, "field '" + std::string(key) + "': " + std::string(what)};
}

result<std::chrono::milliseconds> read_duration(const config& cfg, std::string_view key,
                                                const duration_bounds& bounds) {
  auto d = cfg.get_duration(key, {});
  if (!d) return d.error();
  if (bounds.whole_seconds) {
    if (d->count() % 1000 != 0 || *d < bounds.min || (bounds.max && *d > *bounds.max)) {
      // Only the bounds the field has: with no upper one, "between" would have nothing true to
      // name as its end.
      std::string what = "must be whole seconds";
      if (bounds.max) {
        what += " between " + format_duration(bounds.min) + " and " + format_duration(*bounds.max);
      } else if (bounds.min > std::chrono::milliseconds{0}) {
        what += ", at least " + format_duration(bounds.min);
      }
      return config_field_error(key, what);
    }
    return *d;
  }
  if (*d < bounds.min || (bounds.max && *d > *bounds.max)) {
    if (bounds.max) {
      return config_field_error(key, "must be between " + format_duration(bounds.min) + " and " +
                                         format_duration(*bounds.max));
    }
    if (bounds.min == std::chrono::milliseconds{1})
      return config_field_error(key, "must be positive");
    return config_field_error(key, "must be at least " + format_duration(bounds.min));
  }
  return *d;
}

result<std::size_t> pick_name(std::string_view key, std::string_view value,
                              std::span<const std::string_view> names) {
  std::string list;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == value) return i;
    if (i) list += ", ";
    list += names[i];
  }
  // Names of modes are not secrets; the value is shown as a refused name is (cut, escaped).
  return config_field_error(key,
                            "unknown value '" + printable_name(value) + "' (one of: " + list + ")");
}

}  // namespace qrt::detail
