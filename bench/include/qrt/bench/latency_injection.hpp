// A provider decorator that delays every provider call by a fixed time (an asynchronous wait,
// so waiting calls hold no thread). Used by the scaling benchmark to model a network provider
// whose calls take 10 ms; latency only, no faults.
#pragma once

#include <qrt/provider.hpp>

namespace qrt::bench {

provider_ptr with_latency(provider_ptr inner, milliseconds delay);

}  // namespace qrt::bench
