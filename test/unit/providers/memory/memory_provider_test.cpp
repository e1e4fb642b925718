// Embedded-provider specifics that the shared conformance suite does not cover: configuration,
// backpressure, waking, and the blocking facade end to end.
#include "providers/memory/memory_provider.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <qrt/memory.hpp>
#include <qrt/qrt.hpp>
#include <qrt/runtime.hpp>
#include <set>
#include <thread>

#include "../../support/messages.hpp"
#include "core/borrowing_provider.hpp"
#include "providers/memory/queue_state.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
// The sanitizer runtimes' own count (GCC ships the runtime but not clang's header declaring it).
extern "C" std::size_t __sanitizer_get_current_allocated_bytes();
#else
#include <malloc.h>
#endif

using namespace std::chrono_literals;
using qrt::errc;
using qrt::message;
using qrt::queue_name;
using qrt::test::text;

namespace {

qrt::sync::queue_client open_sync_client(qrt::config cfg) {
  cfg.set("provider", "memory");
  return qrt::sync::queue_client::open(cfg, qrt::builtin_providers()).value();
}

// `prefix + std::to_string(i)`. Not written with operator+(const char*, std::string&&): GCC 12
// at -O3 inlines its insert-at-the-front and reports a false -Wrestrict (an "overlapping"
// memcpy of 2^63 bytes); appending to the prefix does the same without it.
std::string numbered(std::string prefix, int i) {
  prefix += std::to_string(i);
  return prefix;
}

// Sends a text message `body` to `session` of queue `q`.
void send_to_session(qrt::sync::queue_client& client, const queue_name& q, const char* session,
                     const char* body) {
  auto m = text(body);
  m.session = qrt::session_id::from(session);
  ASSERT_TRUE(client.send(q, m));
}

// Bytes the allocator has handed out and not had back (under ASan and TSan, their allocator's
// count; else glibc's, mmapped blocks included).
std::size_t bytes_in_use() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return __sanitizer_get_current_allocated_bytes();
#else
  const auto m = mallinfo2();
  return m.uordblks + m.hblkhd;
#endif
}

}  // namespace

TEST(MemoryProvider, FactoryRefusesBadConfigurationNamingTheField) {  // contract C34
  auto c = qrt::sync::queue_client::open(
      qrt::config{{"provider", "memory"}, {"max_queue_size", "-3"}}, qrt::builtin_providers());
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, errc::configuration_error);
  EXPECT_NE(c.error().message.find("max_queue_size"), std::string::npos);

  auto typo = qrt::sync::queue_client::open(
      qrt::config{{"provider", "memory"}, {"lock_duraton", "5s"}}, qrt::builtin_providers());
  ASSERT_FALSE(typo);
  EXPECT_NE(typo.error().message.find("lock_duraton"), std::string::npos);

  auto unknown = qrt::sync::queue_client::open(qrt::config{{"provider", "carrier-pigeon"}},
                                               qrt::builtin_providers());
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("memory"), std::string::npos) << "lists known providers";
}

TEST(MemoryProvider, ProviderIsChosenAtRunTimeFromConfiguration) {  // contract C34
  auto yaml = qrt::config::from_yaml("provider: memory\nqueues: [orders, billing]\n").value();
  auto client = qrt::sync::queue_client::open(yaml, qrt::builtin_providers()).value();
  EXPECT_EQ(client.async_client().provider_name(), "memory");
  EXPECT_TRUE(client.send(queue_name::from("billing"), text("x")));
}

TEST(MemoryProvider, PresetsHaveTheirDocumentedValues) {
  auto high = qrt::memory::options::for_high_throughput();
  EXPECT_EQ(high.max_queue_size, 10'000u);
  EXPECT_EQ(high.channel_buffer_size, 1'000u);
  EXPECT_FALSE(high.enable_persistence);
  auto testing = qrt::memory::options::for_testing();
  EXPECT_EQ(testing.max_queue_size, 1'000u);
  EXPECT_EQ(testing.channel_buffer_size, 100u);
}

TEST(MemoryProvider, FullQueueMakesSendWaitThenFailWithQueueFullAndDropsNothing) {
  auto client = open_sync_client({{"max_queue_size", "3"}, {"queues", "q"}});
  const auto q = queue_name::from("q");
  std::vector<message> five;
  for (int i = 0; i < 5; ++i) five.push_back(text(numbered("m", i)));
  // One id the sender chose, longer than std::string's inline buffer; the rest the provider's.
  const std::string chosen_id = "an-id-the-sender-chose-for-m1";
  five[1].id = chosen_id;
  // send_timeout defaults to 30 s; use the async client's provider directly with a short one.
  auto& provider = *client.async_client().underlying();
  boost::asio::io_context io;
  std::optional<qrt::result<std::vector<qrt::send_outcome>>> r;
  boost::asio::co_spawn(
      io, [&]() -> qrt::awaitable<void> { r = co_await provider.send(q, std::move(five), 150ms); },
      boost::asio::detached);
  io.run();
  ASSERT_TRUE(r && *r);
  const auto& outcomes = **r;
  ASSERT_EQ(outcomes.size(), 5u);
  EXPECT_TRUE(outcomes[0] && outcomes[1] && outcomes[2]);
  EXPECT_EQ(outcomes[3].error().code, errc::queue_full);
  EXPECT_EQ(outcomes[4].error().code, errc::queue_full);
  auto got = client.receive(q, 10, 0ms).value();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].body, "m0");
  EXPECT_EQ(got[2].body, "m2");
  // Each stored message carries the id its outcome reported.
  EXPECT_EQ(*outcomes[1], chosen_id);
  EXPECT_FALSE(outcomes[0]->empty());
  EXPECT_NE(*outcomes[0], *outcomes[2]);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(got[i].id, *outcomes[i]) << i;
}

// The provider runs its waits on the caller's executor, so an operation spawned on a test-owned
// io_context that has run dry (poll() returned) without finishing is suspended, waiting for a
// change of the queue: that, not a delay, proves it waited before the other thread acted.
TEST(MemoryProvider, BlockedSenderProceedsWhenAConsumerCompletes) {
  auto client = open_sync_client({{"max_queue_size", "1"}, {"queues", "q"}});
  const auto q = queue_name::from("q");
  ASSERT_TRUE(client.send(q, text("first")));
  auto& provider = *client.async_client().underlying();
  boost::asio::io_context io;
  std::optional<qrt::result<std::vector<qrt::send_outcome>>> second;
  // A deadline far beyond the test's: only room in the queue may end this wait.
  boost::asio::co_spawn(
      io,
      [&]() -> qrt::awaitable<void> {
        std::vector<message> batch;
        batch.push_back(text("second"));
        second = co_await provider.send(q, std::move(batch), 600s);
      },
      boost::asio::detached);
  io.poll();
  ASSERT_FALSE(second) << "a send to a full queue did not wait";

  // Another thread (the blocking client's) takes the first message and completes it.
  auto first = client.receive(q, 1, 5s).value();
  ASSERT_EQ(first.size(), 1u);
  ASSERT_TRUE(client.complete(first[0].receipt));
  io.restart();
  io.run_for(30s);  // returns as soon as the woken send finishes
  ASSERT_TRUE(second) << "completing a message did not wake the waiting send";
  ASSERT_TRUE(*second) << second->error().to_string();
  ASSERT_EQ((*second)->size(), 1u);
  EXPECT_TRUE((**second)[0]) << (**second)[0].error().to_string();
  auto got = client.receive(q, 1, 5s).value();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, "second");
}

