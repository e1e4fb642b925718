// What the machine gives qrt apart from qrt: how long a cache line takes to travel between two
// CPUs and back, and how much memory the process may use.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qrt::bench {

/// The round trip of a cache line between the first two CPUs this process may run on: two
/// threads, pinned one to each, bounce an atomic `bounces` times; the median of `samples` such
/// runs, in nanoseconds. nullopt with fewer than two CPUs, or where threads cannot be pinned (not
/// Linux). On a virtual machine the two vCPUs may sit on host cores near to or far from each
/// other, and every cache line two threads share costs accordingly, so a benchmark reports it
/// beside its figures (docs/performance.md, "Tenth round": the two levels).
std::optional<double> cross_cpu_round_trip_ns(int samples = 3, int bounces = 50'000);

/// How much memory this process may use, and which limit says so.
struct memory_limit {
  std::uint64_t bytes = 0;
  std::string source;  ///< "cgroup memory.max", "cgroup memory.limit_in_bytes" or "MemTotal"
};

/// The tightest of the process's cgroup memory limits (cgroup v2 `memory.max` of its group and
/// every parent, or cgroup v1 `memory.limit_in_bytes`) and the machine's memory (`MemTotal`):
/// what a container's process can hold before it is killed. nullopt where none can be read.
std::optional<memory_limit> memory_available();

/// The group of a cgroup v2 process from /proc/self/cgroup's text (the `0::/path` line);
/// nullopt without one.
std::optional<std::string> cgroup_v2_group(std::string_view proc_self_cgroup);
/// A cgroup memory limit file's value in bytes; nullopt for "max" (none), for a value so large it
/// means none (cgroup v1 writes the largest page multiple), and for anything that is not a
/// number.
std::optional<std::uint64_t> parse_cgroup_memory_limit(std::string_view text);
/// /proc/meminfo's `MemTotal` in bytes; nullopt when absent or malformed.
std::optional<std::uint64_t> parse_meminfo_total(std::string_view meminfo);

}  // namespace qrt::bench
