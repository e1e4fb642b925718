// A provider decorator that records every call into runtime_metrics: latency per operation,
// batch sizes, messages sent/received, errors by code, dead-lettered, in-flight, and queue
// depth whenever stats() is called, and the provider's connection_stats (bytes sent and
// received, connections opened, failures, recovery times) whenever the registry exposes its
// series. Works for any provider, including other decorators; instrument a provider once.
// depth_watch calls stats() on a schedule, so the depth gauge stays current while nobody else
// asks.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <qrt/client.hpp>
#include <qrt/metrics.hpp>
#include <qrt/provider.hpp>
#include <vector>

namespace qrt::metrics {

/// Wraps `inner`. `metrics` (and its registry) must outlive the returned provider, including
/// the copies that work still queued on an io_context holds: declare them before the runtime
/// or io_context the provider runs on. Series are labelled with the
/// queue name and inner->name(); settlements find their queue from the receipt the wrapped
/// receive handed out, whichever link or session it came over (queue label "unknown" for
/// receipts this wrapper never saw, or whose link is not among the last 4,096 received over). A
/// topic's subscription is a queue here: its series are exposed with `topic` and `subscription`
/// labels beside `queue`. A publish is counted as a send is (operation="publish", messages sent,
/// errors) under the label `topic` alone (docs/adr/0050-topics-and-subscriptions.md).
provider_ptr instrument(provider_ptr inner, runtime_metrics& metrics);

/// How often a depth_watch reads its queues, and whom it tells of a failed reading.
struct depth_watch_options {
  /// Between two rounds of readings; at least 1 ms.
  milliseconds interval{5'000};
  /// After a round in which a reading failed, the wait doubles from `interval` with each
  /// further failed round, up to this (never below `interval`); a round without failures
  /// goes back to `interval`.
  milliseconds max_backoff{60'000};
  /// A failed reading, for logging (called on the watch's strand). The instrumented provider
  /// has already counted it in queue_runtime_errors_total{operation="stats"}.
  std::function<void(const queue_name& queue, const error& e)> on_error;
};

/// What a depth_watch did so far, for monitoring and tests.
struct depth_watch_stats {
  std::uint64_t readings = 0;  ///< stats() calls that succeeded
  std::uint64_t failures = 0;  ///< stats() calls that failed
};

/// Keeps queue_runtime_queue_depth current: calls `client.stats(queue)` for each queue at once
/// and then every interval, so that the instrumented provider under `client` (instrument())
/// sets the gauge. A scrape never waits for a provider call: it exposes the last reading. A
/// reading that fails (the queue was deleted, the broker is down) leaves the last value, is
/// reported, and the watch goes on with back-off.
class depth_watch {
 public:
  /// Reads `queues` through `client` (copied; copies share the provider). Throws qrt::exception
  /// (invalid_argument) for an empty list of queues or an interval under 1 ms.
  depth_watch(queue_client client, std::vector<queue_name> queues,
              depth_watch_options options = {});
  /// Without stop(), tells the watch to end; a reading in flight then finishes on its own,
  /// holding the client until the provider answers.
  ~depth_watch();
  depth_watch(const depth_watch&) = delete;
  depth_watch& operator=(const depth_watch&) = delete;

  /// Starts reading on `executor`. Once only.
  void start(boost::asio::any_io_executor executor);
  /// Ends the watch: no reading starts after this is called, and it returns once the reading
  /// in flight (if any) has returned, so the executor may then be destroyed, before or after
  /// the watch. Only the first call waits; a later one returns at once.
  awaitable<void> stop();

  /// What it did so far.
  depth_watch_stats stats() const;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace qrt::metrics
