// Locks and settlement: complete, abandon, lock expiry, renewal, receipts used wrongly, the
// dead-letter queue. Each test names the item of docs/contract.md it checks.
#include "conformance/suite.hpp"

namespace qrt::conformance {
namespace {

using namespace std::chrono_literals;

// Contract C12: complete removes; a second receive with a wait returns nothing. The second
// receive outlasts the lock, so a message that was merely locked (not removed) would come back
// within it.
TEST_P(provider_test, Complete_RemovesTheMessage) {
  QRT_MAKE_QUEUE(q, queue_options{.lock_duration = tgt().short_lock});
  send(q, message{.body = "done"});
  const auto got = receive_one(q);
  complete(got.receipt);
  reopen();  // a completion is not undone by a restart
  expect_empty(q, std::max(tgt().empty_wait, tgt().short_lock * 3 / 2),
               "a completed message came back");
}

// Contract C13: abandon returns the message for redelivery, delivery count + 1 (at once, not
// after the lock). The abandoned receipt is settled: using it again is invalid_receipt.
TEST_P(provider_test, Abandon_RedeliversWithDeliveryCountPlusOne) {
  QRT_REQUIRE(caps().abandon, "abandon");
  QRT_MAKE_QUEUE(q, queue_options{.lock_duration = tgt().long_lock()});
  message m{.body = "again", .attributes = {{"k", "v"}}};
  const auto id = send(q, m);
  const auto first = receive_one(q);
  EXPECT_EQ(first.delivery_count, 1u);
  must(run(client().abandon(first.receipt)), "abandon");
  reopen();  // the delivery count survives a restart; the old receipt stays dead

  const auto second = receive_one(q);  // within event_timeout, far less than the lock
  EXPECT_EQ(second.id, id);
  EXPECT_EQ(second.body, m.body);
  EXPECT_EQ(second.attributes, m.attributes);
  EXPECT_EQ(second.delivery_count, 2u);
  EXPECT_FALSE(second.receipt == first.receipt) << "a new delivery needs a new receipt";

  auto stale = run(client().complete(first.receipt));
  ASSERT_FALSE(stale) << "completing an abandoned receipt succeeded";
  EXPECT_EQ(stale.error().code, errc::invalid_receipt) << stale.error().to_string();

  must(run(client().abandon(second.receipt)), "second abandon");
  const auto third = receive_one(q);
  EXPECT_EQ(third.delivery_count, 3u);
  complete(third.receipt);
  expect_empty(q, tgt().empty_wait, "a completed message came back");
}

// Contract C14: an expired lock makes the message visible again with delivery count + 1, and
// the old (stale) receipt fails with receipt_expired.
TEST_P(provider_test, LockExpiry_RedeliversAndStaleReceiptFails) {
  QRT_REQUIRE(caps().timed_locks, "timed locks");
  const auto lock = tgt().short_lock;
  QRT_MAKE_QUEUE(q, queue_options{.lock_duration = lock});
  const auto id = send(q, message{.body = "expiring lock"});
  const auto start = std::chrono::steady_clock::now();
  const auto first = receive_one(q);
  EXPECT_EQ(first.delivery_count, 1u);

  // The real event: the message becomes visible again when its lock runs out.
  const auto second = receive_one(q, lock * 2 + tgt().event_timeout);
  EXPECT_GE(since(start), lock * 8 / 10) << "redelivered while the first lock was still valid";
  EXPECT_EQ(second.id, id);
  EXPECT_EQ(second.delivery_count, 2u);

  auto stale = run(client().complete(first.receipt));
  ASSERT_FALSE(stale) << "a receipt whose lock expired still completed the message";
  EXPECT_EQ(stale.error().code, errc::receipt_expired) << stale.error().to_string();
  if (caps().lock_renewal) {
    auto renew = run(client().renew_lock(first.receipt));
    ASSERT_FALSE(renew) << "an expired receipt was renewed";
    EXPECT_EQ(renew.error().code, errc::receipt_expired) << renew.error().to_string();
  }
  complete(second.receipt);  // the current delivery still settles
  expect_empty(q, tgt().empty_wait, "a completed message came back");
}

// Contract C15, C16: a receipt used twice fails with invalid_receipt, never silently (settled
// twice = invalid_receipt; receipt_expired is only for locks that ran out). Also within one
// batch settle: the second settlement of a receipt fails alone.
TEST_P(provider_test, Complete_TwiceFailsWithInvalidReceipt) {
  QRT_MAKE_QUEUE(q, queue_options{.lock_duration = tgt().long_lock()});
  send(q, message{.body = "once"});
  send(q, message{.body = "batch"});
  auto got = receive_count(q, 2);
  complete(got[0].receipt);

  auto twice = run(client().complete(got[0].receipt));
  ASSERT_FALSE(twice) << "a settled receipt completed again";
  EXPECT_EQ(twice.error().code, errc::invalid_receipt) << twice.error().to_string();
  if (caps().abandon) {
    auto abandon = run(client().abandon(got[0].receipt));
    ASSERT_FALSE(abandon);
    EXPECT_EQ(abandon.error().code, errc::invalid_receipt) << abandon.error().to_string();
  }
  if (caps().dead_letter_queue) {
    auto dead = run(client().dead_letter(got[0].receipt, "late", "after complete"));
    ASSERT_FALSE(dead);
    EXPECT_EQ(dead.error().code, errc::invalid_receipt) << dead.error().to_string();
  }
  if (caps().lock_renewal) {
    auto renew = run(client().renew_lock(got[0].receipt));
    ASSERT_FALSE(renew);
    EXPECT_EQ(renew.error().code, errc::invalid_receipt) << renew.error().to_string();
  }

  auto results = run(client().settle(
      {settlement::complete(got[1].receipt), settlement::complete(got[1].receipt)}));
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results[0]) << describe(results[0]);
  ASSERT_FALSE(results[1]) << "the same receipt settled twice in one batch";
  EXPECT_EQ(results[1].error().code, errc::invalid_receipt) << results[1].error().to_string();
  expect_empty(q, tgt().empty_wait, "a completed message came back");
}

// Contract C15: a receipt the provider never issued (empty, forged, from a peek) fails with
// invalid_receipt and does not touch any message.
TEST_P(provider_test, Settle_UnknownReceiptFailsWithInvalidReceipt) {
  QRT_MAKE_QUEUE(q, queue_options{.lock_duration = tgt().long_lock()});
  send(q, message{.body = "bystander"});
  const auto got = receive_one(q);

  receipt_handle forged = got.receipt;
  forged.item += 1'000'003;
  forged.lock += 1'000'003;
  forged.token += "-forged";
  for (const auto& [what, receipt] :
       {std::pair{"empty receipt", receipt_handle{}}, std::pair{"forged receipt", forged}}) {
    auto r = run(client().complete(receipt));
    ASSERT_FALSE(r) << what << " completed something";
    EXPECT_EQ(r.error().code, errc::invalid_receipt) << what << ": " << r.error().to_string();
  }
  if (caps().peek) {
    auto peeked = must(run(client().peek(q, 1)), "peek");
    ASSERT_EQ(peeked.size(), 1u);
    auto r = run(client().complete(peeked.front().receipt));
    ASSERT_FALSE(r) << "a peeked message's (empty) receipt settled it";
    EXPECT_EQ(r.error().code, errc::invalid_receipt) << r.error().to_string();
  }
  complete(got.receipt);  // the real receipt still works: nothing above touched the message
}

// Contract C17: renew_lock extends a receipt. Renewed every third of the lock, the message is not
// redelivered long after the original lock would have expired, and the original receipt still
// completes it.
TEST_P(provider_test, RenewLock_KeepsTheMessageLockedPastItsDuration) {
  QRT_REQUIRE(caps().lock_renewal, "lock renewal");
  const auto lock = tgt().short_lock;
  QRT_MAKE_QUEUE(q, queue_options{.lock_duration = lock});
  send(q, message{.body = "renewed"});
  const auto start = std::chrono::steady_clock::now();
  const auto got = receive_one(q);
  time_point locked_until = got.locked_until;
  int renewals = 0;
  while (since(start) < lock * 5 / 2) {
    // Waiting on the queue is the observation: a lapsed lock would redeliver the message here.
    expect_empty(q, lock / 3, "redelivered while its lock was being renewed");
    const auto renewed = must(run(client().renew_lock(got.receipt)), "renew_lock");
    EXPECT_GT(renewed, locked_until) << "renewal did not extend the lock";
    locked_until = renewed;
    ++renewals;
  }
  EXPECT_GE(renewals, 3);
  complete(got.receipt);
  expect_empty(q, std::max(tgt().empty_wait, lock * 3 / 2), "a completed message came back");
}

// Contract C19: after max_delivery_count deliveries a message goes to the DLQ by itself, with
// a reason and its content kept.
TEST_P(provider_test, MaxDeliveryCount_MovesToDeadLetterWithReason) {
  QRT_REQUIRE(caps().max_delivery_count, "max_delivery_count");
  QRT_REQUIRE(caps().dead_letter_queue, "a dead-letter queue");
  QRT_REQUIRE(caps().abandon, "abandon");
  constexpr std::uint32_t max_deliveries = 3;
  QRT_MAKE_QUEUE(
      q, queue_options{.lock_duration = tgt().long_lock(), .max_delivery_count = max_deliveries});
  message m{.body = "poison", .attributes = {{"why", "always fails"}}};
  m.correlation_id = "corr-poison";
  const auto id = send(q, m);
  for (std::uint32_t attempt = 1; attempt <= max_deliveries; ++attempt) {
    const auto got = receive_one(q);
    EXPECT_EQ(got.delivery_count, attempt);
    must(run(client().abandon(got.receipt)), "abandon");
  }
  expect_empty(q, tgt().empty_wait, "delivered more than max_delivery_count times");
  reopen();  // the move to the dead-letter queue, and its reason, are stored
  expect_empty(q, tgt().empty_wait, "a dead-lettered message came back to its queue");

  const auto dead = receive_one(q.dead_letter());
  EXPECT_EQ(dead.id, id);
  EXPECT_EQ(dead.body, m.body);
  EXPECT_EQ(dead.attributes, m.attributes);
  EXPECT_EQ(dead.correlation_id, m.correlation_id);
  ASSERT_TRUE(dead.dead_letter.has_value()) << "a DLQ message carries no dead-letter info";
  EXPECT_FALSE(dead.dead_letter->reason.empty()) << "no reason for the automatic dead-letter";
  complete(dead.receipt);
  expect_empty(q.dead_letter(), tgt().empty_wait, "a completed DLQ message came back");
}

// Contract C18: an explicit dead_letter(reason, description) moves to the DLQ with both kept.
TEST_P(provider_test, DeadLetter_KeepsReasonAndDescription) {
  QRT_REQUIRE(caps().dead_letter_queue, "a dead-letter queue");
  QRT_MAKE_QUEUE(q, queue_options{.lock_duration = tgt().long_lock()});
  message m{.body = std::string("\0bad\xFF", 5), .attributes = {{"tenant", "t-1"}}};
  const auto id = send(q, m);
  const auto got = receive_one(q);
  const std::string reason = "ValidationFailed";
  const std::string description = "field 'amount' is negative: -3 \xE2\x82\xAC \xE2\x9C\x97";
  must(run(client().dead_letter(got.receipt, reason, description)), "dead_letter");
  expect_empty(q, tgt().empty_wait, "a dead-lettered message stayed in its queue");
  reopen();

  const auto dead = receive_one(q.dead_letter());
  EXPECT_EQ(dead.id, id);
  EXPECT_TRUE(dead.body == m.body);
  EXPECT_EQ(dead.attributes, m.attributes);
  ASSERT_TRUE(dead.dead_letter.has_value());
  EXPECT_EQ(dead.dead_letter->reason, reason);
  EXPECT_EQ(dead.dead_letter->description, description);
  complete(dead.receipt);
  expect_empty(q.dead_letter(), tgt().empty_wait, "a completed DLQ message came back");
}

}  // namespace
// Contract C38 (providers that keep state across a restart): locks are not kept. After a
// restart an unsettled message is ready again at once, its earlier delivery counted, and the
// receipt of that delivery is dead.
TEST_P(provider_test, Reopen_LockedMessageIsReadyAgainWithItsDeliveryCount) {
  if (!can_reopen()) GTEST_SKIP() << tgt().name << " cannot reopen its state";
  QRT_MAKE_QUEUE(q, queue_options{.lock_duration = tgt().long_lock()});
  const auto id = send(q, message{.body = "in flight"});
  const auto first = receive_one(q);
  EXPECT_EQ(first.delivery_count, 1u);
  reopen();

  const auto again = receive_one(q);  // within event_timeout, far less than the lock
  EXPECT_EQ(again.id, id);
  EXPECT_EQ(again.body, "in flight");
  EXPECT_EQ(again.delivery_count, 2u) << "the delivery before the restart was not counted";
  auto stale = run(client().complete(first.receipt));
  ASSERT_FALSE(stale) << "a receipt from before the restart completed a message";
  EXPECT_EQ(stale.error().code, errc::invalid_receipt) << stale.error().to_string();
  complete(again.receipt);
  reopen();
  expect_empty(q, tgt().empty_wait, "a message completed after a restart came back");
}

}  // namespace qrt::conformance
