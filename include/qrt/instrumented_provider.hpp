// A provider decorator that records every call into runtime_metrics: latency per operation,
// batch sizes, messages sent/received, errors by code, dead-lettered, in-flight, and queue
// depth whenever stats() is called. Works for any provider, including other decorators.
#pragma once

#include <qrt/metrics.hpp>
#include <qrt/provider.hpp>

namespace qrt::metrics {

/// Wraps `inner`. `metrics` must outlive the returned provider. Series are labelled with the
/// queue name and inner->name(); settlements find their queue from the receipt the wrapped
/// receive handed out (queue label "unknown" for receipts this wrapper never saw).
provider_ptr instrument(provider_ptr inner, runtime_metrics& metrics);

}  // namespace qrt::metrics
