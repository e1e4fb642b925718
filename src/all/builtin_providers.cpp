#include <qrt/memory.hpp>
#include <qrt/qrt.hpp>

namespace qrt {

const provider_registry& builtin_providers() {
  static const provider_registry registry = [] {
    provider_registry r;
    memory::register_provider(r);
    return r;
  }();
  return registry;
}

}  // namespace qrt
