// Azure Service Bus over AMQP 1.0, on qrt's AMQP core (Qpid Proton, never in this header).
//
// What it speaks: claims-based auth (a put-token on $cbs per entity, refreshed before the token
// expires) with SAS tokens from the connection string, Azure AD tokens from a managed identity
// (Azure Instance Metadata Service, or the App Service / Container Apps identity endpoint), or
// a user-supplied token hook; peek-lock with the lock token taken from the delivery tag, the
// x-opt-* annotations, native sessions through the com.microsoft:session-filter, the $management
// operations (renew-lock, renew-session-lock, peek, session state), the dead-letter sub-queue
// "<queue>/$DeadLetterQueue", and Service Bus error conditions mapped onto qrt::errc. Topics:
// publish to the topic's address; a subscription is read as a queue at
// "<topic>/Subscriptions/<name>"; its filter is a correlation rule managed through its
// $management node (com.microsoft:add-rule, remove-rule, enumerate-rules). Topics and
// subscriptions themselves are created outside qrt on a namespace (ARM), as queues are.
// See docs/servicebus.md for what is proven by the official SDK against the test peer.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <qrt/config.hpp>
#include <qrt/provider.hpp>
#include <qrt/registry.hpp>
#include <span>
#include <string>
#include <string_view>

namespace qrt::servicebus {

/// How the client reaches the namespace: AMQP over TCP (5671 with TLS, or 5672 for the
/// development emulator), the only transport built.
enum class transport_type { amqp };

/// Where put-token's tokens come from (a `tokens` hook, when set, replaces both).
enum class auth_method {
  /// SAS tokens signed with the connection string's SharedAccessKey, or its
  /// SharedAccessSignature as given.
  shared_access_signature,
  /// Azure AD tokens for https://servicebus.azure.net/ from the managed identity of the Azure
  /// resource qrt runs on; the connection string needs only Endpoint.
  managed_identity,
};

/// A token for a put-token that is not signed from a SAS key (Azure AD / Entra ID).
struct access_token {
  std::string token;         ///< secret
  std::string type = "jwt";  ///< the put-token type
  time_point expires_at{};   ///< replaced once 80% of its life has passed
};

/// Called for each audience ("sb://<namespace>/<entity>") when a token is needed; a user-supplied
/// hook for Azure AD (scope "https://servicebus.azure.net//.default"). Runs on qrt's threads and
/// may block briefly.
using token_provider = std::function<result<access_token>(const std::string& audience)>;

/// Settings of the Service Bus provider: where and how to authenticate, and receive tuning.
struct options {
  /// "Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=..;SharedAccessKey=.."
  /// (or SharedAccessSignature=..; UseDevelopmentEmulator=true for a local emulator). Secret.
  /// With managed identity or a `tokens` hook, "Endpoint=sb://<ns>.servicebus.windows.net/" is
  /// enough.
  std::string connection_string;
  auth_method auth = auth_method::shared_access_signature;  ///< where put-token's tokens come from
  /// Managed identity: a user-assigned identity's client id; empty selects the system-assigned
  /// identity.
  std::string managed_identity_client_id;
  /// Managed identity: the token endpoint ("http://host[:port]/path"), spoken with the IMDS
  /// protocol (header Metadata: true). Empty: IDENTITY_ENDPOINT + IDENTITY_HEADER from the
  /// environment when both are set (App Service, Container Apps, Functions), else IMDS at
  /// http://169.254.169.254/metadata/identity/oauth2/token.
  std::string managed_identity_endpoint;
  transport_type transport =
      transport_type::amqp;  ///< AMQP over TLS (plain TCP for the development emulator)
  /// Messages a receiver link may hold locked without being asked (0: only what a receive asks).
  std::uint32_t prefetch_count = 0;
  /// Lifetime of the SAS tokens qrt signs; a token is replaced once 80% of it has passed (Azure
  /// AD tokens carry their own expiry and follow the same 80% rule).
  milliseconds token_lifetime{std::chrono::hours(1)};
  /// Bound on connect, put-token and $management round trips.
  milliseconds operation_timeout{std::chrono::seconds(60)};
  /// One message, body plus properties (Standard tier: 256 KiB; Premium: up to 100 MiB).
  std::size_t max_message_bytes = 256 * 1024;
  /// The most bytes of prefetched messages this client holds or has asked the service for,
  /// across its receiver links: buffered messages by size, plus outstanding credit counted at
  /// max_message_bytes + 64 KiB each (what one credit may bring). Credit beyond it is withheld;
  /// a receive waiting on an empty link still gets one message at a time. 0: no bound.
  std::uint64_t max_prefetch_bytes = 64ull << 20;
  /// The most AMQP links this client holds on its connection (a sender, a receiver and a
  /// $management pair per entity, and the $cbs pair). At the cap, the least recently used idle
  /// sender or $management pair is closed to make room; sends and management calls wait while
  /// every link is busy, and a receiver beyond the cap is refused (transient provider_error
  /// naming max_links). 0: no bound.
  std::size_t max_links = 1000;
  bool tls_verify = true;  ///< certificate chain and host name; off only for test peers
  /// Replaces SAS signing and managed identity with a user-supplied token source.
  token_provider tokens;

  /// 32 concurrent calls, prefetch 50, 10 minutes of auto lock renewal.
  static options for_high_throughput();
  /// 4 concurrent calls, prefetch 1, 1 minute of auto lock renewal.
  static options for_low_latency();
};

/// Reads the keys known_keys() lists (docs/servicebus.md describes each; the list and a line on
/// each live in one table, src/providers/servicebus/options.cpp). Unknown keys are refused; the
/// connection string is checked here (errors name the bad part and never echo the key).
/// `test_peer_admin=true` (qrt's test peer only) is refused here: options does not carry it,
/// only the registered provider ("servicebus" in a provider_registry) reads it.
result<options> options_from_config(const config& cfg);
/// The keys options_from_config() accepts (any other key is refused, naming it).
std::span<const std::string_view> known_keys() noexcept;

/// A provider that connects on first use, on a strand of `executor`.
result<provider_ptr> make_provider(const options& opts, boost::asio::any_io_executor executor);

/// Registers "servicebus".
void register_provider(provider_registry& registry);

}  // namespace qrt::servicebus
