#include <gtest/gtest.h>

#include <qrt/client.hpp>
#include <random>

using qrt::capabilities;
using qrt::message;

namespace {
std::vector<message> sized(std::initializer_list<std::size_t> sizes) {
  std::vector<message> out;
  for (auto s : sizes) out.push_back(message{.body = std::string(s, 'x')});
  return out;
}
}  // namespace

TEST(BatchPlan, SplitsByCountKeepingOrder) {  // contract C3: batches within the provider's limits
  capabilities caps{
      .max_batch_messages = 10, .max_batch_bytes = 262'144, .max_message_bytes = 262'144};
  std::vector<message> msgs(25, message{.body = "x"});
  auto plan = qrt::plan_batches(msgs, caps);
  ASSERT_EQ(plan.batches.size(), 3u);
  EXPECT_EQ(plan.batches[0].size(), 10u);
  EXPECT_EQ(plan.batches[2].size(), 5u);
  EXPECT_EQ(plan.batches[1].front(), 10u);
  EXPECT_TRUE(plan.oversized.empty());
}

TEST(BatchPlan, SplitsByBytesAndReportsOversized) {
  capabilities caps{.max_batch_messages = 10, .max_batch_bytes = 100, .max_message_bytes = 80};
  auto plan = qrt::plan_batches(sized({60, 30, 20, 90, 50}), caps);
  // 60+30 = 90 fits; +20 would be 110 -> new batch; 90 is oversized; 20+50 fits.
  ASSERT_EQ(plan.batches.size(), 2u);
  EXPECT_EQ(plan.batches[0], (std::vector<std::size_t>{0, 1}));
  EXPECT_EQ(plan.batches[1], (std::vector<std::size_t>{2, 4}));
  EXPECT_EQ(plan.oversized, (std::vector<std::size_t>{3}));
}

// The send path skips planning when everything fits one batch: that shortcut must agree with
// the plan on every input, or a batch over the limits would reach the provider whole.
TEST(BatchPlan, FitsOneBatchAgreesWithThePlan) {
  std::mt19937 random(20261204);  // fixed: a failure names an input that can be run again
  std::uniform_int_distribution<std::size_t> count(0, 12), size(0, 120), limit(0, 4);
  const std::size_t limits[] = {0, 1, 3, 100, 250};  // 0: no limit
  for (int round = 0; round < 20'000; ++round) {
    capabilities caps{.max_batch_messages = limits[limit(random)],
                      .max_batch_bytes = limits[limit(random)],
                      .max_message_bytes = limits[limit(random)]};
    std::vector<message> msgs(count(random));
    for (auto& m : msgs) m.body.assign(size(random), 'x');
    if (msgs.empty()) continue;  // no batch at all: the send path returns before asking
    const auto plan = qrt::plan_batches(msgs, caps);
    const bool one = plan.batches.size() == 1 && plan.oversized.empty();
    ASSERT_EQ(qrt::fits_one_batch(msgs, caps), one)
        << "round " << round << ": " << msgs.size() << " messages, limits "
        << caps.max_batch_messages << "/" << caps.max_batch_bytes << "/" << caps.max_message_bytes;
  }
}
