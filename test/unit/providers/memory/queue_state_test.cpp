// The embedded provider's storage and state machine, driven directly (no Asio, no waiting):
// the ring that holds a queue's messages by sequence, and the rules that move messages through
// it (lock expiry and redelivery order, abandon, delivery counts, the dead-letter queue and the
// byte accounting).
#include "providers/memory/queue_state.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <qrt/memory.hpp>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using qrt::memory::detail::item;
using qrt::memory::detail::item_table;
using qrt::memory::detail::queue_mutex;
using qrt::memory::detail::queue_state;
using qrt::memory::detail::spare_block_allowance;

namespace {

std::vector<std::uint64_t> sequences(const item_table& t, std::uint64_t from = 0) {
  std::vector<std::uint64_t> out;
  t.for_each_from(from, [&](const item& i) {
    out.push_back(i.stored.sequence);
    return true;
  });
  return out;
}

item& add(item_table& t, std::uint64_t seq) {
  item& i = t.emplace(seq);
  i.stored.sequence = seq;
  return i;
}

}  // namespace

// The bodies of messages that left a queue wait for the next send to free them on its thread
// (queue_mutex::discard()); what waits is bounded, and the rest is freed at once.
TEST(QueueMutex, RetiredBodiesAreBoundedAndFreedByTheNextSend) {
  queue_mutex m(nullptr);
  std::lock_guard lock(m);
  const std::size_t body = 1000;
  for (int i = 0; i < 100; ++i) m.discard(std::string(body, 'x'));
  EXPECT_GT(m.retired_bytes(), 0u);
  EXPECT_LE(m.retired_bytes(), queue_mutex::max_retired_bytes);
  EXPECT_GE(m.retired_bytes(), queue_mutex::max_retired_bytes - 2 * body);

  // One larger than a retired body may be is not kept at all; nor is one stored in place.
  const auto before = m.retired_bytes();
  m.discard(std::string(queue_mutex::max_retired_body + 1, 'y'));
  m.discard(std::string("short"));
  EXPECT_EQ(m.retired_bytes(), before);

  m.free_retired_bodies();
  EXPECT_EQ(m.retired_bytes(), 0u);
  m.discard(std::string(body, 'z'));
  EXPECT_GE(m.retired_bytes(), body);
}

TEST(ItemTable, FindsAddsAndErasesInAnyOrder) {
  item_table t;
  for (std::uint64_t s = 1; s <= 10; ++s) add(t, s);
  EXPECT_EQ(t.size(), 10u);
  t.erase(5);
  t.erase(1);
  t.erase(10);
  t.erase(42);  // absent: nothing happens
  EXPECT_EQ(t.size(), 7u);
  EXPECT_EQ(t.find(5), nullptr);
  EXPECT_EQ(t.find(1), nullptr);
  ASSERT_NE(t.find(2), nullptr);
  EXPECT_EQ(t.find(2)->stored.sequence, 2u);
  EXPECT_EQ(sequences(t), (std::vector<std::uint64_t>{2, 3, 4, 6, 7, 8, 9}));
  EXPECT_EQ(sequences(t, 7), (std::vector<std::uint64_t>{7, 8, 9}));
}

TEST(ItemTable, ReusedItemsStartFresh) {
  item_table t;
  item& first = add(t, 1);
  first.stored.body = "payload";
  first.stored.delivery_count = 3;
  first.lock = 9;
  first.stored.body.clear();
  t.erase(1);
  item& second = add(t, 2);
  EXPECT_TRUE(second.stored.body.empty());
  EXPECT_EQ(second.stored.delivery_count, 0u);
  EXPECT_EQ(second.lock, 0u);
  EXPECT_EQ(second.state, qrt::memory::detail::item_state::ready);
}

