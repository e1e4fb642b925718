// The benchmark harness: producers and consumers on one provider, measuring send / receive /
// end-to-end throughput, end-to-end latency (enqueue time stamped into the body -> handler),
// per-operation latency, CPU per message and peak RSS.
// Plus the same-run raw-queue baseline, the consumer scaling run and the client-overhead run.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <qrt/bench/latency_histogram.hpp>
#include <qrt/config.hpp>
#include <qrt/metrics.hpp>
#include <qrt/provider.hpp>
#include <qrt/retry.hpp>
#include <string>
#include <vector>

namespace qrt::bench {

using std::chrono::milliseconds;

/// An outage during a run: `at` after the start, `begin(length)` is called once (it makes the
/// provider fail every call for `length`: fault_injecting_provider::disconnect_for).
struct outage_plan {
  milliseconds at{0};
  milliseconds length{0};
  std::function<void(milliseconds)> begin;
  /// Called once the producers and consumers are done, before the provider is closed.
  std::function<void()> finished;
};

struct bench_options {
  config provider_config{{"provider", "memory"}};  ///< as for qrt::builtin_providers()
  std::string queue = "qrt-bench";
  /// Create the queue when it is missing, and delete it afterwards: only a queue the run made
  /// is deleted, an existing one is used and kept. The extra runs always do so. Either way
  /// run_benchmark refuses a queue that already holds messages (it would complete them).
  bool create_queue = true;
  std::uint64_t messages = 100'000;      ///< used when duration is not set
  std::optional<milliseconds> duration;  ///< sustained mode: send for this long
  double rate = 0;                       ///< messages/s over all producers; 0: as fast as possible
  std::size_t message_size = 256;        ///< body bytes (>= 16: the body starts with the send time)
  std::size_t producers = 1;
  std::size_t consumers = 1;
  std::size_t send_batch = 10;
  std::size_t receive_batch = 10;
  std::size_t threads = 0;  ///< threads running the provider's executor; 0: cores
  milliseconds receive_wait{100};
  std::chrono::microseconds handler_cost{0};  ///< CPU each message's handler burns (spinning)
  /// Session mode when above 0: the queue is made with requires_session, each producer spreads
  /// its messages round robin over this many session ids, and consumers take any available
  /// session (accept_session, waiting up to receive_wait), receive from it until it has nothing
  /// for session_idle_wait, completing each batch, then release it. The provider must have
  /// sessions (caps().sessions); message_size must be at least session_body_bytes.
  std::size_t sessions = 0;
  milliseconds session_idle_wait{10};  ///< session mode: a held session this idle is released
  /// Session mode: a session held this long is released after the batch in hand is settled, so
  /// that more busy sessions than consumers take turns (as session_processor_options::
  /// max_session_hold); 0: held until idle.
  milliseconds session_hold{0};
  /// Time-series resolution for the chart. 0 (the default): adaptive, so that any run length
  /// gives at most max_samples points, and at least max_samples / 2 once the run is longer
  /// than max_samples ms: 1 ms buckets, merged in pairs (the width doubling) whenever a run
  /// outgrows max_samples of them. A fixed interval keeps every bucket. Producers and
  /// consumers count into their own buckets as they go: no timer wakes up to sample, so
  /// sampling finely does not disturb what is measured.
  milliseconds sample_interval{0};
  std::size_t max_samples = 400;  ///< adaptive sampling only
  /// Wraps the provider the producers and consumers use (latency injection, ...).
  std::function<provider_ptr(provider_ptr)> decorate;
  /// When set, the provider is also instrumented (qrt::metrics::instrument) and consumers record
  /// queue_runtime_messages_processed_total / processing_duration per batch into it.
  metrics::runtime_metrics* metrics = nullptr;
  /// The retry policy of the client the producers and consumers call through
  /// (client_options::retry); nullopt: no retrying.
  std::optional<retry_policy> retry = retry_policy::client_default();
  /// A send that fails transiently (as a whole or for some of its messages) is sent again, the
  /// same messages with the same send time, after the retry policy's delay, instead of counting
  /// them as lost: for runs that make the provider fail on purpose, where every message offered
  /// must still arrive. A paced run then stamps each message with the time its pace made it due,
  /// so its end-to-end latency includes the time it waited behind a failure.
  bool resend_failed = false;
  /// An outage in the middle of the run (run_outage sets it).
  std::optional<outage_plan> outage;
  /// Called four times a second from a thread of its own; for a progress line.
  std::function<void(const struct progress&)> on_progress;
};

struct progress {
  double elapsed_s = 0;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  std::uint64_t target = 0;  ///< 0 in sustained mode
};

/// One point of the time series: what happened during one sample interval.
struct sample {
  double t_s = 0;           ///< end of the interval, seconds since start
  double send_rate = 0;     ///< messages/s
  double receive_rate = 0;  ///< messages/s completed
  double e2e_mean_us = 0;
  double e2e_max_us = 0;
  double dt_s = 0;              ///< length of the interval
  std::uint64_t e2e_count = 0;  ///< latencies the mean is over
};

/// What one producer or consumer did over time, in buckets of equal width from the run's
/// start: each keeps its own (nothing shared, no timer) and adds every batch to the bucket its
/// end falls in. With max_buckets, a time beyond the last bucket merges neighbouring buckets
/// in pairs and doubles the width, so memory stays bounded on any run length.
class time_buckets {
 public:
  struct bucket {
    std::uint64_t sent = 0, completed = 0;
    std::uint64_t e2e_count = 0, e2e_sum_ns = 0;
    std::int64_t e2e_max_ns = 0;
  };
  time_buckets(std::int64_t width_ns, std::size_t max_buckets);

