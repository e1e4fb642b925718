// The AWS SQS provider: the JSON 1.0 protocol over HTTPS with SigV4, a credential chain, and a
// keep-alive connection pool. Topics are SNS topics fanning out to SQS queues (SNS's Query
// protocol, signed the same way). See docs/sqs.md for how qrt's contract maps onto SQS (FIFO
// groups as sessions, the dead-letter convention, what fauxqs does differently).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <qrt/config.hpp>
#include <qrt/provider.hpp>
#include <qrt/registry.hpp>
#include <span>
#include <string>
#include <string_view>

namespace qrt::sqs {

using std::chrono::seconds;

/// Receive tuning plus what a client needs to reach SQS.
struct options {
  // ---- where and who ----
  /// Empty: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else "us-east-1".
  std::string region;
  /// Empty: https://sqs.REGION.amazonaws.com. Set for emulators and VPC endpoints;
  /// "http://127.0.0.1:4566" talks plain HTTP.
  std::string endpoint;
  /// Where SNS (topics) is reached. Empty: `endpoint` when that is set (emulators serve both),
  /// else https://sns.REGION.amazonaws.com.
  std::string sns_endpoint;
  /// Explicit keys win over the chain (environment, shared files, ECS, EC2 IMDSv2).
  std::string access_key_id;
  std::string secret_access_key;  ///< secret: never printed
  std::string session_token;      ///< secret: never printed; for temporary credentials
  /// Shared-file profile; empty: AWS_PROFILE, else "default".
  std::string profile;
  /// TLS certificate verification for https endpoints. Turning it off is for test rigs only.
  bool verify_tls = true;
  /// Extra CA bundle (PEM file) trusted besides the system store.
  std::string ca_file;

  // ---- receive tuning ----
  /// Messages asked for per ReceiveMessage call (1-10). A receive of more loops calls.
  int max_number_of_messages = 10;
  /// Longest long poll per ReceiveMessage call (0-20 s); a longer receive wait polls again.
  seconds wait_time_seconds{20};
  /// Visibility timeout asked for on receive (1-43200 s: it is the lock) and used by renew_lock;
  /// nullopt: the queue's own VisibilityTimeout.
  std::optional<seconds> visibility_timeout;
  /// FIFO: send a ReceiveRequestAttemptId so a receive retried after a network failure gets
  /// the same messages back instead of locking new ones.
  bool receive_request_attempt_id = false;

  // ---- behaviour ----
  /// Visibility given to an abandoned message: 0 redelivers at once; more is a back-off.
  seconds abandon_visibility{0};
  /// MessageGroupId for FIFO messages sent without a session.
  std::string default_message_group = "default";
  /// Largest message (body plus attributes, as encoded) and largest batch. 262144 works with
  /// every queue; raise to 1048576 for queues created with the larger MaximumMessageSize.
  std::size_t max_message_bytes = 262'144;

  // ---- transport ----
  /// Idle keep-alive connections kept per endpoint.
  std::size_t max_idle_connections = 16;
  /// Connections open at once per endpoint (busy, idle or connecting); 0: no limit. At the cap
  /// a call waits in line, first come first served, until a connection comes free or its
  /// request_timeout passes. A receive holds its connection for its whole long poll.
  std::size_t max_connections = 64;
  std::chrono::milliseconds connect_timeout{5'000};  ///< bound on TCP and TLS connect
  /// Per HTTP call, on top of a receive's long-poll wait.
  std::chrono::milliseconds request_timeout{10'000};
  /// Retries of a failed call that may succeed later (throttling, connection loss, 5xx).
  int max_retries = 3;
  /// First back-off between retries (doubles each time, with jitter, capped at 5 s).
  std::chrono::milliseconds retry_base_delay{100};

  // ---- reporting ----
  /// Where the provider reports what it decides on its own, one line each, never a secret or a
  /// message body: a risky transport (credentials over plain HTTP, TLS verification off; once
  /// per provider) and every received message it cannot decode (dead-lettered or released,
  /// with a running count). Empty: stderr, prefixed "qrt: ".
  std::function<void(const std::string&)> warn;

  /// Many messages per call, long polls, 5-minute visibility, attempt ids.
  static options for_high_throughput();
  /// Long polls to avoid paying for empty receives, 30 s visibility.
  static options for_cost_optimization();
};

/// Reads the keys known_keys() lists (docs/sqs.md describes each; the list and a line on each
/// live in one table, src/providers/sqs/options.cpp). max_concurrent_calls, prefetch_count and
/// max_auto_lock_renewal_duration are only checked: they configure a qrt::processor built from
/// the same config (processor_options::from_config). Unknown or malformed fields fail with
/// errc::configuration_error naming the field.
result<options> options_from_config(const config& cfg);
/// The keys options_from_config() accepts (any other key is refused, naming it).
std::span<const std::string_view> known_keys() noexcept;

/// Never fails for well-formed options; credentials are resolved on first use, so a missing
/// key shows up as errc::permission on the first call.
result<provider_ptr> make_provider(const options& opts, boost::asio::any_io_executor executor);

/// Registers "sqs".
void register_provider(provider_registry& registry);

}  // namespace qrt::sqs
