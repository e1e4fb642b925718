// The public options of the Service Bus provider: presets and configuration parsing.
#include <qrt/servicebus.hpp>

#include "connection_string.hpp"
#include "managed_identity.hpp"

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
// Every key options_from_config() reads; reject_unknown() refuses anything else. Each one acts
// (test/integration/servicebus/servicebus_config_keys_test.cpp shows how, key by key).
constexpr std::string_view known_key_list[] = {"provider",
                                               "preset",
                                               "connection_string",
                                               "auth",
                                               "managed_identity_client_id",
                                               "managed_identity_endpoint",
                                               "transport_type",
                                               "max_concurrent_calls",
                                               "prefetch_count",
                                               "max_auto_lock_renewal_duration",
                                               "token_lifetime",
                                               "operation_timeout",
                                               "max_message_bytes",
                                               "max_prefetch_bytes",
                                               "max_links",
                                               "tls_verify",
                                               "test_peer_admin"};
}  // namespace

std::span<const std::string_view> known_keys() noexcept {
  return known_key_list;
}

result<options> options_from_config(const config& cfg) {
  if (auto r = cfg.reject_unknown(known_keys()); !r) return r.error();
  options o;
  auto preset = cfg.get_string("preset", std::string());
  if (!preset) return preset.error();
  if (*preset == "high_throughput") {
    o = options::for_high_throughput();
  } else if (*preset == "low_latency") {
    o = options::for_low_latency();
  } else if (!preset->empty()) {
    return fail(errc::configuration_error,
                "servicebus: field 'preset' must be high_throughput or "
                "low_latency, not '" +
                    *preset + "'");
  }
#define QRT_TRY(var, expr) \
  auto var = (expr);       \
  if (!var) return var.error()
  QRT_TRY(auth, cfg.get_string("auth", std::string("sas")));
  if (*auth == "sas") {
    o.auth = auth_method::shared_access_signature;
  } else if (*auth == "managed_identity") {
    o.auth = auth_method::managed_identity;
  } else {
    return fail(errc::configuration_error,
                "servicebus: field 'auth' must be sas or managed_identity, not '" + *auth + "'");
  }
  QRT_TRY(client_id, cfg.get_string("managed_identity_client_id", std::string()));
  QRT_TRY(identity_endpoint, cfg.get_string("managed_identity_endpoint", std::string()));
  if (o.auth != auth_method::managed_identity &&
      (!client_id->empty() || !identity_endpoint->empty())) {
    return fail(errc::configuration_error, std::string("servicebus: field '") +
                                               (client_id->empty() ? "managed_identity_endpoint"
                                                                   : "managed_identity_client_id") +
                                               "' needs auth=managed_identity");
  }
  if (!identity_endpoint->empty()) {
    const detail::identity_endpoint probe{detail::identity_protocol::imds, *identity_endpoint, {}};
    if (auto r = detail::build_identity_request(probe, detail::servicebus_resource, *client_id);
        !r) {
      return fail(errc::configuration_error,
                  "servicebus: field 'managed_identity_endpoint': " + r.error().message);
    }
  }
  o.managed_identity_client_id = *client_id;
  o.managed_identity_endpoint = *identity_endpoint;
  QRT_TRY(cs, cfg.get_string("connection_string", std::string()));
  if (cs->empty()) {
    return fail(
        errc::configuration_error,
        "servicebus: field 'connection_string' is required (QRT_SERVICEBUS__CONNECTION_STRING)");
  }
  auto parsed = detail::parse_connection_string(*cs, o.auth == auth_method::shared_access_signature
                                                         ? detail::credentials::required
                                                         : detail::credentials::optional);
  if (!parsed) return parsed.error();
  if (!parsed->use_tls && cfg.contains("tls_verify")) {
    // A development-emulator connection is plain TCP: there is no certificate to check.
    return fail(errc::configuration_error,
                "servicebus: field 'tls_verify' configures TLS, which "
                "UseDevelopmentEmulator=true in the connection string turns off");
  }
  o.connection_string = *cs;
  QRT_TRY(transport, cfg.get_string("transport_type", std::string("amqp")));
  if (*transport == "amqp") {
    o.transport = transport_type::amqp;
  } else if (*transport == "amqp_websockets") {
    o.transport = transport_type::amqp_websockets;
  } else {
    return fail(errc::configuration_error,
                "servicebus: field 'transport_type' must be amqp or "
                "amqp_websockets, not '" +
                    *transport + "'");
  }
  QRT_TRY(prefetch, cfg.get_uint("prefetch_count", o.prefetch_count, 0, 100'000));
  o.prefetch_count = static_cast<std::uint32_t>(*prefetch);
  // A processor's settings: accepted so one config describes the client and its processor
  // (qrt::processor_options::from_config reads them), checked here so a bad one fails now.
  if (auto processing = check_processing_keys(cfg); !processing) return processing.error();
  QRT_TRY(lifetime, cfg.get_duration("token_lifetime", o.token_lifetime));
  if (*lifetime < std::chrono::minutes(1)) {
    return fail(errc::configuration_error,
                "servicebus: field 'token_lifetime' must be at least 1m");
  }
  o.token_lifetime = *lifetime;
  QRT_TRY(timeout, cfg.get_duration("operation_timeout", o.operation_timeout));
  o.operation_timeout = *timeout;
  QRT_TRY(max_bytes, cfg.get_uint("max_message_bytes", o.max_message_bytes, 1024, 100ull << 20));
  o.max_message_bytes = *max_bytes;
  QRT_TRY(prefetch_bytes, cfg.get_uint("max_prefetch_bytes", o.max_prefetch_bytes, 0, 1ull << 40));
  o.max_prefetch_bytes = *prefetch_bytes;
  QRT_TRY(links, cfg.get_uint("max_links", o.max_links, 0, 65'535));
  o.max_links = *links;
  QRT_TRY(verify, cfg.get_bool("tls_verify", o.tls_verify));
  o.tls_verify = *verify;
  QRT_TRY(admin, cfg.get_bool("test_peer_admin", o.test_peer_admin));
  o.test_peer_admin = *admin;
#undef QRT_TRY
  if (o.transport == transport_type::amqp_websockets) {
    return fail(
        errc::configuration_error,
        "servicebus: transport_type amqp_websockets (AMQP over WebSockets, port 443) is not "
        "built; use amqp (TCP 5671 with TLS)");
  }
  return o;
}

}  // namespace qrt::servicebus