  void add_sent(std::int64_t t_ns, std::uint64_t n);
  void add_completed(std::int64_t t_ns, std::uint64_t n, std::uint64_t e2e_count,
                     std::uint64_t e2e_sum_ns, std::int64_t e2e_max_ns);
  /// Merges pairs until the width is `width_ns` (a power-of-two multiple of the current one).
  void coarsen_to(std::int64_t width_ns);

  std::int64_t width_ns() const { return width_ns_; }
  const std::vector<bucket>& buckets() const { return buckets_; }

 private:
  bucket& at(std::int64_t t_ns);
  void coarsen_once();
  std::int64_t width_ns_;
  std::size_t max_buckets_;
  std::vector<bucket> buckets_;
};

/// All workers' buckets as one series ending at end_ns (the last bucket cut there): rates per
/// second of each bucket's own length, the mean latency over the messages in it, the maximum.
std::vector<sample> to_samples(std::vector<time_buckets> parts, std::int64_t end_ns);

struct latency_summary {
  std::uint64_t count = 0;
  double p50_us = 0, p95_us = 0, p99_us = 0, max_us = 0, mean_us = 0;
  double p90_us = 0, p99_9_us = 0, p99_99_us = 0;  ///< for the percentile plot
  static latency_summary of(const latency_histogram& h);
};

/// What a run moved over the provider's network connections and how they held: its
/// connection_stats after the run less before it (docs/bench-report.md).
struct network_figures {
  std::uint64_t bytes_sent = 0, bytes_received = 0;
  double bytes_sent_per_s = 0, bytes_received_per_s = 0;  ///< over the run's wall time
  /// Bytes both ways per message completed; 0 when none was.
  double bytes_per_message = 0;
  std::uint64_t connection_failures = 0;
  std::uint64_t recoveries = 0;  ///< outages that ended with a connection established
  /// Mean over this run's recoveries, first failure to reconnected; nullopt without one.
  std::optional<double> mean_recovery_s;
};

/// The figures of the run between `before` and `after` (a provider's connection_stats), over
/// `wall_s` seconds in which `completed` messages were moved; nullopt for a provider that never
/// opened nor tried to open a connection (the embedded one): it has no network to measure, and
/// a zero rate would read as an idle one.
std::optional<network_figures> network_between(const connection_stats& before,
                                               const connection_stats& after, double wall_s,
                                               std::uint64_t completed);

/// When a run's outage (bench_options::outage) happened and what it delayed.
struct outage_timing {
  double start_s = 0, end_s = 0;  ///< from the run's start
  /// From the end of the outage to the first completion after it; nullopt: none in the run.
  std::optional<double> first_completion_s;
  /// Messages stamped before the outage ended and completed after it: those it held up.
  std::uint64_t late = 0;
  std::uint64_t resent = 0;  ///< messages sent again after their send failed
};

struct bench_result {
  std::string provider;
  std::uint64_t messages_sent = 0;
  std::uint64_t messages_received = 0;  ///< handled and completed
  std::uint64_t send_errors = 0;
  std::uint64_t receive_errors = 0;
  std::uint64_t complete_errors = 0;
  std::uint64_t duplicates = 0;  ///< deliveries with delivery_count > 1
  std::size_t message_size = 0;
  std::size_t producers = 0, consumers = 0, send_batch = 0, receive_batch = 0;
  double rate_target = 0;
  double wall_s = 0;
  double send_s = 0;     ///< first send to last send done
  double receive_s = 0;  ///< first message received to last completed
  double send_throughput = 0;
  double receive_throughput = 0;
  double e2e_throughput = 0;      ///< completed / (start to last completion)
  double mean_send_batch = 0;     ///< messages per send call
  double mean_receive_batch = 0;  ///< messages per non-empty receive call
  latency_summary e2e;
  latency_summary send_call, receive_call, complete_call;
  double cpu_s = 0;
  double cpu_s_per_message = 0;
  double cpu_utilisation = 0;  ///< cpu_s / (wall_s * cores)
  std::uint64_t peak_rss_bytes = 0;
  /// Calls the producers and consumers made: every send, every receive (empty or failed ones
  /// too) and every settlement of a received batch; in session mode every accept_session (those
  /// that found no session too) and every session released. The queue's setup and removal are
  /// not.
  std::uint64_t provider_calls = 0;
  /// Of provider_calls, those that failed as a whole or for any of their messages.
  std::uint64_t failed_calls = 0;
  /// Connections the provider opened while the producers and consumers ran (from its
  /// connection_stats before and after); nullopt when it has no connections at all (the embedded
  /// provider reports none).
  std::optional<std::uint64_t> connections_opened;
  /// Bandwidth and connection failures during the run; nullopt as for connections_opened.
  std::optional<network_figures> network;
  std::optional<outage_timing> outage;  ///< with bench_options::outage, once it began
  std::vector<sample> series;

