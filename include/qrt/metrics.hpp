// Metrics: counters, gauges and histograms with labels, exposed in the Prometheus text format.
// Recording never takes a lock: every series is sharded per thread (cache-line-padded relaxed
// atomics) and only exposition sums the shards. Looking a labelled series up takes the family's
// lock, so hot paths look series up once and keep the reference (references stay valid for the
// registry's lifetime). See docs/adr/0070-metrics-recording.md.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <qrt/circuit_breaker.hpp>
#include <qrt/error.hpp>
#include <qrt/processing_observer.hpp>
#include <qrt/retry.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace qrt::metrics {

namespace detail {
inline constexpr std::size_t shard_count = 16;
/// This thread's shard, assigned round robin on first use so busy threads rarely share one.
std::size_t this_thread_shard() noexcept;

struct alignas(64) padded_u64 {
  std::atomic<std::uint64_t> value{0};
};
struct alignas(64) padded_double {
  std::atomic<double> value{0.0};
};
}  // namespace detail

/// A monotonically increasing count.
class counter {
 public:
  /// Adds `n`. Lock-free.
  void inc(std::uint64_t n = 1) noexcept {
    shards_[detail::this_thread_shard()].value.fetch_add(n, std::memory_order_relaxed);
  }
  /// The sum over all threads.
  std::uint64_t value() const noexcept;

 private:
  std::array<detail::padded_u64, detail::shard_count> shards_;
};

/// A value that goes up and down (queue depth, in-flight handlers, breaker state).
class gauge {
 public:
  /// Replaces the value.
  void set(double v) noexcept {
    base_.value.store(v, std::memory_order_relaxed);
    for (auto& s : deltas_) s.value.store(0.0, std::memory_order_relaxed);
  }
  /// Adds `d` (negative to subtract). Lock-free.
  void add(double d) noexcept {
    deltas_[detail::this_thread_shard()].value.fetch_add(d, std::memory_order_relaxed);
  }
  /// Adds one.
  void inc() noexcept { add(1.0); }
  /// Subtracts one.
  void dec() noexcept { add(-1.0); }
  /// The current value.
  double value() const noexcept;

 private:
  detail::padded_double base_;
  std::array<detail::padded_double, detail::shard_count> deltas_;
};

/// Counts observations into fixed buckets (upper bounds, inclusive) plus their sum.
class histogram {
 public:
  /// A histogram with these bucket upper bounds (strictly increasing); +Inf is implied.
  explicit histogram(std::vector<double> upper_bounds);

  /// Counts `v` into the first bucket whose bound is not below it. Lock-free.
  void observe(double v) noexcept {
    std::size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;
    shard& s = shards_[detail::this_thread_shard()];
    s.counts[i].fetch_add(1, std::memory_order_relaxed);
    s.sum.fetch_add(v, std::memory_order_relaxed);
  }
  /// Observes a duration, in seconds.
  void observe(std::chrono::nanoseconds d) noexcept {
    observe(static_cast<double>(d.count()) / 1e9);
  }

  /// The histogram's counts at one moment, summed over all threads.
  struct snapshot {
    std::vector<double> upper_bounds;       ///< the bucket bounds, without +Inf
    std::vector<std::uint64_t> cumulative;  ///< per bound, then +Inf last (== count)
    double sum = 0;                         ///< the sum of every observed value
    std::uint64_t count = 0;                ///< how many values were observed
  };
  /// The counts now.
  snapshot read() const;
  /// The bucket bounds, without +Inf.
  const std::vector<double>& upper_bounds() const noexcept { return bounds_; }

 private:
  struct alignas(64) shard {
    std::unique_ptr<std::atomic<std::uint64_t>[]> counts;  // bounds + 1 (+Inf)
    std::atomic<double> sum{0.0};
  };
  std::vector<double> bounds_;
  std::array<shard, detail::shard_count> shards_;
};

/// The kinds of metric a registry holds.
enum class metric_type { counter, gauge, histogram };

/// All series of one metric name, one per combination of label values.
template <class Series>
class family {
 public:
  /// The metric's name.
  const std::string& name() const noexcept { return name_; }
  /// The HELP text.
  const std::string& help() const noexcept { return help_; }
  /// The label names, in order.
  const std::vector<std::string>& label_names() const noexcept { return label_names_; }

