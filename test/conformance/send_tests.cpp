// Sending: missing queues, size limits, batches over the provider's limits. Each test names
// the item of docs/contract.md it checks.
#include <set>

#include "conformance/suite.hpp"

namespace qrt::conformance {
namespace {

using namespace std::chrono_literals;

std::string sized_body(std::size_t n, char fill) {
  return std::string(n, fill);
}

/// Receives `count` messages and checks they are the numbered messages `expected_indexes`
/// (in that order when the target's queues are ordered), each with the id send reported.
void expect_delivered(const target& tgt, const std::vector<received_message>& got,
                      const std::vector<std::size_t>& expected_indexes,
                      const std::map<std::size_t, message_id>& ids) {
  std::vector<std::size_t> indexes;
  for (const auto& m : got) indexes.push_back(index_of(m));
  if (!tgt.ordered_queues) std::sort(indexes.begin(), indexes.end());
  EXPECT_EQ(indexes, expected_indexes);
  for (const auto& m : got) {
    auto it = ids.find(index_of(m));
    if (it != ids.end()) {
      EXPECT_EQ(m.id, it->second) << "message " << it->first;
    }
  }
}

// Contract C5: a send to a missing queue fails with queue_not_found and nothing is sent. The
// error names the queue; batch sends and receives fail the same way; a queue created later
// under that name is empty.
TEST_P(provider_test, Send_ToMissingQueueFailsWithQueueNotFound) {
  const auto missing = unique_queue_name();
  auto one = run(client().send(missing, message{.body = "lost?"}));
  ASSERT_FALSE(one) << "send to a queue that does not exist succeeded";
  EXPECT_EQ(one.error().code, errc::queue_not_found) << one.error().to_string();
  EXPECT_NE(one.error().message.find(missing.str()), std::string::npos)
      << "the error does not name the queue: " << one.error().to_string();
  EXPECT_FALSE(one.error().is_transient()) << "retrying cannot create the queue";

  std::vector<message> batch(3, message{.body = "lost in a batch?"});
  auto many = run(client().send_batch(missing, std::move(batch)));
  ASSERT_FALSE(many) << "a batch to a missing queue reported per-message outcomes";
  EXPECT_EQ(many.error().code, errc::queue_not_found) << many.error().to_string();

  auto receive = run(client().receive(missing, 1, tgt().empty_wait));
  ASSERT_FALSE(receive) << "receive from a missing queue succeeded";
  EXPECT_EQ(receive.error().code, errc::queue_not_found) << receive.error().to_string();

  if (tgt().create_queues) {
    // Nothing was kept anywhere for the name: a queue created now starts empty.
    must(run(client().create_queue(missing, {})), "create_queue");
    auto got = run(client().receive(missing, 10, tgt().empty_wait));
    (void)run(client().delete_queue(missing));
    ASSERT_TRUE(got) << describe(got);
    EXPECT_TRUE(got->empty()) << "a send that failed with queue_not_found left a message";
  }
}

// Contract C2: size limits are enforced before sending: an oversize message fails with
// message_too_large and nothing is sent. The limit counts body plus attributes; a message of
// exactly the limit is accepted and arrives whole.
TEST_P(provider_test, Send_OversizeMessageFailsWithMessageTooLarge) {
  const std::size_t limit = caps().max_message_bytes;
  QRT_REQUIRE(limit > 0, "a maximum message size");
  QRT_MAKE_QUEUE(q);

  auto body_over = run(client().send(q, message{.body = sized_body(limit + 1, 'b')}));
  ASSERT_FALSE(body_over) << "a body one byte over the limit was sent";
  EXPECT_EQ(body_over.error().code, errc::message_too_large) << body_over.error().to_string();
  EXPECT_FALSE(body_over.error().is_transient());

  message attributes_over{.body = sized_body(limit / 2, 'a')};
  attributes_over.attributes["big"] = sized_body(limit / 2 + 1, 'v');
  auto attr_over = run(client().send(q, attributes_over));
  ASSERT_FALSE(attr_over) << "a message over the limit through its attributes was sent";
  EXPECT_EQ(attr_over.error().code, errc::message_too_large) << attr_over.error().to_string();

  const auto at_limit_id = send(q, message{.body = sized_body(limit, 'e')});
  const auto got = receive_one(q);
  EXPECT_EQ(got.id, at_limit_id);
  EXPECT_EQ(got.body.size(), limit);
  complete(got.receipt);
  expect_empty(q, tgt().empty_wait, "an oversize message was sent after all");
}

// Contract C2, C4: the provider enforces its own size limit, for callers that bypass queue_client
// (decorators, processors): one oversize message in a provider batch fails alone.
TEST_P(provider_test, Provider_SendRejectsOversizeMessagePerMessage) {
  const std::size_t limit = caps().max_message_bytes;
  QRT_REQUIRE(limit > 0, "a maximum message size");
  QRT_REQUIRE(caps().max_batch_messages == 0 || caps().max_batch_messages >= 3,
              "batches of 3 messages");
  QRT_MAKE_QUEUE(q);
  std::vector<message> batch;
  batch.push_back(numbered("before", 0));
  batch.push_back(numbered(sized_body(limit + 1, 'x'), 1));
  batch.push_back(numbered("after", 2));
  auto sent = run(client().underlying()->send(q, std::move(batch), tgt().event_timeout));
  ASSERT_TRUE(sent) << "one oversize message failed the whole batch: " << describe(sent);
  ASSERT_EQ(sent->size(), 3u);
  EXPECT_TRUE((*sent)[0]) << describe((*sent)[0]);
  ASSERT_FALSE((*sent)[1]) << "the provider sent an oversize message";
  EXPECT_EQ((*sent)[1].error().code, errc::message_too_large) << (*sent)[1].error().to_string();
  EXPECT_TRUE((*sent)[2]) << describe((*sent)[2]);

  auto got = receive_count(q, 2);
  std::map<std::size_t, message_id> ids;
  if ((*sent)[0]) ids[0] = *(*sent)[0];
  if ((*sent)[2]) ids[2] = *(*sent)[2];
  expect_delivered(tgt(), got, {0, 2}, ids);
  complete_all(got);
  expect_empty(q, tgt().empty_wait, "the oversize message arrived");
}

// Contract C3: a batch never exceeds the provider's limits: queue_client splits larger batches
// and reports per message, never half-sending silently: every message arrives, in order, with
// the id its outcome reported.
TEST_P(provider_test, SendBatch_LargerThanProviderLimitIsSplitAndDeliveredInOrder) {
  const std::size_t max = caps().max_batch_messages;
  if (max == 0 || max > 2'000) {
    GTEST_SKIP() << tgt().name << " declares no batch limit small enough to exceed";
  }
  const std::size_t count = 2 * max + 3;  // two full batches and a remainder
  QRT_MAKE_QUEUE(q, queue_options{.max_size = count + 16});
  std::vector<message> batch;
  for (std::size_t i = 0; i < count; ++i) batch.push_back(numbered("b" + std::to_string(i), i));
  const auto outcomes = send_batch(q, std::move(batch));
  ASSERT_EQ(outcomes.size(), count);
  std::map<std::size_t, message_id> ids;
  std::set<message_id> unique;
  for (std::size_t i = 0; i < count; ++i) {
    ASSERT_TRUE(outcomes[i]) << "message " << i << ": " << describe(outcomes[i]);
    ids[i] = *outcomes[i];
    unique.insert(*outcomes[i]);
  }
  EXPECT_EQ(unique.size(), count) << "ids repeat across the split batches";
  reopen();  // the order is stored too

  // Settled as they arrive: a provider may hold back the rest while some are locked.
  auto got = receive_and_complete(q, count);
  std::vector<std::size_t> expected(count);
  for (std::size_t i = 0; i < count; ++i) expected[i] = i;
  expect_delivered(tgt(), got, expected, ids);
  expect_empty(q, tgt().empty_wait, "a batch entry was sent twice");
}

// Contract C3: a batch over the provider's byte limit is split too (the count stays small).
TEST_P(provider_test, SendBatch_OverByteLimitIsSplitAndDelivered) {
  const std::size_t max_bytes = caps().max_batch_bytes;
  QRT_REQUIRE(max_bytes > 0, "a batch byte limit");
  const std::size_t one = std::min(
      max_bytes / 3 + 1, caps().max_message_bytes == 0 ? max_bytes : caps().max_message_bytes - 16);
  QRT_MAKE_QUEUE(q);
  constexpr std::size_t count = 7;
  std::vector<message> batch;
  for (std::size_t i = 0; i < count; ++i) {
    batch.push_back(numbered(sized_body(one, static_cast<char>('a' + i)), i));
  }
  const auto outcomes = send_batch(q, std::move(batch));
  ASSERT_EQ(outcomes.size(), count);
  std::map<std::size_t, message_id> ids;
  for (std::size_t i = 0; i < count; ++i) {
    ASSERT_TRUE(outcomes[i]) << "message " << i << ": " << describe(outcomes[i]);
    ids[i] = *outcomes[i];
  }
  auto got = receive_count(q, count);
  for (const auto& m : got) {
    EXPECT_EQ(m.body.size(), one);
    const auto i = index_of(m);
    if (i < count) {
      EXPECT_EQ(m.body, sized_body(one, static_cast<char>('a' + i)));
    }
  }
  expect_delivered(tgt(), got, {0, 1, 2, 3, 4, 5, 6}, ids);
  complete_all(got);
}

// Contract C4: per-message failures, never "all or nothing" by accident: a batch with one
// oversize message reports that message's failure and sends the others.
TEST_P(provider_test, SendBatch_OneOversizeMessageFailsAloneOthersAreSent) {
  const std::size_t limit = caps().max_message_bytes;
  QRT_REQUIRE(limit > 0, "a maximum message size");
  QRT_MAKE_QUEUE(q);
  std::vector<message> batch;
  for (std::size_t i = 0; i < 5; ++i) {
    batch.push_back(numbered(i == 2 ? sized_body(limit + 1, 'o') : "fits-" + std::to_string(i), i));
  }
  const auto outcomes = send_batch(q, std::move(batch));
  ASSERT_EQ(outcomes.size(), 5u);
  std::map<std::size_t, message_id> ids;
  for (std::size_t i = 0; i < 5; ++i) {
    if (i == 2) {
      ASSERT_FALSE(outcomes[i]) << "the oversize message was reported sent";
      EXPECT_EQ(outcomes[i].error().code, errc::message_too_large)
          << outcomes[i].error().to_string();
    } else {
      ASSERT_TRUE(outcomes[i]) << "message " << i << ": " << describe(outcomes[i]);
      ids[i] = *outcomes[i];
    }
  }
  auto got = receive_count(q, 4);
  expect_delivered(tgt(), got, {0, 1, 3, 4}, ids);
  complete_all(got);
  expect_empty(q, tgt().empty_wait, "the oversize message arrived");
}

}  // namespace
}  // namespace qrt::conformance
