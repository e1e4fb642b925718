#include <qrt/sqs.hpp>

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
// Every key options_from_config() reads; reject_unknown() refuses anything else. Each one acts
// (test/integration/sqs/sqs_config_keys_test.cpp shows how, key by key).
constexpr std::string_view known_key_list[] = {
    "provider", "preset", "region", "endpoint", "access_key_id", "secret_access_key",
    "session_token", "profile", "verify_tls", "ca_file", "max_number_of_messages", "wait_time",
    "visibility_timeout", "receive_request_attempt_id", "abandon_visibility",
    "default_message_group", "max_message_bytes", "max_idle_connections", "max_connections",
    "connect_timeout", "request_timeout", "max_retries", "retry_base_delay",
    // read by processor_options::from_config
    "max_concurrent_calls", "prefetch_count", "max_auto_lock_renewal_duration"};
}  // namespace

std::span<const std::string_view> known_keys() noexcept {
  return known_key_list;
}

result<options> options_from_config(const config& cfg) {
  if (auto r = cfg.reject_unknown(known_keys()); !r) return r.error();
  // A processor's settings: accepted so one config describes the client and its processor
  // (qrt::processor_options::from_config reads them), checked here so a bad one fails now.
  if (auto processing = check_processing_keys(cfg); !processing) return processing.error();
  options o;
  if (auto preset = cfg.get("preset")) {
    if (*preset == "high_throughput") {
      o = options::for_high_throughput();
    } else if (*preset == "cost_optimization") {
      o = options::for_cost_optimization();
    } else {
      return fail(errc::configuration_error, "field 'preset': unknown preset '" + *preset +
                                                 "' (one of: high_throughput, cost_optimization)");
    }
  }
  auto str = [&](std::string_view key, std::string& into) -> result<void> {
    auto v = cfg.get_string(key, into);
    if (!v) return v.error();
    into = std::move(*v);
    return {};
  };
  // Durations in whole seconds where SQS only takes seconds.
  auto secs = [&](std::string_view key, seconds fallback, seconds max) -> result<seconds> {
    auto d = cfg.get_duration(key, fallback);
    if (!d) return d.error();
    if (d->count() % 1000 != 0 || *d < std::chrono::milliseconds(0) || *d > max) {
      return fail(errc::configuration_error, "field '" + std::string(key) +
                                                 "': must be whole seconds between 0s and " +
                                                 std::to_string(max.count()) + "s");
    }
    return std::chrono::duration_cast<seconds>(*d);
  };
  for (auto [key, slot] : {std::pair{"region", &o.region},
                           {"endpoint", &o.endpoint},
                           {"access_key_id", &o.access_key_id},
                           {"secret_access_key", &o.secret_access_key},
                           {"session_token", &o.session_token},
                           {"profile", &o.profile},
                           {"ca_file", &o.ca_file},
                           {"default_message_group", &o.default_message_group}}) {
    if (auto r = str(key, *slot); !r) return r.error();
  }
  auto verify = cfg.get_bool("verify_tls", o.verify_tls);
  if (!verify) return verify.error();
  o.verify_tls = *verify;
  auto max_n = cfg.get_uint("max_number_of_messages",
                            static_cast<std::uint64_t>(o.max_number_of_messages), 1, 10);
  if (!max_n) return max_n.error();
  o.max_number_of_messages = static_cast<int>(*max_n);
  auto wait = secs("wait_time", o.wait_time_seconds, seconds{20});
  if (!wait) return wait.error();
  o.wait_time_seconds = *wait;
  if (cfg.contains("visibility_timeout")) {
    auto vis = secs("visibility_timeout", seconds{30}, seconds{43'200});
    if (!vis) return vis.error();
    o.visibility_timeout = *vis;
  }
  auto attempt = cfg.get_bool("receive_request_attempt_id", o.receive_request_attempt_id);
  if (!attempt) return attempt.error();
  o.receive_request_attempt_id = *attempt;
  auto abandon = secs("abandon_visibility", o.abandon_visibility, seconds{43'200});
  if (!abandon) return abandon.error();
  o.abandon_visibility = *abandon;
  auto max_bytes = cfg.get_uint("max_message_bytes", o.max_message_bytes, 1'024, 1'048'576);
  if (!max_bytes) return max_bytes.error();
  o.max_message_bytes = *max_bytes;
  auto idle = cfg.get_uint("max_idle_connections", o.max_idle_connections, 0, 1'024);
  if (!idle) return idle.error();
  o.max_idle_connections = *idle;
  auto max_conn = cfg.get_uint("max_connections", o.max_connections, 0, 65'536);
  if (!max_conn) return max_conn.error();
  o.max_connections = *max_conn;
  for (auto [key, slot] : {std::pair{"connect_timeout", &o.connect_timeout},
                           {"request_timeout", &o.request_timeout},
                           {"retry_base_delay", &o.retry_base_delay}}) {
    auto d = cfg.get_duration(key, *slot);
    if (!d) return d.error();
    if (d->count() <= 0) {
      return fail(errc::configuration_error, "field '" + std::string(key) + "': must be positive");
    }
    *slot = *d;
  }
  auto retries = cfg.get_uint("max_retries", static_cast<std::uint64_t>(o.max_retries), 0, 20);
  if (!retries) return retries.error();
  o.max_retries = static_cast<int>(*retries);
  if (o.endpoint.starts_with("http://")) {
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
