// Two pinned threads bouncing one cache line, and the memory limits (qrt/bench/machine.hpp).
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <fstream>
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

namespace {

/// At most this much of a /proc or /sys file is read: the files asked for are a few lines.
constexpr std::size_t max_file_bytes = 64 * 1024;

std::optional<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string text(max_file_bytes, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

std::string_view trimmed(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

std::optional<std::uint64_t> parse_unsigned(std::string_view s) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

void keep_tighter(std::optional<memory_limit>& best, std::optional<std::uint64_t> bytes,
                  const char* source) {
  if (bytes && (!best || *bytes < best->bytes)) best = memory_limit{*bytes, source};
}

}  // namespace

std::optional<std::string> cgroup_v2_group(std::string_view proc_self_cgroup) {
  while (!proc_self_cgroup.empty()) {
    const auto eol = proc_self_cgroup.find('\n');
    const auto line = proc_self_cgroup.substr(0, eol);
    if (line.substr(0, 3) == "0::") {
      const auto group = trimmed(line.substr(3));
      if (group.empty() || group.front() != '/') return std::nullopt;
      return std::string(group);
    }
    if (eol == std::string_view::npos) break;
    proc_self_cgroup.remove_prefix(eol + 1);
  }
  return std::nullopt;
}

std::optional<std::uint64_t> parse_cgroup_memory_limit(std::string_view text) {
  const auto value = parse_unsigned(trimmed(text));
  // cgroup v1 says "no limit" with the largest multiple of the page size below 2^63.
  if (!value || *value >= (std::uint64_t{1} << 62)) return std::nullopt;
  return value;
}

std::optional<std::uint64_t> parse_meminfo_total(std::string_view meminfo) {
  constexpr std::string_view key = "MemTotal:";
  std::size_t at = 0;
  while (at < meminfo.size()) {
    const auto eol = std::min(meminfo.find('\n', at), meminfo.size());
    const auto line = meminfo.substr(at, eol - at);
    if (line.substr(0, key.size()) == key) {
      auto rest = trimmed(line.substr(key.size()));
      if (rest.size() < 3 || rest.substr(rest.size() - 3) != " kB") return std::nullopt;
      const auto kib = parse_unsigned(trimmed(rest.substr(0, rest.size() - 3)));
      if (!kib || *kib > (std::uint64_t{1} << 53)) return std::nullopt;  // beyond any machine
      return *kib * 1024;
    }
    at = eol + 1;
  }
  return std::nullopt;
}

std::optional<memory_limit> memory_available() {
  std::optional<memory_limit> best;
  if (auto meminfo = read_small_file("/proc/meminfo"))
    keep_tighter(best, parse_meminfo_total(*meminfo), "MemTotal");
  if (auto cgroups = read_small_file("/proc/self/cgroup")) {
    if (auto group = cgroup_v2_group(*cgroups)) {
      // A parent's limit holds its children too: the tightest along the path applies.
      std::string path = *group;
      while (true) {
        if (auto text = read_small_file("/sys/fs/cgroup" + path + "/memory.max"))
          keep_tighter(best, parse_cgroup_memory_limit(*text), "cgroup memory.max");
        if (path == "/" || path.empty()) break;
        path.resize(std::max<std::size_t>(path.rfind('/'), 1));
      }
    }
  }
  if (auto text = read_small_file("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
    keep_tighter(best, parse_cgroup_memory_limit(*text), "cgroup memory.limit_in_bytes");
  return best;
}

}  // namespace qrt::bench