namespace {

using store_result = qrt::result<std::vector<qrt::send_outcome>>;
/// Stores `count` messages (bodies prefix0, prefix1, ...) with `timeout`, the outcome in `out`:
/// a send to a queue or a publish to a topic.
using store_fn = std::function<qrt::awaitable<void>(std::string prefix, std::size_t count,
                                                    std::optional<store_result>& out,
                                                    std::chrono::milliseconds timeout)>;

// Room that settlements free goes to whichever sender looks first, usually one already running
// rather than the woken waiting one; without a bound, producers that keep a queue full could keep
// one waiting sender from storing for as long as they run. Newer senders store at most
// max_overtaking_messages ahead of a waiting one; then they wait behind it (or, if they may not
// wait, fail with queue_full), and it stores next. `store` fills `from`, which holds
// max_overtaking_messages + 1 messages.
void expect_bounded_overtaking(qrt::sync::queue_client& client, const queue_name& from,
                               const store_fn& store) {
  constexpr std::size_t overtaking = qrt::memory::detail::queue_state::max_overtaking_messages;
  const std::size_t room = overtaking + 1;
  // Deadlines far beyond the test's (which needs none when the bound holds) yet bounded, so that
  // a broken bound fails the test within a minute instead of hanging it.
  boost::asio::io_context fill_io, early_io, late_io;
  std::optional<store_result> filled, early, late, impatient;
  boost::asio::co_spawn(fill_io, store("fill", room, filled, 0ms), boost::asio::detached);
  fill_io.run();
  ASSERT_TRUE(filled && *filled);
  for (const auto& outcome : **filled) ASSERT_TRUE(outcome) << outcome.error().to_string();
  boost::asio::co_spawn(early_io, store("early", 1, early, 60s), boost::asio::detached);
  early_io.poll();
  ASSERT_FALSE(early) << "storing into a full queue did not wait";

  // Settlements empty the queue and wake the early sender, which has not run yet...
  auto taken = client.receive(from, room, 5s).value();
  ASSERT_EQ(taken.size(), room);
  for (auto& m : taken) ASSERT_TRUE(client.complete(m.receipt));
  // ...when newer senders arrive: one of room messages that may wait, then one that may not.
  boost::asio::co_spawn(late_io, store("late", room, late, 60s), boost::asio::detached);
  boost::asio::co_spawn(late_io, store("impatient", 1, impatient, 0ms), boost::asio::detached);
  late_io.poll();
  EXPECT_FALSE(late) << "newer senders took all the room the waiting one was woken for";
  ASSERT_TRUE(impatient && *impatient);
  ASSERT_FALSE((**impatient)[0]) << "a sender that may not wait stored past the bound";
  EXPECT_EQ((**impatient)[0].error().code, errc::queue_full);

  early_io.restart();
  early_io.run_for(30s);  // returns as soon as the woken sender finishes
  ASSERT_TRUE(early && *early);
  EXPECT_TRUE((**early)[0]) << (**early)[0].error().to_string();
  auto got = client.receive(from, room, 5s).value();
  ASSERT_EQ(got.size(), room) << "the queue is full again: the bound's worth, then the early one";
  EXPECT_EQ(got[overtaking - 1].body, numbered("late", int(overtaking - 1)));
  EXPECT_EQ(got[overtaking].body, "early0");
  for (auto& m : got) ASSERT_TRUE(client.complete(m.receipt));

  late_io.restart();
  late_io.run_for(30s);
  ASSERT_TRUE(late && *late) << "the later sender was not woken when its turn came";
  for (const auto& outcome : **late) EXPECT_TRUE(outcome) << outcome.error().to_string();
  got = client.receive(from, room, 5s).value();
  ASSERT_EQ(got.size(), 1u) << "the later sender's last message, stored after the early one";
  EXPECT_EQ(got[0].body, numbered("late", int(overtaking)));
}

std::vector<message> numbered_batch(const std::string& prefix, std::size_t count) {
  std::vector<message> batch;
  for (std::size_t i = 0; i < count; ++i) batch.push_back(text(numbered(prefix, int(i))));
  return batch;
}

}  // namespace

TEST(MemoryProvider, NewerSendsOvertakeAWaitingSenderAtMostABoundedNumberOfMessages) {
  const std::size_t room = qrt::memory::detail::queue_state::max_overtaking_messages + 1;
  auto client = open_sync_client({{"max_queue_size", std::to_string(room)}, {"queues", "q"}});
  const auto q = queue_name::from("q");
  auto& provider = *client.async_client().underlying();
  store_fn send = [&](std::string prefix, std::size_t count, std::optional<store_result>& out,
                      std::chrono::milliseconds timeout) -> qrt::awaitable<void> {
    // Named: GCC 12 destroys the temporaries of a co_await expression twice.
    auto batch = numbered_batch(prefix, count);
    out = co_await provider.send(q, std::move(batch), timeout);
  };
  expect_bounded_overtaking(client, q, send);
}

// The same bound for publishes waiting for room in a full subscription.
TEST(MemoryProvider, NewerPublishesOvertakeAWaitingPublishAtMostABoundedNumberOfMessages) {
  const std::size_t room = qrt::memory::detail::queue_state::max_overtaking_messages + 1;
  auto client = open_sync_client({{"max_queue_size", std::to_string(room)}});
  const auto topic = qrt::topic_name::from("events");
  ASSERT_TRUE(client.create_topic(topic));
  const auto sub = queue_name::subscription(topic, "all").value();
  ASSERT_TRUE(client.create_subscription(sub));
  auto& provider = *client.async_client().underlying();
  store_fn publish = [&](std::string prefix, std::size_t count, std::optional<store_result>& out,
                         std::chrono::milliseconds timeout) -> qrt::awaitable<void> {
    // Named: GCC 12 destroys the temporaries of a co_await expression twice.
    auto batch = numbered_batch(prefix, count);
    out = co_await provider.publish(topic, std::move(batch), timeout);
  };
  expect_bounded_overtaking(client, sub, publish);
}

TEST(MemoryProvider, WaitingReceiverIsWokenBySendFromAnotherThread) {
  auto client = open_sync_client({{"queues", "q"}});
  const auto q = queue_name::from("q");
  auto& provider = *client.async_client().underlying();
  boost::asio::io_context io;
  std::optional<qrt::result<std::vector<qrt::received_message>>> got;
  boost::asio::co_spawn(
      io, [&]() -> qrt::awaitable<void> { got = co_await provider.receive(q, 1, 600s); },
      boost::asio::detached);
  io.poll();
  ASSERT_FALSE(got) << "a receive on an empty queue did not wait";

  std::thread producer([&] { EXPECT_TRUE(client.send(q, text("wake up"))); });
  producer.join();
  io.restart();
  io.run_for(30s);  // returns as soon as the woken receive finishes
  ASSERT_TRUE(got) << "a send from another thread did not wake the waiting receive";
  ASSERT_TRUE(*got) << got->error().to_string();
  ASSERT_EQ((*got)->size(), 1u);
  EXPECT_EQ((**got)[0].body, "wake up");
  // Nothing of the finished receive (the provider's wake timer was set for its 600 s deadline)
  // keeps the provider's executor busy once the client is closed: the client's destructor,
  // which waits for that executor's work, does not wait for the deadline.
  auto closed = std::async(std::launch::async, [gone = std::move(client)]() mutable {
    gone.close();
    auto destroyed_here = std::move(gone);
  });
  EXPECT_EQ(closed.wait_for(30s), std::future_status::ready)
      << "a timer of the finished receive kept the provider's executor running";
}

namespace {

// Runs `op` on `io` from this thread, which runs nothing else meanwhile.
template <class T>
T run_here(boost::asio::io_context& io, qrt::awaitable<T> op) {
  std::optional<T> out;
  boost::asio::co_spawn(
      io, [&]() -> qrt::awaitable<void> { out.emplace(co_await std::move(op)); },
      boost::asio::detached);
  while (!out) {
    io.restart();
    io.run_one();
  }
  return std::move(*out);
}

// The three calls that park: each keeps the provider, as a caller's coroutine would, and counts
// in `went_on` if it ever resumes.
std::atomic<int> went_on{0};
qrt::awaitable<void> receive_parked(qrt::provider_ptr p, queue_name q) {
  (void)co_await p->receive(q, 1, 600s);
  ++went_on;
}
qrt::awaitable<void> send_parked(qrt::provider_ptr p, queue_name q) {
  std::vector<message> one;  // not a braced list in a co_await: GCC 12 miscompiles it
  one.push_back(text("no room"));
  (void)co_await p->send(q, std::move(one), 600s);
  ++went_on;
}
qrt::awaitable<void> accept_parked(qrt::provider_ptr p, queue_name q) {
  (void)co_await p->accept_session(q, std::nullopt, 600s);
  ++went_on;
}

}  // namespace

