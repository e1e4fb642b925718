#include <qrt/sqs.hpp>

#include "core/config_binder.hpp"

namespace qrt::sqs {

options options::for_high_throughput() {
  options o;
  o.max_number_of_messages = 10;
  o.wait_time_seconds = seconds{20};
  o.visibility_timeout = seconds{300};
  o.receive_request_attempt_id = true;
  return o;
}

options options::for_cost_optimization() {
  options o;
  o.max_number_of_messages = 10;
  o.wait_time_seconds = seconds{20};
  o.visibility_timeout = seconds{30};
  o.receive_request_attempt_id = false;
  return o;
}

namespace {

using binder = qrt::detail::config_binder<options>;

// The longest visibility SQS takes (12 hours).
constexpr qrt::detail::duration_bounds visibility_bounds{seconds{0}, seconds{43'200}, true};
// A receive's visibility is its lock: 0 would lock nothing (the message is visible again before
// qrt could hand it out).
constexpr qrt::detail::duration_bounds lock_bounds{seconds{1}, seconds{43'200}, true};

// Every key options_from_config() accepts, read in this order (the preset first: it replaces
// the options); known_keys() and the refusal of any other key come from here. Each one acts
// (test/integration/sqs/sqs_config_keys_test.cpp shows how, key by key).
const binder& keys() {
  static const binder table{
      binder::accepted("provider", "sqs: selects this provider"),
      binder::custom(
          "preset",
          [](std::string_view name, options& o) -> result<void> {
            if (name == "high_throughput") {
              o = options::for_high_throughput();
            } else if (name == "cost_optimization") {
              o = options::for_cost_optimization();
            } else if (name == qrt::detail::runtime_only_preset) {
              // Sizes the runtime only: the provider keeps its defaults.
            } else {
              return qrt::detail::config_field_error(
                  "preset", "unknown preset '" + std::string(name.substr(0, 64)) +
                                "' (one of: high_throughput, cost_optimization, low_resource)");
            }
            return {};
          },
          "high_throughput (10 per call, long polls, 5-minute visibility, attempt "
          "ids), cost_optimization (long polls, 30 s visibility) or low_resource (the "
          "defaults; a runtime of two threads)"),
      binder::text("region", &options::region,
                   "empty: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else us-east-1"),
      binder::text("endpoint", &options::endpoint,
                   "empty: https://sqs.REGION.amazonaws.com; http:// talks plain HTTP"),
      binder::text("sns_endpoint", &options::sns_endpoint,
                   "where topics (SNS) are reached; empty: endpoint when set, else "
                   "https://sns.REGION.amazonaws.com"),
      binder::text("access_key_id", &options::access_key_id,
                   "explicit key, with secret_access_key; wins over the credential chain"),
      binder::text("secret_access_key", &options::secret_access_key,
                   "secret of access_key_id (never printed)"),
      binder::text("session_token", &options::session_token,
                   "for temporary credentials (never printed)"),
      binder::text("profile", &options::profile,
                   "shared-file profile; empty: AWS_PROFILE, else default"),
      binder::flag("verify_tls", &options::verify_tls,
                   "TLS certificate verification of https endpoints (off only for test rigs)"),
      binder::text("ca_file", &options::ca_file,
                   "extra CA bundle (PEM) trusted besides the system's"),
      binder::integer("max_number_of_messages", &options::max_number_of_messages, 1, 10,
                      "messages asked for per ReceiveMessage call"),
      binder::duration("wait_time", &options::wait_time_seconds,
                       "longest long poll per ReceiveMessage call (whole seconds, 0-20 s)",
                       {seconds{0}, seconds{20}, true}),
      binder::duration("visibility_timeout", &options::visibility_timeout,
                       "visibility asked for on receive and by renew_lock (whole seconds, "
                       "1-43200 s); unset: the queue's own",
                       lock_bounds),
      binder::flag("receive_request_attempt_id", &options::receive_request_attempt_id,
                   "FIFO: a retried receive gets the same messages back"),
      binder::duration("abandon_visibility", &options::abandon_visibility,
                       "visibility of an abandoned message: 0 redelivers at once (whole seconds)",
                       visibility_bounds),
      binder::text("default_message_group", &options::default_message_group,
                   "MessageGroupId of FIFO messages sent without a session"),
      binder::integer("max_message_bytes", &options::max_message_bytes, 1'024, 1'048'576,
                      "largest message and batch, as encoded"),
      binder::integer("max_idle_connections", &options::max_idle_connections, 0, 1'024,
                      "idle keep-alive connections kept per endpoint"),
      binder::integer("max_connections", &options::max_connections, 0, 65'536,
                      "connections open at once per endpoint (0: no limit)"),
      binder::duration("connect_timeout", &options::connect_timeout, "bound on TCP and TLS connect",
                       qrt::detail::positive_duration),
      binder::duration("request_timeout", &options::request_timeout,
                       "per HTTP call, on top of a receive's long-poll wait",
                       qrt::detail::positive_duration),
      binder::integer("max_retries", &options::max_retries, 0, 20,
                      "retries of a call that may succeed later (throttling, connection loss, "
                      "5xx)"),
      binder::duration("retry_base_delay", &options::retry_base_delay,
                       "first back-off between retries (doubles, with jitter, up to 5 s)",
                       qrt::detail::positive_duration),
      binder::processing("max_concurrent_calls"),
      binder::processing("prefetch_count"),
      binder::processing("max_auto_lock_renewal_duration"),
      binder::processing("max_concurrent_sessions", qrt::detail::session_key_doc),
      binder::processing("session_idle_timeout", qrt::detail::session_key_doc),
      binder::processing("max_session_hold", qrt::detail::session_key_doc),
      binder::runtime("worker_threads"),
      binder::runtime("thread_stack_size"),
  };
  return table;
}

}  // namespace

std::span<const std::string_view> known_keys() noexcept {
  return keys().keys();
}

result<options> options_from_config(const config& cfg) {
  options o;
  if (auto r = keys().bind(cfg, o); !r) return r.error();
  if (o.endpoint.starts_with("http://") &&
      (o.sns_endpoint.empty() || o.sns_endpoint.starts_with("http://"))) {
    // Certificate settings of a plain-HTTP endpoint would be taken and do nothing.
    for (std::string_view key : {"verify_tls", "ca_file"}) {
      if (cfg.contains(key)) {
        return fail(
            errc::configuration_error,
            "field '" + std::string(key) + "': configures TLS, and the endpoint is plain http://");
      }
    }
  }
  if (o.access_key_id.empty() != o.secret_access_key.empty()) {
    return fail(errc::configuration_error,
                "fields 'access_key_id' and 'secret_access_key' must be given together");
  }
  return o;
}

void register_provider(provider_registry& registry) {
  registry.add("sqs", &options_from_config, &make_provider);
}

}  // namespace qrt::sqs