  // Session mode (bench_options::sessions); all zero without it.
  std::size_t sessions = 0;              ///< session ids the messages were spread over
  std::uint64_t sessions_accepted = 0;   ///< accept_session calls that took a session
  double mean_messages_per_session = 0;  ///< this run's messages completed per session taken
  /// Messages received before an earlier one of the same producer and session. A run with any
  /// fails (naming the session) instead of returning figures, so a result always holds 0.
  std::uint64_t order_violations = 0;
  latency_summary accept_call;  ///< every accept_session call, those that found none included
};

/// The body of a session-mode message: make_body's send time, then the producer's index (8 hex
/// digits) and its sequence number within the session (16 hex digits).
inline constexpr std::size_t session_body_bytes = 40;

/// The order check of a session run. Per session and producer it keeps the highest sequence
/// number delivered so far; a first delivery below it is a violation: a message of the session
/// received before an earlier one of the same producer. A redelivery (delivery count above 1)
/// may repeat earlier numbers: a session lost before its batch was settled gives that batch
/// again, in order. observe() may be called from several threads (one lock per session).
class session_order {
 public:
  session_order(std::size_t sessions, std::size_t producers);
  ~session_order();
  session_order(const session_order&) = delete;
  session_order& operator=(const session_order&) = delete;
  /// Records a delivery; false when it is a violation. Indices out of range are ignored (true).
  bool observe(std::size_t session, std::size_t producer, std::uint64_t sequence, bool redelivered);
  std::uint64_t violations() const;
  /// The session of the first violation observed; nullopt when there was none.
  std::optional<std::size_t> first_violation() const;

