#include <qrt/capabilities.hpp>
#include <qrt/message.hpp>

namespace qrt {

std::size_t message::wire_size() const noexcept {
  std::size_t n = body.size();
  for (const auto& [k, v] : attributes) n += k.size() + v.size();
  return n;
}

std::string_view to_string(session_support s) noexcept {
  switch (s) {
    case session_support::none:
      return "none";
    case session_support::emulated:
      return "emulated";
    case session_support::native:
      return "native";
  }
  return "unknown";
}

}  // namespace qrt
