// What the tests and the fuzz targets ask of text a peer sent once qrt has put it into an error:
// it can be shown on a terminal, in a log line or in a Prometheus label as it is. Header-only,
// without gtest, so the fuzz targets share it.
#pragma once

#include <cstddef>
#include <string_view>

namespace qrt::test {

/// Whether `text` is well-formed UTF-8 (the byte ranges of the Unicode standard's table of
/// well-formed sequences: no overlong form, no surrogate, nothing past U+10FFFF, nothing cut
/// short) holding no control character: none of C0, DEL or C1 (U+0080-U+009F, which some
/// terminals obey as escape sequences).
inline bool fit_to_show(std::string_view text) {
  const auto byte_in = [&](std::size_t at, unsigned lo, unsigned hi) {
    if (at >= text.size()) return false;
    const auto b = static_cast<unsigned char>(text[at]);
    return b >= lo && b <= hi;
  };
  const auto tail = [&](std::size_t from, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
      if (!byte_in(from + i, 0x80, 0xbf)) return false;
    }
    return true;
  };
  std::size_t i = 0;
  while (i < text.size()) {
    const auto b = static_cast<unsigned char>(text[i]);
    std::size_t length = 0;
    if (b < 0x20 || b == 0x7f) return false;
    if (b < 0x80) {
      length = 1;
    } else if (b == 0xc2) {
      length = byte_in(i + 1, 0xa0, 0xbf) ? 2 : 0;  // U+0080-U+009F are the C1 controls
    } else if (b >= 0xc3 && b <= 0xdf) {
      length = tail(i + 1, 1) ? 2 : 0;
    } else if (b == 0xe0) {
      length = byte_in(i + 1, 0xa0, 0xbf) && tail(i + 2, 1) ? 3 : 0;
    } else if (b == 0xed) {
      length = byte_in(i + 1, 0x80, 0x9f) && tail(i + 2, 1) ? 3 : 0;
    } else if (b >= 0xe1 && b <= 0xef) {
      length = tail(i + 1, 2) ? 3 : 0;
    } else if (b == 0xf0) {
      length = byte_in(i + 1, 0x90, 0xbf) && tail(i + 2, 2) ? 4 : 0;
    } else if (b >= 0xf1 && b <= 0xf3) {
      length = tail(i + 1, 3) ? 4 : 0;
    } else if (b == 0xf4) {
      length = byte_in(i + 1, 0x80, 0x8f) && tail(i + 2, 2) ? 4 : 0;
    }
    if (length == 0) return false;
    i += length;
  }
  return true;
}

/// Bytes a hostile server may put into its error text: a terminal escape (ESC [2J clears the
/// screen), a C1 control (U+009B, a one-byte CSI) well-formed and raw, a line feed, a stray
/// continuation byte, an overlong '/', a surrogate, a sequence cut short, and 0xff; with text in
/// UTF-8 (café) that must survive.
inline constexpr std::string_view hostile_text =
    "caf\xc3\xa9 \x1b[2J \xc2\x9b"
    "31m \x9b \n \x80 \xc0\xaf \xed\xa0\x80 \xe2\x82 \xff end";

}  // namespace qrt::test
