// The raw-queue baseline moves every message exactly once. Not labelled "concurrent":
// moodycamel synchronises with std::atomic_thread_fence, which ThreadSanitizer does not model,
// so TSan reports false races inside concurrentqueue.h.
#include <gtest/gtest.h>

#include <qrt/bench/harness.hpp>

namespace qrt::bench {
namespace {

TEST(Baseline, MovesEveryMessageExactlyOnceWithManyProducersAndConsumers) {
  bench_options o;
  o.messages = 20'001;  // not a multiple of the batch size
  o.producers = 3;
  o.consumers = 2;
  o.send_batch = 7;
  o.receive_batch = 5;
  const auto r = run_baseline(o);
  EXPECT_EQ(r.messages, 20'001u);
  EXPECT_EQ(r.e2e.count, 20'001u);
  EXPECT_GT(r.throughput, 0);
  // Its threads' CPU, per message: spent, and divided by what moved.
  EXPECT_GT(r.cpu_s, 0);
  EXPECT_DOUBLE_EQ(r.cpu_s_per_message, r.cpu_s / 20'001.0);
}

}  // namespace
}  // namespace qrt::bench
