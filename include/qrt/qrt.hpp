// Everything a typical user needs, and the registry of every provider this build has.
#pragma once

#include <qrt/client.hpp>
#include <qrt/config.hpp>
#include <qrt/registry.hpp>
#include <qrt/sync_client.hpp>

namespace qrt {

/// A registry with every provider compiled into qrt::qrt ("memory", and the network providers
/// this build includes).
const provider_registry& builtin_providers();

}  // namespace qrt