// An io_context destroyed (its threads stopped) while receives, sends and session accepts wait
// in the provider, without the provider closed first: Asio destroys those coroutines unrun, and
// with them goes what they held. Before, each parked coroutine's handler stayed in its waiter,
// the coroutine kept the provider, and the provider (with persistence, its directory's lock)
// was never released.
TEST(MemoryProvider, AnExecutorDestroyedWhileCallsWaitLetsGoOfThemAndOfTheProvider) {
  std::weak_ptr<qrt::provider> provider_left;
  {
    boost::asio::io_context io;
    auto o = qrt::memory::options::for_testing();
    o.max_queue_size = 1;
    auto p = qrt::memory::make_provider(o, io.get_executor()).value();
    const auto empty = queue_name::from("empty");
    const auto full = queue_name::from("full");
    const auto sessions = queue_name::from("sessions");
    qrt::queue_options with_sessions;
    with_sessions.requires_session = true;
    ASSERT_TRUE(run_here(io, p->create_queue(empty, {})));
    ASSERT_TRUE(run_here(io, p->create_queue(full, {})));
    ASSERT_TRUE(run_here(io, p->create_queue(sessions, with_sessions)));
    ASSERT_TRUE(run_here(io, p->send(full, {text("fills it")}, 0ms)));

    boost::asio::co_spawn(io, receive_parked(p, empty), boost::asio::detached);
    boost::asio::co_spawn(io, send_parked(p, full), boost::asio::detached);
    boost::asio::co_spawn(io, accept_parked(p, sessions), boost::asio::detached);
    io.restart();
    io.poll();  // each runs (a receive's spin included) until it parks
    ASSERT_EQ(qrt::memory::detail::parked_waiters(*p), 3u);
    provider_left = p;
  }
  EXPECT_TRUE(provider_left.expired())
      << "the provider outlived the executor its waiting calls were parked on";
  EXPECT_EQ(went_on.load(), 0) << "a call of a destroyed executor resumed";
}

// A waiter let go that way stays in its queue's wait list until a wake passes it: the wake goes
// to the next waiter, on an executor still running, instead of being spent on nobody.
TEST(MemoryProvider, AWaiterLetGoWithItsExecutorDoesNotTakeTheNextWakeUp) {
  qrt::runtime rt;
  auto o = qrt::memory::options::for_testing();
  o.receive_spin = std::chrono::microseconds(0);
  auto p = qrt::memory::make_provider(o, rt.executor()).value();
  const auto q = queue_name::from("q");
  ASSERT_TRUE(rt.block_on(p->create_queue(q, {})));
  {
    std::optional<boost::asio::io_context> first(std::in_place);
    boost::asio::co_spawn(*first, receive_parked(p, q), boost::asio::detached);
    first->poll();
    ASSERT_EQ(qrt::memory::detail::parked_waiters(*p), 1u);
    auto second =
        boost::asio::co_spawn(rt.executor(), p->receive(q, 1, 600s), boost::asio::use_future);
    while (qrt::memory::detail::parked_waiters(*p) < 2) std::this_thread::yield();

    // `first` goes, its receive (ahead of the second in the wait list) let go unrun.
    first.reset();
    ASSERT_EQ(qrt::memory::detail::parked_waiters(*p), 1u);
    ASSERT_TRUE(rt.block_on(p->send(q, {text("for the second")}, 1s)));
    // Spent on the waiter let go, the wake would leave the second receive parked for its 600 s.
    if (second.wait_for(30s) != std::future_status::ready) {
      rt.block_on(p->close());
      FAIL() << "the send's wake-up went to the receive let go, not to the one still waiting";
    }
    auto got = second.get();
    ASSERT_TRUE(got) << got.error().to_string();
    ASSERT_EQ(got->size(), 1u);
    EXPECT_EQ((*got)[0].body, "for the second");
    EXPECT_EQ(went_on.load(), 0) << "the receive of the destroyed executor resumed";
  }
  rt.block_on(p->close());
}

TEST(MemoryProvider, ReceiveFromSessionQueueWithoutSessionIsRefused) {
  auto client = open_sync_client({{"queues", "s"}, {"requires_session", "true"}});
  auto r = client.receive(queue_name::from("s"), 1, 0ms);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
  auto send = client.send(queue_name::from("s"), text("no session"));
  ASSERT_FALSE(send);
  EXPECT_EQ(send.error().code, errc::invalid_argument);
}

// A receive asking for no messages is refused before it reaches the queue, and takes nothing.
TEST(MemoryProvider, ReceiveOfNoMessagesIsRefusedAndTakesNothing) {
  auto client = open_sync_client({{"queues", "q"}});
  ASSERT_TRUE(client.send(queue_name::from("q"), text("stays")));
  auto refused = client.receive(queue_name::from("q"), 0, 0ms);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::invalid_argument);
  EXPECT_NE(refused.error().message.find("max_messages"), std::string::npos)
      << refused.error().message;
  auto r = client.receive(queue_name::from("q"), 10, 0ms);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].body, "stays");
  EXPECT_EQ((*r)[0].delivery_count, 1u);
}

// Called directly, not through the client that refuses them first, the provider refuses a peek
// of no messages and one from a negative sequence number too: it used to read the negative start
// as the oldest and answer a peek of none with an empty page (docs/contract.md, C11).
TEST(MemoryProvider, PeekOfNoMessagesOrFromANegativeSequenceIsRefused) {
  qrt::runtime rt;
  auto p = qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  const auto q = queue_name::from("q");
  ASSERT_TRUE(rt.block_on(p->create_queue(q, {})));
  ASSERT_TRUE(rt.block_on(p->send(q, {text("stays")}, 1s)));

  auto negative = rt.block_on(p->peek(q, 10, -5));
  ASSERT_FALSE(negative) << "peeked " << negative->size() << " messages from sequence -5";
  EXPECT_EQ(negative.error().code, errc::invalid_argument);
  EXPECT_NE(negative.error().message.find("from_sequence"), std::string::npos)
      << negative.error().message;
  EXPECT_NE(negative.error().message.find("-5"), std::string::npos) << negative.error().message;

  auto none = rt.block_on(p->peek(q, 0, 0));
  ASSERT_FALSE(none) << "a peek of no messages answered with " << none->size() << " messages";
  EXPECT_EQ(none.error().code, errc::invalid_argument);
  EXPECT_NE(none.error().message.find("max_messages"), std::string::npos) << none.error().message;

  auto all = rt.block_on(p->peek(q, 10, 0));
  ASSERT_TRUE(all) << all.error().to_string();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].body, "stays");
  rt.block_on(p->close());
}

TEST(MemoryProvider, CannotSendToADeadLetterQueueOrCreateOne) {
  auto client = open_sync_client({{"queues", "q"}});
  auto r = client.send(queue_name::from("q").dead_letter(), text("x"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
  EXPECT_FALSE(client.create_queue(queue_name::from("q").dead_letter()));
}

// The retrying layer lends a send's messages to this provider instead of copying them for
// every attempt (core/borrowing_provider.hpp), so a send that fails as a whole must leave each
// message as it was, ready to be sent again, and one that succeeds stores them.
TEST(MemoryProvider, LentMessagesAreLeftIntactByASendThatFailsAsAWhole) {
  qrt::runtime rt;
  auto p = qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  auto* lender = dynamic_cast<qrt::detail::borrowing_provider*>(p.get());
  ASSERT_NE(lender, nullptr);
  std::vector<message> batch;
  batch.push_back(text("first"));
  batch.push_back(text("second"));

  const auto missing = queue_name::from("missing");
  auto refused = rt.block_on(lender->send_from(missing, batch, 1s));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::queue_not_found);
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0].body, "first");
  EXPECT_EQ(batch[1].body, "second");
  EXPECT_TRUE(batch[0].id.empty() && batch[1].id.empty());

  const auto q = queue_name::from("orders");
  ASSERT_TRUE(rt.block_on(p->create_queue(q, {})));
  auto sent = rt.block_on(lender->send_from(q, batch, 1s));
  ASSERT_TRUE(sent) << sent.error().to_string();
  ASSERT_EQ(sent->size(), 2u);
  auto got = rt.block_on(p->receive(q, 10, 1s));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].body, "first");
  EXPECT_EQ((*got)[1].body, "second");
  EXPECT_EQ((*got)[0].id, (*sent)[0].value());
}

TEST(MemoryProvider, ReceiptFromAnotherProviderIsInvalid) {
  auto a = open_sync_client({{"queues", "q"}});
  auto b = open_sync_client({{"queues", "q"}});
  const auto q = queue_name::from("q");
  ASSERT_TRUE(a.send(q, text("x")));
  auto got = a.receive(q, 1, 0ms).value();
  ASSERT_EQ(got.size(), 1u);
  auto r = b.complete(got[0].receipt);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_receipt);
}