  /// The series for these label values (in label_names() order), created on first use.
  /// Takes a lock: call once and keep the reference. Throws qrt::exception
  /// (invalid_argument) when the number of values does not match the label names.
  Series& with(std::initializer_list<std::string_view> values) {
    return with(std::vector<std::string>(values.begin(), values.end()));
  }
  /// As with() above, for label values held in a vector.
  Series& with(std::vector<std::string> values);

  /// Label values and series, in label order (for exposition).
  template <class F>
  void for_each(F&& f) const {
    std::lock_guard lock(mutex_);
    for (const auto& [values, series] : series_) f(values, *series);
  }

 private:
  friend class registry;
  family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> buckets)
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        buckets_(std::move(buckets)) {}

  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::vector<double> buckets_;  // histograms only
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Series>> series_;
};

/// Counters of one name, by label values.
using counter_family = family<counter>;
/// Gauges of one name, by label values.
using gauge_family = family<gauge>;
/// Histograms of one name, by label values.
using histogram_family = family<histogram>;

/// Owns metric families. Registering a name twice with the same type, labels (and buckets)
/// returns the existing family; any mismatch, or a name Prometheus would reject, throws
/// qrt::exception with errc::invalid_argument naming the metric.
class registry {
 public:
  registry();
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  /// Registers (or finds) a counter family.
  counter_family& add_counter(std::string name, std::string help,
                              std::vector<std::string> label_names = {});
  /// Registers (or finds) a gauge family.
  gauge_family& add_gauge(std::string name, std::string help,
                          std::vector<std::string> label_names = {});
  /// Registers (or finds) a histogram family with these bucket bounds.
  histogram_family& add_histogram(std::string name, std::string help,
                                  std::vector<double> upper_bounds,
                                  std::vector<std::string> label_names = {});
  /// Registers (or finds) a counter whose series a collector copies from a running total kept
  /// elsewhere, which need not be a whole number (CPU seconds the kernel counts): exposed with
  /// TYPE counter, held as gauges the collector set(). Set them only to values that never
  /// decrease. Its name conflicts with an add_counter() of the same name.
  gauge_family& add_sampled_counter(std::string name, std::string help,
                                    std::vector<std::string> label_names = {});

  /// The Prometheus text exposition format 0.0.4, families in registration order. Runs the
  /// collectors first.
  std::string expose() const;

  /// Runs `collect` at the start of every expose(), one collector at a time, to bring series
  /// that mirror state kept elsewhere (a provider's connection_stats) up to date. Returns the id
  /// remove_collector() takes.
  std::uint64_t add_collector(std::function<void()> collect);
  /// Removes a collector; once this returns it is not running and never runs again.
  void remove_collector(std::uint64_t id);

 private:
  struct entry;
  entry& find_or_add(metric_type type, std::string name, std::string help,
                     std::vector<std::string> label_names, std::vector<double> buckets,
                     bool sampled = false);
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<entry>> entries_;
  mutable std::mutex collectors_mutex_;  // held while collectors run
  std::map<std::uint64_t, std::function<void()>> collectors_;
  std::uint64_t next_collector_ = 1;
};

/// The content type to serve expose() with.
inline constexpr std::string_view exposition_content_type =
    "text/plain; version=0.0.4; charset=utf-8";

/// The histogram bucket layouts of runtime_metrics.
std::vector<double> processing_duration_buckets();  ///< 0.001 .. 5.0 seconds
std::vector<double> batch_size_buckets();           ///< 1 .. 100 messages
std::vector<double> operation_latency_buckets();    ///< 50 us .. 10 s, for provider calls
std::vector<double> recovery_time_buckets();        ///< 10 ms .. 5 min, connection recoveries
std::vector<double> message_latency_buckets();      ///< 1 ms .. 10 min, enqueue to settlement
std::vector<double> session_duration_buckets();     ///< 10 ms .. 1 h, how long sessions are held

/// Operations the metrics label: provider calls plus the handler ("process").
enum class operation {
  send,
  receive,
  complete,
  abandon,
  dead_letter,
  renew,
  peek,
  stats,
  process,
  publish,  ///< a topic's publish (docs/adr/0050-topics-and-subscriptions.md)
};
/// The operation label value ("send", "dead_letter", "process", "publish", ...).
std::string_view to_string(operation op) noexcept;

