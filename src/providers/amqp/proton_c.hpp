// The few things Proton C++ 0.37 cannot express and the C API can: modified with
// delivery-failed / undeliverable-here flags, and rejected with an error condition.
// Internal to connection.cpp.
#pragma once

#include <map>
#include <proton/delivery.hpp>
#include <string>

struct pn_delivery_t;

// Proton's own factory<> is how its wrappers reach the C object; delivery befriends it.
namespace proton::internal {
template <>
class factory<proton::delivery> {
 public:
  static pn_delivery_t* unwrap(const proton::delivery& d) { return d.pn_object(); }
};
}  // namespace proton::internal

namespace qrt::amqp::detail {

/// Settles `d` with modified{delivery-failed, undeliverable-here}.
void settle_modified(const proton::delivery& d, bool delivery_failed, bool undeliverable_here);

/// Settles `d` with rejected{error: name, description, info}.
void settle_rejected(const proton::delivery& d, const std::string& name,
                     const std::string& description,
                     const std::map<std::string, std::string>& info);

}  // namespace qrt::amqp::detail
