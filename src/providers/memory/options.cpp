#include <qrt/memory.hpp>
#include <thread>

namespace qrt::memory {

options options::for_high_throughput() {
  options o;
  o.max_queue_size = 10'000;
  o.enable_persistence = false;
  o.worker_threads = std::max(1u, std::thread::hardware_concurrency());
  o.channel_buffer_size = 1'000;
  return o;
}

options options::for_testing() {
  options o;
  o.max_queue_size = 1'000;
  o.enable_persistence = false;
  o.worker_threads = 1;  // deterministic
  o.channel_buffer_size = 100;
  return o;
}

namespace {
// Every key options_from_config() reads; reject_unknown() refuses anything else. Each one acts
// (test/unit/providers/memory/config_keys_test.cpp shows how, key by key).
constexpr std::string_view known_key_list[] = {
    "provider", "preset", "max_queue_size", "max_dead_letter_queue_size", "enable_persistence",
    "persistence_path", "persistence_open_timeout", "durability", "sync_interval", "max_disk_bytes",
    "worker_threads", "channel_buffer_size", "max_message_bytes", "max_queue_bytes",
    "max_memory_bytes", "queues", "lock_duration", "max_delivery_count", "default_time_to_live",
    "dead_letter_on_expiration", "requires_session",
    // read by processor_options::from_config
    "max_concurrent_calls", "prefetch_count", "max_auto_lock_renewal_duration"};
}  // namespace

std::span<const std::string_view> known_keys() noexcept {
  return known_key_list;
}

result<options> options_from_config(const config& cfg) {
  auto known = cfg.reject_unknown(known_keys());
  if (!known) return known.error();
  // A processor's settings: accepted so one config describes the client and its processor
  // (qrt::processor_options::from_config reads them), checked here so a bad one fails now.
  if (auto processing = check_processing_keys(cfg); !processing) return processing.error();

  options o;
  auto preset = cfg.get_string("preset", "");
  if (*preset == "high_throughput")
    o = options::for_high_throughput();
  else if (*preset == "testing")
    o = options::for_testing();
  else if (!preset->empty()) {
    return fail(errc::configuration_error, "field 'preset': unknown preset '" + *preset +
                                               "' (one of: high_throughput, testing)");
  }

#define QRT_READ(field, expr) \
  do {                        \
    auto v = (expr);          \
    if (!v) return v.error(); \
    field = *v;               \
  } while (0)

  QRT_READ(o.max_queue_size, cfg.get_uint("max_queue_size", o.max_queue_size, 1, 1u << 30));
  QRT_READ(o.max_dead_letter_queue_size,
           cfg.get_uint("max_dead_letter_queue_size", o.max_dead_letter_queue_size, 1, 1u << 30));
  QRT_READ(o.enable_persistence, cfg.get_bool("enable_persistence", o.enable_persistence));
  QRT_READ(o.persistence_path, cfg.get_string("persistence_path", o.persistence_path));
  QRT_READ(o.persistence_open_timeout,
           cfg.get_duration("persistence_open_timeout", o.persistence_open_timeout));
  QRT_READ(o.sync_interval, cfg.get_duration("sync_interval", o.sync_interval));
  QRT_READ(o.max_disk_bytes, cfg.get_uint("max_disk_bytes", o.max_disk_bytes));
  QRT_READ(o.worker_threads, cfg.get_uint("worker_threads", o.worker_threads, 1, 1024));
  QRT_READ(o.channel_buffer_size,
           cfg.get_uint("channel_buffer_size", o.channel_buffer_size, 1, 1u << 20));
  QRT_READ(o.max_message_bytes,
           cfg.get_uint("max_message_bytes", o.max_message_bytes, 1, 1u << 30));
  QRT_READ(o.max_queue_bytes, cfg.get_uint("max_queue_bytes", o.max_queue_bytes));
  QRT_READ(o.max_memory_bytes, cfg.get_uint("max_memory_bytes", o.max_memory_bytes));
  QRT_READ(o.queue_defaults.lock_duration,
           cfg.get_duration("lock_duration", o.queue_defaults.lock_duration));
  QRT_READ(o.queue_defaults.max_delivery_count,
           cfg.get_uint("max_delivery_count", o.queue_defaults.max_delivery_count, 0, 1u << 20));
  QRT_READ(o.queue_defaults.dead_letter_on_expiration,
           cfg.get_bool("dead_letter_on_expiration", o.queue_defaults.dead_letter_on_expiration));
  QRT_READ(o.queue_defaults.requires_session,
           cfg.get_bool("requires_session", o.queue_defaults.requires_session));
#undef QRT_READ

  if (cfg.contains("default_time_to_live")) {
    auto ttl = cfg.get_duration("default_time_to_live", {});
    if (!ttl) return ttl.error();
    o.queue_defaults.default_time_to_live = *ttl;
  }
  if (o.queue_defaults.lock_duration.count() <= 0) {
    return fail(errc::configuration_error, "field 'lock_duration': must be positive");
  }
  if (auto d = cfg.get("durability")) {
    if (*d == "always")
      o.durability_mode = durability::always;
    else if (*d == "interval")
      o.durability_mode = durability::interval;
    else if (*d == "none")
      o.durability_mode = durability::none;
    else {
      return fail(errc::configuration_error,
                  "field 'durability': unknown mode '" + *d + "' (one of: always, interval, none)");
    }
  }
  if (!o.enable_persistence) {
    // These configure the persistence log; without it they would be taken and do nothing.
    for (std::string_view key : {"persistence_path", "persistence_open_timeout", "durability",
                                 "sync_interval", "max_disk_bytes"}) {
      if (cfg.contains(key)) {
        return fail(errc::configuration_error,
                    "field '" + std::string(key) +
                        "': configures the persistence log, so it needs enable_persistence=true");
      }
    }
  } else if (cfg.contains("sync_interval") && o.durability_mode != durability::interval) {
    return fail(errc::configuration_error,
                "field 'sync_interval': is the sync period of durability=interval, and durability "
                "is not interval");
  }
  if (o.enable_persistence && o.persistence_path.empty()) {
    return fail(errc::configuration_error,
                "field 'persistence_path': is required when enable_persistence is true");
  }
  if (auto list = cfg.get("queues")) {
    std::size_t start = 0;
    while (start <= list->size()) {
      auto comma = list->find(',', start);
      auto name =
          list->substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!name.empty()) {
        auto q = queue_name::parse(name);
        if (!q) return fail(errc::configuration_error, "field 'queues': " + q.error().message);
        o.queues.push_back(name);
      }
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return o;
}

void register_provider(provider_registry& registry) {
  registry.add("memory", &options_from_config, &make_provider);
}

}  // namespace qrt::memory
