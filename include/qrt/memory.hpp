// The embedded provider: queues inside this process, optionally persisted to a local log.
#pragma once

#include <chrono>
#include <qrt/config.hpp>
#include <qrt/provider.hpp>
#include <qrt/registry.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qrt::memory {

/// What qrt's bookkeeping costs per stored message (the message object, its index entries and
/// lock state), counted with the body and attributes against max_queue_bytes and
/// max_memory_bytes so that a byte budget bounds the memory the process uses, not only the
/// payloads (`qrt bench --memory-budget` measures it: docs/performance.md).
inline constexpr std::uint64_t stored_message_overhead_bytes = 512;

/// What one stored message counts against max_queue_bytes and max_memory_bytes.
inline std::uint64_t accounted_bytes(const message& m) noexcept {
  return m.wire_size() + stored_message_overhead_bytes;
}

/// What a persisted queue may lose; see docs for the exact guarantees of each mode.
enum class durability {
  always,    ///< an operation returns only after its record is on disk (group commit)
  interval,  ///< records are synced every sync_interval
  none,      ///< page cache only
};

/// Longer dead-letter reasons and descriptions are cut to these many bytes (at a UTF-8
/// character boundary) when a message is dead-lettered: they are free text, often an error
/// message, and must not make one stored message unboundedly large.
inline constexpr std::size_t max_dead_letter_reason_bytes = 1024;
/// The same bound for a dead-letter description.
inline constexpr std::size_t max_dead_letter_description_bytes = 4096;

/// Settings of the embedded provider: queue bounds, persistence, batch and message limits.
struct options {
  std::size_t max_queue_size = 10'000;  ///< messages per queue (ready + scheduled + locked)
  /// Messages per dead-letter queue. When it is full nothing more moves in: dead_letter() fails
  /// with queue_full, and a message past max_delivery_count or its time to live stays in its
  /// queue and is delivered again, until the dead-letter queue has room. Nothing is dropped.
  std::size_t max_dead_letter_queue_size = 100'000;
  bool enable_persistence = false;  ///< keep every queue in a checksummed log under
                                    ///< persistence_path (docs/adr/0003-persistence-format.md)
  std::string persistence_path;     ///< a directory; required with enable_persistence
  durability durability_mode = durability::always;  ///< when a send or settle returns, relative to
                                                    ///< its record reaching the disk
  milliseconds sync_interval{100};                  ///< durability::interval only
  std::uint64_t max_disk_bytes = 0;  ///< 0: no limit; else backpressure like max_queue_size
  /// How long opening waits while another process holds persistence_path (0: fail at once with
  /// an error naming the holder). Lets one process receive as soon as another finishes sending.
  milliseconds persistence_open_timeout{0};
  std::size_t channel_buffer_size = 1'000;  ///< most messages one send or receive call moves
  /// How long a receive that finds its queue empty keeps looking (yielding its thread between
  /// looks) before it parks; 0 parks at once. A parked receive costs a cross-thread wake-up per
  /// batch, which can take tens of microseconds or more where an idle CPU halts; a spin costs
  /// the CPU it runs on. Spinning stops by itself on a queue where it stopped paying off
  /// (messages arriving further apart than the spin). Session receives never spin.
  std::chrono::microseconds receive_spin{100};
  /// Body plus attributes of one message; also the most bytes of one session state. With
  /// enable_persistence at most 63 MiB, so that every message fits one log record.
  std::size_t max_message_bytes = 1 << 20;
  /// Bytes one queue may hold (accounted_bytes() of its stored messages: body, attributes and
  /// stored_message_overhead_bytes each; dead letters not included); 0: no limit. At the limit
  /// sends wait, as with max_queue_size.
  std::uint64_t max_queue_bytes = 0;
  /// Bytes all queues of this provider may hold together (accounted_bytes() of every stored
  /// message), dead-letter queues included; 0: no limit. At the limit sends wait, as with
  /// max_queue_size; settlements always proceed.
  std::uint64_t max_memory_bytes = 0;
  std::vector<std::string> queues;  ///< created when the provider starts
  /// Settings for queues created from `queues`. make_provider refuses, with
  /// configuration_error, settings that create_queue would refuse (when `queues` names any).
  queue_options queue_defaults;

  /// 10,000 messages per queue, 1,000 messages per call.
  static options for_high_throughput();
  /// 1,000 messages per queue, 100 messages per call.
  static options for_testing();
};

/// Reads the keys known_keys() lists; any other key is refused with an error naming it. The
/// list, with a line on what each key does, is one table (src/providers/memory/options.cpp), and
/// every key acts (test/unit/providers/memory/config_keys_test.cpp shows each one). Beyond a
/// key's own range: the persistence keys (persistence_path, persistence_open_timeout,
/// durability, sync_interval, max_disk_bytes) are refused without enable_persistence=true,
/// sync_interval with a durability other than interval, and enable_persistence without
/// persistence_path. max_concurrent_calls, prefetch_count and max_auto_lock_renewal_duration are
/// only checked: they configure a qrt::processor built from the same config
/// (processor_options::from_config); so is worker_threads, which sizes a qrt::runtime built
/// from it (runtime_configuration::from_config).
result<options> options_from_config(const config& cfg);
/// The keys options_from_config() accepts (any other key is refused, naming it).
std::span<const std::string_view> known_keys() noexcept;

/// An embedded provider on `executor`; with persistence, it replays the log first and refuses to
/// start on damage (naming file and offset) or when another process holds the directory.
result<provider_ptr> make_provider(const options& opts, boost::asio::any_io_executor executor);

/// Registers "memory".
void register_provider(provider_registry& registry);

}  // namespace qrt::memory
