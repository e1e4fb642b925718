#include <gtest/gtest.h>

#include <map>
#include <qrt/names.hpp>
#include <string>

using qrt::errc;
using qrt::queue_name;
using qrt::session_id;

TEST(QueueName, AcceptsLettersDigitsDashUnderscoreDot) {
  auto q = queue_name::parse("orders_v2.high-priority");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->str(), "orders_v2.high-priority");
  EXPECT_FALSE(q->is_dead_letter());
  EXPECT_FALSE(q->is_fifo());
}

TEST(QueueName, FifoSuffixIsRecognised) {
  EXPECT_TRUE(queue_name::from("payments.fifo").is_fifo());
  EXPECT_FALSE(queue_name::from("fifo").is_fifo());
}

TEST(QueueName, RejectsBadNamesWithTheReason) {
  for (std::string_view bad : {"", "-lead", "trail-", "dou--ble", "sp ace", "sl/ash", "ümlaut"}) {
    auto q = queue_name::parse(bad);
    ASSERT_FALSE(q) << bad;
    EXPECT_EQ(q.error().code, errc::invalid_argument) << bad;
    EXPECT_NE(q.error().message.find("invalid queue name"), std::string::npos);
  }
  EXPECT_TRUE(queue_name::parse(std::string(260, 'a')));
  EXPECT_FALSE(queue_name::parse(std::string(261, 'a')));
}

TEST(QueueName, DeadLetterIsASubQueueOfItsParent) {
  auto q = queue_name::from("orders");
  auto dlq = q.dead_letter();
  EXPECT_TRUE(dlq.is_dead_letter());
  EXPECT_EQ(dlq.to_string(), "orders/$DeadLetterQueue");
  EXPECT_EQ(dlq.parent(), q);
  EXPECT_NE(dlq, q);
  EXPECT_EQ(dlq.dead_letter(), dlq);
}

TEST(QueueName, FromThrowsOnInvalidLiteral) {
  EXPECT_THROW(queue_name::from("a--b"), qrt::exception);
}

TEST(SessionId, LimitsLengthAndCharacters) {
  EXPECT_TRUE(session_id::parse("customer-42"));
  EXPECT_TRUE(session_id::parse(std::string(128, 'x')));
  EXPECT_FALSE(session_id::parse(std::string(129, 'x')));
  EXPECT_FALSE(session_id::parse(""));
  EXPECT_FALSE(session_id::parse(std::string("a\nb")));
}

// The shard is the published 64-bit FNV-1a hash modulo the shard count, so a sender in another
// language computes the same one: FNV-1a("") = 0xcbf29ce484222325, FNV-1a("a") =
// 0xaf63dc4c8601ec8c, FNV-1a("foobar") = 0x85944171f73967e8 (the reference test vectors).
TEST(SessionId, ForShardIsTheFnv1aHashOfTheKeyModuloTheShards) {
  EXPECT_EQ(session_id::for_shard("", 1000).str(),
            "shard-" + std::to_string(0xcbf29ce484222325ULL % 1000));
  EXPECT_EQ(session_id::for_shard("a", 97).str(),
            "shard-" + std::to_string(0xaf63dc4c8601ec8cULL % 97));
  EXPECT_EQ(session_id::for_shard("foobar", 16).str(),
            "shard-" + std::to_string(0x85944171f73967e8ULL % 16));
  EXPECT_EQ(session_id::for_shard("anything", 0).str(), "shard-0");  // 0 shards count as 1
  EXPECT_EQ(session_id::for_shard("anything", 1).str(), "shard-0");
}

// Keys spread over every shard, none far from its even share (what makes the shards worth
// processing in parallel), and a key always lands on the same one.
TEST(SessionId, ForShardSpreadsKeysEvenlyAndKeepsEachKeyOnOneShard) {
  constexpr std::uint32_t shards = 16;
  constexpr int keys = 16'000;
  std::map<std::string, int> per_shard;
  for (int k = 0; k < keys; ++k) {
    const auto key = "customer-" + std::to_string(k);
    const auto shard = session_id::for_shard(key, shards);
    EXPECT_EQ(session_id::for_shard(key, shards), shard);
    ++per_shard[shard.str()];
  }
  ASSERT_EQ(per_shard.size(), shards);
  for (const auto& [shard, count] : per_shard) {
    EXPECT_GT(count, keys / shards * 8 / 10) << shard;
    EXPECT_LT(count, keys / shards * 12 / 10) << shard;
  }
}
