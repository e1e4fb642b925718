// What the fuzz targets assert. A property is something every answer of a parser must satisfy,
// whatever the input: a violation names the property and aborts, so libFuzzer keeps the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <qrt/error.hpp>
#include <string_view>

#include "../unit/support/shown_text.hpp"

#define QRT_FUZZ_CHECK(condition, property) \
  ((condition) ? (void)0 : ::qrt::fuzz::violated(property, #condition, __FILE__, __LINE__))

namespace qrt::fuzz {

[[noreturn]] inline void violated(const char* property, const char* condition, const char* file,
                                  int line) {
  std::fprintf(stderr, "fuzz property violated: %s (%s, %s:%d)\n", property, condition, file, line);
  std::abort();
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

/// A refusal says what is wrong, with the code the parser promises for bad input.
inline void check_refusal(const error& e, errc expected) {
  QRT_FUZZ_CHECK(e.code == expected, "a refusal has the parser's documented error code");
  QRT_FUZZ_CHECK(!e.message.empty(), "a refusal says why");
}

/// A peer's text reaches an error's message and provider code (and from there logs, terminals
/// and the CLI) only as text fit to show: valid UTF-8 without control characters.
inline void check_shown(const error& e) {
  QRT_FUZZ_CHECK(test::fit_to_show(e.message),
                 "an error message is valid UTF-8 without control characters");
  QRT_FUZZ_CHECK(test::fit_to_show(e.provider_code),
                 "an error's provider code is valid UTF-8 without control characters");
}

/// Splits "first line\nrest" (no newline: the whole input is the first line, rest empty).
inline std::pair<std::string_view, std::string_view> first_line(std::string_view text) {
  const auto nl = text.find('\n');
  if (nl == std::string_view::npos) return {text, {}};
  return {text.substr(0, nl), text.substr(nl + 1)};
}

}  // namespace qrt::fuzz
