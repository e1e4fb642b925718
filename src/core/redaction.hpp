// What shows in place of a secret, wherever qrt prints text that may hold one: configuration
// errors and config::to_string() (config::printable_value), and the command line a benchmark
// report keeps (tools/qrt).
#pragma once

#include <string>
#include <string_view>

namespace qrt::detail {

/// The one marker shown instead of a secret.
inline constexpr std::string_view redacted = "<redacted>";

/// Every URL in `text` with its userinfo (what precedes '@' in the authority, a user and
/// password) replaced by `redacted`, the '@' and the host after it kept.
std::string without_userinfo(std::string_view text);

}  // namespace qrt::detail
