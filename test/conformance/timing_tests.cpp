// Scheduled delivery and time-to-live. Each test names the item of docs/contract.md it checks.
// Waiting is always a receive on the queue where the event shows.
#include <algorithm>
#include <thread>

#include "conformance/suite.hpp"

namespace qrt::conformance {
namespace {

using namespace std::chrono_literals;

// Contract C26: a scheduled message is invisible before its time and delivered after it.
TEST_P(provider_test, Scheduled_InvisibleUntilItsTime) {
  QRT_REQUIRE(caps().scheduling, "scheduled delivery");
  const milliseconds lock = std::max<milliseconds>(30s, tgt().event_timeout * 3);
  QRT_MAKE_QUEUE(q, queue_options{.lock_duration = lock});
  const auto delay = tgt().schedule_delay;
  message m{.body = "later", .attributes = {{"k", "v"}}};
  m.scheduled_enqueue_time = clock::now() + delay;
  const auto due = *m.scheduled_enqueue_time;
  const auto id = send(q, m);
  reopen();  // a restart neither loses the schedule nor delivers early

  // For half the delay nothing may arrive. (Should this thread stall past the due time, a
  // delivery now is legitimate: what matters is that it never happens early.)
  auto early = receive(q, 10, delay / 2);
  const auto early_end = clock::now();
  received_message got;
  if (early.empty()) {
    got = receive_one(q, delay + tgt().event_timeout);
  } else {
    EXPECT_GE(early_end, due - tgt().clock_tolerance)
        << "a scheduled message was delivered before its time";
    ASSERT_EQ(early.size(), 1u);
    got = std::move(early.front());
  }
  // The delivery instant, from the lock it started: never before the scheduled time.
  EXPECT_GE(got.locked_until - lock, due - tgt().clock_tolerance)
      << "delivered before its scheduled time";
  EXPECT_EQ(got.id, id);
  EXPECT_EQ(got.body, m.body);
  EXPECT_EQ(got.attributes, m.attributes);
  EXPECT_EQ(got.delivery_count, 1u);
  complete(got.receipt);
}

// Contract C27: an expired message is not delivered; it goes to the DLQ when the queue says so
// (dead_letter_on_expiration). The expiring message's arrival in the DLQ is the event waited for; a
// message without TTL sent alongside stays deliverable.
TEST_P(provider_test, TimeToLive_ExpiredMessageGoesToDeadLetterNotToReceivers) {
  QRT_REQUIRE(caps().time_to_live, "time-to-live");
  QRT_REQUIRE(caps().dead_letter_queue, "a dead-letter queue");
  QRT_MAKE_QUEUE(q, queue_options{.dead_letter_on_expiration = true});
  const auto ttl = tgt().schedule_delay;
  message expiring{.body = "expiring", .attributes = {{"k", "v"}}};
  expiring.time_to_live = ttl;
  const auto start = std::chrono::steady_clock::now();
  const auto expiring_id = send(q, expiring);
  send(q, message{.body = "no ttl"});

  const auto dead = receive_one(q.dead_letter(), ttl * 2 + tgt().event_timeout);
  EXPECT_GE(since(start), ttl * 8 / 10) << "expired before its time-to-live";
  EXPECT_EQ(dead.id, expiring_id);
  EXPECT_EQ(dead.body, expiring.body);
  EXPECT_EQ(dead.attributes, expiring.attributes);
  ASSERT_TRUE(dead.dead_letter.has_value());
  EXPECT_FALSE(dead.dead_letter->reason.empty()) << "no reason for the expiry dead-letter";
  complete(dead.receipt);

  const auto live = receive_one(q);
  EXPECT_EQ(live.body, "no ttl") << "an expired message was delivered";
  complete(live.receipt);
  expect_empty(q, tgt().empty_wait, "an expired message was delivered");
  // Stats must answer; a provider that does not know the counts reports them as -1.
  if (const auto s = must(run(client().stats(q)), "stats"); s.dead_lettered >= 0) {
    EXPECT_EQ(s.expired, 1u) << "the expiry was not counted";
  }
}

// Contract C27: a message whose time-to-live ran out while it waited in the queue is
// never delivered. Nothing is locked, so this holds for providers without timed locks too. The
// expiry shows nowhere a receiver could wait for it, so the test waits out the time-to-live:
// that instant is the event under test, not a stand-in for one.
TEST_P(provider_test, TimeToLive_ExpiredReadyMessageIsNotDelivered) {
  QRT_REQUIRE(caps().time_to_live, "time-to-live");
  QRT_MAKE_QUEUE(q, queue_options{.dead_letter_on_expiration = false});
  const auto ttl = tgt().schedule_delay;
  message expiring{.body = "expiring"};
  expiring.time_to_live = ttl;
  send(q, expiring);
  // The provider took the message by now: its time-to-live runs out by this instant at the latest.
  std::this_thread::sleep_until(std::chrono::steady_clock::now() + ttl + tgt().clock_tolerance);
  send(q, message{.body = "lasting"});
  const auto got = receive_one(q);
  EXPECT_EQ(got.body, "lasting") << "a message whose time-to-live ran out was delivered";
  complete(got.receipt);
  expect_empty(q, tgt().empty_wait, "a message whose time-to-live ran out was delivered");
}

// Contract C27: an expired message is not delivered; it is dropped (and counted) when the
// queue does not dead-letter expired messages. The message's TTL runs
// out while it is locked; when the lock lapses it must not be redelivered, and its receipt is
// stale.
TEST_P(provider_test, TimeToLive_ExpiredMessageIsDroppedNotRedelivered) {
  QRT_REQUIRE(caps().time_to_live, "time-to-live");
  QRT_REQUIRE(caps().timed_locks, "timed locks");  // the TTL runs out while the message is locked
  const auto lock = tgt().short_lock;
  QRT_MAKE_QUEUE(q, queue_options{.lock_duration = lock, .dead_letter_on_expiration = false});
  message expiring{.body = "expiring"};
  expiring.time_to_live = lock * 3 / 5;  // runs out while locked, with room for a slow start
  send(q, expiring);
  const auto got = receive_one(q);
  EXPECT_EQ(got.body, "expiring");

  // Both the TTL and the lock run out within this wait; nothing may come back.
  expect_empty(q, lock * 2, "a message whose time-to-live ran out was redelivered");
  auto stale = run(client().complete(got.receipt));
  ASSERT_FALSE(stale) << "a receipt outlived its lock and its message's time-to-live";
  EXPECT_EQ(stale.error().code, errc::receipt_expired) << stale.error().to_string();
  if (caps().dead_letter_queue) {
    expect_empty(q.dead_letter(), tgt().empty_wait,
                 "dead_letter_on_expiration = false, yet the message was dead-lettered");
  }
  if (const auto s = must(run(client().stats(q)), "stats"); s.active >= 0) {
    EXPECT_EQ(s.expired, 1u) << "the dropped message was not counted as expired";
  }
}

// Contract C27: a time to live of 0 or less would be "expired on arrival" to one provider and
// "never expires" to another: such a message fails alone with invalid_argument naming the
// field, and the rest of its batch is sent.
TEST_P(provider_test, TimeToLive_NotPositiveIsRefusedAloneNamingTheField) {
  QRT_REQUIRE(caps().time_to_live, "time-to-live");
  QRT_MAKE_QUEUE(q);
  std::vector<message> batch;
  batch.push_back(message{.body = "first"});
  batch.push_back(message{.body = "negative"});
  batch.back().time_to_live = milliseconds{-1000};
  batch.push_back(message{.body = "zero"});
  batch.back().time_to_live = milliseconds{0};
  batch.push_back(message{.body = "last"});
  const auto outcomes = send_batch(q, std::move(batch));
  ASSERT_EQ(outcomes.size(), 4u);
  EXPECT_TRUE(outcomes[0]) << describe(outcomes[0]);
  EXPECT_TRUE(outcomes[3]) << describe(outcomes[3]);
  for (std::size_t i : {1u, 2u}) {
    ASSERT_FALSE(outcomes[i]) << "message " << i << " with a time to live of "
                              << (i == 1 ? "-1 s" : "0") << " was sent";
    EXPECT_EQ(outcomes[i].error().code, errc::invalid_argument) << outcomes[i].error().to_string();
    EXPECT_NE(outcomes[i].error().message.find("time_to_live"), std::string::npos)
        << outcomes[i].error().to_string();
  }
  auto one = run(client().send(q, message{.body = "alone", .time_to_live = milliseconds{-1}}));
  ASSERT_FALSE(one) << "a send of one message with a negative time to live succeeded";
  EXPECT_EQ(one.error().code, errc::invalid_argument) << one.error().to_string();

  auto got = receive_count(q, 2);
  ASSERT_EQ(got.size(), 2u);
  std::vector<std::string> bodies;
  for (const auto& m : got) bodies.push_back(m.body);
  std::sort(bodies.begin(), bodies.end());
  EXPECT_EQ(bodies, (std::vector<std::string>{"first", "last"}));
  complete_all(got);
  expect_empty(q, tgt().empty_wait, "a message with a time to live of 0 or less arrived");
}

}  // namespace
}  // namespace qrt::conformance
