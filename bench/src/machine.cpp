// Two pinned threads bouncing one cache line (qrt/bench/machine.hpp).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <qrt/bench/machine.hpp>
#include <thread>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

namespace qrt::bench {

#if defined(__linux__)
namespace {

/// The first two CPUs of this process's affinity mask (a container or taskset may leave out
/// CPU 0); nullopt when it has fewer than two.
std::optional<std::pair<int, int>> two_allowed_cpus() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return std::nullopt;
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE && cpus.size() < 2; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
  }
  if (cpus.size() < 2) return std::nullopt;
  return std::pair{cpus[0], cpus[1]};
}

bool pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

/// One run: nanoseconds per round trip, or nullopt when a thread could not be pinned. Both
/// sides are threads of their own, so the caller's affinity is left as it was.
std::optional<double> one_run(std::pair<int, int> cpus, int bounces) {
  alignas(64) std::atomic<int> ball{0};
  std::atomic<bool> failed{false};  // a side could not pin itself: the other stops waiting
  double took_ns = 0;
  std::thread answering([&] {
    if (!pin_to(cpus.second)) {
      failed = true;
      return;
    }
    for (int i = 0; i < bounces; ++i) {
      while (ball.load(std::memory_order_acquire) != 2 * i + 1) {
        if (failed.load(std::memory_order_relaxed)) return;
      }
      ball.store(2 * i + 2, std::memory_order_release);
    }
  });
  std::thread serving([&] {
    if (!pin_to(cpus.first)) {
      failed = true;
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < bounces; ++i) {
      ball.store(2 * i + 1, std::memory_order_release);
      while (ball.load(std::memory_order_acquire) != 2 * i + 2) {
        if (failed.load(std::memory_order_relaxed)) return;
      }
    }
    took_ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  });
  serving.join();
  answering.join();
  if (failed) return std::nullopt;
  return took_ns / bounces;
}

}  // namespace

std::optional<double> cross_cpu_round_trip_ns(int samples, int bounces) {
  if (samples < 1 || bounces < 1) return std::nullopt;
  const auto cpus = two_allowed_cpus();
  if (!cpus) return std::nullopt;
  std::vector<double> runs;
  for (int s = 0; s < samples; ++s) {
    auto r = one_run(*cpus, bounces);
    if (!r) return std::nullopt;
    runs.push_back(*r);
  }
  std::nth_element(runs.begin(), runs.begin() + runs.size() / 2, runs.end());
  return runs[runs.size() / 2];
}

#else

std::optional<double> cross_cpu_round_trip_ns(int, int) {
  return std::nullopt;
}

#endif

}  // namespace qrt::bench