// A queue filled and drained again and again (a producer that runs ahead to the queue's limit,
// a consumer that catches up) keeps the blocks it emptied, as far as the allowance its provider
// shares among its queues lets it: the next fill reuses them, and what is kept never exceeds
// four blocks per table plus the allowance, however many tables share it.
TEST(ItemTable, EmptiedBlocksAreKeptWithinTheSharedAllowance) {
  constexpr std::size_t blocks = 16;
  constexpr std::size_t per_fill = blocks * item_table::block_items;
  auto shared = std::make_shared<spare_block_allowance>(8);
  auto a = std::make_unique<item_table>();
  item_table b;
  a->share_spares(shared);
  b.share_spares(shared);
  std::uint64_t seq = item_table::block_items;  // each fill takes exactly `blocks` blocks
  auto fill_and_drain = [&](item_table& t) {
    const std::uint64_t first = seq;
    for (std::size_t i = 0; i < per_fill; ++i) add(t, seq++).stored.body = "body";
    EXPECT_EQ(t.size(), per_fill);
    std::vector<std::uint64_t> expected(per_fill);
    for (std::size_t k = 0; k < per_fill; ++k) expected[k] = first + k;
    EXPECT_EQ(sequences(t), expected);
    for (std::uint64_t s = first; s < seq; ++s) t.erase(s);
    EXPECT_TRUE(t.empty());
  };

  fill_and_drain(*a);
  EXPECT_EQ(a->spare_blocks(), 4 + 8u);  // its own four, then eight counted against the allowance
  EXPECT_EQ(shared->taken(), 8u);
  fill_and_drain(*a);  // the same depth again: twelve of its sixteen blocks come from the spares
  EXPECT_EQ(a->spare_blocks(), 12u);
  EXPECT_EQ(shared->taken(), 8u);

  fill_and_drain(b);  // the allowance is spent: b keeps only its own four
  EXPECT_EQ(b.spare_blocks(), 4u);
  EXPECT_EQ(shared->taken(), 8u);

  // A reused block holds nothing of the message it held before.
  item& reused = a->emplace(seq);
  EXPECT_TRUE(reused.stored.body.empty());
  EXPECT_EQ(reused.stored.sequence, 0u);
  EXPECT_EQ(shared->taken(), 7u);  // one block left the spares for the ring

  a.reset();  // a destroyed table hands its share back, and the next one may keep blocks
  EXPECT_EQ(shared->taken(), 0u);
  fill_and_drain(b);
  EXPECT_EQ(b.spare_blocks(), 4 + 8u);
  EXPECT_EQ(shared->taken(), 8u);
}

