// Messages as most tests build them.
#pragma once

#include <qrt/message.hpp>
#include <string>
#include <utility>

namespace qrt::test {

/// A message with nothing but `body`.
inline qrt::message text(std::string body) {
  qrt::message m;
  m.body = std::move(body);
  return m;
}

}  // namespace qrt::test
