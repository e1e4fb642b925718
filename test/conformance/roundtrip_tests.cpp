// Content round trips, receive semantics, peek. Each test names the item of docs/contract.md
// it checks.
#include <set>

#include "conformance/suite.hpp"

namespace qrt::conformance {
namespace {

using namespace std::chrono_literals;

/// All 256 byte values, then sequences that are not UTF-8: embedded and trailing NULs, an
/// overlong NUL, a lone surrogate, bytes that never occur in UTF-8.
std::string binary_body() {
  std::string body;
  for (int i = 0; i < 256; ++i) body.push_back(static_cast<char>(i));
  body += std::string("\0\0mid\0", 6);
  body += "\xC0\x80\xED\xA0\x80\xFF\xFE\x80\xBF";
  for (int i = 255; i >= 0; --i) body.push_back(static_cast<char>(i));
  body.push_back('\0');
  return body;
}

// Contract C28: arbitrary binary bodies (not only UTF-8) round-trip unchanged.
TEST_P(provider_test, RoundTrip_BinaryBodyNotUtf8) {
  QRT_MAKE_QUEUE(q);
  const std::string body = binary_body();
  ASSERT_EQ(body.size(), 256u + 6u + 9u + 256u + 1u);
  message m;
  m.body = body;
  const auto id = send(q, m);
  const auto got = receive_one(q);
  EXPECT_EQ(got.id, id);
  EXPECT_EQ(got.body.size(), body.size());
  EXPECT_TRUE(got.body == body) << "body bytes changed in transit";
  complete(got.receipt);
}

// Contract C29: user attributes (string key/value) round-trip unchanged, here awkward values
// (unicode, empty, '=' and spaces, long, control characters).
TEST_P(provider_test, RoundTrip_AwkwardAttributeValues) {
  QRT_MAKE_QUEUE(q);
  message m;
  m.body = "attributes";
  m.attributes = {
      {"unicode",
       "Gr\xC3\xBC\xC3\x9F"
       "e, \xE6\x9D\xB1\xE4\xBA\xAC, \xF0\x9F\x9A\x80"},
      {"empty", ""},
      {"equals_and_spaces", "a=b c = d ==  "},
      {"padded", "  leading and trailing  "},
      {"quotes_and_lines", "line1\nline2\r\n\t\"double\" 'single' \\back\\slash"},
      {"long", std::string(4096, 'L') + "end"},
      {"json_like", R"({"k": [1, 2, "x"], "n": null})"},
  };
  send(q, m);
  const auto got = receive_one(q);
  EXPECT_EQ(got.attributes, m.attributes);
  complete(got.receipt);
}

// Contract C29: user attributes (string key/value) round-trip unchanged, here awkward keys
// (unicode, spaces, '=', dots).
TEST_P(provider_test, RoundTrip_AwkwardAttributeKeys) {
  QRT_MAKE_QUEUE(q);
  message m;
  m.body = "keys";
  m.attributes = {
      {"\xD0\xBA\xD0\xBB\xD1\x8E\xD1\x87-\xC3\xBC\xC3\xB1\xC3\xAD-\xF0\x9F\x94\x91", "unicode key"},
      {"key with spaces", "1"},
      {"a=b", "2"},
      {"dotted.key.name", "3"},
      {"UPPER_lower-123", "4"},
      {std::string(200, 'k'), "long key"},
  };
  send(q, m);
  const auto got = receive_one(q);
  EXPECT_EQ(got.attributes, m.attributes);
  complete(got.receipt);
}

// Contract C30: correlation id round-trips; content type and subject likewise.
TEST_P(provider_test, RoundTrip_CorrelationIdContentTypeSubject) {
  QRT_MAKE_QUEUE(q);
  message m;
  m.body = R"({"order": 42})";
  m.correlation_id =
      "corr-\xC3\x9Cn\xC3\xAF"
      "code-42 = x";
  m.content_type = "application/vnd.qrt+json; charset=utf-8";
  m.subject = "orders.created";
  m.attributes["kept"] = "alongside";
  send(q, m);
  const auto got = receive_one(q);
  EXPECT_EQ(got.correlation_id, m.correlation_id);
  EXPECT_EQ(got.content_type, m.content_type);
  EXPECT_EQ(got.subject, m.subject);
  EXPECT_EQ(got.attributes, m.attributes) << "the fields must not leak into user attributes";
  EXPECT_EQ(got.body, m.body);
  complete(got.receipt);
}

// Contract C1: send / send_batch return unique message ids: every message, sent alone or in a
// batch, gets its own non-empty id, and receives carry the same id.
TEST_P(provider_test, RoundTrip_UniqueIds) {
  QRT_MAKE_QUEUE(q);
  constexpr std::size_t singles = 20, batched = 30;
  std::map<message_id, std::size_t> sent;  // id -> index
  for (std::size_t i = 0; i < singles; ++i) {
    const auto id = send(q, numbered("single", i));
    EXPECT_FALSE(id.empty());
    EXPECT_TRUE(sent.emplace(id, i).second) << "id '" << id << "' returned twice";
  }
  std::vector<message> batch;
  for (std::size_t i = singles; i < singles + batched; ++i) batch.push_back(numbered("batched", i));
  const auto outcomes = send_batch(q, std::move(batch));
  ASSERT_EQ(outcomes.size(), batched);
  for (std::size_t k = 0; k < batched; ++k) {
    ASSERT_TRUE(outcomes[k]) << "batch entry " << k << ": " << describe(outcomes[k]);
    EXPECT_FALSE(outcomes[k]->empty());
    EXPECT_TRUE(sent.emplace(*outcomes[k], singles + k).second)
        << "id '" << *outcomes[k] << "' returned twice";
  }
  // Settled as they arrive: a provider may hold back the rest while some are locked.
  const auto got = receive_and_complete(q, singles + batched);
  std::set<message_id> received_ids;
  for (const auto& m : got) {
    auto it = sent.find(m.id);
    ASSERT_NE(it, sent.end()) << "received id '" << m.id << "' that send never returned";
    EXPECT_EQ(it->second, index_of(m)) << "id '" << m.id << "' belongs to another message";
    EXPECT_TRUE(received_ids.insert(m.id).second) << "id '" << m.id << "' delivered twice";
  }
}

// Contract C9: a received message carries the broker's view of the delivery: delivery count 1 on
// first delivery, enqueued time, lock expiry in the future, a usable receipt, sequence numbers
// increasing in send order.
TEST_P(provider_test, RoundTrip_DeliveryMetadata) {
  QRT_MAKE_QUEUE(q);
  const auto tolerance = tgt().clock_tolerance;
  const auto before = clock::now();
  for (std::size_t i = 0; i < 3; ++i) send(q, numbered("meta", i));
  const auto after_send = clock::now();
  reopen();  // what a receive reports was stored, not just held in memory
  auto got = receive_count(q, 3);
  const auto after_receive = clock::now();
  std::sort(got.begin(), got.end(),
            [](const auto& a, const auto& b) { return index_of(a) < index_of(b); });
  for (const auto& m : got) {
    EXPECT_EQ(m.delivery_count, 1u);
    EXPECT_TRUE(m.receipt.valid());
    EXPECT_FALSE(m.dead_letter.has_value());
    EXPECT_GE(m.enqueued_time, before - tolerance);
    EXPECT_LE(m.enqueued_time, after_send + tolerance);
    EXPECT_GT(m.locked_until, after_receive - tolerance) << "lock already expired on arrival";
  }
  if (tgt().ordered_queues) {
    EXPECT_LT(got[0].sequence_number, got[1].sequence_number);
    EXPECT_LT(got[1].sequence_number, got[2].sequence_number);
  }
  complete_all(got);
}

// Contract C8: receive on an empty queue returns an empty batch (not an error) after about the
// wait, not at once. The lower bound is behavioural (it waited), not a speed requirement.
TEST_P(provider_test, Receive_EmptyQueueReturnsEmptyAfterTheWait) {
  QRT_MAKE_QUEUE(q);
  const auto wait = tgt().empty_wait;
  const auto start = std::chrono::steady_clock::now();
  auto got = run(client().receive(q, 10, wait));
  const auto elapsed = since(start);
  ASSERT_TRUE(got) << "an empty queue is not an error: " << describe(got);
  EXPECT_TRUE(got->empty());
  EXPECT_GE(elapsed, wait * 8 / 10) << "returned before waiting";
  EXPECT_LT(elapsed, wait + tgt().event_timeout) << "waited far longer than asked";
}

// Contract C8: receive waits at most `wait` for the first message: it returns when one arrives
// (a long poll), not at the end of the wait.
TEST_P(provider_test, Receive_ReturnsWhenAMessageArrivesDuringTheWait) {
  QRT_MAKE_QUEUE(q);
  const auto long_wait = tgt().event_timeout * 3;
  const auto start = std::chrono::steady_clock::now();
  auto waiting = io().spawn([this, q, long_wait]() { return client().receive(q, 10, long_wait); });
  // The receive is still out after the wait of a receive that must come back empty: it looked,
  // found nothing and is waiting. Only now does the message come (sent at once, it could be
  // there before the receive first looks, and a receive that never wakes would pass).
  ASSERT_EQ(waiting.wait_for(tgt().empty_wait), std::future_status::timeout)
      << "the receive returned before any message was sent";
  const auto sent_at = std::chrono::steady_clock::now();
  send(q, message{.body = "wake up"});
  auto got = must(io().wait(waiting), "receive");
  const auto elapsed = since(start);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got.front().body, "wake up");
  EXPECT_LT(since(sent_at), tgt().event_timeout)
      << "the receive did not return when the message came";
  EXPECT_LT(elapsed, long_wait) << "the receive waited out its whole wait";
  complete_all(got);
}

// Contract C8, C10: receive returns at most max_messages, and a locked message goes to one
// receiver.
TEST_P(provider_test, Receive_MaxMessagesHonoured) {
  QRT_MAKE_QUEUE(q);
  constexpr std::size_t total = 10, max = 3;
  std::vector<message> batch;
  for (std::size_t i = 0; i < total; ++i) batch.push_back(numbered("m", i));
  for (const auto& o : send_batch(q, std::move(batch))) ASSERT_TRUE(o) << describe(o);

  auto one = receive(q, 1, tgt().event_timeout);
  ASSERT_EQ(one.size(), 1u);
  std::vector<received_message> all = one;
  const auto deadline = std::chrono::steady_clock::now() + tgt().event_timeout;
  while (all.size() < total && std::chrono::steady_clock::now() < deadline) {
    auto got = receive(q, max, tgt().event_timeout);
    EXPECT_LE(got.size(), max) << "receive returned more than max_messages";
    for (auto& m : got) all.push_back(std::move(m));
  }
  EXPECT_EQ(all.size(), total);
  std::set<std::size_t> indexes;
  for (const auto& m : all) indexes.insert(index_of(m));
  EXPECT_EQ(indexes.size(), total) << "a message was delivered twice while locked";
  complete_all(all);
}

// Contract C11: peek reads without locking. Peeked messages carry no receipt, stay available, do
// not count as deliveries; from_sequence starts the peek further on.
TEST_P(provider_test, Peek_ReturnsMessagesWithoutLocking) {
  QRT_REQUIRE(caps().peek, "peek");
  QRT_MAKE_QUEUE(q);
  for (std::size_t i = 0; i < 3; ++i) send(q, numbered("peek-" + std::to_string(i), i));

  auto first = must(run(client().peek(q, 10)), "peek");
  ASSERT_EQ(first.size(), 3u);
  for (std::size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(index_of(first[i]), i) << "peek order";
    EXPECT_FALSE(first[i].receipt.valid()) << "a peeked message must not be settleable";
  }
  auto again = must(run(client().peek(q, 10)), "second peek");
  EXPECT_EQ(again.size(), 3u) << "peek consumed messages";

  auto tail = must(run(client().peek(q, 10, first[1].sequence_number)), "peek from sequence");
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(index_of(tail[0]), 1u);
  EXPECT_EQ(index_of(tail[1]), 2u);

  auto received = receive_count(q, 3);
  for (const auto& m : received) {
    EXPECT_EQ(m.delivery_count, 1u) << "peek counted as a delivery";
  }
  complete_all(received);
  auto after = must(run(client().peek(q, 10)), "peek after complete");
  EXPECT_TRUE(after.empty()) << "completed messages are still peekable";
}

// Contract C11: a peek of no messages, or from a negative sequence number, is invalid_argument
// naming the problem, and takes nothing: one provider read a negative start as the oldest and
// another as its first, so the same call peeked different things.
TEST_P(provider_test, Peek_RefusesNoMessagesAndANegativeStart) {
  QRT_REQUIRE(caps().peek, "peek");
  QRT_MAKE_QUEUE(q);
  send(q, numbered("stays", 0));

  auto negative = run(client().peek(q, 10, -1));
  ASSERT_FALSE(negative) << "a peek from sequence -1 returned " << negative->size() << " messages";
  EXPECT_EQ(negative.error().code, errc::invalid_argument) << negative.error().to_string();
  EXPECT_NE(negative.error().message.find("from_sequence"), std::string::npos)
      << negative.error().message;
  EXPECT_NE(negative.error().message.find("-1"), std::string::npos) << negative.error().message;

  auto none = run(client().peek(q, 0));
  ASSERT_FALSE(none) << "a peek of 0 messages returned " << none->size() << " messages";
  EXPECT_EQ(none.error().code, errc::invalid_argument) << none.error().to_string();
  EXPECT_NE(none.error().message.find("max_messages"), std::string::npos) << none.error().message;

  auto received = receive_count(q, 1);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].delivery_count, 1u) << "a refused peek counted as a delivery";
  complete_all(received);
}

}  // namespace
}  // namespace qrt::conformance