TEST(MemoryProvider, CloseWakesWaitersWithClosed) {
  auto client = open_sync_client({{"queues", "q"}});
  std::optional<qrt::result<std::vector<qrt::received_message>>> r;
  std::thread consumer([&] { r = client.receive(queue_name::from("q"), 1, 30s); });
  // Whether close lands while the receive is parked or before it starts, the receive must end
  // with errc::closed instead of waiting out its 30 s.
  client.close();
  consumer.join();
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error().code, errc::closed);
}

// ---- byte bounds: max_queue_bytes and max_memory_bytes ----
// A stored message counts its body and attributes plus qrt's bookkeeping per message.

namespace {

constexpr std::uint64_t overhead = qrt::memory::stored_message_overhead_bytes;

struct direct_provider {
  boost::asio::io_context io;
  qrt::provider_ptr provider;

  explicit direct_provider(qrt::memory::options o) {
    provider = qrt::memory::make_provider(o, io.get_executor()).value();
  }

  /// Starts a send; `out` is set when it returns.
  void start_send(const char* queue, std::string body,
                  std::optional<qrt::result<std::vector<qrt::send_outcome>>>& out,
                  std::chrono::milliseconds timeout = 30s) {
    std::vector<message> one{text(std::move(body))};
    boost::asio::co_spawn(
        io,
        [this, queue, one = std::move(one), &out, timeout]() mutable -> qrt::awaitable<void> {
          out = co_await provider->send(queue_name::from(queue), std::move(one), timeout);
        },
        boost::asio::detached);
  }

  /// Starts receiving one message of `queue` and completing it; `body` is set when it ran.
  void start_receive_and_complete(std::string queue, std::string& body) {
    boost::asio::co_spawn(
        io,
        [this, queue, &body]() -> qrt::awaitable<void> {
          auto got = (co_await provider->receive(queue_name::from(queue), 1, 0ms)).value();
          if (got.size() != 1) co_return;
          body = got[0].body;
          std::vector<qrt::settlement> s{qrt::settlement::complete(got[0].receipt)};
          auto done = co_await provider->settle(std::move(s));
          if (!done[0]) body = "complete failed: " + done[0].error().message;
        },
        boost::asio::detached);
  }
};

}  // namespace

TEST(MemoryProviderBytes, SenderWaitsForTheProviderBudgetAndProceedsWhenAConsumerCompletes) {
  qrt::memory::options o;
  o.max_memory_bytes = 2 * (60 + overhead) - 1;  // one 60-byte message, not two
  o.queues = {"a", "b"};
  direct_provider p(o);
  std::optional<qrt::result<std::vector<qrt::send_outcome>>> first, second;
  p.start_send("a", std::string(60, 'x'), first);
  p.io.run();
  ASSERT_TRUE(first && *first && (**first)[0]);
  p.io.restart();

  // Another queue shares the budget, which holds one of these messages: this send must wait.
  p.start_send("b", std::string(60, 'y'), second);
  p.io.poll();  // runs everything that can run: the send is left parked on its wait
  ASSERT_FALSE(second.has_value()) << "the send should be waiting for budget";
  EXPECT_EQ(qrt::memory::detail::memory_byte_usage(*p.provider).used, 60 + overhead);

  p.io.restart();
  std::string body;
  p.start_receive_and_complete("a", body);
  p.io.run();  // the completion frees 60 bytes, which wakes the parked send
  EXPECT_EQ(body, std::string(60, 'x'));
  ASSERT_TRUE(second && *second) << (second && !*second ? second->error().message : "");
  ASSERT_TRUE((**second)[0]) << (**second)[0].error().message;
  const auto usage = qrt::memory::detail::memory_byte_usage(*p.provider);
  EXPECT_EQ(usage.used, 60 + overhead);
  EXPECT_LE(usage.peak, o.max_memory_bytes);
}

TEST(MemoryProviderBytes, SenderWaitsForQueueBytesAndProceedsWhenAConsumerCompletes) {
  qrt::memory::options o;
  o.max_queue_bytes = 2 * (60 + overhead) - 1;  // one 60-byte message, not two
  o.queues = {"a"};
  direct_provider p(o);
  std::optional<qrt::result<std::vector<qrt::send_outcome>>> first, second;
  p.start_send("a", std::string(60, 'x'), first);
  p.io.run();
  ASSERT_TRUE(first && *first && (**first)[0]);
  p.io.restart();

  p.start_send("a", std::string(60, 'y'), second);
  p.io.poll();
  ASSERT_FALSE(second.has_value()) << "the send should be waiting for room in the queue";

  p.io.restart();
  std::string body;
  p.start_receive_and_complete("a", body);
  p.io.run();
  EXPECT_EQ(body, std::string(60, 'x'));
  ASSERT_TRUE(second && *second);
  ASSERT_TRUE((**second)[0]) << (**second)[0].error().message;
}

// A queue's own max_message_bytes holds on that queue, below the provider's limit; other queues
// keep the provider's.
TEST(MemoryProviderBytes, AQueuesOwnMessageSizeLimitIsEnforced) {
  auto client = open_sync_client({{"queues", "open"}});
  const auto small = queue_name::from("small");
  qrt::queue_options o;
  o.max_message_bytes = 100;
  ASSERT_TRUE(client.create_queue(small, o));
  EXPECT_TRUE(client.send(small, text(std::string(100, 'x'))));
  auto refused = client.send(small, text(std::string(101, 'x')));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::message_too_large);
  EXPECT_NE(refused.error().message.find("max_message_bytes of queue 'small' (100 bytes)"),
            std::string::npos)
      << refused.error().message;
  EXPECT_TRUE(client.send(queue_name::from("open"), text(std::string(101, 'x'))));
}

TEST(MemoryProviderBytes, SendFailsWithQueueFullNamingTheByteLimitAtItsDeadline) {
  const std::uint64_t limit = (60 + overhead) + (30 + overhead);  // a 60- and a 30-byte message
  for (const char* field : {"max_queue_bytes", "max_memory_bytes"}) {
    SCOPED_TRACE(field);
    auto client = open_sync_client({{field, std::to_string(limit)}, {"queues", "q"}});
    auto& provider = *client.async_client().underlying();
    const auto q = queue_name::from("q");
    ASSERT_TRUE(client.send(q, text(std::string(60, 'x'))));
    boost::asio::io_context io;
    std::optional<qrt::result<std::vector<qrt::send_outcome>>> r;
    std::vector<message> more{text(std::string(30, 'a')), text(std::string(30, 'b'))};
    boost::asio::co_spawn(
        io,
        [&]() -> qrt::awaitable<void> { r = co_await provider.send(q, std::move(more), 100ms); },
        boost::asio::detached);
    io.run();
    ASSERT_TRUE(r && *r);
    EXPECT_TRUE((**r)[0]) << "30 bytes still fit";
    ASSERT_FALSE((**r)[1]);
    EXPECT_EQ((**r)[1].error().code, errc::queue_full);
    EXPECT_NE((**r)[1].error().message.find(field), std::string::npos) << (**r)[1].error().message;
    EXPECT_NE((**r)[1].error().message.find(std::to_string(limit) + " bytes"), std::string::npos);

    // One message bigger than the limit could never fit: refused at once, naming the limit.
    auto huge = client.send(q, text(std::string(limit - overhead + 1, 'h')));
    ASSERT_FALSE(huge);
    EXPECT_EQ(huge.error().code, errc::message_too_large);
    EXPECT_NE(huge.error().message.find(field), std::string::npos);
  }
}