/// One queue's handler-level series, looked up once: recording through it takes no lock.
struct processing_series {
  counter& processed;     ///< queue_runtime_messages_processed_total of the queue
  histogram& duration;    ///< queue_runtime_processing_duration_seconds of the queue
  histogram& batch_size;  ///< queue_runtime_batch_sizes of the queue

  /// Records one processed batch: its message count, its duration and its size.
  void record_batch_processed(std::size_t messages, std::chrono::nanoseconds elapsed) noexcept {
    processed.inc(messages);
    duration.observe(elapsed);
    batch_size.observe(static_cast<double>(messages));
  }
};

/// The runtime's metric families, under the names docs/adr/0070-metrics-recording.md lists. Labels:
/// `queue`, `provider`, and `operation` where the metric is per operation.
struct runtime_metrics {
  /// Registers the families in `r`, which must outlive this.
  explicit runtime_metrics(registry& r);

  registry& owner;  ///< the registry the families live in
  /// queue_runtime_messages_processed_total{queue,provider,outcome}; outcome as
  /// qrt::to_string(processing_outcome): completed, abandoned, dead_lettered, settle_failed.
  counter_family& messages_processed;
  histogram_family&
      processing_duration;  ///< queue_runtime_processing_duration_seconds{queue,provider}
  /// queue_runtime_message_latency_seconds{queue,provider}: from a message's enqueued time to
  /// its settlement by a processor (processed_message::since_enqueued).
  histogram_family& message_latency;
  histogram_family& batch_sizes;  ///< queue_runtime_batch_sizes{queue,provider,operation}
  counter_family& errors;         ///< queue_runtime_errors_total{queue,provider,operation,error}
  histogram_family&
      operation_duration;  ///< queue_runtime_operation_duration_seconds{queue,provider,operation}
  counter_family& operations;         ///< queue_runtime_operations_total{queue,provider,operation}
  counter_family& messages_sent;      ///< queue_runtime_messages_sent_total{queue,provider}
  counter_family& messages_received;  ///< queue_runtime_messages_received_total{queue,provider}
  counter_family& retries;            ///< queue_runtime_retries_total{queue,provider,operation}
  counter_family&
      breaker_transitions;      ///< queue_runtime_circuit_breaker_transitions_total{provider,state}
  gauge_family& breaker_state;  ///< queue_runtime_circuit_breaker_state{provider} 0 closed, 1
                                ///< half-open, 2 open
  counter_family& dead_lettered;  ///< queue_runtime_dead_lettered_total{queue,provider}
  gauge_family& in_flight;        ///< queue_runtime_in_flight_messages{queue,provider}
  gauge_family& queue_depth;      ///< queue_runtime_queue_depth{queue,provider,state}
  gauge_family& active_sessions;  ///< queue_runtime_active_sessions{queue,provider}
  counter_family&
      session_lock_renewals;  ///< queue_runtime_session_lock_renewals_total{queue,provider}
  histogram_family&
      session_acquisition;  ///< queue_runtime_session_acquisition_seconds{queue,provider}
  /// queue_runtime_session_duration_seconds{queue,provider}: how long each session a session
  /// processor released had been held.
  histogram_family& session_duration;
  /// queue_runtime_connection_bytes_total{provider,direction}: direction "sent" or "received".
  counter_family& connection_bytes;
  counter_family& connections_opened;  ///< queue_runtime_connections_opened_total{provider}
  /// queue_runtime_connection_failures_total{provider}: failed connects and broken connections.
  counter_family& connection_failures;
  /// queue_runtime_connection_recovery_seconds{provider}: from an outage's first failure to the
  /// next connection established, one observation per recovery.
  histogram_family& connection_recovery;
  /// queue_runtime_memory_held_bytes{provider}: what a provider keeping messages in this
  /// process holds, as its byte budget counts it (provider::memory()).
  gauge_family& memory_held;
  /// queue_runtime_memory_limit_bytes{provider}: that provider's byte budget; no series without
  /// one.
  gauge_family& memory_limit;

  /// Handler-level series for one queue (operation label "process" on the batch sizes).
  processing_series for_processing(const std::string& queue, const std::string& provider);
};

