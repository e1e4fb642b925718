#include <qrt/memory.hpp>

#include "core/config_binder.hpp"

namespace qrt::memory {

options options::for_high_throughput() {
  options o;
  o.max_queue_size = 10'000;
  o.enable_persistence = false;
  o.channel_buffer_size = 1'000;
  return o;
}

options options::for_testing() {
  options o;
  o.max_queue_size = 1'000;
  o.enable_persistence = false;
  o.channel_buffer_size = 100;
  return o;
}

namespace {

// "a,b,c": each a valid queue name; empty items are skipped.
result<void> read_queues(std::string_view list, options& o) {
  std::size_t start = 0;
  while (start <= list.size()) {
    auto comma = list.find(',', start);
    auto name = list.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (!name.empty()) {
      auto q = queue_name::parse(name);
      if (!q) return detail::config_field_error("queues", q.error().message);
      o.queues.emplace_back(name);
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return {};
}

using binder = detail::config_binder<options>;

// Every key options_from_config() accepts, read in this order (the preset first: it replaces
// the options); known_keys() and the refusal of any other key come from here. Each one acts
// (test/unit/providers/memory/config_keys_test.cpp shows how, key by key).
const binder& keys() {
  static const binder table{
      binder::accepted("provider", "memory: selects this provider"),
      binder::custom(
          "preset",
          [](std::string_view name, options& o) -> result<void> {
            if (name == "high_throughput") {
              o = options::for_high_throughput();
            } else if (name == "testing") {
              o = options::for_testing();
            } else if (name == detail::runtime_only_preset) {
              // Sizes the runtime only: the provider keeps its defaults.
            } else if (!name.empty()) {
              return detail::config_field_error(
                  "preset", "unknown preset '" + std::string(name.substr(0, 64)) +
                                "' (one of: high_throughput, testing, low_resource)");
            }
            return {};
          },
          "high_throughput (10,000 messages per queue, 1,000 per call, a runtime "
          "thread per hardware thread) or testing (1,000 per queue, 100 per call, "
          "one thread), or low_resource (the defaults; a runtime of two threads)"),
      binder::integer("max_queue_size", &options::max_queue_size, 1, 1u << 30,
                      "messages per queue; at the limit sends wait, then fail with queue_full"),
      binder::integer("max_dead_letter_queue_size", &options::max_dead_letter_queue_size, 1,
                      1u << 30, "messages per dead-letter queue; a full one refuses dead letters"),
      binder::flag("enable_persistence", &options::enable_persistence,
                   "keep every queue in a log under persistence_path, so messages survive a "
                   "restart"),
      binder::text("persistence_path", &options::persistence_path,
                   "the log's directory; required with enable_persistence"),
      binder::duration("persistence_open_timeout", &options::persistence_open_timeout,
                       "how long opening waits for another holder of the directory"),
      binder::choice("durability", &options::durability_mode,
                     {{"always", durability::always},
                      {"interval", durability::interval},
                      {"none", durability::none}},
                     "a send returns after its record is synced (always), records are synced "
                     "every sync_interval (interval), or never (none: page cache only)"),
      binder::duration("sync_interval", &options::sync_interval,
                       "the sync period of durability=interval (refused with another mode)"),
      binder::integer("max_disk_bytes", &options::max_disk_bytes, 0, UINT64_MAX,
                      "the log's disk budget (0: none); at the limit sends wait, then fail "
                      "with queue_full"),
      binder::integer("channel_buffer_size", &options::channel_buffer_size, 1, 1u << 20,
                      "most messages one send or receive call moves (caps().max_batch_messages)"),
      binder::integer("receive_spin_us", &options::receive_spin, 0, 1'000'000,
                      "microseconds a receive keeps looking at an empty queue before it parks "
                      "(0: parks at once); trades a CPU for lower latency at moderate rates"),
      binder::integer("max_message_bytes", &options::max_message_bytes, 1, 1u << 30,
                      "larger messages are refused with message_too_large"),
      binder::integer("max_queue_bytes", &options::max_queue_bytes, 0, UINT64_MAX,
                      "bytes one queue may hold (0: no limit); at the limit sends wait"),
      binder::integer("max_memory_bytes", &options::max_memory_bytes, 0, UINT64_MAX,
                      "bytes all queues may hold together (0: no limit); at the limit sends "
                      "wait"),
      binder::custom("queues", &read_queues,
                     "comma list of queues created at start (other queues must be created)"),
      binder::duration(
          "lock_duration", [](options & o) -> auto& { return o.queue_defaults.lock_duration; },
          "queues from `queues`: how long a received message stays locked",
          detail::positive_duration),
      binder::integer(
          "max_delivery_count",
          [](options & o) -> auto& { return o.queue_defaults.max_delivery_count; }, 0, 1u << 20,
          "queues from `queues`: after how many deliveries a message is dead-lettered"),
      binder::duration(
          "default_time_to_live",
          [](options & o) -> auto& { return o.queue_defaults.default_time_to_live; },
          "queues from `queues`: when a message sent without a time to live expires"),
      binder::flag(
          "dead_letter_on_expiration",
          [](options & o) -> auto& { return o.queue_defaults.dead_letter_on_expiration; },
          "queues from `queues`: whether an expired message is dead-lettered or dropped"),
      binder::flag(
          "requires_session",
          [](options & o) -> auto& { return o.queue_defaults.requires_session; },
          "queues from `queues`: whether every message needs a session id"),
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
  return o;
}

void register_provider(provider_registry& registry) {
  registry.add("memory", &options_from_config, &make_provider);
}

}  // namespace qrt::memory
