#include "bounded_file.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace qrt::detail {

result<std::string> read_file_at_most(const std::string& path, std::size_t most,
                                      std::string_view what) {
  const std::string named = std::string(what) + " '" + path + "'";
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return fail(errc::invalid_argument, named + " is a directory, not a file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(errc::invalid_argument, "cannot read " + named);
  if (const auto size = std::filesystem::file_size(path, ec); !ec && size > most) {
    return fail(errc::message_too_large, named + " is " + std::to_string(size) +
                                             " bytes; at most " + std::to_string(most) +
                                             " are read");
  }
  std::string text;
  char chunk[16 * 1024];
  while (text.size() <= most) {
    in.read(chunk, static_cast<std::streamsize>(
                       std::min<std::size_t>(sizeof chunk, most + 1 - text.size())));
    text.append(chunk, static_cast<std::size_t>(in.gcount()));
    if (!in) break;
  }
  if (in.bad()) return fail(errc::invalid_argument, "cannot read " + named);
  if (text.size() > most) {
    return fail(errc::message_too_large, named + " holds more than " + std::to_string(most) +
                                             " bytes; at most " + std::to_string(most) +
                                             " are read");
  }
  return text;
}

}  // namespace qrt::detail
