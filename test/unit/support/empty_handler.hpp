// What every processor does with an empty message handler: refuses it when it is built.
#pragma once

#include <gtest/gtest.h>

#include <qrt/error.hpp>
#include <string>

namespace qrt::test {

/// Checks that `build()` (which builds a processor with an empty handler) throws
/// qrt::exception with invalid_argument, saying the handler is empty.
template <class Build>
void expect_empty_handler_refused(Build&& build) {
  try {
    build();
    ADD_FAILURE() << "an empty handler was accepted";
  } catch (const qrt::exception& e) {
    EXPECT_EQ(e.get().code, qrt::errc::invalid_argument);
    EXPECT_NE(e.get().message.find("handler is empty"), std::string::npos) << e.what();
  }
}

}  // namespace qrt::test