 private:
  struct slot;
  std::size_t producers_;
  std::vector<std::unique_ptr<slot>> slots_;
  std::atomic<std::int64_t> first_violation_{-1};
};

struct baseline_result {
  std::string name = "moodycamel::ConcurrentQueue";
  std::uint64_t messages = 0;
  double wall_s = 0;
  double throughput = 0;
  latency_summary e2e;
  /// Process CPU (every thread) during the run: nothing but the raw queue's threads runs then.
  double cpu_s = 0;
  double cpu_s_per_message = 0;
};

/// Runs producers and consumers against the configured provider. Fails with the provider's
/// error when it cannot be built, the queue cannot be created, or options are invalid.
result<bench_result> run_benchmark(const bench_options& options);

/// The ceiling: the same payloads (qrt::message, same size and batch sizes) moved through a raw
/// moodycamel::ConcurrentQueue by the same numbers of producer and consumer threads.
baseline_result run_baseline(const bench_options& options);

struct scaling_point {
  std::size_t consumers = 0;
  double throughput = 0;  ///< messages/s completed
  double efficiency = 0;  ///< throughput / (consumers * throughput at 1 consumer)
  /// throughput / (consumers * receive_batch / (2 * injected latency)): against the ceiling a
  /// receive + settle round trip allows, independent of how the 1-consumer round went.
  double of_ideal = 0;
};
struct scaling_options {
  bench_options base;                 ///< provider, queue, sizes, receive_batch
  milliseconds injected_latency{10};  ///< added to every provider call
  std::size_t max_consumers = 32;
  milliseconds window{1500};  ///< measuring time per consumer count
};
/// Scaling with consumers: N = 1, 2, 4, ... max_consumers consumers on a prefilled queue,
/// every provider call delayed by injected_latency. An existing queue (one the run did not make)
/// must be empty, and every round, ended or failed, takes back what it sent: only the run's own
/// messages are completed (make_body's send time marks them), any other is abandoned.
result<std::vector<scaling_point>> run_scaling(const scaling_options& options);
/// What run_scaling refuses before it runs anything: an injected latency of zero or less (the
/// ceiling it measures against would be infinite), or one whose receive + settle round trip
/// does not fit in the window (no round could complete a message), no consumers, no batch, and
/// a prefill (1.5 windows of what max_consumers could complete) over 2^29 messages or 8 GiB or
/// over a max_queue_size given for the embedded provider. A bound met only on the queue (its
/// own max_size, max_queue_bytes) fails the run at the first prefill send it refuses, naming
/// what the run needs, rather than after the send timeout.
result<void> validate_scaling(const scaling_options& options);

struct overhead_result {
  std::uint64_t messages = 0;
  std::chrono::microseconds handler_cost{0};  ///< CPU time each handler call burns
  double wall_s = 0;                          ///< first receive to last completion
  double handler_wall_s = 0;                  ///< measured around each handler call
  double cpu_s = 0;                           ///< process CPU (all threads) during the run
  double handler_cpu_s = 0;                   ///< thread CPU measured around each handler call
  double qrt_share = 0;       ///< (cpu - handler cpu) / cpu: the headline, robust to a busy machine
  double qrt_share_wall = 0;  ///< (wall - handler wall) / wall: includes waits and preemption
};
/// What run_overhead refuses before it runs anything: no messages, or a prefill (held in the
/// queue at once) over 2^29 messages or 8 GiB or over a max_queue_size given for the embedded
/// provider (a bound met only on the queue fails it at once, as for run_scaling).
result<void> validate_overhead(const bench_options& options, std::uint64_t messages);
/// Client overhead: one consumer, a handler of known fixed CPU cost, prefilled queue; the
/// share of the work that is not the handler's. Its queue is treated as run_scaling's is.
result<overhead_result> run_overhead(const bench_options& options, std::uint64_t messages,
                                     std::chrono::microseconds handler_cost);

/// The embedded provider held at a byte budget (max_memory_bytes): what the process's resident
/// memory grows by when the queue is full, against the budget.
struct memory_budget_result {
  std::uint64_t budget_bytes = 0;
  std::size_t message_size = 0;
  std::uint64_t accepted = 0;            ///< sends stored until the budget refused more
  std::uint64_t refused = 0;             ///< sends refused with queue_full afterwards
  std::string refusal;                   ///< the first refusal's message (names the limit)
  std::uint64_t drained = 0;             ///< received and completed afterwards: equals accepted
  std::uint64_t baseline_rss_bytes = 0;  ///< resident before the queue held anything
  std::uint64_t full_rss_bytes = 0;      ///< resident with the queue at its budget
  /// (full - baseline) / budget: the goal is at most 1.10.
  double growth_per_budget_byte() const {
    if (budget_bytes == 0 || full_rss_bytes < baseline_rss_bytes) return 0;
    return static_cast<double>(full_rss_bytes - baseline_rss_bytes) /
           static_cast<double>(budget_bytes);
  }
};
/// What run_memory_budget refuses before it runs anything: a budget that cannot hold a single
/// message of options.message_size as the embedded provider counts it against max_memory_bytes
/// (the body and qrt::memory::stored_message_overhead_bytes), since every send would then be
/// refused as too large and the run would measure nothing.
result<void> validate_memory_budget(const bench_options& options, std::uint64_t budget);
/// Fills one queue of the embedded provider (options.provider_config with max_memory_bytes =
/// `budget`) with options.message_size messages until sends are refused, reads the resident
/// memory, then drains the queue. Only for provider=memory.
result<memory_budget_result> run_memory_budget(const bench_options& options, std::uint64_t budget);

/// The outage run: a paced run (`base.rate`, which must be set) on a provider that is
/// disconnected for `outage` after `lead`, then runs for `tail` more. Its producers and consumers
/// retry with `retry` (the longest wait between attempts, its max_delay, bounds how long after
/// the outage they notice it ended), and a send that still fails is sent again, so every
/// message offered must arrive once.
struct outage_options {
  bench_options base;
  milliseconds outage{2000};
  milliseconds lead{1000};
  milliseconds tail{4000};
  /// Exponential from 50 ms to 1 s, attempts unbounded (a send gives up at its send timeout).
  retry_policy retry = default_outage_retry();
  milliseconds bucket{100};  ///< the series' interval: recovery is read in whole buckets
  /// The share of the offered rate the completions must reach again to count as recovered.
  double recovered_share = 0.9;