// Queues on several threads fill and drain at once against one allowance: what they keep
// beyond their own four never exceeds it, and all of it comes back when the tables go.
TEST(ItemTable, ConcurrentTablesNeverKeepMoreThanTheAllowance) {
  constexpr std::size_t allowance = 6;
  auto shared = std::make_shared<spare_block_allowance>(allowance);
  std::atomic<bool> over{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      item_table table;
      table.share_spares(shared);
      std::uint64_t seq = item_table::block_items;
      for (int round = 0; round < 200; ++round) {
        const std::size_t blocks = 1 + static_cast<std::size_t>((round * 7 + t) % 9);
        const std::uint64_t first = seq;
        for (std::size_t i = 0; i < blocks * item_table::block_items; ++i) add(table, seq++);
        if (shared->taken() > allowance) over = true;
        for (std::uint64_t s = first; s < seq; ++s) table.erase(s);
        if (shared->taken() > allowance || table.spare_blocks() > 4 + allowance) over = true;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(over.load());
  EXPECT_EQ(shared->taken(), 0u);
}

// Without a shared allowance a table keeps only its own few blocks.
TEST(ItemTable, WithoutAnAllowanceATableKeepsItsOwnFewBlocks) {
  item_table t;
  for (std::uint64_t s = 1; s <= 10 * item_table::block_items; ++s) add(t, s);
  for (std::uint64_t s = 1; s <= 10 * item_table::block_items; ++s) t.erase(s);
  EXPECT_EQ(t.spare_blocks(), 4u);
}

// One message stays while a hundred thousand newer ones come and go: it is still found, the
// order holds, and the ring does not stretch over every sequence that passed.
TEST(ItemTable, AMessageThatStaysDoesNotPinTheRing) {
  item_table t;
  add(t, 1);
  std::uint64_t seq = 2;
  for (int round = 0; round < 100'000; ++round, ++seq) {
    add(t, seq);
    if (seq > 4) t.erase(seq - 3);
  }
  EXPECT_EQ(t.size(), 4u);
  EXPECT_LE(t.ring_slots(), 1024u);
  ASSERT_NE(t.find(1), nullptr);
  EXPECT_EQ(sequences(t), (std::vector<std::uint64_t>{1, seq - 3, seq - 2, seq - 1}));
  t.erase(1);
  EXPECT_EQ(t.find(1), nullptr);
  EXPECT_EQ(sequences(t), (std::vector<std::uint64_t>{seq - 3, seq - 2, seq - 1}));
}

// A dead-letter queue sees only some sequences, far apart.
TEST(ItemTable, SequencesFarApartKeepTheirOrder) {
  item_table t;
  add(t, 10);
  add(t, 1'000'000);
  add(t, 5'000'000'000);
  add(t, 5'000'000'001);
  EXPECT_EQ(sequences(t),
            (std::vector<std::uint64_t>{10, 1'000'000, 5'000'000'000, 5'000'000'001}));
  EXPECT_EQ(sequences(t, 11),
            (std::vector<std::uint64_t>{1'000'000, 5'000'000'000, 5'000'000'001}));
  t.erase(1'000'000);
  EXPECT_EQ(t.find(1'000'000), nullptr);
  ASSERT_NE(t.find(10), nullptr);
  ASSERT_NE(t.find(5'000'000'001), nullptr);
  EXPECT_EQ(t.size(), 3u);
}

// A queue that drains between batches empties its block every time: the next batch still goes
// into a block (not the ordered map, a node per message), and nothing is lost or reordered.
TEST(ItemTable, AQueueThatDrainsBetweenBatchesKeepsItsMessagesInBlocks) {
  item_table t;
  std::uint64_t seq = 1;
  for (int round = 0; round < 1000; ++round) {
    const std::uint64_t first = seq;
    for (int i = 0; i < 10; ++i) add(t, seq++);
    ASSERT_EQ(t.ordered_items(), 0u) << "round " << round;
    ASSERT_LE(t.ring_slots(), 2 * item_table::block_items);
    std::vector<std::uint64_t> expected(10);
    for (std::uint64_t k = 0; k < 10; ++k) expected[k] = first + k;
    ASSERT_EQ(sequences(t), expected);
    for (std::uint64_t s = first; s < seq; ++s) t.erase(s);
    ASSERT_TRUE(t.empty());
  }
}

// Blocks start again after the table emptied only where no older message is in the way: a
// dead-letter queue can receive a sequence below one it still holds.
TEST(ItemTable, BlocksStartAgainOnlyPastTheOldMessages) {
  item_table t;
  add(t, 10);
  add(t, 1'000'000);  // far ahead: 10 moves to the ordered map
  t.erase(1'000'000);
  add(t, 20);  // in the block of 10, an old message: ordered too
  EXPECT_EQ(t.ordered_items(), 2u);
  add(t, 64);  // past every old message: blocks again
  add(t, 65);
  EXPECT_EQ(t.ordered_items(), 2u);
  EXPECT_EQ(sequences(t), (std::vector<std::uint64_t>{10, 20, 64, 65}));
  for (std::uint64_t s : {10, 20, 64, 65}) ASSERT_NE(t.find(s), nullptr) << s;
  t.erase(20);
  EXPECT_EQ(sequences(t), (std::vector<std::uint64_t>{10, 64, 65}));
  EXPECT_EQ(sequences(t, 11), (std::vector<std::uint64_t>{64, 65}));
}

TEST(ItemTable, GrowsAndShrinksWithoutLosingMessages) {
  item_table t;
  for (std::uint64_t s = 1; s <= 50'000; ++s) add(t, s);
  for (std::uint64_t s = 1; s <= 49'990; ++s) t.erase(s);
  EXPECT_EQ(t.size(), 10u);
  EXPECT_EQ(sequences(t).front(), 49'991u);
  for (std::uint64_t s = 50'001; s <= 50'010; ++s) add(t, s);
  EXPECT_EQ(sequences(t).size(), 20u);
  EXPECT_EQ(sequences(t).back(), 50'010u);
}

namespace {

/// A queue "q" with options `o` and no log, its messages' bytes counted in `budget` (by default
/// one without a limit).
std::shared_ptr<queue_state> make_queue(const qrt::queue_options& o,
                                        std::shared_ptr<qrt::memory::detail::byte_budget> budget =
                                            std::make_shared<qrt::memory::detail::byte_budget>(0)) {
  return std::make_shared<queue_state>(1, qrt::queue_name::from("q"), o, 1000, 1000, 0,
                                       std::move(budget),
                                       std::make_shared<spare_block_allowance>(64), nullptr);
}

/// A queue of sessions whose locks last an hour.
qrt::queue_options session_queue_options() {
  qrt::queue_options o;
  o.lock_duration = std::chrono::milliseconds(1h);
  o.requires_session = true;
  return o;
}

struct state_fixture : ::testing::Test {
  qrt::queue_options options() {
    qrt::queue_options o;
    o.lock_duration = 1000ms;
    o.max_delivery_count = 3;
    return o;
  }
  std::shared_ptr<qrt::memory::detail::byte_budget> budget =
      std::make_shared<qrt::memory::detail::byte_budget>(1 << 20);
  std::shared_ptr<queue_state> q = make_queue(options(), budget);
  qrt::time_point t0 = qrt::clock::now();
  qrt::memory::detail::lsn last = 0;

  void send(const std::string& body, qrt::time_point now) {
    qrt::message m;
    m.body = body;
    const auto bytes = qrt::memory::accounted_bytes(m);
    ASSERT_TRUE(budget->try_reserve(bytes));
    std::lock_guard lock(q->mutex);
    q->enqueue(std::move(m), bytes, now, last);
  }
  std::vector<qrt::received_message> take(std::size_t n, qrt::time_point now) {
    std::vector<qrt::received_message> out;
    std::lock_guard lock(q->mutex);
    q->sweep(now);
    q->take(false, n, now, out, 7, last);
    return out;
  }
  std::vector<qrt::received_message> take_dead(std::size_t n, qrt::time_point now) {
    std::vector<qrt::received_message> out;
    std::lock_guard lock(q->mutex);
    q->sweep(now);
    q->take(true, n, now, out, 7, last);
    return out;
  }
  qrt::result<void> settle(const qrt::received_message& m, qrt::settle_action a,
                           qrt::time_point now) {
    std::lock_guard lock(q->mutex);
    q->sweep(now);
    const qrt::memory::detail::delivery_key key{
        (m.receipt.item >> 63) != 0, m.receipt.item & ~(std::uint64_t{1} << 63), m.receipt.lock};
    return q->settle(key, {m.receipt, a, "r", "d"}, now, last);
  }
  static std::vector<std::string> bodies(const std::vector<qrt::received_message>& v) {
    std::vector<std::string> out;
    for (const auto& m : v) out.push_back(m.body);
    return out;
  }
};

}  // namespace

// Expired locks put their messages back in sequence order, ahead of newer messages, with the
// delivery count kept; the stale receipt then fails.
TEST_F(state_fixture, LockExpiryRedeliversInSequenceOrderBeforeNewerMessages) {
  for (const char* b : {"a", "b", "c", "d"}) send(b, t0);
  auto first = take(2, t0);
  ASSERT_EQ(bodies(first), (std::vector<std::string>{"a", "b"}));
  auto later = t0 + 2000ms;  // both locks lapsed
  auto again = take(4, later);
  EXPECT_EQ(bodies(again), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(again[0].delivery_count, 2u);
  EXPECT_EQ(again[2].delivery_count, 1u);
  auto stale = settle(first[0], qrt::settle_action::complete, later);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, qrt::errc::receipt_expired);
}

TEST_F(state_fixture, AbandonedMessageComesBackFirst) {
  for (const char* b : {"a", "b", "c"}) send(b, t0);
  auto got = take(1, t0);
  ASSERT_EQ(bodies(got), (std::vector<std::string>{"a"}));
  ASSERT_TRUE(settle(got[0], qrt::settle_action::abandon, t0));
  auto next = take(3, t0);
  EXPECT_EQ(bodies(next), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(next[0].delivery_count, 2u);
  auto reused = settle(got[0], qrt::settle_action::complete, t0);
  ASSERT_FALSE(reused);
  EXPECT_EQ(reused.error().code, qrt::errc::invalid_receipt);
}

// A message scheduled for the end of time (time_point::max() read as "not yet") with a time
// to live expires, at the earliest, at the end of time too: its expiry is held at the end of the
// clock's range rather than computed past it (signed overflow, undefined behaviour).
TEST_F(state_fixture, AMessageScheduledAtTheEndOfTimeWithATimeToLiveStaysScheduled) {
  qrt::message m;
  m.body = "never";
  m.scheduled_enqueue_time = qrt::time_point::max();
  m.time_to_live = 1000ms;
  const auto bytes = qrt::memory::accounted_bytes(m);
  ASSERT_TRUE(budget->try_reserve(bytes));
  {
    std::lock_guard lock(q->mutex);
    q->enqueue(std::move(m), bytes, t0, last);
  }
  send("now", t0);
  EXPECT_EQ(bodies(take(2, t0 + 24h)), (std::vector<std::string>{"now"}));
  std::lock_guard lock(q->mutex);
  EXPECT_EQ(q->stats().scheduled, 1);
}

// Past max_delivery_count the message moves to the dead-letter queue with its count and body;
// its bytes stay counted until it leaves memory, then all of them are returned.
TEST_F(state_fixture, MaxDeliveriesMoveToTheDeadLetterQueueAndBytesAreAccounted) {
  send("poison", t0);
  send("fine", t0);
  qrt::message poison;
  poison.body = "poison";
  qrt::message fine_one;
  fine_one.body = "fine";
  const auto poison_bytes = qrt::memory::accounted_bytes(poison);
  for (int i = 0; i < 3; ++i) {
    auto got = take(1, t0);
    ASSERT_EQ(bodies(got), (std::vector<std::string>{"poison"}));
    EXPECT_EQ(got[0].delivery_count, static_cast<std::uint32_t>(i + 1));
    ASSERT_TRUE(settle(got[0], qrt::settle_action::abandon, t0));
  }
  EXPECT_EQ(q->stats().dead_lettered, 1);
  auto fine = take(5, t0);
  ASSERT_EQ(bodies(fine), (std::vector<std::string>{"fine"}));
  ASSERT_TRUE(settle(fine[0], qrt::settle_action::complete, t0));
  EXPECT_EQ(budget->used(), poison_bytes);  // the dead letter still counts

  auto dead = take_dead(5, t0);
  ASSERT_EQ(bodies(dead), (std::vector<std::string>{"poison"}));
  EXPECT_EQ(dead[0].delivery_count, 4u);
  ASSERT_TRUE(dead[0].dead_letter);
  EXPECT_EQ(dead[0].dead_letter->reason, "MaxDeliveryCountExceeded");
  ASSERT_TRUE(settle(dead[0], qrt::settle_action::complete, t0));
  EXPECT_EQ(budget->used(), 0u);
  EXPECT_EQ(budget->peak(), poison_bytes + qrt::memory::accounted_bytes(fine_one));
}

// Many messages pass one that is held under a long lock: the held one is still settled, and
// peek and stats see exactly what is stored.
TEST_F(state_fixture, HeldMessageSurvivesHeavyTrafficAroundIt) {
  send("held", t0);
  auto held = take(1, t0);
  ASSERT_EQ(held.size(), 1u);
  for (int i = 0; i < 5000; ++i) {
    send("x", t0);
    auto got = take(1, t0);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(settle(got[0], qrt::settle_action::complete, t0));
  }
  send("last", t0);
  {
    std::vector<qrt::received_message> peeked;
    std::lock_guard lock(q->mutex);
    q->peek(false, 10, 0, peeked);
    EXPECT_EQ(bodies(peeked), (std::vector<std::string>{"held", "last"}));
    const auto s = q->stats();
    EXPECT_EQ(s.in_flight, 1);
    EXPECT_EQ(s.active, 1);
  }
  ASSERT_TRUE(settle(held[0], qrt::settle_action::complete, t0));
  auto rest = take(5, t0);
  EXPECT_EQ(bodies(rest), (std::vector<std::string>{"last"}));
}

// A renewed lock outlives the others; a lock taken with an earlier clock reading (the wall
// clock stepped back) still expires at its own time.
TEST_F(state_fixture, LocksExpireAtTheirOwnTimeWhateverTheOrderTheyWereTaken) {
  for (const char* b : {"a", "b", "c"}) send(b, t0);
  auto a = take(1, t0 + 100ms);  // locked until t0 + 1100
  auto b = take(1, t0);          // the clock stepped back: locked until t0 + 1000
  ASSERT_EQ(bodies(a), (std::vector<std::string>{"a"}));
  ASSERT_EQ(bodies(b), (std::vector<std::string>{"b"}));
  {
    std::lock_guard lock(q->mutex);
    const qrt::memory::detail::delivery_key key{false, a[0].receipt.item, a[0].receipt.lock};
    auto renewed = q->renew(key, t0 + 500ms);  // now until t0 + 1500
    ASSERT_TRUE(renewed);
  }
  auto at_1050 = take(5, t0 + 1050ms);  // b's lock lapsed, a's holds
  EXPECT_EQ(bodies(at_1050), (std::vector<std::string>{"b", "c"}));
  ASSERT_TRUE(settle(a[0], qrt::settle_action::complete, t0 + 1400ms));
  auto stale = settle(b[0], qrt::settle_action::complete, t0 + 1400ms);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, qrt::errc::receipt_expired);
}

// Settled messages do not leave their lock expiry behind for the whole lock duration.
TEST_F(state_fixture, LockBookkeepingFollowsTheLocksHeldNotTheThroughput) {
  for (int i = 0; i < 10'000; ++i) {
    send("x", t0);
    auto got = take(1, t0);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(settle(got[0], qrt::settle_action::complete, t0));
  }
  std::lock_guard lock(q->mutex);
  EXPECT_LE(q->lock_entries(), 2u);
}

// Messages that left the queue do not leave their time-to-live expiry behind until it comes: the
// memory follows the messages stored, not the throughput times the time to live. A message
// still stored keeps its expiry.
TEST(QueueStateExpiry, ExpiryBookkeepingFollowsTheMessagesStoredNotTheThroughput) {
  qrt::queue_options o;
  o.lock_duration = 1000ms;
  o.default_time_to_live = std::chrono::milliseconds(1h);
  auto q = make_queue(o);
  const auto t0 = qrt::clock::now();
  qrt::memory::detail::lsn last = 0;
  std::lock_guard lock(q->mutex);
  qrt::message later;
  later.body = "later";
  later.scheduled_enqueue_time = t0 + 1min;  // stored all along; expires at t0 + 61 min
  q->enqueue(std::move(later), qrt::memory::accounted_bytes(later), t0, last);
  for (int i = 0; i < 10'000; ++i) {
    qrt::message m;
    m.body = "x";
    q->enqueue(std::move(m), 1, t0, last);
    std::vector<qrt::received_message> got;
    q->take(false, 1, t0, got, 7, last);
    ASSERT_EQ(got.size(), 1u);
    const qrt::memory::detail::delivery_key key{false, got[0].receipt.item, got[0].receipt.lock};
    ASSERT_TRUE(q->settle(key, {got[0].receipt, qrt::settle_action::complete, "", ""}, t0, last));
  }
  EXPECT_LE(q->expiry_entries(), 100u);
  q->sweep(t0 + 2h);
  const auto s = q->stats();
  EXPECT_EQ(s.expired, 1);
  EXPECT_EQ(s.active + s.scheduled + s.in_flight, 0);
}

// Sessions held at once lock their messages until different times, so their lock expiries do
// not come in order; settled messages still do not leave them behind for the lock duration.
TEST(QueueStateExpiry, SessionLockBookkeepingFollowsTheLocksHeldNotTheThroughput) {
  auto q = make_queue(session_queue_options());
  const auto t0 = qrt::clock::now();
  qrt::memory::detail::lsn last = 0;
  std::lock_guard lock(q->mutex);
  const auto a = qrt::session_id::from("a");
  const auto b = qrt::session_id::from("b");
  auto* early = q->lock_session(a, t0).value();      // locked until t0 + 1 h
  auto* late = q->lock_session(b, t0 + 1s).value();  // locked until t0 + 1 h + 1 s
  for (int i = 0; i < 10'000; ++i) {
    q->sweep(t0 + 1s);  // as every call of the provider does first
    std::vector<qrt::received_message> got;
    for (auto* slot : {late, early}) {  // the later lock first: the earlier one is out of order
      qrt::message m;
      m.body = "x";
      m.session = slot->id;
      q->enqueue(std::move(m), 1, t0 + 1s, last);
      q->take_from_session(*slot, got.size() + 1, t0 + 1s, got, 7, last);
    }
    ASSERT_EQ(got.size(), 2u);
    for (const auto& r : got) {
      const qrt::memory::detail::delivery_key key{false, r.receipt.item, r.receipt.lock};
      ASSERT_TRUE(q->settle(key, {r.receipt, qrt::settle_action::complete, "", ""}, t0 + 1s, last));
    }
  }
  EXPECT_LE(q->lock_entries(), 100u);
  // A message still locked keeps its expiry: it comes back when its session's lock runs out.
  qrt::message held;
  held.body = "held";
  held.session = a;
  q->enqueue(std::move(held), 1, t0 + 1s, last);
  std::vector<qrt::received_message> got;
  q->take_from_session(*early, 1, t0 + 1s, got, 7, last);
  ASSERT_EQ(got.size(), 1u);
  q->sweep(t0 + 2h);
  auto* again = q->lock_session(a, t0 + 2h).value();
  std::vector<qrt::received_message> redelivered;
  q->take_from_session(*again, 1, t0 + 2h, redelivered, 7, last);
  ASSERT_EQ(redelivered.size(), 1u);
  EXPECT_EQ(redelivered[0].body, "held");
  EXPECT_EQ(redelivered[0].delivery_count, 2u);
}

// Spins that keep running out stop (but for a probe every 32nd time); hits bring them back.
TEST(SpinScore, StopsSpinningWhereItDoesNotPayAndRecovers) {
  qrt::memory::detail::spin_score s;
  EXPECT_TRUE(s.worth_trying());
  s.record(false);
  EXPECT_FALSE(s.worth_trying() && s.worth_trying());  // at zero: one probe in 32 at most
  int tries = 0;
  for (int i = 0; i < 64; ++i) tries += s.worth_trying() ? 1 : 0;
  EXPECT_EQ(tries, 2);
  s.record(true);
  EXPECT_TRUE(s.worth_trying());
  EXPECT_TRUE(s.worth_trying());
}

// ---- kept_message: a stored message's fields, the rarely set ones out of line ----

namespace {

using qrt::memory::detail::kept_message;
using qrt::memory::detail::stored_message;

/// Every field of qrt::message, compared one by one (it has no operator==).
void expect_same_content(const qrt::message& got, const qrt::message& want) {
  EXPECT_EQ(got.body, want.body);
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.attributes, want.attributes);
  EXPECT_EQ(got.session, want.session);
  EXPECT_EQ(got.correlation_id, want.correlation_id);
  EXPECT_EQ(got.content_type, want.content_type);
  EXPECT_EQ(got.subject, want.subject);
  EXPECT_EQ(got.time_to_live, want.time_to_live);
  EXPECT_EQ(got.scheduled_enqueue_time, want.scheduled_enqueue_time);
}

/// A message with a body and an id and, when `rare` names one, that one other field set.
qrt::message with_field(int rare) {
  qrt::message m;
  m.body = std::string(300, 'b');  // longer than a short-string buffer: a moved heap block
  m.id = "id-1";
  switch (rare) {
    case 0:
      m.attributes = {{"k", "v"}};
      break;
    case 1:
      m.session = qrt::session_id::from("s-1");
      break;
    case 2:
      m.correlation_id = "corr";
      break;
    case 3:
      m.content_type = "text/plain";
      break;
    case 4:
      m.subject = "subj";
      break;
    case 5:
      m.time_to_live = std::chrono::milliseconds{1500};
      break;
    case 6:
      m.scheduled_enqueue_time = qrt::time_point{std::chrono::seconds{1'800'000'000}};
      break;
    default:
      break;  // none
  }
  return m;
}

}  // namespace

// Each field a sender may set comes back out of a stored message as it went in, alone or with
// the others, through a delivery's copy and through the log's whole form; a message that sets
// none of the rarely set fields allocates nothing for them.
TEST(KeptMessage, EveryFieldSurvivesAndOnlyMessagesThatSetARareFieldAllocateForIt) {
  for (int rare = 0; rare <= 7; ++rare) {
    SCOPED_TRACE("field " + std::to_string(rare));
    const qrt::message sent = with_field(rare);
    kept_message k;
    k.take_content(qrt::message(sent));
    EXPECT_EQ(k.rare_fields() != nullptr, rare < 7);
    qrt::message delivered;
    k.copy_content_to(delivered);
    expect_same_content(delivered, sent);

    k.sequence = 9;
    k.delivery_count = 2;
    stored_message whole = std::move(k).release();
    EXPECT_EQ(whole.sequence, 9u);
    EXPECT_EQ(whole.delivery_count, 2u);
    EXPECT_FALSE(whole.dead_letter);
    expect_same_content(whole.content, sent);
    EXPECT_TRUE(k.body.empty() && k.id.empty() && !k.rare_fields()) << "release() left content";

    kept_message back = kept_message::from(std::move(whole));
    qrt::message again;
    back.copy_content_to(again);
    expect_same_content(again, sent);
    EXPECT_FALSE(back.is_dead_letter());
  }
  qrt::message all = with_field(0);
  for (int rare = 1; rare < 7; ++rare) {
    qrt::message one = with_field(rare);
    if (one.session) all.session = one.session;
    if (!one.correlation_id.empty()) all.correlation_id = one.correlation_id;
    if (!one.content_type.empty()) all.content_type = one.content_type;
    if (!one.subject.empty()) all.subject = one.subject;
    if (one.time_to_live) all.time_to_live = one.time_to_live;
    if (one.scheduled_enqueue_time) all.scheduled_enqueue_time = one.scheduled_enqueue_time;
  }
  kept_message k;
  k.take_content(qrt::message(all));
  qrt::message delivered;
  k.copy_content_to(delivered);
  expect_same_content(delivered, all);
}

// A dead letter's reason travels with the message through the log's form and back, and a
// message without rarely set fields gets the block for it when it becomes a dead letter.
TEST(KeptMessage, DeadLetterInfoTravelsWithTheMessage) {
  kept_message k;
  k.take_content(with_field(7));
  ASSERT_FALSE(k.is_dead_letter());
  k.set_dead_letter({"MaxDeliveryCountExceeded", "delivered 10 times"});
  ASSERT_TRUE(k.is_dead_letter());
  EXPECT_EQ(k.dead_letter()->reason, "MaxDeliveryCountExceeded");
  stored_message whole = std::move(k).release();
  ASSERT_TRUE(whole.dead_letter);
  EXPECT_EQ(whole.dead_letter->description, "delivered 10 times");
  expect_same_content(whole.content, with_field(7));
  kept_message back = kept_message::from(std::move(whole));
  ASSERT_TRUE(back.is_dead_letter());
  EXPECT_EQ(back.dead_letter()->reason, "MaxDeliveryCountExceeded");
  EXPECT_EQ(back.body, std::string(300, 'b'));
}

// A deleted queue's state can outlive its deletion: a call on another thread that found it just
// before, a parked call until it wakes, a session handle the application keeps. It then holds
// none of its messages: dropping the contents frees the ready, locked, scheduled and
// dead-lettered ones, the blocks they were in (spares too, their allowance given back) and the
// bookkeeping of locks and expiries.
TEST(QueueStateDeletion, DroppingTheContentsFreesEveryMessageAndItsBookkeeping) {
  qrt::queue_options o;
  o.lock_duration = 1000ms;
  o.default_time_to_live = std::chrono::milliseconds(1h);
  auto spares = std::make_shared<spare_block_allowance>(64);
  auto q = std::make_shared<queue_state>(1, qrt::queue_name::from("q"), o, 100'000, 100'000, 0,
                                         std::make_shared<qrt::memory::detail::byte_budget>(0),
                                         spares, nullptr);
  const auto t0 = qrt::clock::now();
  qrt::memory::detail::lsn last = 0;
  std::lock_guard lock(q->mutex);
  auto put = [&](const char* body, std::optional<qrt::time_point> at) {
    qrt::message m;
    m.body = body;
    m.scheduled_enqueue_time = at;
    const auto bytes = qrt::memory::accounted_bytes(m);
    q->enqueue(std::move(m), bytes, t0, last);
  };
  for (int i = 0; i < 1000; ++i) put("message", std::nullopt);
  put("later", t0 + 1min);
  auto settle = [&](const qrt::received_message& m, qrt::settle_action a) {
    const qrt::memory::detail::delivery_key key{false, m.receipt.item, m.receipt.lock};
    return q->settle(key, {m.receipt, a, "r", "d"}, t0, last);
  };
  std::vector<qrt::received_message> done;  // emptied blocks become spares
  q->take(false, 900, t0, done, 7, last);
  for (const auto& m : done) ASSERT_TRUE(settle(m, qrt::settle_action::complete));
  std::vector<qrt::received_message> held;  // 40 stay locked, 10 go to the dead-letter queue
  q->take(false, 50, t0, held, 7, last);
  for (std::size_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(settle(held[i], qrt::settle_action::dead_letter));
  }
  const auto before = q->stats();
  ASSERT_EQ(before.active, 50);
  ASSERT_EQ(before.in_flight, 40);
  ASSERT_EQ(before.scheduled, 1);
  ASSERT_EQ(q->dead_letter_stats().active, 10);
  ASSERT_GT(spares->taken(), 0u);
  ASSERT_GT(q->item_slots(), 0u);
  ASSERT_GT(q->lock_entries(), 0u);
  ASSERT_GT(q->expiry_entries(), 0u);

  q->deleted = true;
  q->wake_everyone();
  q->drop_contents();

  const auto after = q->stats();
  EXPECT_EQ(after.active + after.in_flight + after.scheduled, 0);
  EXPECT_EQ(q->dead_letter_stats().active, 0);
  EXPECT_EQ(q->item_slots(), 0u) << "blocks or spares kept";
  EXPECT_EQ(spares->taken(), 0u) << "the spares' allowance was not given back";
  EXPECT_EQ(q->lock_entries(), 0u);
  EXPECT_EQ(q->expiry_entries(), 0u);
  EXPECT_FALSE(q->next_event()) << "a sweep would still find something to do";
  std::vector<qrt::received_message> none;
  q->take(false, 10, t0 + 2h, none, 7, last);
  EXPECT_TRUE(none.empty());
}

// The same for a queue of sessions: their records (messages, locks, states) go too.
TEST(QueueStateDeletion, DroppingTheContentsFreesTheSessions) {
  auto q = make_queue(session_queue_options());
  const auto t0 = qrt::clock::now();
  qrt::memory::detail::lsn last = 0;
  std::lock_guard lock(q->mutex);
  for (const char* id : {"a", "b", "c"}) {
    for (int i = 0; i < 5; ++i) {
      qrt::message m;
      m.body = "x";
      m.session = qrt::session_id::from(id);
      q->enqueue(std::move(m), 1, t0, last);
    }
  }
  auto* a = q->lock_session(qrt::session_id::from("a"), t0).value();
  q->set_session_state(*a, "state of a");
  ASSERT_EQ(q->session_records(), 3u);
  ASSERT_GT(q->lock_entries() + q->expiry_entries() + q->item_slots(), 0u);

  q->deleted = true;
  q->wake_everyone();
  q->drop_contents();

  EXPECT_EQ(q->session_records(), 0u);
  EXPECT_EQ(q->item_slots(), 0u);
  EXPECT_EQ(q->stats().active, 0);
  EXPECT_FALSE(q->next_event());
}
