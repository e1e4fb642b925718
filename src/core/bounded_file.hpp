// Reading a file a user names (a flag, a configuration) no further than a limit.
#pragma once

#include <cstddef>
#include <qrt/error.hpp>
#include <string>
#include <string_view>

namespace qrt::detail {

/// The most a file of settings (a configuration, benchmark targets) may hold: far more than any
/// needs; a larger file is a mistake, or not such a file.
inline constexpr std::size_t largest_settings_file = std::size_t{1} << 20;

/// The bytes of the file at `path` when it holds at most `most`; `what` ("configuration file")
/// names it in errors, with its path. A pipe or a device (/dev/stdin, a FIFO, /dev/zero) has no
/// size to check first: it is read no further than `most` + 1 bytes, so one that never ends
/// cannot exhaust memory. Errors: a directory, or a file that cannot be opened or read,
/// invalid_argument; more than `most` bytes, message_too_large saying how many are read.
result<std::string> read_file_at_most(const std::string& path, std::size_t most,
                                      std::string_view what);

}  // namespace qrt::detail
