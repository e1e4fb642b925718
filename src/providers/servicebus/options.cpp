// The public options of the Service Bus provider: presets and configuration parsing.
#include <qrt/servicebus.hpp>

#include "connection_string.hpp"
#include "core/config_binder.hpp"
#include "managed_identity.hpp"
#include "provider_settings.hpp"

namespace qrt::servicebus {

options options::for_high_throughput() {
  options o;
  o.prefetch_count = 50;
  return o;
}

options options::for_low_latency() {
  options o;
  o.prefetch_count = 1;
  return o;
}

namespace {

// The table binds provider_settings: the public options' fields through their pointers to
// members of options, and the test-only keys into the settings' own fields.
using binder = qrt::detail::config_binder<detail::provider_settings>;

// Every key options_from_config() accepts, read in this order (the preset first: it replaces
// the options); known_keys() and the refusal of any other key come from here. Each one acts
// (test/integration/servicebus/servicebus_config_keys_test.cpp shows how, key by key).
const binder& keys() {
  static const binder table{
      binder::accepted("provider", "servicebus: selects this provider"),
      binder::custom(
          "preset",
          [](std::string_view name, detail::provider_settings& s) -> result<void> {
            // Replaces the public options only (it is applied first, so nothing else is set).
            options& o = s;
            if (name == "high_throughput") {
              o = options::for_high_throughput();
            } else if (name == "low_latency") {
              o = options::for_low_latency();
            } else if (name == qrt::detail::runtime_only_preset) {
              // Sizes the runtime only: the provider keeps its defaults.
            } else if (!name.empty()) {
              return qrt::detail::config_field_error(
                  "preset", "unknown preset '" + std::string(name.substr(0, 64)) +
                                "' (one of: high_throughput, low_latency, low_resource)");
            }
            return {};
          },
          "high_throughput (prefetch 50), low_latency (prefetch 1) or low_resource (the "
          "defaults; a runtime of two threads)"),
      binder::text("connection_string", &options::connection_string,
                   "Endpoint=sb://NAMESPACE/ with SharedAccessKeyName and SharedAccessKey (or "
                   "SharedAccessSignature, or UseDevelopmentEmulator=true); required; secret"),
      binder::choice("auth", &options::auth,
                     {{"sas", auth_method::shared_access_signature},
                      {"managed_identity", auth_method::managed_identity}},
                     "where put-token's tokens come from: the connection string's SAS key, or "
                     "the managed identity of the Azure resource qrt runs on"),
      binder::text("managed_identity_client_id", &options::managed_identity_client_id,
                   "auth=managed_identity: a user-assigned identity's client id (empty: the "
                   "system-assigned identity)"),
      binder::text("managed_identity_endpoint", &options::managed_identity_endpoint,
                   "auth=managed_identity: the token endpoint (empty: from the environment, "
                   "else IMDS)"),
      binder::custom(
          "transport_type",
          [](std::string_view name, detail::provider_settings& o) -> result<void> {
            if (name == "amqp") {
              o.transport = transport_type::amqp;
              return {};
            }
            if (name == "amqp_websockets") {
              // Named by Azure's SDKs, so a config may carry it: say why it is refused.
              return qrt::detail::config_field_error(
                  "transport_type",
                  "amqp_websockets (AMQP over WebSockets, port 443) is not built; use amqp "
                  "(TCP 5671 with TLS)");
            }
            return qrt::detail::config_field_error(
                "transport_type",
                "unknown value '" + std::string(name.substr(0, 64)) + "' (one of: amqp)");
          },
          "amqp (TCP 5671 with TLS); amqp_websockets is not built and is refused"),
      binder::processing("max_concurrent_calls"),
      binder::integer("prefetch_count", &options::prefetch_count, 0, 100'000,
                      "messages a receiver link may hold locked without being asked (also a "
                      "processor's prefetch_count)"),
      binder::processing("max_auto_lock_renewal_duration"),
      binder::processing("max_concurrent_sessions", qrt::detail::session_key_doc),
      binder::processing("session_idle_timeout", qrt::detail::session_key_doc),
      binder::processing("max_session_hold", qrt::detail::session_key_doc),
      binder::runtime("worker_threads"),
      binder::runtime("thread_stack_size"),
      binder::duration("token_lifetime", &options::token_lifetime,
                       "lifetime of the SAS tokens qrt signs (replaced at 80%)",
                       {std::chrono::minutes(1)}),
      binder::duration("operation_timeout", &options::operation_timeout,
                       "bound on connect, put-token and $management round trips"),
      binder::integer("max_message_bytes", &options::max_message_bytes, 1024, 100ull << 20,
                      "one message, body plus properties"),
      binder::integer("max_prefetch_bytes", &options::max_prefetch_bytes, 0, 1ull << 40,
                      "bytes of prefetched messages held or asked for (0: no bound)"),
      binder::integer("max_links", &options::max_links, 0, 65'535,
                      "AMQP links held on the connection (0: no bound)"),
      binder::flag("tls_verify", &options::tls_verify,
                   "certificate chain and host name (off only for test peers)"),
      binder::flag("test_peer_admin", &detail::provider_settings::test_peer_admin,
                   "qrt's Service Bus test peer only: queue, topic and subscription management "
                   "through $peer-admin"),
  };
  return table;
}

}  // namespace

std::span<const std::string_view> known_keys() noexcept {
  return keys().keys();
}

result<options> options_from_config(const config& cfg) {
  auto settings = detail::settings_from_config(cfg);
  if (!settings) return settings.error();
  if (settings->test_peer_admin) {
    // options cannot carry it: dropping it would leave a client that silently lacks management.
    return fail(errc::configuration_error,
                "servicebus: field 'test_peer_admin' is read only by the registered provider "
                "(provider=servicebus through a qrt::provider_registry), not into "
                "servicebus::options");
  }
  options public_part = std::move(*settings);
  return public_part;
}

namespace detail {

result<provider_settings> settings_from_config(const config& cfg) {
  provider_settings o;
  if (auto r = keys().bind(cfg, o); !r) return r.error();
  const auto& client_id = o.managed_identity_client_id;
  const auto& identity_endpoint = o.managed_identity_endpoint;
  if (o.auth != auth_method::managed_identity &&
      (!client_id.empty() || !identity_endpoint.empty())) {
    return fail(errc::configuration_error, std::string("servicebus: field '") +
                                               (client_id.empty() ? "managed_identity_endpoint"
                                                                  : "managed_identity_client_id") +
                                               "' needs auth=managed_identity");
  }
  if (!identity_endpoint.empty()) {
    const detail::identity_endpoint probe{detail::identity_protocol::imds, identity_endpoint, {}};
    if (auto r = detail::build_identity_request(probe, detail::servicebus_resource, client_id);
        !r) {
      return fail(errc::configuration_error,
                  "servicebus: field 'managed_identity_endpoint': " + r.error().message);
    }
  }
  if (o.connection_string.empty()) {
    return fail(
        errc::configuration_error,
        "servicebus: field 'connection_string' is required (QRT_SERVICEBUS__CONNECTION_STRING)");
  }
  auto parsed = detail::parse_connection_string(o.connection_string,
                                                o.auth == auth_method::shared_access_signature
                                                    ? detail::credentials::required
                                                    : detail::credentials::optional);
  if (!parsed) return parsed.error();
  if (!parsed->use_tls && cfg.contains("tls_verify")) {
    // A development-emulator connection is plain TCP: there is no certificate to check.
    return fail(errc::configuration_error,
                "servicebus: field 'tls_verify' configures TLS, which "
                "UseDevelopmentEmulator=true in the connection string turns off");
  }
  return o;
}

}  // namespace detail

}  // namespace qrt::servicebus