/// A processing observer (processor_options::on_processed, session_processor_options::
/// on_processed) that records each processed message: queue_runtime_messages_processed_total by
/// outcome, queue_runtime_processing_duration_seconds (the handler's time),
/// queue_runtime_message_latency_seconds (enqueue to settlement; skipped for a message whose
/// provider gave no enqueued time) and, for a handler that failed,
/// queue_runtime_errors_total{operation="process", error: its errc}. Dead letters are counted by
/// the instrumented provider (instrument()), not here. Nor is a batch size: a processor runs a
/// handler per message, and the batches it takes are its receive calls, which instrument()
/// records in queue_runtime_batch_sizes{operation="receive"}. `metrics` must outlive it.
processing_observer record_processing(runtime_metrics& metrics, std::string provider);

/// A session observer (session_processor_options::on_session) that records the sessions held
/// (queue_runtime_active_sessions), each session lock renewal
/// (queue_runtime_session_lock_renewals_total), how long each accept took
/// (queue_runtime_session_acquisition_seconds) and how long each released session was held
/// (queue_runtime_session_duration_seconds). `metrics` must outlive it.
session_observer record_sessions(runtime_metrics& metrics, std::string provider);

/// A circuit breaker's on_state_change that records each transition in
/// queue_runtime_circuit_breaker_transitions_total{provider,state} (the state entered) and the
/// state in queue_runtime_circuit_breaker_state{provider}. `metrics` must outlive it.
std::function<void(breaker_state from, breaker_state to)> record_breaker(runtime_metrics& metrics,
                                                                         std::string provider);

/// A retry observer (client_options::on_retry) that counts each retry in
/// queue_runtime_retries_total{queue,provider,operation}; queue "unknown" for settlements.
/// `metrics` must outlive it.
retry_observer count_retries(runtime_metrics& metrics, std::string provider);

/// This process's resource use as Linux reports it in /proc. A field is empty when its source
/// was missing or did not parse.
struct process_usage {
  std::optional<double> cpu_seconds;         ///< user plus system CPU time
  std::optional<double> resident_bytes;      ///< resident set size
  std::optional<double> virtual_bytes;       ///< virtual memory size
  std::optional<double> start_time_seconds;  ///< when the process started, since the Unix epoch
  std::optional<double> open_fds;            ///< file descriptors open now
  std::optional<double> max_fds;             ///< the soft limit on open file descriptors
};

/// The text of the /proc files process_usage comes from, and the units to scale it by.
struct proc_text {
  std::string_view stat;          ///< /proc/self/stat
  std::string_view statm;         ///< /proc/self/statm
  std::string_view limits;        ///< /proc/self/limits
  std::string_view system_stat;   ///< /proc/stat, for its btime line
  double ticks_per_second = 100;  ///< sysconf(_SC_CLK_TCK): the unit of CPU and start times
  double page_size = 4096;        ///< sysconf(_SC_PAGESIZE): the unit of statm
};

/// Parses that text. A line or field that is missing, cut short or not a whole number leaves
/// its value empty rather than guessing; an unlimited descriptor limit leaves max_fds empty.
/// open_fds is never set here (it is counted from /proc/self/fd).
process_usage parse_process_usage(const proc_text& text);

/// Adds the series every Prometheus client library exports for its process, refreshed from
/// /proc by a collector at each expose(): process_cpu_seconds_total (counter, seconds),
/// process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds,
/// process_max_fds and process_start_time_seconds (gauges). A series whose source cannot be
/// read or parsed is left out (on a system without /proc, all are). Returns the collector's id
/// for registry::remove_collector().
std::uint64_t add_process_metrics(registry& r);

template <class Series>
Series& family<Series>::with(std::vector<std::string> values) {
  if (values.size() != label_names_.size()) {
    throw qrt::exception(qrt::fail(errc::invalid_argument, "metric '" + name_ + "' takes " +
                                                               std::to_string(label_names_.size()) +
                                                               " label values, got " +
                                                               std::to_string(values.size())));
  }
  std::lock_guard lock(mutex_);
  auto it = series_.find(values);
  if (it == series_.end()) {
    std::unique_ptr<Series> s;
    if constexpr (std::is_same_v<Series, histogram>) {
      s = std::make_unique<Series>(buckets_);
    } else {
      s = std::make_unique<Series>();
    }
    it = series_.emplace(std::move(values), std::move(s)).first;
  }
  return *it->second;
}

}  // namespace qrt::metrics
