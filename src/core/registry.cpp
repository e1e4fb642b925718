#include <qrt/registry.hpp>

#include "name_checks.hpp"

namespace qrt {

void provider_registry::add(std::string name, provider_factory factory) {
  factories_[std::move(name)] = std::move(factory);
}

std::vector<std::string> provider_registry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, f] : factories_) out.push_back(name);
  return out;
}

result<provider_ptr> provider_registry::make(const config& cfg,
                                             boost::asio::any_io_executor executor) const {
  auto list = [&] {
    std::string s;
    for (const auto& n : names()) s += (s.empty() ? "" : ", ") + n;
    return s.empty() ? std::string("none") : s;
  };
  auto name = cfg.get("provider");
  if (!name || name->empty()) {
    return fail(errc::configuration_error,
                "field 'provider': is required (one of: " + list() + ")");
  }
  auto it = factories_.find(*name);
  if (it == factories_.end()) {
    return fail(errc::configuration_error, "field 'provider': unknown provider '" +
                                               detail::printable_name(*name) +
                                               "' (one of: " + list() + ")");
  }
  return it->second(cfg, std::move(executor));
}

}  // namespace qrt
