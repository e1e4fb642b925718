// What the machine costs qrt's threads apart from qrt: how long a cache line takes to travel
// between two CPUs and back.
#pragma once

#include <optional>

namespace qrt::bench {

/// The round trip of a cache line between the first two CPUs this process may run on: two
/// threads, pinned one to each, bounce an atomic `bounces` times; the median of `samples` such
/// runs, in nanoseconds. nullopt with fewer than two CPUs, or where threads cannot be pinned (not
/// Linux). On a virtual machine the two vCPUs may sit on host cores near to or far from each
/// other, and every cache line two threads share costs accordingly, so a benchmark reports it
/// beside its figures (docs/performance.md, "Tenth round": the two levels).
std::optional<double> cross_cpu_round_trip_ns(int samples = 3, int bounces = 50'000);

}  // namespace qrt::bench
