#include <gtest/gtest.h>

#include <qrt/names.hpp>

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
