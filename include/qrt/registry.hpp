// Picks a provider at run time from configuration (docs/contract.md, C34).
#pragma once

#include <functional>
#include <map>
#include <qrt/config.hpp>
#include <qrt/provider.hpp>
#include <string>
#include <vector>

namespace qrt {

/// Builds a provider from its configuration; refuses bad fields with errc::configuration_error.
using provider_factory =
    std::function<result<provider_ptr>(const config&, boost::asio::any_io_executor)>;

/// Provider factories by name: picks and builds a provider from configuration at run time.
class provider_registry {
 public:
  /// Registers (or replaces) the factory for provider `name`.
  void add(std::string name, provider_factory factory);
  /// Registers a provider of the built-in shape: options read by `from_config` (whose errors
  /// name the field), instances made by `make`.
  template <class Options>
  void add(std::string name, result<Options> (*from_config)(const config&),
           result<provider_ptr> (*make)(const Options&, boost::asio::any_io_executor)) {
    add(std::move(name),
        [from_config, make](const config& cfg,
                            boost::asio::any_io_executor executor) -> result<provider_ptr> {
          auto options = from_config(cfg);
          if (!options) return options.error();
          return make(*options, std::move(executor));
        });
  }
  /// Uses the "provider" field; an unknown or missing provider names the ones registered.
  result<provider_ptr> make(const config& cfg, boost::asio::any_io_executor executor) const;
  /// The registered provider names, sorted.
  std::vector<std::string> names() const;

 private:
  std::map<std::string, provider_factory, std::less<>> factories_;
};

}  // namespace qrt
