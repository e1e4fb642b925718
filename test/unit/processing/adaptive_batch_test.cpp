// Adaptive batch sizing on a controllable clock: sizes converge for fast and for slow handlers.
#include <gtest/gtest.h>

#include <qrt/adaptive_batch.hpp>
#include <qrt/memory.hpp>
#include <qrt/runtime.hpp>

#include "../support/empty_handler.hpp"

using namespace std::chrono_literals;

namespace {

qrt::batch_metrics batch(std::size_t count, std::chrono::milliseconds per_message) {
  return {.message_count = count,
          .total_duration = per_message * static_cast<long>(count),
          .processing_duration = per_message * static_cast<long>(count),
          .success_count = count};
}

}  // namespace

TEST(AdaptiveBatch, StartsAtTheMinimumAndConvergesForFastAndSlowHandlers) {
  qrt::adaptive_batch_sizer sizer(
      {.min_batch_size = 2, .max_batch_size = 64, .target_batch_duration = 100ms});
  EXPECT_EQ(sizer.next_batch_size(), 2u);

  for (int i = 0; i < 10; ++i) sizer.record(batch(sizer.next_batch_size(), 1ms));
  EXPECT_EQ(sizer.next_batch_size(), 64u) << "fast handler: 100 per target, clamped to max";

  for (int i = 0; i < 10; ++i) sizer.record(batch(sizer.next_batch_size(), 20ms));
  EXPECT_EQ(sizer.next_batch_size(), 5u) << "slow handler: 100 ms / 20 ms once the window is slow";

  for (int i = 0; i < 10; ++i) sizer.record(batch(sizer.next_batch_size(), 500ms));
  EXPECT_EQ(sizer.next_batch_size(), 2u) << "slower than the target: clamped to min";
}

TEST(AdaptiveBatch, AveragesOnlyTheRecentWindowAndKeepsLimitedHistory) {
  qrt::adaptive_batch_sizer sizer({.min_batch_size = 1,
                                   .max_batch_size = 1000,
                                   .target_batch_duration = 100ms,
                                   .window = 4,
                                   .max_history = 6});
  for (int i = 0; i < 20; ++i) sizer.record(batch(10, 50ms));
  sizer.record(batch(10, 10ms));
  sizer.record(batch(10, 10ms));
  // window of 4: (50 + 50 + 10 + 10) / 4 = 30 ms per message -> 3
  EXPECT_EQ(sizer.next_batch_size(), 3u);
  EXPECT_EQ(sizer.history().size(), 6u);
  sizer.record(batch(0, 0ms));
  EXPECT_EQ(sizer.history().size(), 6u) << "an empty batch says nothing";
}

// A target of no time, or less (a misconfigured negative duration), asks for the smallest batch,
// never for the largest.
TEST(AdaptiveBatch, ATargetOfZeroOrLessGivesTheSmallestBatch) {
  for (auto target : {0ms, -100ms}) {
    qrt::adaptive_batch_sizer sizer(
        {.min_batch_size = 2, .max_batch_size = 64, .target_batch_duration = target});
    sizer.record(batch(10, 1ms));
    EXPECT_EQ(sizer.next_batch_size(), 2u) << "target " << target.count() << " ms";
  }
}

// process_adaptive_batch against the real embedded provider; the handler advances
// the fake clock by 10 ms per message, so the second batch is sized 100 ms / 10 ms = 10.
TEST(AdaptiveBatch, ProcessorReceivesSizedBatchesAndSettlesThem) {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(memory);
  const auto q = qrt::queue_name::from("q");
  ASSERT_TRUE(rt.block_on(client.create_queue(q)));
  std::vector<qrt::message> msgs(25, qrt::message{.body = "x"});
  ASSERT_TRUE(rt.block_on(client.send_batch(q, msgs)));

  auto now = std::chrono::steady_clock::time_point{};
  qrt::adaptive_batch_processor p(
      client, q,
      [&](const qrt::received_message&) -> qrt::awaitable<qrt::result<void>> {
        now += 10ms;
        co_return qrt::result<void>{};
      },
      {.min_batch_size = 1,
       .max_batch_size = 50,
       .target_batch_duration = 100ms,
       .now = [&] { return now; }},
      0ms);
  std::vector<std::size_t> sizes;
  for (;;) {
    auto n = rt.block_on(p.process_batch()).value();
    if (n == 0) break;
    sizes.push_back(n);
  }
  EXPECT_EQ(sizes, (std::vector<std::size_t>{1, 10, 10, 4}));
  EXPECT_EQ(rt.block_on(client.stats(q)).value().active, 0);
  EXPECT_EQ(rt.block_on(client.stats(q)).value().in_flight, 0);
}

// A handler throwing something not derived from std::exception fails only its own message: it
// is abandoned, the rest of the batch is completed, and process_batch returns normally.
TEST(AdaptiveBatch, NonStandardThrowAbandonsOnlyThatMessage) {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(memory);
  const auto q = qrt::queue_name::from("q");
  ASSERT_TRUE(rt.block_on(client.create_queue(q)));
  for (auto body : {"a", "bomb", "c"}) ASSERT_TRUE(rt.block_on(client.send(q, {.body = body})));

  qrt::adaptive_batch_processor p(
      client, q,
      [&](const qrt::received_message& m) -> qrt::awaitable<qrt::result<void>> {
        if (m.body == "bomb") throw 3.5;
        co_return qrt::result<void>{};
      },
      {.min_batch_size = 3, .max_batch_size = 3}, 0ms);
  auto n = rt.block_on(p.process_batch());
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 3u);
  auto left = rt.block_on(client.receive(q, 10, 0ms)).value();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].body, "bomb");
  EXPECT_EQ(left[0].delivery_count, 2u);
}

// An empty handler could only fail every message: refused when the processor is built.
TEST(AdaptiveBatch, AnEmptyHandlerIsRefusedWhenBuilt) {
  qrt::runtime rt({.worker_threads = 1});
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(memory);
  qrt::test::expect_empty_handler_refused([&] {
    qrt::adaptive_batch_processor p(client, qrt::queue_name::from("q"), qrt::message_handler{});
  });
}
