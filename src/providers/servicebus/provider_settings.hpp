// What the Service Bus provider is built from: the public options, plus the settings only qrt's
// own tests use, which therefore stay out of include/qrt/servicebus.hpp.
#pragma once

#include <qrt/config.hpp>
#include <qrt/servicebus.hpp>

namespace qrt::servicebus::detail {

/// The public options and the test-only knobs. Derived from options so that the configuration
/// table binds the public fields as they are (pointers to members of options).
struct provider_settings : options {
  /// qrt's Service Bus test peer only: queue, topic and subscription management and queue
  /// stats through the peer's "$peer-admin" node. A real namespace manages entities through ARM
  /// or the ATOM API, which qrt does not call. Configuration key `test_peer_admin`.
  bool test_peer_admin = false;
};

/// Reads every key of known_keys(), the test-only ones included.
result<provider_settings> settings_from_config(const config& cfg);

/// The provider the registry makes for "servicebus".
result<provider_ptr> make_provider(const provider_settings& settings,
                                   boost::asio::any_io_executor executor);

}  // namespace qrt::servicebus::detail
