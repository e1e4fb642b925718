// The amqp provider's configuration, shared by options.cpp (the keys) and amqp_provider.cpp
// (make_provider applies the endpoint URL again, after any field set in C++).
#pragma once

#include <qrt/amqp.hpp>
#include <string_view>

namespace qrt::amqp::detail {

/// Parses "amqp[s]://[user[:password]@]host[:port][/]" into `o`; a configuration_error that
/// never echoes the URL (it may hold a password) otherwise.
result<void> apply_url(options& o, std::string_view url);

}  // namespace qrt::amqp::detail