// A full queue's error names the limit that was hit, with its value: the queue's own max_size
// when it set one (not the provider's max_queue_size), else max_queue_size.
TEST(MemoryProvider, QueueFullNamesTheCountLimitInForce) {
  auto client = open_sync_client({{"max_queue_size", "1000"}});
  auto& provider = *client.async_client().underlying();
  qrt::queue_options own;
  own.max_size = 2;
  ASSERT_TRUE(client.create_queue(queue_name::from("own"), own));
  ASSERT_TRUE(client.create_queue(queue_name::from("default")));
  struct expectation {
    const char* queue;
    int fits;
    const char* limit;
  };
  for (const auto& [queue, fits, limit] :
       {expectation{"own", 2, "(2 messages, the queue's own max_size)"},
        expectation{"default", 1000, "(1000 messages, max_queue_size)"}}) {
    SCOPED_TRACE(queue);
    const auto q = queue_name::from(queue);
    std::vector<message> batch;
    for (int i = 0; i <= fits; ++i) batch.push_back(text(numbered("m", i)));
    boost::asio::io_context io;
    std::optional<qrt::result<std::vector<qrt::send_outcome>>> r;
    boost::asio::co_spawn(
        io,
        [&]() -> qrt::awaitable<void> { r = co_await provider.send(q, std::move(batch), 100ms); },
        boost::asio::detached);
    io.run();
    ASSERT_TRUE(r && *r);
    ASSERT_EQ((**r).size(), static_cast<std::size_t>(fits) + 1);
    EXPECT_TRUE((**r)[static_cast<std::size_t>(fits) - 1]);
    const auto& refused = (**r).back();
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, errc::queue_full);
    EXPECT_NE(refused.error().message.find(limit), std::string::npos) << refused.error().message;
  }
}

// Receives that park with waits of different lengths, on four threads, while sends arrive now
// and then: the provider's one wake timer is moved earlier and later all the time (by a handler
// it posts, not by the receive). Every receive ends, each message is received exactly once,
// and run() returns once all are done. A lost deadline would leave a receive parked for good:
// a watchdog stops the io_context after 60 s and the test fails.
TEST(MemoryProvider, ParkedReceivesWithMixedWaitsAllEndAndLoseNothing) {
  qrt::memory::options o;
  o.queues = {"q"};
  boost::asio::io_context io;
  auto provider = qrt::memory::make_provider(o, io.get_executor()).value();
  const auto q = queue_name::from("q");
  constexpr int receivers = 16, receives_each = 40, messages = 200;

  std::atomic<int> receives_ended{0}, failures{0};
  std::mutex seen_mutex;
  std::multiset<std::string> seen;
  for (int c = 0; c < receivers; ++c) {
    boost::asio::co_spawn(
        io,
        [&, c]() -> qrt::awaitable<void> {
          for (int i = 0; i < receives_each; ++i) {
            const auto wait = std::chrono::milliseconds(1 + (c * 7 + i * 3) % 9);
            auto got = co_await provider->receive(q, 3, wait);
            if (!got) {
              ++failures;
              co_return;
            }
            std::vector<qrt::settlement> done;
            for (auto& m : *got) {
              {
                std::lock_guard lock(seen_mutex);
                seen.insert(m.body);
              }
              done.push_back(qrt::settlement::complete(m.receipt));
            }
            auto settled = co_await provider->settle(std::move(done));
            for (auto& r : settled) failures += r ? 0 : 1;
            ++receives_ended;
          }
        },
        boost::asio::detached);
  }
  boost::asio::co_spawn(
      io,
      [&]() -> qrt::awaitable<void> {
        boost::asio::steady_timer pause(co_await boost::asio::this_coro::executor);
        for (int i = 0; i < messages; ++i) {
          std::vector<message> one{text(numbered("m", i))};
          auto r = co_await provider->send(q, std::move(one), 5s);
          if (!r || !(*r)[0]) ++failures;
          if (i % 10 == 9) {  // a pause now and then, so that receives park and time out
            pause.expires_after(2ms);
            co_await pause.async_wait(boost::asio::use_awaitable);
          }
        }
      },
      boost::asio::detached);

  std::promise<void> finished;
  std::atomic<bool> stopped_by_watchdog{false};
  std::thread watchdog([&, done = finished.get_future()] {
    if (done.wait_for(60s) == std::future_status::timeout) {
      stopped_by_watchdog = true;
      io.stop();
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { io.run(); });
  for (auto& t : threads) t.join();
  finished.set_value();
  watchdog.join();

  ASSERT_FALSE(stopped_by_watchdog) << "a parked receive was never woken";
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(receives_ended.load(), receivers * receives_each);
  // Whatever the receives did not take is still in the queue: nothing lost, nothing twice.
  std::vector<qrt::received_message> rest;
  for (;;) {
    std::optional<qrt::result<std::vector<qrt::received_message>>> got;
    io.restart();
    boost::asio::co_spawn(
        io, [&]() -> qrt::awaitable<void> { got = co_await provider->receive(q, 100, 0ms); },
        boost::asio::detached);
    io.run();
    ASSERT_TRUE(got && *got);
    if ((*got)->empty()) break;
    for (auto& m : **got) seen.insert(m.body);
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(messages));
  for (int i = 0; i < messages; ++i) EXPECT_EQ(seen.count(numbered("m", i)), 1u) << i;
}

TEST(MemoryProviderBytes, AccountedBytesNeverExceedTheBudgetUnderConcurrentProducers) {
  constexpr std::size_t body_bytes = 1000;
  constexpr int producers = 8, per_producer = 150, consumers = 4;
  constexpr int total = producers * per_producer;
  qrt::memory::options o;
  o.max_memory_bytes = 20 * (body_bytes + overhead) + 500;  // 20 messages, across both queues
  o.queues = {"a", "b"};
  boost::asio::io_context io;
  auto provider = qrt::memory::make_provider(o, io.get_executor()).value();

  std::atomic<int> sent{0}, failed{0}, received{0};
  std::mutex seen_mutex;
  std::set<std::string> seen;
  for (int p = 0; p < producers; ++p) {
    boost::asio::co_spawn(
        io,
        [&, p]() -> qrt::awaitable<void> {
          const auto q = queue_name::from(p % 2 ? "a" : "b");
          for (int i = 0; i < per_producer; ++i) {
            message m = text(std::to_string(p) + "-" + std::to_string(i));
            m.body.resize(body_bytes, '.');
            std::vector<message> one{std::move(m)};
            auto r = co_await provider->send(q, std::move(one), 30s);
            (r && (*r)[0]) ? ++sent : ++failed;
          }
        },
        boost::asio::detached);
  }
  for (int c = 0; c < consumers; ++c) {
    boost::asio::co_spawn(
        io,
        [&, c]() -> qrt::awaitable<void> {
          const auto q = queue_name::from(c % 2 ? "a" : "b");
          while (received.load() + failed.load() < total) {
            auto got = co_await provider->receive(q, 5, 50ms);
            if (!got) co_return;
            std::vector<qrt::settlement> done;
            for (auto& m : *got) {
              {
                std::lock_guard lock(seen_mutex);
                seen.insert(m.body.substr(0, m.body.find('.')));
              }
              done.push_back(qrt::settlement::complete(m.receipt));
            }
            received += static_cast<int>(got->size());
            co_await provider->settle(std::move(done));
          }
        },
        boost::asio::detached);
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { io.run(); });
  for (auto& t : threads) t.join();

  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(sent.load(), total);
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(total));
  const auto usage = qrt::memory::detail::memory_byte_usage(*provider);
  EXPECT_LE(usage.peak, o.max_memory_bytes);
  EXPECT_GT(usage.peak, o.max_memory_bytes - (body_bytes + overhead))
      << "producers should have hit the budget";
  EXPECT_EQ(usage.used, 0u);
}

// The dead-letter queue is bounded. When it is full nothing moves in and nothing is dropped: an
// explicit dead_letter fails with queue_full (the message stays locked to its receiver), and a
// message past max_delivery_count stays in its queue and is delivered again until there is room.
TEST(MemoryProvider, FullDeadLetterQueueRefusesNewDeadLettersAndDropsNothing) {
  auto client = open_sync_client({{"queues", "q"},
                                  {"max_dead_letter_queue_size", "2"},
                                  {"max_delivery_count", "1"},
                                  {"lock_duration", "60s"}});
  const auto q = queue_name::from("q");
  for (auto body : {"a", "b", "c", "d"}) ASSERT_TRUE(client.send(q, text(body)));
  auto got = client.receive(q, 3, 0ms).value();
  ASSERT_EQ(got.size(), 3u);
  ASSERT_TRUE(client.dead_letter(got[0].receipt, "bad", "a"));
  ASSERT_TRUE(client.dead_letter(got[1].receipt, "bad", "b"));
  auto refused = client.dead_letter(got[2].receipt, "bad", "c");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::queue_full);
  EXPECT_NE(refused.error().message.find("dead-letter queue"), std::string::npos);
  EXPECT_NE(refused.error().message.find("(2 messages)"), std::string::npos)
      << refused.error().message;
  auto s = client.stats(q).value();
  EXPECT_EQ(s.in_flight, 1);  // "c" is still locked to us
  EXPECT_EQ(s.dead_lettered, 2);

  // Past max_delivery_count with a full DLQ: "c" stays and comes back.
  ASSERT_TRUE(client.abandon(got[2].receipt));
  s = client.stats(q).value();
  EXPECT_EQ(s.active, 2);
  EXPECT_EQ(s.dead_lettered, 2);
  auto again = client.receive(q, 2, 0ms).value();
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].body, "c");
  EXPECT_EQ(again[0].delivery_count, 2u);

  // Room again: the next release moves it.
  auto dead = client.receive(q.dead_letter(), 1, 0ms).value();
  ASSERT_EQ(dead.size(), 1u);
  ASSERT_TRUE(client.complete(dead[0].receipt));
  ASSERT_TRUE(client.abandon(again[0].receipt));
  ASSERT_TRUE(client.abandon(again[1].receipt));  // "d": the DLQ is full again, it stays
  s = client.stats(q).value();
  EXPECT_EQ(s.dead_lettered, 2);
  EXPECT_EQ(s.active, 1);
  auto left = client.receive(q, 10, 0ms).value();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].body, "d");
}

