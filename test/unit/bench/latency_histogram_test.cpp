#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <qrt/bench/latency_histogram.hpp>
#include <random>
#include <vector>

namespace qrt::bench {
namespace {

TEST(LatencyHistogram, SmallValuesAreExact) {
  latency_histogram h;
  for (std::uint64_t v = 0; v < 100; ++v) h.record(v);
  EXPECT_EQ(h.count(), 100u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 99u);
  EXPECT_EQ(h.percentile(0.5), 49u);
  EXPECT_EQ(h.percentile(1.0), 99u);
  EXPECT_DOUBLE_EQ(h.mean(), 49.5);
}

TEST(LatencyHistogram, BucketsAreContiguousAndEachValueFallsInsideItsBucket) {
  for (std::uint64_t v : {127ull, 128ull, 129ull, 255ull, 256ull, 1000ull, 123456789ull,
                          (1ull << 40) + 12345, ~0ull}) {
    const auto i = latency_histogram::index_of(v);
    EXPECT_LE(v, latency_histogram::highest_equivalent(i)) << v;
    if (i > 0) {
      EXPECT_GT(v, latency_histogram::highest_equivalent(i - 1)) << v;
    }
  }
}

TEST(LatencyHistogram, PercentilesAreWithinOnePercentOfTheExactOnes) {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> dist(10.0, 1.5);  // ns, a long tail like real latencies
  std::vector<std::uint64_t> values;
  latency_histogram h;
  for (int i = 0; i < 100'000; ++i) {
    const auto v = static_cast<std::uint64_t>(dist(rng));
    values.push_back(v);
    h.record(v);
  }
  std::sort(values.begin(), values.end());
  for (double q : {0.5, 0.9, 0.95, 0.99, 0.999}) {
    const auto exact = values[static_cast<std::size_t>(std::ceil(q * values.size())) - 1];
    const auto approx = h.percentile(q);
    EXPECT_GE(approx, exact) << q;  // reports the bucket's highest equivalent value
    EXPECT_LE(static_cast<double>(approx), exact * 1.01 + 1) << q;
  }
  EXPECT_EQ(h.percentile(1.0), values.back());
}

TEST(LatencyHistogram, MergeEqualsRecordingEverythingInOne) {
  latency_histogram a, b, all;
  for (std::uint64_t v = 1; v < 50'000; v += 7) {
    ((v % 2) ? a : b).record(v);
    all.record(v);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_EQ(a.min(), all.min());
  for (double q : {0.1, 0.5, 0.99}) EXPECT_EQ(a.percentile(q), all.percentile(q));
}

TEST(LatencyHistogram, EmptyReportsZero) {
  latency_histogram h;
  EXPECT_EQ(h.percentile(0.99), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.min(), 0u);
}

}  // namespace
}  // namespace qrt::bench
