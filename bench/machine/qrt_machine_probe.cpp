// What the machine itself does to latency, apart from qrt (docs/performance.md, the tenth round
// of the embedded provider's figures). Linux only: it pins threads to CPUs.
//
//   qrt_machine_probe pingpong [SAMPLES=40] [INTERVAL_MS=250]
//     Two threads pinned to the first two CPUs the process may use bounce an atomic 200,000
//     times (qrt::bench::cross_cpu_round_trip_ns, which qrt bench reports too); prints the
//     round trip per sample. On a virtual machine the two vCPUs may sit on host cores near to
//     or far from each other, and the cost of every cache line qrt's threads share follows.
//   qrt_machine_probe gaps [SECONDS=5]
//     One thread per CPU, each pinned, reads the clock in a loop; prints each gap over 1 ms
//     (when another process or the hypervisor had that CPU) and a count per CPU.
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <qrt/bench/machine.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

using steady = std::chrono::steady_clock;

bool pin_to(unsigned cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

int pingpong(int samples, int interval_ms) {
  for (int s = 0; s < samples; ++s) {
    const auto round_trip = qrt::bench::cross_cpu_round_trip_ns(1, 200'000);
    if (!round_trip) {
      std::fprintf(stderr, "qrt_machine_probe: cannot pin two threads to two CPUs\n");
      return 1;
    }
    std::printf("round trip %.0f ns\n", *round_trip);
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
  return 0;
}

int gaps(double seconds) {
  const unsigned cpus = std::thread::hardware_concurrency();
  std::vector<long> over_1ms(cpus), over_3ms(cpus), longest_us(cpus);
  std::vector<std::thread> threads;
  for (unsigned cpu = 0; cpu < cpus; ++cpu) {
    threads.emplace_back([&, cpu] {
      if (!pin_to(cpu)) {
        std::fprintf(stderr, "qrt_machine_probe: cannot pin a thread to CPU %u\n", cpu);
        return;
      }
      const auto start = steady::now();
      const auto until = start + std::chrono::duration<double>(seconds);
      auto last = start;
      while (last < until) {
        const auto now = steady::now();
        const long gap_us =
            std::chrono::duration_cast<std::chrono::microseconds>(now - last).count();
        if (gap_us > 1000) {
          ++over_1ms[cpu];
          if (gap_us > 3000) ++over_3ms[cpu];
          std::printf("cpu %u: %ld us without the CPU, %.3f s in\n", cpu, gap_us,
                      std::chrono::duration<double>(last - start).count());
        }
        if (gap_us > longest_us[cpu]) longest_us[cpu] = gap_us;
        last = now;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (unsigned cpu = 0; cpu < cpus; ++cpu) {
    std::printf("cpu %u: %ld gaps over 1 ms, %ld over 3 ms, longest %ld us in %.1f s\n", cpu,
                over_1ms[cpu], over_3ms[cpu], longest_us[cpu], seconds);
  }
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: qrt_machine_probe pingpong [SAMPLES] [INTERVAL_MS]\n"
               "       qrt_machine_probe gaps [SECONDS]\n");
  return 2;
}

/// A positive whole number from the command line, or `fallback` when absent; 0 when malformed.
long positive_arg(int argc, char** argv, int index, long fallback) {
  if (argc <= index) return fallback;
  char* end = nullptr;
  const long v = std::strtol(argv[index], &end, 10);
  return (end && *end == '\0' && v > 0 && v <= 1'000'000) ? v : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string what = argv[1];
  if (what == "pingpong") {
    if (std::thread::hardware_concurrency() < 2) {
      std::fprintf(stderr, "qrt_machine_probe: pingpong needs two CPUs\n");
      return 1;
    }
    const long samples = positive_arg(argc, argv, 2, 40);
    const long interval = positive_arg(argc, argv, 3, 250);
    if (samples == 0 || interval == 0) return usage();
    return pingpong(static_cast<int>(samples), static_cast<int>(interval));
  }
  if (what == "gaps") {
    const long seconds = positive_arg(argc, argv, 2, 5);
    if (seconds == 0 || seconds > 3600) return usage();
    return gaps(static_cast<double>(seconds));
  }
  return usage();
}
