#include <gtest/gtest.h>

#include <map>
#include <qrt/names.hpp>
#include <qrt/provider.hpp>
#include <string>
#include <unordered_set>

#include "../support/shown_text.hpp"
#include "core/name_checks.hpp"

using qrt::errc;
using qrt::queue_name;
using qrt::session_id;
using qrt::topic_name;

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

// The refused name is shown in the error, but never a byte that could drive a terminal: what is
// not printable ASCII is shown as \xHH, and a long name is cut.
TEST(QueueName, TheErrorShowsARefusedNameWithoutItsControlBytes) {
  auto q = queue_name::parse("ord\x1b[2Jers\r");
  ASSERT_FALSE(q);
  EXPECT_NE(q.error().message.find("'ord\\x1b[2Jers\\x0d'"), std::string::npos)
      << q.error().message;
  for (char c : q.error().message) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << q.error().message;
  auto umlaut = queue_name::parse("\xc3\xbcmlaut");
  ASSERT_FALSE(umlaut);
  EXPECT_NE(umlaut.error().message.find("\\xc3\\xbcmlaut"), std::string::npos)
      << umlaut.error().message;
  auto long_one = queue_name::parse(std::string(300, 'a'));
  ASSERT_FALSE(long_one);
  EXPECT_NE(long_one.error().message.find(std::string(64, 'a') + "...'"), std::string::npos);
}

// A peer's text (a server's error message or code, an AMQP condition) reaches errors, logs and
// terminals through peer_text: whatever the bytes, what comes out is valid UTF-8 without control
// characters, and the text of a well-behaved server (non-English included) is kept as it is.
TEST(PeerText, KeepsUtf8AndReplacesControlsAndMalformedBytes) {
  using qrt::detail::peer_text;
  const auto shown = peer_text(qrt::test::hostile_text, 1024);
  EXPECT_TRUE(qrt::test::fit_to_show(shown)) << shown;
  EXPECT_EQ(shown.rfind("caf\xc3\xa9 ", 0), 0u) << shown;
  EXPECT_EQ(peer_text("caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x93\xa6", 64),
            "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x93\xa6");
  // ESC and a C1 control become one '?' each; 0xff, an overlong '/' and a surrogate one per byte.
  EXPECT_EQ(peer_text("a\x1b[2J\xc2\x9b"
                      "b\xff\xc0\xaf\xed\xa0\x80",
                      64),
            "a?[2J?b??????");
  // Cut between characters, never inside one, and saying how much was left out.
  EXPECT_EQ(peer_text("ab\xc3\xa9", 3), "ab... (2 more bytes)");
  EXPECT_EQ(peer_text("abc", 3), "abc");
  EXPECT_EQ(peer_text("abcd", 3), "abc... (1 more bytes)");
  for (std::size_t limit = 0; limit <= qrt::test::hostile_text.size(); ++limit) {
    EXPECT_TRUE(qrt::test::fit_to_show(peer_text(qrt::test::hostile_text, limit))) << limit;
  }
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

TEST(TopicName, FollowsTheQueueNameRulesAndSaysItIsATopic) {
  EXPECT_EQ(topic_name::from("events.v1").str(), "events.v1");
  auto bad = topic_name::parse("ev/ents");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, errc::invalid_argument);
  EXPECT_NE(bad.error().message.find("invalid topic name 'ev/ents'"), std::string::npos);
  EXPECT_FALSE(topic_name::parse(""));
  EXPECT_FALSE(topic_name::parse("a--b"));
}

TEST(SubscriptionName, IsAQueueNameWithItsTopicInThePath) {
  auto s = queue_name::subscription(topic_name::from("events"), "audit");
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->is_subscription());
  EXPECT_EQ(s->topic(), "events");
  EXPECT_EQ(s->subscription_name(), "audit");
  EXPECT_EQ(s->str(), "events/Subscriptions/audit");
  EXPECT_EQ(s->to_string(), "events/Subscriptions/audit");
  EXPECT_EQ(s->dead_letter().to_string(), "events/Subscriptions/audit/$DeadLetterQueue");
  EXPECT_EQ(s->dead_letter().parent(), *s);
  EXPECT_TRUE(s->dead_letter().is_subscription());
  EXPECT_FALSE(queue_name::from("events").is_subscription());
  EXPECT_EQ(queue_name::from("events").subscription_name(), "events");
}

TEST(SubscriptionName, DiffersFromEveryQueueAndFromOtherTopicsSubscriptions) {
  auto a = queue_name::subscription(topic_name::from("t1"), "s").value();
  auto b = queue_name::subscription(topic_name::from("t2"), "s").value();
  EXPECT_NE(a, b);
  EXPECT_NE(a, queue_name::from("s"));
  EXPECT_NE(a, queue_name::from("t1"));
  std::unordered_set<queue_name> names{a, b, a.dead_letter(), queue_name::from("s")};
  EXPECT_EQ(names.size(), 4u);
  // A subscription of a ".fifo"-named topic is not an SQS FIFO queue of its own.
  EXPECT_FALSE(queue_name::subscription(topic_name::from("t"), "x.fifo")->is_fifo());
}

TEST(SubscriptionName, RejectsBadNamesAndNamesOverFiftyCharacters) {
  auto topic = topic_name::from("events");
  EXPECT_TRUE(queue_name::subscription(topic, std::string(50, 's')));
  auto longer = queue_name::subscription(topic, std::string(51, 's'));
  ASSERT_FALSE(longer);
  EXPECT_NE(longer.error().message.find("invalid subscription name"), std::string::npos);
  EXPECT_NE(longer.error().message.find("longer than 50"), std::string::npos);
  for (std::string_view bad : {"", "a/b", "-x", "a--b"}) {
    auto s = queue_name::subscription(topic, bad);
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code, errc::invalid_argument) << bad;
  }
  EXPECT_FALSE(queue_name::subscription(topic_name{}, "s"));
}

TEST(SubscriptionFilter, MatchesSubjectAndEveryListedAttributeByEquality) {
  qrt::message m;
  m.subject = "order.created";
  m.attributes = {{"region", "eu"}, {"tier", "gold"}};
  EXPECT_TRUE(qrt::subscription_filter{}.matches(m));
  EXPECT_TRUE(qrt::subscription_filter{}.empty());
  EXPECT_TRUE((qrt::subscription_filter{"order.created", {}}.matches(m)));
  EXPECT_FALSE((qrt::subscription_filter{"order.deleted", {}}.matches(m)));
  EXPECT_TRUE((qrt::subscription_filter{std::nullopt, {{"region", "eu"}}}.matches(m)));
  EXPECT_TRUE(
      (qrt::subscription_filter{"order.created", {{"region", "eu"}, {"tier", "gold"}}}.matches(m)));
  EXPECT_FALSE((qrt::subscription_filter{std::nullopt, {{"region", "us"}}}.matches(m)));
  EXPECT_FALSE((qrt::subscription_filter{std::nullopt, {{"absent", ""}}}.matches(m)));
  EXPECT_FALSE((qrt::subscription_filter{"", {}}.matches(m)));  // an empty subject is a value
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