// An expired message whose dead-letter queue is full is not dropped: it is still delivered, and
// moves to the DLQ once there is room.
TEST(MemoryProvider, ExpiredMessageWithAFullDeadLetterQueueIsKept) {
  auto client = open_sync_client({{"queues", "q"}, {"max_dead_letter_queue_size", "1"}});
  const auto q = queue_name::from("q");
  ASSERT_TRUE(client.send(q, text("fills the DLQ")));
  auto first = client.receive(q, 1, 0ms).value();
  ASSERT_EQ(first.size(), 1u);
  ASSERT_TRUE(client.dead_letter(first[0].receipt, "bad"));
  message ttl = text("expires");
  ttl.time_to_live = 1ms;
  ASSERT_TRUE(client.send(q, ttl));
  // Expiry is a matter of the clock: wait until the time to live has certainly passed.
  std::this_thread::sleep_for(20ms);
  auto kept = client.receive(q, 1, 0ms).value();
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].body, "expires");
  EXPECT_EQ(client.stats(q).value().expired, 0u);

  auto dead = client.receive(q.dead_letter(), 1, 0ms).value();
  ASSERT_EQ(dead.size(), 1u);
  ASSERT_TRUE(client.complete(dead[0].receipt));
  ASSERT_TRUE(client.abandon(kept[0].receipt));  // expired, and now there is room
  auto s = client.stats(q).value();
  EXPECT_EQ(s.expired, 1u);
  EXPECT_EQ(s.dead_lettered, 1);
  EXPECT_EQ(s.active, 0);
}

