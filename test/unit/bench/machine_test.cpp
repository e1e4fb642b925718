// The machine probes the benchmark reports: a round trip where two CPUs can be used, and a plain
// "unknown" (never a hang or a made-up figure) where they cannot; the memory the process may
// use, read from files whose text is checked, never trusted.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <qrt/bench/machine.hpp>
#include <random>
#include <string>
#include <thread>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

namespace {

TEST(Machine, TwoCpusGiveAPositiveRoundTrip) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "one CPU";
  const auto ns = qrt::bench::cross_cpu_round_trip_ns(1, 1000);
#if defined(__linux__)
  ASSERT_TRUE(ns.has_value());
  EXPECT_TRUE(std::isfinite(*ns));
  EXPECT_GT(*ns, 0.0);
#else
  EXPECT_FALSE(ns.has_value());
#endif
}

TEST(Machine, NoSamplesOrNoBouncesAreNoFigure) {
  EXPECT_FALSE(qrt::bench::cross_cpu_round_trip_ns(0, 1000));
  EXPECT_FALSE(qrt::bench::cross_cpu_round_trip_ns(1, 0));
}

#if defined(__linux__)
// A process held to one CPU (taskset, a container's cpuset) has no second CPU to bounce a line
// to: the probe says so at once instead of pinning both sides to one CPU and measuring that.
TEST(Machine, OneAllowedCpuGivesNoFigure) {
  cpu_set_t before;
  CPU_ZERO(&before);
  ASSERT_EQ(sched_getaffinity(0, sizeof before, &before), 0);
  int first = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE && first < 0; ++cpu) {
    if (CPU_ISSET(cpu, &before)) first = cpu;
  }
  ASSERT_GE(first, 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  const auto ns = qrt::bench::cross_cpu_round_trip_ns(1, 1000);
  ASSERT_EQ(sched_setaffinity(0, sizeof before, &before), 0);
  EXPECT_FALSE(ns.has_value());
}
#endif

using qrt::bench::cgroup_v2_group;
using qrt::bench::parse_cgroup_memory_limit;
using qrt::bench::parse_meminfo_total;

TEST(Machine, ACgroupLimitIsReadAndNoLimitIsNone) {
  EXPECT_EQ(parse_cgroup_memory_limit("536870912\n"), 536870912u);
  EXPECT_FALSE(parse_cgroup_memory_limit("max\n"));  // cgroup v2: no limit
  // cgroup v1 writes the largest page multiple below 2^63 for "no limit".
  EXPECT_FALSE(parse_cgroup_memory_limit("9223372036854771712\n"));
  EXPECT_FALSE(parse_cgroup_memory_limit(""));
  EXPECT_FALSE(parse_cgroup_memory_limit("-1"));
  EXPECT_FALSE(parse_cgroup_memory_limit("12 kB"));
  EXPECT_FALSE(parse_cgroup_memory_limit("99999999999999999999999"));  // past 64 bits
}

TEST(Machine, MemTotalIsReadInBytes) {
  const std::string meminfo =
      "MemFree:         1000 kB\nMemTotal:       25165824 kB\nMemAvailable:   2000 kB\n";
  EXPECT_EQ(parse_meminfo_total(meminfo), 25165824ull * 1024);
  EXPECT_FALSE(parse_meminfo_total("MemFree: 1000 kB\n"));
  EXPECT_FALSE(parse_meminfo_total("MemTotal: lots kB\n"));
  EXPECT_FALSE(parse_meminfo_total("MemTotal: 1000 MB\n"));
  EXPECT_FALSE(parse_meminfo_total("MemTotal: 99999999999999999 kB\n"));  // no such machine
}

TEST(Machine, TheProcessesCgroupV2GroupIsTheZeroLine) {
  EXPECT_EQ(cgroup_v2_group("0::/user.slice/session-3.scope\n"), "/user.slice/session-3.scope");
  EXPECT_EQ(cgroup_v2_group("12:memory:/docker/abc\n0::/\n"), "/");
  EXPECT_FALSE(cgroup_v2_group("12:memory:/docker/abc\n"));  // cgroup v1 only
  EXPECT_FALSE(cgroup_v2_group("0::relative\n"));
  EXPECT_FALSE(cgroup_v2_group(""));
}

// Whatever bytes the files hold, the parsers return nothing or a figure the text spells out:
// never a crash, never a number made up from part of a line.
TEST(Machine, GarbageInTheMemoryFilesGivesNoFigure) {
  std::mt19937 gen(20261208);
  const std::string alphabet = "0123456789 \n\tkBmaxMemTotal:-/\xff";
  for (int i = 0; i < 20000; ++i) {
    std::string text(gen() % 40, ' ');
    for (auto& c : text) c = alphabet[gen() % alphabet.size()];
    if (const auto v = parse_cgroup_memory_limit(text)) {
      const auto first = text.find_first_not_of(" \t\r\n");
      const auto last = text.find_last_not_of(" \t\r\n");
      const std::string digits = text.substr(first, last - first + 1);
      EXPECT_EQ(digits.find_first_not_of("0123456789"), std::string::npos) << text;
      const auto leading_zeros = std::min(digits.find_first_not_of('0'), digits.size() - 1);
      EXPECT_EQ(std::to_string(*v), digits.substr(leading_zeros)) << text;
    }
    if (const auto v = parse_meminfo_total(text)) {
      EXPECT_NE(text.find("MemTotal:"), std::string::npos) << text;
      EXPECT_EQ(*v % 1024, 0u) << text;
    }
    if (const auto g = cgroup_v2_group(text)) {
      EXPECT_EQ(g->front(), '/') << text;
      EXPECT_NE(text.find("0::" + *g), std::string::npos) << text;
    }
  }
}

#if defined(__linux__)
// Every Linux machine has /proc/meminfo: the figure is there and no larger than it.
TEST(Machine, TheMemoryAvailableIsKnownOnLinux) {
  const auto limit = qrt::bench::memory_available();
  ASSERT_TRUE(limit.has_value());
  EXPECT_GT(limit->bytes, 0u);
  EXPECT_FALSE(limit->source.empty());
}
#endif

}  // namespace
