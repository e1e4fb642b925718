// The machine probe the benchmark reports: a round trip where two CPUs can be used, and a plain
// "unknown" (never a hang or a made-up figure) where they cannot.
#include <gtest/gtest.h>

#include <cmath>
#include <qrt/bench/machine.hpp>
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

}  // namespace