  static retry_policy default_outage_retry();
};

struct outage_result {
  milliseconds outage{0};
  double offered_rate = 0;          ///< messages/s the producers were paced at
  milliseconds max_retry_delay{0};  ///< the retry policy's max_delay
  double start_s = 0, end_s = 0;    ///< when the outage began and ended in the run
  /// Completions per second over the whole buckets before the outage (after the first second,
  /// or all of them when the lead is shorter).
  double rate_before = 0;
  /// From the end of the outage to the first completion after it.
  std::optional<double> first_completion_s;
  /// From the end of the outage to the end of the first whole bucket after it whose completion
  /// rate is at least recovered_share of the offered rate; nullopt: never within the run.
  std::optional<double> recovery_s;
  double recovered_share = 0.9;
  std::uint64_t refused_calls = 0;  ///< provider calls the outage failed
  std::uint64_t late = 0;           ///< messages it held up (outage_timing::late)
  std::uint64_t resent = 0;         ///< messages sent again after their send failed
  std::uint64_t sent = 0, completed = 0, redeliveries = 0;
  /// Every message sent arrived and was completed once.
  bool every_message_once() const { return completed == sent && redeliveries == 0; }
};

/// From `from_s` to the end of the first sample of `series` that lies wholly after it, is
/// `bucket_s` long (not the last one, cut short) and completed at least `rate`; nullopt when
/// none did.
std::optional<double> time_back_to_rate(const std::vector<sample>& series, double from_s,
                                        double bucket_s, double rate);

/// What run_outage refuses before it runs: no rate, an outage or lead that is not positive, a
/// tail shorter than twice the retry policy's max_delay (recovery could not be seen), a bucket
/// that is not positive or longer than the tail, or a recovered share outside (0, 1].
result<void> validate_outage(const outage_options& options);
result<outage_result> run_outage(const outage_options& options);

/// Resident memory now (/proc/self/statm), after giving freed heap back to the system.
std::uint64_t resident_bytes_now();

/// The body of a benchmark message: the steady-clock send time in 16 hex digits, then filler.
std::string make_body(std::size_t size, std::chrono::steady_clock::time_point sent);
/// Reads the send time back; nullopt when the body was not made by make_body.
std::optional<std::chrono::steady_clock::time_point> read_send_time(std::string_view body);

/// A handler of fixed known cost: burns `cost` of the calling thread's CPU time (not wall
/// time, so a busy machine that preempts the thread does not shorten the work).
void burn_cpu(std::chrono::microseconds cost);

/// Process-wide resource usage (getrusage): CPU seconds (user + system) and peak RSS bytes.
struct resource_usage {
  double cpu_s = 0;
  std::uint64_t peak_rss_bytes = 0;
  static resource_usage now();
};

}  // namespace qrt::bench