TEST(MemoryProvider, DeadLetterTextsAreCutAtACharacterBoundary) {
  auto client = open_sync_client({{"queues", "q"}});
  const auto q = queue_name::from("q");
  ASSERT_TRUE(client.send(q, text("poison")));
  auto got = client.receive(q, 1, 0ms).value();
  ASSERT_EQ(got.size(), 1u);
  std::string reason = "a";
  for (int i = 0; i < 1000; ++i) reason += "\xc3\xa9";  // U+00E9, two bytes
  ASSERT_TRUE(client.dead_letter(got[0].receipt, reason, std::string(100'000, 'd')));
  auto dead = client.receive(q.dead_letter(), 1, 0ms).value();
  ASSERT_EQ(dead.size(), 1u);
  ASSERT_TRUE(dead[0].dead_letter);
  EXPECT_EQ(dead[0].dead_letter->reason, reason.substr(0, 1023));  // not mid-character
  EXPECT_EQ(dead[0].dead_letter->description,
            std::string(qrt::memory::max_dead_letter_description_bytes, 'd'));
}

TEST(MemoryProvider, DeadLetterQueueSizeIsConfigurableAndMustBePositive) {
  auto zero = qrt::sync::queue_client::open(
      qrt::config{{"provider", "memory"}, {"max_dead_letter_queue_size", "0"}},
      qrt::builtin_providers());
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.error().message.find("max_dead_letter_queue_size"), std::string::npos);
  EXPECT_EQ(qrt::memory::options{}.max_dead_letter_queue_size, 100'000u);
}

// The settings of the queues made at start are checked as create_queue checks them: a provider
// that silently started without one of its queues would fail every send with queue_not_found.
TEST(MemoryProvider, QueuesMadeAtStartWithSettingsCreateQueueRefusesAreRefused) {
  qrt::runtime rt;
  auto o = qrt::memory::options::for_testing();
  o.queues = {"orders"};
  o.queue_defaults.lock_duration = 0ms;
  auto no_lock = qrt::memory::make_provider(o, rt.executor());
  ASSERT_FALSE(no_lock);
  EXPECT_EQ(no_lock.error().code, errc::configuration_error);
  EXPECT_NE(no_lock.error().message.find("lock_duration"), std::string::npos)
      << no_lock.error().message;

  o.queue_defaults.lock_duration = 30s;
  o.queue_defaults.default_time_to_live = -1ms;
  auto negative_ttl = qrt::memory::make_provider(o, rt.executor());
  ASSERT_FALSE(negative_ttl);
  EXPECT_EQ(negative_ttl.error().code, errc::configuration_error);
  EXPECT_NE(negative_ttl.error().message.find("default_time_to_live"), std::string::npos)
      << negative_ttl.error().message;

  // Without queues to make at start, the defaults are not used and not checked.
  o.queues.clear();
  EXPECT_TRUE(qrt::memory::make_provider(o, rt.executor()));
}

// ---- misuse: names, receipts, waits and calls that must be refused ----

// A default-constructed name names nothing: every call that takes one refuses it with
// invalid_argument before the provider sees it (docs/contract.md, C7), and nothing is created.
TEST(MemoryProvider, EmptyNamesAreRefusedAndCreateNothing) {
  auto client = open_sync_client({{"queues", "q"}});
  const queue_name none;
  const qrt::topic_name no_topic;
  auto expect_refused = [](const auto& r, const char* call) {
    ASSERT_FALSE(r) << call << " accepted an empty name";
    EXPECT_EQ(r.error().code, errc::invalid_argument) << call << ": " << r.error().to_string();
    EXPECT_NE(r.error().message.find("empty"), std::string::npos) << r.error().message;
  };
  expect_refused(client.create_queue(none), "create_queue");
  expect_refused(client.send(none, text("x")), "send");
  expect_refused(client.receive(none, 1, 0ms), "receive");
  expect_refused(client.peek(none, 1), "peek");
  expect_refused(client.stats(none), "stats");
  expect_refused(client.delete_queue(none), "delete_queue");
  expect_refused(client.create_topic(no_topic), "create_topic");
  expect_refused(client.publish(no_topic, text("x")), "publish");
  expect_refused(client.list_subscriptions(no_topic), "list_subscriptions");
  // Past the client, straight at the provider: refused there too.
  qrt::runtime rt;
  auto& provider = *client.async_client().underlying();
  expect_refused(rt.block_on(provider.create_queue(none, {})), "provider create_queue");
  expect_refused(rt.block_on(provider.create_topic(no_topic)), "provider create_topic");
  auto stats = rt.block_on(provider.stats(none));
  ASSERT_FALSE(stats);
  EXPECT_EQ(stats.error().code, errc::queue_not_found) << "an empty-named queue was created";
}

// A message whose session id is empty is refused alone; the others of its batch are stored.
// accept_session of an empty id is refused too.
TEST(MemoryProvider, EmptySessionIdIsRefused) {
  auto client = open_sync_client({{"queues", "s"}, {"requires_session", "true"}});
  const auto s = queue_name::from("s");
  std::vector<message> batch{text("grouped"), text("ungrouped")};
  batch[0].session = qrt::session_id::from("k");
  batch[1].session = qrt::session_id{};
  auto sent = client.send_batch(s, std::move(batch));
  ASSERT_TRUE(sent) << sent.error().to_string();
  ASSERT_EQ(sent->size(), 2u);
  EXPECT_TRUE((*sent)[0]);
  ASSERT_FALSE((*sent)[1]);
  EXPECT_EQ((*sent)[1].error().code, errc::invalid_argument);
  auto accepted = client.accept_session(s, qrt::session_id{}, 0ms);
  ASSERT_FALSE(accepted);
  EXPECT_EQ(accepted.error().code, errc::invalid_argument);
  EXPECT_EQ(client.stats(s).value().active, 1);
}

// A session handle the application keeps after its queue was deleted keeps the queue's state
// alive (its calls then fail with queue_not_found). It keeps none of the messages, its own
// session's or the others': the deletion frees them.
TEST(MemoryProvider, ASessionKeptAfterItsQueueWasDeletedHoldsNoneOfItsMessages) {
  auto client = open_sync_client({{"queues", "s"}, {"requires_session", "true"}});
  const auto s = queue_name::from("s");
  constexpr std::size_t count = 200;
  constexpr std::size_t size = 64 * 1024;
  for (std::size_t i = 0; i < count; ++i) {
    qrt::message m;
    m.body.assign(size, 'x');
    m.session = qrt::session_id::from(i % 2 == 0 ? "a" : "b");
    ASSERT_TRUE(client.send(s, m));
  }
  auto held = client.accept_session(s, qrt::session_id::from("a"), 1s);
  ASSERT_TRUE(held) << held.error().to_string();
  const std::size_t before = bytes_in_use();
  ASSERT_TRUE(client.delete_queue(s));
  const std::size_t after = bytes_in_use();
  EXPECT_GE(before > after ? before - after : 0, count * size * 3 / 4)
      << "the deleted queue's messages are still held: " << before << " bytes in use before the "
      << "deletion, " << after << " after";
  auto late = held->receive(1, 0ms);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, errc::queue_not_found) << late.error().to_string();
}

// A dead-letter queue is deleted with its queue, never on its own: delete_queue of one is
// refused and the queue keeps both its active and its dead-lettered messages.
TEST(MemoryProvider, DeletingADeadLetterQueueOnItsOwnIsRefusedAndDeletesNothing) {
  auto client = open_sync_client({{"queues", "q"}});
  const auto q = queue_name::from("q");
  ASSERT_TRUE(client.send(q, text("active")));
  ASSERT_TRUE(client.send(q, text("dead")));
  auto got = client.receive(q, 1, 0ms).value();
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(client.dead_letter(got[0].receipt, "test"));
  auto refused = client.delete_queue(q.dead_letter());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::invalid_argument);
  qrt::runtime rt;  // and straight at the provider
  auto direct = rt.block_on(client.async_client().underlying()->delete_queue(q.dead_letter()));
  ASSERT_FALSE(direct);
  EXPECT_EQ(direct.error().code, errc::invalid_argument);
  const auto s = client.stats(q).value();
  EXPECT_EQ(s.active, 1);
  EXPECT_EQ(s.dead_lettered, 1);
}

// stats of a dead-letter queue describe that queue: its own ready and locked messages, not its
// parent's figures (docs/contract.md, C18).
TEST(MemoryProvider, StatsOfADeadLetterQueueAreItsOwn) {
  auto client = open_sync_client({{"queues", "q"}, {"lock_duration", "60s"}});
  const auto q = queue_name::from("q");
  for (auto body : {"a", "b", "c", "d"}) ASSERT_TRUE(client.send(q, text(body)));
  auto got = client.receive(q, 3, 0ms).value();
  ASSERT_EQ(got.size(), 3u);
  ASSERT_TRUE(client.dead_letter(got[0].receipt, "bad"));
  ASSERT_TRUE(client.dead_letter(got[1].receipt, "bad"));
  auto dead = client.receive(q.dead_letter(), 1, 0ms).value();
  ASSERT_EQ(dead.size(), 1u);

  const auto parent = client.stats(q).value();
  EXPECT_EQ(parent.active, 1);     // "d"
  EXPECT_EQ(parent.in_flight, 1);  // "c"
  EXPECT_EQ(parent.dead_lettered, 2);
  const auto dlq = client.stats(q.dead_letter()).value();
  EXPECT_EQ(dlq.active, 1);
  EXPECT_EQ(dlq.in_flight, 1);
  EXPECT_EQ(dlq.scheduled, 0);
  EXPECT_EQ(dlq.dead_lettered, 0);
  EXPECT_EQ(dlq.expired, 0u);

  ASSERT_TRUE(client.complete(dead[0].receipt));
  EXPECT_EQ(client.stats(q.dead_letter()).value().in_flight, 0);
  EXPECT_EQ(client.stats(q.dead_letter()).value().active, 1);
}

// A session queue's dead-letter queue keeps its messages' session ids but has no session
// locks: accept_session of it is refused as a wrong argument (the queue exists), and its
// messages are read with receive (docs/contract.md, C20).
TEST(MemoryProvider, AcceptSessionOfADeadLetterQueueIsRefusedAndReceiveReadsIt) {
  auto client = open_sync_client({{"queues", "s"}, {"requires_session", "true"}});
  const auto s = queue_name::from("s");
  auto m = text("poison");
  m.session = qrt::session_id::from("k");
  ASSERT_TRUE(client.send(s, m));
  {
    auto held = client.accept_session(s, std::nullopt, 1s);
    ASSERT_TRUE(held) << held.error().to_string();
    auto got = held->receive(1, 0ms).value();
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(held->dead_letter(got[0].receipt, "bad"));
    ASSERT_TRUE(held->close());
  }
  for (const auto& which : {std::optional<qrt::session_id>{},
                            std::optional<qrt::session_id>{qrt::session_id::from("k")}}) {
    auto refused = client.accept_session(s.dead_letter(), which, 0ms);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, errc::invalid_argument) << refused.error().to_string();
    EXPECT_NE(refused.error().message.find("dead-letter queue"), std::string::npos)
        << refused.error().message;
  }
  auto dead = client.receive(s.dead_letter(), 1, 0ms).value();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].body, "poison");
  ASSERT_TRUE(dead[0].session);
  EXPECT_EQ(dead[0].session->str(), "k");

  auto missing = client.accept_session(queue_name::from("nowhere").dead_letter(), {}, 0ms);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::queue_not_found);
}

// A receipt carrying a lock generation the queue never handed out was made up, not issued:
// invalid_receipt, not receipt_expired (docs/contract.md, C15). The real receipt still works.
TEST(MemoryProvider, AReceiptWithALockNeverIssuedIsInvalid) {
  auto client = open_sync_client({{"queues", "q"}});
  const auto q = queue_name::from("q");
  ASSERT_TRUE(client.send(q, text("x")));
  auto got = client.receive(q, 1, 0ms).value();
  ASSERT_EQ(got.size(), 1u);
  auto forged = got[0].receipt;
  forged.lock += 1000;
  auto completed = client.complete(forged);
  ASSERT_FALSE(completed);
  EXPECT_EQ(completed.error().code, errc::invalid_receipt) << completed.error().to_string();
  auto renewed = client.renew_lock(forged);
  ASSERT_FALSE(renewed);
  EXPECT_EQ(renewed.error().code, errc::invalid_receipt) << renewed.error().to_string();
  EXPECT_TRUE(client.complete(got[0].receipt));
  EXPECT_EQ(client.stats(q).value().active, 0);
}

// A session's receive of no messages is refused, as a queue's is (docs/contract.md, C8).
TEST(MemoryProvider, SessionReceiveOfNoMessagesIsRefused) {
  auto client = open_sync_client({{"queues", "s"}, {"requires_session", "true"}});
  const auto s = queue_name::from("s");
  auto m = text("x");
  m.session = qrt::session_id::from("k");
  ASSERT_TRUE(client.send(s, m));
  auto session = client.accept_session(s, std::nullopt, 1s);
  ASSERT_TRUE(session) << session.error().to_string();
  auto none = session->receive(0, 0ms);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, errc::invalid_argument);
  auto one = session->receive(1, 0ms);
  ASSERT_TRUE(one);
  EXPECT_EQ(one->size(), 1u);
}

