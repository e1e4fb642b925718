// A provider decorator that records every call into runtime_metrics: latency per operation,
// batch sizes, messages sent/received, errors by code, dead-lettered, in-flight, and queue
// depth whenever stats() is called, and the provider's connection_stats (bytes sent and
// received, connections opened, failures, recovery times) whenever the registry exposes its
// series. Works for any provider, including other decorators; instrument a provider once.
#pragma once

#include <qrt/metrics.hpp>
#include <qrt/provider.hpp>

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

}  // namespace qrt::metrics