// Callers that reach the provider itself (decorators, processors) get the same refusal as the
// client's: a receive of no messages could only wait out its whole wait and return nothing.
TEST(MemoryProvider, AReceiveOfNoMessagesIsRefusedByTheProviderItself) {
  qrt::runtime rt;
  qrt::memory::options o = qrt::memory::options::for_testing();
  o.queues = {"q"};
  auto provider = qrt::memory::make_provider(o, rt.executor()).value();
  const auto q = queue_name::from("q");
  ASSERT_TRUE(rt.block_on(provider->send(q, {text("stays")}, 1s)));
  auto none = rt.block_on(provider->receive(q, 0, 10s));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, errc::invalid_argument);
  EXPECT_NE(none.error().message.find("max_messages"), std::string::npos) << none.error().message;

  const auto s = queue_name::from("s");
  qrt::queue_options sessions;
  sessions.requires_session = true;
  ASSERT_TRUE(rt.block_on(provider->create_queue(s, sessions)));
  auto m = text("x");
  m.session = qrt::session_id::from("k");
  ASSERT_TRUE(rt.block_on(provider->send(s, {m}, 1s)));
  auto session = rt.block_on(provider->accept_session(s, std::nullopt, 1s));
  ASSERT_TRUE(session) << session.error().to_string();
  auto from_session = rt.block_on((*session)->receive(0, 10s));
  ASSERT_FALSE(from_session);
  EXPECT_EQ(from_session.error().code, errc::invalid_argument);
  rt.block_on((*session)->close());

  auto got = rt.block_on(provider->receive(q, 10, 0ms));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->front().delivery_count, 1u) << "the refused receive took nothing";
  rt.block_on(provider->close());
}

// A session taken before close() fails with closed after it, for reads and writes alike.
TEST(MemoryProvider, ASessionTakenBeforeCloseFailsWithClosedAfterIt) {
  auto client = open_sync_client({{"queues", "s"}, {"requires_session", "true"}});
  const auto s = queue_name::from("s");
  auto m = text("x");
  m.session = qrt::session_id::from("k");
  ASSERT_TRUE(client.send(s, m));
  auto session = client.accept_session(s, std::nullopt, 1s);
  ASSERT_TRUE(session) << session.error().to_string();
  auto got = session->receive(1, 0ms).value();
  ASSERT_EQ(got.size(), 1u);
  client.close();
  auto expect_closed = [](const auto& r, const char* call) {
    ASSERT_FALSE(r) << call << " succeeded after close";
    EXPECT_EQ(r.error().code, errc::closed) << call << ": " << r.error().to_string();
  };
  expect_closed(session->get_state(), "get_state");
  expect_closed(session->set_state("late"), "set_state");
  expect_closed(session->renew_lock(), "renew_lock");
  expect_closed(session->complete(got[0].receipt), "complete");
}

// After close() every call fails with closed (docs/contract.md, C37), whether or not its queue
// ever existed: a closed provider no longer says what it holds.
TEST(MemoryProvider, AfterCloseCallsOnQueuesThatNeverExistedFailWithClosed) {
  qrt::runtime rt;
  auto provider =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  rt.block_on(provider->close());
  const auto never = queue_name::from("never");
  EXPECT_EQ(rt.block_on(provider->receive(never, 1, 0ms)).error().code, errc::closed);
  EXPECT_EQ(rt.block_on(provider->send(never, {text("x")}, 0ms)).error().code, errc::closed);
  EXPECT_EQ(rt.block_on(provider->stats(never)).error().code, errc::closed);
  auto accepted = rt.block_on(provider->accept_session(never, std::nullopt, 0ms));
  ASSERT_FALSE(accepted);
  EXPECT_EQ(accepted.error().code, errc::closed) << accepted.error().to_string();
}

// "Wait as long as it takes" spelt milliseconds::max() must wait, not wrap around into the past
// and return at once: a receive with it parks until a send wakes it, and a send with it into a
// full queue parks until room is made.
TEST(MemoryProvider, AWaitTooLongToAddWaitsUntilWoken) {
  auto o = qrt::memory::options::for_testing();
  o.max_queue_size = 1;
  direct_provider d(o);
  const auto q = queue_name::from("q");
  std::optional<qrt::result<void>> created;
  boost::asio::co_spawn(
      d.io, [&]() -> qrt::awaitable<void> { created = co_await d.provider->create_queue(q, {}); },
      boost::asio::detached);
  d.io.run();
  d.io.restart();
  ASSERT_TRUE(created && *created);

  std::optional<qrt::result<std::vector<qrt::received_message>>> got;
  boost::asio::co_spawn(
      d.io,
      [&]() -> qrt::awaitable<void> {
        got = co_await d.provider->receive(q, 1, qrt::milliseconds::max());
      },
      boost::asio::detached);
  d.io.poll();
  ASSERT_FALSE(got) << "a receive waiting milliseconds::max() returned at once";

  std::optional<qrt::result<std::vector<qrt::send_outcome>>> first, second;
  d.start_send("q", "first", first, qrt::milliseconds::max());
  d.io.poll();
  ASSERT_TRUE(got && *got) << (got && !*got ? got->error().to_string() : "not woken");
  ASSERT_EQ((*got)->size(), 1u);
  EXPECT_EQ((**got)[0].body, "first");
  ASSERT_TRUE(first && *first);
  // The queue holds "first" (locked, counting against max_queue_size 1): the next send waits.
  d.start_send("q", "second", second, qrt::milliseconds::max());
  d.io.poll();
  ASSERT_FALSE(second) << "a send waiting milliseconds::max() for room returned at once";
  std::vector<qrt::settlement> done{qrt::settlement::complete((**got)[0].receipt)};
  boost::asio::co_spawn(
      d.io, [&]() -> qrt::awaitable<void> { (void)co_await d.provider->settle(std::move(done)); },
      boost::asio::detached);
  d.io.poll();
  ASSERT_TRUE(second) << "the waiting send was not woken by the room a completion made";
  ASSERT_TRUE(*second) << second->error().to_string();
  ASSERT_EQ((*second)->size(), 1u);
  EXPECT_TRUE((**second)[0]);
}

// Accepting any session takes the free session whose oldest ready message came first, as a
// broker serves sessions in the order their messages arrived - not the one whose id sorts
// first, which would let low ids take every turn while others wait.
TEST(MemoryProvider, AcceptAnySessionTakesTheSessionWithTheOldestMessageFirst) {
  auto client = open_sync_client({{"queues", "s"}, {"requires_session", "true"}});
  const auto s = queue_name::from("s");
  auto send_to = [&](const char* session, const char* body) {
    send_to_session(client, s, session, body);
  };
  // Arrival order c, a, b; id order a, b, c.
  send_to("c", "c1");
  send_to("a", "a1");
  send_to("c", "c2");
  send_to("b", "b1");
  send_to("a", "a2");

  std::vector<std::string> taken;
  std::vector<qrt::sync::session> held;
  for (int i = 0; i < 3; ++i) {
    auto next = client.accept_session(s, std::nullopt, 0ms);
    ASSERT_TRUE(next) << next.error().to_string();
    taken.push_back(next->id().str());
    held.push_back(std::move(*next));
  }
  EXPECT_EQ(taken, (std::vector<std::string>{"c", "a", "b"}));
  for (auto& h : held) ASSERT_TRUE(h.close());
}

// A session released while it still has messages goes behind the sessions whose messages have
// waited longer: its holder cannot take it straight back ahead of them.
TEST(MemoryProvider, AReleasedSessionIsNotTakenAgainBeforeAnOlderOne) {
  auto client = open_sync_client({{"queues", "s"}, {"requires_session", "true"}});
  const auto s = queue_name::from("s");
  auto send_to = [&](const char* session, const char* body) {
    send_to_session(client, s, session, body);
  };
  send_to("a", "a1");
  send_to("b", "b1");
  send_to("a", "a2");
  send_to("c", "c1");

  {
    auto first = client.accept_session(s, std::nullopt, 0ms);
    ASSERT_TRUE(first) << first.error().to_string();
    ASSERT_EQ(first->id().str(), "a");
    auto got = first->receive(1, 0ms).value();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].body, "a1");
    ASSERT_TRUE(first->complete(got[0].receipt));
    ASSERT_TRUE(first->close());  // "a" still holds a2, which came after b1
  }
  std::vector<std::string> taken;
  std::vector<qrt::sync::session> held;
  for (int i = 0; i < 3; ++i) {
    auto next = client.accept_session(s, std::nullopt, 0ms);
    ASSERT_TRUE(next) << next.error().to_string();
    taken.push_back(next->id().str());
    held.push_back(std::move(*next));
  }
  EXPECT_EQ(taken, (std::vector<std::string>{"b", "a", "c"}));
  auto rest = held[1].receive(10, 0ms).value();
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].body, "a2");
  for (auto& h : held) ASSERT_TRUE(h.close());
}
