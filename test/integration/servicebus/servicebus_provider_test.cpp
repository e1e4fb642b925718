// The Service Bus provider against the test peer (whose fidelity the official SDK checks in
// servicebus_peer_sdk_check), and interop both ways with the official SDK itself.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <future>
#include <map>
#include <memory>
#include <qrt/instrumented_provider.hpp>
#include <qrt/runtime.hpp>
#include <qrt/servicebus.hpp>
#include <qrt/sync_client.hpp>
#include <thread>

#include "peer_process.hpp"

namespace {

using namespace std::chrono_literals;
using qrt::errc;
using qrt::queue_name;
using qrt::session_id;

std::unique_ptr<qrt::test::servicebus_peer> peer;
std::unique_ptr<qrt::sync::queue_client> shared_client;
qrt::sync::queue_client open_client(const std::string& connection_string,
                                    const std::string& operation_timeout = "3s");

// One peer and one client for the binary; each test uses its own queues.
class PeerEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    // SAS signatures are verified (key "y"), so a wrong signature from qrt would fail every test.
    peer = std::make_unique<qrt::test::servicebus_peer>(
        std::vector<std::string>{"--sas-key-name", "x", "--sas-key", "y"});
    shared_client =
        std::make_unique<qrt::sync::queue_client>(open_client(peer->connection_string()));
  }
  void TearDown() override {
    shared_client.reset();
    peer.reset();
  }
};
const auto* const environment = ::testing::AddGlobalTestEnvironment(new PeerEnvironment);

qrt::provider_registry registry() {
  qrt::provider_registry r;
  qrt::servicebus::register_provider(r);
  return r;
}

// Short timeouts: closing a client waits for the AMQP core's pending timers.
qrt::sync::queue_client open_client(const std::string& connection_string,
                                    const std::string& operation_timeout) {
  auto c = qrt::sync::queue_client::open({{"provider", "servicebus"},
                                          {"connection_string", connection_string},
                                          {"operation_timeout", operation_timeout},
                                          {"test_peer_admin", "true"}},
                                         registry(), qrt::client_options{.send_timeout = 3s});
  if (!c) throw qrt::exception(c.error());
  return std::move(*c);
}

std::atomic<int> counter{0};
queue_name fresh(const std::string& what) {
  return queue_name::from("sb-" + what + std::string("-") + std::to_string(getpid()) + "-" +
                          std::to_string(++counter));
}

class ServiceBusProvider : public ::testing::Test {
 protected:
  qrt::sync::queue_client& client = *shared_client;

  queue_name make_queue(const std::string& what, qrt::queue_options o = {}) {
    auto q = fresh(what);
    auto created = client.create_queue(q, o);
    if (!created) throw qrt::exception(created.error());
    return q;
  }
  std::vector<qrt::received_message> receive_n(const queue_name& q, std::size_t n) {
    std::vector<qrt::received_message> got;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
      auto r = client.receive(q, n - got.size(), 2s);
      if (!r) throw qrt::exception(r.error());
      for (auto& m : *r) got.push_back(std::move(m));
    }
    return got;
  }
};

TEST_F(ServiceBusProvider, SendReceiveCompleteKeepsBodyAndProperties) {
  const auto q = make_queue("basic");
  qrt::message m;
  m.body = std::string("\0\x01 binary \xff", 11);
  m.attributes = {{"region", "eu"}, {"kind", "order"}};
  m.correlation_id = "corr-1";
  m.content_type = "application/octet-stream";
  m.subject = "created";
  m.id = "msg-1";
  m.time_to_live = 60s;
  ASSERT_TRUE(client.send(q, m));
  auto got = receive_n(q, 1);
  ASSERT_EQ(got.size(), 1u);
  const auto& r = got[0];
  EXPECT_EQ(r.body, m.body);
  EXPECT_EQ(r.attributes, m.attributes);
  EXPECT_EQ(r.correlation_id, "corr-1");
  EXPECT_EQ(r.content_type, "application/octet-stream");
  EXPECT_EQ(r.subject, "created");
  EXPECT_EQ(r.id, "msg-1");
  EXPECT_EQ(r.delivery_count, 1u);
  EXPECT_GE(r.sequence_number, 1);
  EXPECT_LT(std::chrono::abs(r.enqueued_time - qrt::clock::now()), 30s);
  EXPECT_GT(r.locked_until, qrt::clock::now());
  ASSERT_TRUE(client.complete(r.receipt));
  auto again = client.receive(q, 1, 300ms);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->empty()) << "a completed message came back";
}

// A send of several messages is ONE Service Bus batch (message-format 0x80013700): the service
// takes or refuses it whole. Sent one transfer per message, the first would have been stored.
TEST_F(ServiceBusProvider, ABatchIsAcceptedOrRefusedAsAWhole) {
  qrt::queue_options o;
  o.requires_session = true;
  const auto q = make_queue("atomic-batch", o);
  std::vector<qrt::message> batch;
  batch.push_back({.body = "has a session", .session = session_id::from("s1")});
  batch.push_back({.body = "has none"});
  auto sent = client.send_batch(q, std::move(batch));
  ASSERT_TRUE(sent) << sent.error().to_string();
  ASSERT_EQ(sent->size(), 2u);
  for (const auto& outcome : *sent) {
    ASSERT_FALSE(outcome) << "a message of a refused batch reported success";
    EXPECT_EQ(outcome.error().provider_code, "amqp:not-allowed") << outcome.error().to_string();
  }
  auto stats = client.stats(q);
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->active, 0) << "part of a refused batch was stored";

  std::vector<qrt::message> good;
  for (int i = 0; i < 5; ++i) {
    good.push_back({.body = "m" + std::to_string(i), .session = session_id::from("s1")});
  }
  sent = client.send_batch(q, std::move(good));
  ASSERT_TRUE(sent) << sent.error().to_string();
  for (const auto& outcome : *sent) ASSERT_TRUE(outcome) << outcome.error().to_string();
  auto s1 = client.accept_session(q, session_id::from("s1"), 5s);
  ASSERT_TRUE(s1) << s1.error().to_string();
  std::vector<std::string> bodies;
  while (bodies.size() < 5) {
    auto got = s1->receive(5 - bodies.size(), 2s);
    ASSERT_TRUE(got) << got.error().to_string();
    ASSERT_FALSE(got->empty()) << "only " << bodies.size() << " of 5 arrived";
    for (auto& m : *got) {
      bodies.push_back(m.body);
      ASSERT_TRUE(s1->complete(m.receipt));
    }
  }
  EXPECT_EQ(bodies, (std::vector<std::string>{"m0", "m1", "m2", "m3", "m4"}));
}

// Messages that do not fit one batch under the link's 256 KiB go as several batches, in order;
// none is refused for size.
TEST_F(ServiceBusProvider, BatchesLargerThanTheLinkLimitArePackedIntoSeveral) {
  const auto q = make_queue("packed");
  std::vector<qrt::message> big;
  for (int i = 0; i < 7; ++i) {
    big.push_back({.body = std::string(100 * 1024, static_cast<char>('a' + i))});
  }
  auto sent = client.send_batch(q, big);
  ASSERT_TRUE(sent) << sent.error().to_string();
  ASSERT_EQ(sent->size(), 7u);
  for (const auto& outcome : *sent) ASSERT_TRUE(outcome) << outcome.error().to_string();
  auto got = receive_n(q, 7);
  ASSERT_EQ(got.size(), 7u);
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].body, big[i].body) << "message " << i << " out of order or damaged";
    ASSERT_TRUE(client.complete(got[i].receipt));
  }
}

TEST_F(ServiceBusProvider, AbandonCountsAndMaxDeliveryCountDeadLetters) {
  qrt::queue_options o;
  o.max_delivery_count = 2;
  const auto q = make_queue("abandon", o);
  ASSERT_TRUE(client.send(q, qrt::message{.body = "flaky"}));
  auto first = receive_n(q, 1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].delivery_count, 1u);
  ASSERT_TRUE(client.abandon(first[0].receipt));
  auto second = receive_n(q, 1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].delivery_count, 2u);
  EXPECT_EQ(second[0].sequence_number, first[0].sequence_number);
  ASSERT_TRUE(client.abandon(second[0].receipt));
  auto dead = receive_n(q.dead_letter(), 1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].body, "flaky");
  ASSERT_TRUE(dead[0].dead_letter.has_value());
  EXPECT_EQ(dead[0].dead_letter->reason, "MaxDeliveryCountExceeded");
  ASSERT_TRUE(client.complete(dead[0].receipt));
}

TEST_F(ServiceBusProvider, DeadLetterKeepsReasonAndDescription) {
  const auto q = make_queue("dlq");
  ASSERT_TRUE(client.send(q, qrt::message{.body = "poison", .attributes = {{"kept", "yes"}}}));
  auto got = receive_n(q, 1);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(client.dead_letter(got[0].receipt, "Validation", "field x missing"));
  auto dead = receive_n(q.dead_letter(), 1);
  ASSERT_EQ(dead.size(), 1u);
  ASSERT_TRUE(dead[0].dead_letter.has_value());
  EXPECT_EQ(dead[0].dead_letter->reason, "Validation");
  EXPECT_EQ(dead[0].dead_letter->description, "field x missing");
  EXPECT_EQ(dead[0].attributes, (std::map<std::string, std::string>{{"kept", "yes"}}));
  ASSERT_TRUE(client.complete(dead[0].receipt));
  // Settlement reaches the service asynchronously: poll its counts (bounded).
  qrt::queue_stats stats;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  do {
    auto s = client.stats(q);
    ASSERT_TRUE(s) << s.error().to_string();
    stats = *s;
  } while ((stats.active != 0 || stats.dead_lettered != 0) &&
           std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(stats.active, 0);
  EXPECT_EQ(stats.dead_lettered, 0);
}

TEST_F(ServiceBusProvider, PeekReadsWithoutLocking) {
  const auto q = make_queue("peek");
  auto empty = client.peek(q, 5);
  ASSERT_TRUE(empty) << empty.error().to_string();
  EXPECT_TRUE(empty->empty());
  ASSERT_TRUE(client.send_batch(
      q, {qrt::message{.body = "a"}, qrt::message{.body = "b"}, qrt::message{.body = "c"}}));
  auto peeked = client.peek(q, 2);
  ASSERT_TRUE(peeked);
  ASSERT_EQ(peeked->size(), 2u);
  EXPECT_EQ((*peeked)[0].body, "a");
  EXPECT_EQ((*peeked)[1].body, "b");
  EXPECT_FALSE((*peeked)[0].receipt.valid());
  EXPECT_EQ((*peeked)[0].delivery_count, 0u) << "a message never received peeks as delivered";
  auto from_c = client.peek(q, 5, (*peeked)[1].sequence_number + 1);
  ASSERT_TRUE(from_c);
  ASSERT_EQ(from_c->size(), 1u);
  EXPECT_EQ((*from_c)[0].body, "c");
  auto got = receive_n(q, 3);
  ASSERT_EQ(got.size(), 3u);
  ASSERT_TRUE(client.abandon(got[0].receipt));  // "a" delivered once, back in the queue
  for (std::size_t i = 1; i < got.size(); ++i) {
    EXPECT_EQ(got[i].delivery_count, 1u) << "peek counted as a delivery";
    ASSERT_TRUE(client.complete(got[i].receipt));
  }
  EXPECT_EQ(got[0].delivery_count, 1u) << "peek counted as a delivery";
  auto after_one = client.peek(q, 1);
  ASSERT_TRUE(after_one) << after_one.error().to_string();
  ASSERT_EQ(after_one->size(), 1u);
  EXPECT_EQ((*after_one)[0].delivery_count, 1u) << "a peek shows the deliveries so far";
  auto again = receive_n(q, 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].delivery_count, 2u);
  ASSERT_TRUE(client.complete(again[0].receipt));
}

TEST_F(ServiceBusProvider, RenewLockExtendsAndAnExpiredLockFailsTheSettle) {
  qrt::queue_options o;
  o.lock_duration = 3s;
  const auto q = make_queue("renew", o);
  ASSERT_TRUE(client.send(q, qrt::message{.body = "slow"}));
  auto got = receive_n(q, 1);
  ASSERT_EQ(got.size(), 1u);
  const auto before = got[0].locked_until;
  // While the lock holds nobody else gets the message; this wait also lets part of the lock run
  // out, so that a renewal has something to extend.
  auto held = client.receive(q, 1, 1500ms);
  ASSERT_TRUE(held) << held.error().to_string();
  EXPECT_TRUE(held->empty()) << "a locked message was delivered again";
  auto renewed = client.renew_lock(got[0].receipt);
  ASSERT_TRUE(renewed) << renewed.error().to_string();
  EXPECT_GE(*renewed, before + 1s) << "the renewal did not move the lock's end";
  // The renewal reached the service: past the first lock's end the message is still held.
  auto still_held = client.receive(q, 1, 2s);
  ASSERT_TRUE(still_held) << still_held.error().to_string();
  EXPECT_GT(qrt::clock::now(), before) << "the wait ended before the first lock did";
  EXPECT_TRUE(still_held->empty()) << "the message came back at the end of the unrenewed lock";
  // Let the renewed lock lapse: the message comes back with a higher delivery count, and the
  // stale receipt cannot settle it.
  auto again = receive_n(q, 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].delivery_count, 2u);
  // The service itself refuses the settlement (rcv-settle-mode second): its condition and
  // description reach the caller.
  auto stale = client.complete(got[0].receipt);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, errc::receipt_expired);
  EXPECT_EQ(stale.error().provider_code, "com.microsoft:message-lock-lost");
  EXPECT_NE(stale.error().message.find("The lock supplied is invalid"), std::string::npos)
      << stale.error().to_string();
  ASSERT_TRUE(client.complete(again[0].receipt));
  // A confirmed settlement really took effect at the service: nothing comes back.
  auto after = client.receive(q, 1, 300ms);
  ASSERT_TRUE(after);
  EXPECT_TRUE(after->empty());
}

TEST_F(ServiceBusProvider, ScheduledMessageArrivesAtItsTime) {
  const auto q = make_queue("schedule");
  const auto at = qrt::clock::now() + 1200ms;
  ASSERT_TRUE(client.send(q, qrt::message{.body = "later", .scheduled_enqueue_time = at}));
  auto early = client.receive(q, 1, 200ms);
  ASSERT_TRUE(early);
  EXPECT_TRUE(early->empty()) << "delivered before its time";
  auto got = receive_n(q, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_GE(qrt::clock::now(), at - 50ms);
  ASSERT_TRUE(client.complete(got[0].receipt));
}

// receive returns what has arrived once the first message is there: collect up to n.
qrt::result<std::vector<qrt::received_message>> receive_from(qrt::sync::session& s, std::size_t n) {
  std::vector<qrt::received_message> got;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
    auto r = s.receive(n - got.size(), 2s);
    if (!r) return r.error();
    for (auto& m : *r) got.push_back(std::move(m));
  }
  return got;
}

// Called directly, not through the client that refuses it first, the provider refuses a peek
// from a negative sequence number (it read one as its first sequence number and peeked the head
// of the queue) and one of no messages, before asking the service (docs/contract.md, C11).
TEST_F(ServiceBusProvider, PeekFromANegativeSequenceOrOfNoMessagesIsRefused) {
  const auto q = make_queue("peek-refused");
  ASSERT_TRUE(client.send(q, qrt::message{.body = "stays"}));
  qrt::runtime rt;
  auto p = registry().make({{"provider", "servicebus"},
                            {"connection_string", peer->connection_string()},
                            {"operation_timeout", "3s"}},
                           rt.executor());
  ASSERT_TRUE(p) << p.error().to_string();

  auto negative = rt.block_on((*p)->peek(q, 10, -1));
  ASSERT_FALSE(negative) << "peeked " << negative->size() << " messages from sequence -1";
  EXPECT_EQ(negative.error().code, errc::invalid_argument);
  EXPECT_NE(negative.error().message.find("from_sequence"), std::string::npos)
      << negative.error().message;
  EXPECT_NE(negative.error().message.find("-1"), std::string::npos) << negative.error().message;
  auto none = rt.block_on((*p)->peek(q, 0, 0));
  ASSERT_FALSE(none) << "a peek of no messages answered with " << none->size() << " messages";
  EXPECT_EQ(none.error().code, errc::invalid_argument);

  auto all = rt.block_on((*p)->peek(q, 10, 0));
  ASSERT_TRUE(all) << all.error().to_string();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].body, "stays");
  rt.block_on((*p)->close());
}

// Each session is read over a link of its own, and a receipt names its link: the metrics layer
// must tie every link of a queue to that queue's series. Before, it remembered only the link it
// received from last, so completing the first session's message after the second session's
// receive counted it under queue="unknown": the queue's in-flight gauge kept it for ever and
// "unknown" went negative.
TEST_F(ServiceBusProvider, MetricsSettleEverySessionsMessagesAgainstItsQueue) {
  qrt::metrics::registry exposition;
  qrt::metrics::runtime_metrics metrics(exposition);
  const auto real = registry();
  qrt::provider_registry instrumented;
  instrumented.add("servicebus",
                   [&](const qrt::config& cfg,
                       boost::asio::any_io_executor executor) -> qrt::result<qrt::provider_ptr> {
                     auto inner = real.make(cfg, std::move(executor));
                     if (!inner) return inner.error();
                     return qrt::metrics::instrument(std::move(*inner), metrics);
                   });
  auto opened =
      qrt::sync::queue_client::open({{"provider", "servicebus"},
                                     {"connection_string", peer->connection_string()},
                                     {"operation_timeout", "3s"},
                                     {"test_peer_admin", "true"}},
                                    instrumented, qrt::client_options{.send_timeout = 3s});
  ASSERT_TRUE(opened) << opened.error().to_string();
  auto& measured = *opened;
  qrt::queue_options o;
  o.requires_session = true;
  const auto q = fresh("metrics-sessions");
  ASSERT_TRUE(measured.create_queue(q, o));
  for (const char* sid : {"alpha", "beta"}) {
    ASSERT_TRUE(measured.send(q, qrt::message{.body = sid, .session = session_id::from(sid)}));
  }
  auto alpha = measured.accept_session(q, session_id::from("alpha"), 5s);
  ASSERT_TRUE(alpha) << alpha.error().to_string();
  auto beta = measured.accept_session(q, session_id::from("beta"), 5s);
  ASSERT_TRUE(beta) << beta.error().to_string();
  auto a = receive_from(*alpha, 1);
  ASSERT_TRUE(a && a->size() == 1u);
  auto b = receive_from(*beta, 1);
  ASSERT_TRUE(b && b->size() == 1u);
  ASSERT_NE((*a)[0].receipt.queue, (*b)[0].receipt.queue) << "the sessions share a link here";
  auto& in_flight = metrics.in_flight.with({q.to_string(), "servicebus"});
  EXPECT_DOUBLE_EQ(in_flight.value(), 2.0);

  ASSERT_TRUE(alpha->complete((*a)[0].receipt));
  ASSERT_TRUE(beta->complete((*b)[0].receipt));
  EXPECT_DOUBLE_EQ(in_flight.value(), 0.0);
  EXPECT_DOUBLE_EQ(metrics.in_flight.with({"unknown", "servicebus"}).value(), 0.0);
  EXPECT_EQ(metrics.operations.with({"unknown", "servicebus", "complete"}).value(), 0u);
  ASSERT_TRUE(alpha->close());
  ASSERT_TRUE(beta->close());
}

TEST_F(ServiceBusProvider, SessionsNamedNextStateAndLockRenewal) {
  qrt::queue_options o;
  o.requires_session = true;
  const auto q = make_queue("sessions", o);
  auto no_session = client.send(q, qrt::message{.body = "x"});
  ASSERT_FALSE(no_session) << "a session queue took a message without a session id";
  // The service's rejected{error} reaches the caller: condition and description.
  EXPECT_EQ(no_session.error().provider_code, "amqp:not-allowed") << no_session.error().to_string();
  EXPECT_EQ(no_session.error().code, errc::invalid_argument) << no_session.error().to_string();
  EXPECT_NE(no_session.error().message.find("SessionId was not set"), std::string::npos)
      << no_session.error().to_string();
  for (auto [body, sid] :
       {std::pair{"a1", "alpha"}, {"b1", "beta"}, {"a2", "alpha"}, {"b2", "beta"}}) {
    ASSERT_TRUE(client.send(q, qrt::message{.body = body, .session = session_id::from(sid)}));
  }
  auto alpha = client.accept_session(q, session_id::from("alpha"), 5s);
  ASSERT_TRUE(alpha) << alpha.error().to_string();
  EXPECT_EQ(alpha->id().str(), "alpha");
  EXPECT_GT(alpha->locked_until(), qrt::clock::now());

  // Refused attach (no source, then a detach with the condition): the service's error, not a
  // success with a missing filter echo.
  auto held = client.accept_session(q, session_id::from("alpha"), 1s);
  ASSERT_FALSE(held);
  EXPECT_EQ(held.error().code, errc::session_locked);
  EXPECT_EQ(held.error().provider_code, "com.microsoft:session-cannot-be-locked");
  EXPECT_NE(held.error().message.find("cannot be accepted"), std::string::npos)
      << held.error().to_string();

  auto next = client.accept_session(q, std::nullopt, 5s);
  ASSERT_TRUE(next) << next.error().to_string();
  EXPECT_EQ(next->id().str(), "beta");

  auto a = receive_from(*alpha, 2);
  ASSERT_TRUE(a);
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].body, "a1");
  EXPECT_EQ((*a)[1].body, "a2");
  EXPECT_EQ((*a)[0].session->str(), "alpha");
  for (auto& m : *a) ASSERT_TRUE(alpha->complete(m.receipt));

  auto state = alpha->get_state();
  ASSERT_TRUE(state) << state.error().to_string();
  EXPECT_EQ(*state, "");
  ASSERT_TRUE(alpha->set_state("step-2"));
  EXPECT_EQ(alpha->get_state().value(), "step-2");
  const auto before = alpha->locked_until();
  // The session is empty now: this receive waits out its whole wait, so that a renewal has
  // something to extend.
  auto nothing = alpha->receive(1, 500ms);
  ASSERT_TRUE(nothing) << nothing.error().to_string();
  EXPECT_TRUE(nothing->empty());
  auto renewed = alpha->renew_lock();
  ASSERT_TRUE(renewed) << renewed.error().to_string();
  EXPECT_GE(*renewed, before + 400ms) << "the renewal did not move the session lock's end";
  EXPECT_EQ(alpha->locked_until(), *renewed);
  ASSERT_TRUE(alpha->close());

  auto b = receive_from(*next, 2);
  ASSERT_TRUE(b);
  ASSERT_EQ(b->size(), 2u);
  EXPECT_EQ((*b)[0].body, "b1");
  for (auto& m : *b) ASSERT_TRUE(next->complete(m.receipt));
  ASSERT_TRUE(next->close());

  auto none = client.accept_session(q, std::nullopt, 300ms);
  ASSERT_FALSE(none) << "a session was handed out while none has messages";
  EXPECT_EQ(none.error().code, errc::timeout);

  auto again = client.accept_session(q, session_id::from("alpha"), 2s);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->get_state().value(), "step-2")
      << "session state lost when the session was released";
  ASSERT_TRUE(again->close());
}

TEST_F(ServiceBusProvider, WrongKeyIsAPermissionErrorThatDoesNotEchoTheKey) {
  auto bad = open_client(peer->connection_string("not-the-key"));
  auto sent = bad.send(fresh("auth"), qrt::message{.body = "x"});
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code, errc::permission);
  EXPECT_EQ(sent.error().to_string().find("not-the-key"), std::string::npos);
}

TEST(ServiceBusProviderStrict, MissingQueueIsQueueNotFound) {
  qrt::test::servicebus_peer strict({"--require-created"});
  auto client = open_client(strict.connection_string());
  auto sent = client.send(queue_name::from("nowhere"), qrt::message{.body = "x"});
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code, errc::queue_not_found);
  EXPECT_NE(sent.error().message.find("nowhere"), std::string::npos) << sent.error().to_string();
  auto got = client.receive(queue_name::from("nowhere"), 1, 200ms);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, errc::queue_not_found);
  EXPECT_NE(got.error().message.find("nowhere"), std::string::npos) << got.error().to_string();
  auto session = client.accept_session(queue_name::from("nowhere"), std::nullopt, 1s);
  ASSERT_FALSE(session);
  EXPECT_EQ(session.error().code, errc::queue_not_found) << session.error().to_string();
  EXPECT_NE(session.error().message.find("nowhere"), std::string::npos)
      << session.error().to_string();
}

TEST(ServiceBusProviderUnconfirmed, SettlementWaitIsBoundedAndALostConnectionFailsIt) {
  // A peer that never answers outcomes on "held": the service's confirmation does not come.
  auto held = std::make_unique<qrt::test::servicebus_peer>(
      std::vector<std::string>{"--hold-settlements", "held"});
  auto client = open_client(held->connection_string(), "1s");
  const auto q = queue_name::from("held");
  ASSERT_TRUE(client.send(q, qrt::message{.body = "one"}));
  ASSERT_TRUE(client.send(q, qrt::message{.body = "two"}));
  std::vector<qrt::received_message> got;
  for (int i = 0; i < 10 && got.size() < 2; ++i) {
    for (auto& m : client.receive(q, 2 - got.size(), 2s).value()) got.push_back(std::move(m));
  }
  ASSERT_EQ(got.size(), 2u);
  // Bounded by operation_timeout (1 s here, per attempt of the client's retry policy), never a
  // silent success; a retry waits for the same answer. The outcome was sent, so the service may
  // have applied it: unconfirmed, the timeout named as the reason.
  auto unconfirmed = client.complete(got[0].receipt);
  ASSERT_FALSE(unconfirmed) << "a settlement the service never confirmed reported success";
  EXPECT_EQ(unconfirmed.error().code, errc::unconfirmed) << unconfirmed.error().to_string();
  EXPECT_NE(unconfirmed.error().message.find("did not confirm"), std::string::npos)
      << unconfirmed.error().to_string();
  // The connection dies while a settlement waits (or before it goes out): it fails, it does not
  // hang and does not report success. Sent, its outcome is unknown (unconfirmed, also after a
  // retry finds the receipt gone with the link); not sent, the loss or the dead receipt says so.
  auto pending = std::async(std::launch::async, [&] { return client.complete(got[1].receipt); });
  held.reset();
  auto lost = pending.get();
  ASSERT_FALSE(lost) << "a settlement whose connection died reported success";
  EXPECT_TRUE(lost.error().code == errc::unconfirmed ||
              lost.error().code == errc::connection_failed ||
              lost.error().code == errc::receipt_expired)
      << lost.error().to_string();
}

// A $management request whose answer never comes because the connection or the request link
// went: one that changes state (renew the lock, set the session's state) may have been applied
// and says so, naming the queue and the operation; a read (peek, get the session's state)
// changed nothing and fails transient with the loss as the reason (docs/servicebus.md,
// "$management requests cut off"). No retries here, so each error is the first attempt's.
qrt::sync::queue_client open_client_without_retries(const qrt::test::servicebus_peer& p,
                                                    const std::string& key) {
  auto c = qrt::sync::queue_client::open({{"provider", "servicebus"},
                                          {"connection_string", p.connection_string(key)},
                                          {"operation_timeout", "3s"}},
                                         registry(),
                                         qrt::client_options{.send_timeout = 3s, .retry = {}});
  if (!c) throw qrt::exception(c.error());
  return std::move(*c);
}

void expect_unconfirmed_request(const qrt::error& e, const std::string& queue,
                                const std::string& operation, const std::string& secret) {
  EXPECT_TRUE(e.is_transient()) << e.to_string();
  EXPECT_EQ(e.code, errc::unconfirmed) << "reads as not done: " << e.to_string();
  EXPECT_NE(e.message.find("may or may not have been applied"), std::string::npos) << e.to_string();
  EXPECT_NE(e.message.find("'" + queue + "/$management'"), std::string::npos) << e.to_string();
  EXPECT_NE(e.message.find(operation), std::string::npos) << e.to_string();
  EXPECT_EQ(e.to_string().find(secret), std::string::npos) << "the SAS key leaked";
  EXPECT_EQ(e.to_string().find("sig="), std::string::npos) << "a SAS token leaked";
}

void expect_failed_read(const qrt::error& e, const std::string& queue, const std::string& operation,
                        const std::string& secret) {
  EXPECT_TRUE(e.is_transient()) << e.to_string();
  EXPECT_NE(e.code, errc::unconfirmed) << "a read was called maybe applied: " << e.to_string();
  EXPECT_EQ(e.message.find("may or may not"), std::string::npos)
      << "a read was called maybe applied: " << e.to_string();
  EXPECT_NE(e.message.find("'" + queue + "/$management'"), std::string::npos) << e.to_string();
  EXPECT_NE(e.message.find(operation), std::string::npos) << e.to_string();
  EXPECT_EQ(e.to_string().find(secret), std::string::npos) << "the SAS key leaked";
  EXPECT_EQ(e.to_string().find("sig="), std::string::npos) << "a SAS token leaked";
}

/// `hook` is the peer's option that cuts every $management request on "cut" and "cut-sessions"
/// off after the peer took it; `cause` a part of the reason the errors must give.
void management_requests_cut_off(const std::string& hook, const std::string& cause) {
  const std::string secret = "k3y-that-must-not-leak";
  qrt::test::servicebus_peer cutting({"--sas-key-name", "x", "--sas-key", secret, hook,
                                      "cut,cut-sessions", "--session-queues", "cut-sessions"});
  auto client = open_client_without_retries(cutting, secret);
  const auto q = queue_name::from("cut");
  ASSERT_TRUE(client.send(q, qrt::message{.body = "locked"}));
  std::vector<qrt::received_message> got;
  for (int i = 0; i < 10 && got.empty(); ++i) got = client.receive(q, 1, 2s).value();
  ASSERT_EQ(got.size(), 1u);

  auto renewed = client.renew_lock(got[0].receipt);
  ASSERT_FALSE(renewed) << "a renewal the service never answered reported success";
  expect_unconfirmed_request(renewed.error(), "cut", "com.microsoft:renew-lock", secret);
  EXPECT_NE(renewed.error().message.find(cause), std::string::npos) << renewed.error().to_string();

  auto peeked = client.peek(q, 1);
  ASSERT_FALSE(peeked) << "a peek the service never answered reported success";
  expect_failed_read(peeked.error(), "cut", "com.microsoft:peek-message", secret);
  EXPECT_NE(peeked.error().message.find(cause), std::string::npos) << peeked.error().to_string();

  const auto sq = queue_name::from("cut-sessions");
  ASSERT_TRUE(client.send(sq, qrt::message{.body = "s", .session = session_id::from("s1")}));
  auto session = client.accept_session(sq, session_id::from("s1"), 5s);
  ASSERT_TRUE(session) << session.error().to_string();
  auto set = session->set_state("step-2");
  ASSERT_FALSE(set) << "a state the service never confirmed was reported set";
  expect_unconfirmed_request(set.error(), "cut-sessions", "com.microsoft:set-session-state",
                             secret);
  auto state = session->get_state();
  ASSERT_FALSE(state) << "a state read the service never answered reported success";
  expect_failed_read(state.error(), "cut-sessions", "com.microsoft:get-session-state", secret);
}

TEST(ServiceBusProviderManagementCutOff, ByALostConnectionAStateChangeIsUnconfirmedAReadIsNot) {
  management_requests_cut_off("--drop-on-management", "the link died with its connection");
}

TEST(ServiceBusProviderManagementCutOff, ByADetachedLinkAStateChangeIsUnconfirmedAReadIsNot) {
  management_requests_cut_off("--detach-management", "the peer detached the $management link");
}

// The service took a send, a settlement or a lock renewal and then detached the link with a
// condition of its own (com.microsoft:entity-not-found) instead of answering. The condition is
// why the link ended, not a verdict on what went over it: each call fails with unconfirmed
// (transient), the condition kept as its provider code, never as the permanent queue_not_found
// the condition means elsewhere. Here the message was stored (and the complete applied): "may
// have taken effect" is what happened.
TEST(ServiceBusProviderCutOff, ACutOffWithAServiceConditionStaysUnconfirmed) {
  const std::string condition = "com.microsoft:entity-not-found";
  qrt::test::servicebus_peer cutting({"--detach-on-send", "cut-send", "--detach-on-settlement",
                                      "cut-settle", "--detach-management", "cut-settle",
                                      "--cut-condition", condition});
  auto client = open_client_without_retries(cutting, "y");
  const auto expect_unconfirmed = [&](const qrt::error& e, const std::string& says) {
    EXPECT_EQ(e.code, errc::unconfirmed) << e.to_string();
    EXPECT_TRUE(e.is_transient()) << e.to_string();
    EXPECT_EQ(e.provider_code, condition) << e.to_string();
    EXPECT_NE(e.message.find(says), std::string::npos) << e.to_string();
  };

  const auto sq = queue_name::from("cut-send");
  auto sent = client.send(sq, qrt::message{.body = "maybe"});
  ASSERT_FALSE(sent) << "a send the service never settled reported success";
  expect_unconfirmed(sent.error(), "may or may not be stored");
  std::vector<qrt::received_message> stored;
  for (int i = 0; i < 10 && stored.empty(); ++i) stored = client.receive(sq, 1, 2s).value();
  ASSERT_EQ(stored.size(), 1u) << "the peer stored the message before it cut the send off";
  EXPECT_EQ(stored[0].body, "maybe");

  const auto q = queue_name::from("cut-settle");
  ASSERT_TRUE(client.send(q, qrt::message{.body = "locked"}));
  std::vector<qrt::received_message> got;
  for (int i = 0; i < 10 && got.empty(); ++i) got = client.receive(q, 1, 2s).value();
  ASSERT_EQ(got.size(), 1u);
  auto renewed = client.renew_lock(got[0].receipt);
  ASSERT_FALSE(renewed) << "a renewal the service never answered reported success";
  expect_unconfirmed(renewed.error(), "may or may not have been applied");
  auto completed = client.complete(got[0].receipt);
  ASSERT_FALSE(completed) << "a settlement the service never confirmed reported success";
  expect_unconfirmed(completed.error(), "may or may not have been applied");
}

// A provider closed: its $management calls fail with closed, not as unconfirmed or a timeout.
TEST(ServiceBusProviderManagementCutOff, RequestsOnAClosedProviderFailClosed) {
  const auto q = queue_name::from("closing");
  auto client = open_client_without_retries(*peer, "y");
  ASSERT_TRUE(client.send(q, qrt::message{.body = "locked"}));
  std::vector<qrt::received_message> got;
  for (int i = 0; i < 10 && got.empty(); ++i) got = client.receive(q, 1, 2s).value();
  ASSERT_EQ(got.size(), 1u);
  client.close();
  auto renewed = client.renew_lock(got[0].receipt);
  ASSERT_FALSE(renewed);
  EXPECT_EQ(renewed.error().code, errc::closed) << renewed.error().to_string();
  auto peeked = client.peek(q, 1);
  ASSERT_FALSE(peeked);
  EXPECT_EQ(peeked.error().code, errc::closed) << peeked.error().to_string();
}

// A $management reply that is not an AMQP message (a broken or hostile service) fails the call
// within its timeout instead of hanging it or taking the process down, and the same client
// keeps working.
TEST(ServiceBusProviderBrokenService, AnUndecodableManagementReplyFailsTheCallNotTheProcess) {
  auto broken = std::make_unique<qrt::test::servicebus_peer>(
      std::vector<std::string>{"--garbage-replies", "garbled"});
  auto client = open_client(broken->connection_string(), "2s");
  auto peeked = client.peek(queue_name::from("garbled"), 1);
  ASSERT_FALSE(peeked) << "a garbage reply was read as a peek answer";
  EXPECT_TRUE(peeked.error().code == errc::timeout || peeked.error().code == errc::protocol_error)
      << peeked.error().to_string();
  const auto fine = queue_name::from("fine");
  ASSERT_TRUE(client.send(fine, qrt::message{.body = "still works"}));
  std::vector<qrt::received_message> got;
  for (int i = 0; i < 5 && got.empty(); ++i) got = client.receive(fine, 1, 2s).value();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, "still works");
  EXPECT_TRUE(client.complete(got[0].receipt));
}

// A $management reply larger than qrt's limit for replies (a broken or hostile service that
// ignores the limit announced on the reply link) is refused once its first frames pass it: the
// call fails with the reason, qrt never buffers the rest, and the next call works.
TEST(ServiceBusProviderBrokenService, AnOversizeManagementReplyFailsTheCallNotTheProcess) {
  auto broken = std::make_unique<qrt::test::servicebus_peer>(
      std::vector<std::string>{"--huge-replies", "huge"});
  auto client = open_client(broken->connection_string(), "20s");
  auto peeked = client.peek(queue_name::from("huge"), 1);
  ASSERT_FALSE(peeked) << "an oversize reply was read as a peek answer";
  EXPECT_EQ(peeked.error().code, errc::protocol_error) << peeked.error().to_string();
  EXPECT_NE(peeked.error().message.find("limit for replies"), std::string::npos)
      << peeked.error().to_string();
  const auto fine = queue_name::from("fine");
  ASSERT_TRUE(client.send(fine, qrt::message{.body = "after"}));
  auto page = client.peek(fine, 10);
  ASSERT_TRUE(page) << page.error().to_string();
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].body, "after");
}

// A delivery whose tag is not a 16-byte lock token (a service that is not Service Bus, or a
// broken one) costs only that message its renewals: each such message still settles through
// its own delivery, a renewal is refused as such (no made-up token goes to the service), and
// settling one never makes another read as settled.
TEST(ServiceBusProviderBrokenService, DeliveriesWithoutALockTokenSettleOnTheirOwn) {
  auto broken = std::make_unique<qrt::test::servicebus_peer>(
      std::vector<std::string>{"--short-tags", "untagged"});
  auto client = open_client(broken->connection_string(), "5s");
  const auto q = queue_name::from("untagged");
  ASSERT_TRUE(client.send(q, qrt::message{.body = "one"}));
  ASSERT_TRUE(client.send(q, qrt::message{.body = "two"}));
  std::vector<qrt::received_message> got;
  for (int i = 0; i < 10 && got.size() < 2; ++i) {
    for (auto& m : client.receive(q, 2 - got.size(), 2s).value()) got.push_back(std::move(m));
  }
  ASSERT_EQ(got.size(), 2u);
  auto renewed = client.renew_lock(got[0].receipt);
  ASSERT_FALSE(renewed) << "a lock without a token was renewed";
  EXPECT_EQ(renewed.error().code, errc::invalid_receipt) << renewed.error().to_string();
  EXPECT_NE(renewed.error().message.find("no lock token"), std::string::npos)
      << renewed.error().to_string();
  ASSERT_TRUE(client.complete(got[0].receipt));
  auto second = client.renew_lock(got[1].receipt);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().message.find("already settled"), std::string::npos)
      << "settling one message made another read as settled: " << second.error().to_string();
  ASSERT_TRUE(client.complete(got[1].receipt));
  auto left = client.peek(q, 10);
  ASSERT_TRUE(left) << left.error().to_string();
  EXPECT_TRUE(left->empty()) << "a completed message is still in the queue";
}

// ----- interop with the official SDK -----

std::string base64(const std::string& bytes) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const unsigned n = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out +=
        {alphabet[n >> 18 & 63], alphabet[n >> 12 & 63], alphabet[n >> 6 & 63], alphabet[n & 63]};
  }
  if (bytes.size() - i == 1) {
    const unsigned n = static_cast<unsigned char>(bytes[i]) << 16;
    out += {alphabet[n >> 18 & 63], alphabet[n >> 12 & 63], '=', '='};
  } else if (bytes.size() - i == 2) {
    const unsigned n = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += {alphabet[n >> 18 & 63], alphabet[n >> 12 & 63], alphabet[n >> 6 & 63], '='};
  }
  return out;
}

/// The official SDK sends "before", "bad" and "after" to `q`; "bad" carries a list in its
/// application properties, which AMQP forbids and qrt cannot decode (the SDK lets it through).
void sdk_send_around_an_undecodable_one(const queue_name& q) {
  boost::json::array messages;
  messages.push_back(boost::json::object{{"bodyBase64", base64("before")}});
  messages.push_back(
      {{"bodyBase64", base64("bad")}, {"applicationProperties", {{"list", {1, 2, 3}}}}});
  messages.push_back(boost::json::object{{"bodyBase64", base64("after")}});
  qrt::test::run_sdk(
      {"send", std::to_string(peer->port()), q.str(), boost::json::serialize(messages)});
}

// A message qrt cannot decode (application properties hold only simple values in AMQP; the
// SDK lets a list through) is not dropped and does not break the link: qrt refuses it with
// rejected{amqp:decode-error}, which Service Bus answers by dead-lettering it, and the messages
// around it arrive.
TEST_F(ServiceBusProvider, AnUndecodableMessageIsDeadLetteredNotDropped) {
  const auto q = make_queue("undecodable");
  sdk_send_around_an_undecodable_one(q);
  std::vector<std::string> bodies;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (bodies.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    auto got = client.receive(q, 3, 1s);
    ASSERT_TRUE(got) << got.error().to_string();
    for (auto& m : *got) {
      bodies.push_back(m.body);
      ASSERT_TRUE(client.complete(m.receipt));
    }
  }
  EXPECT_EQ(bodies, (std::vector<std::string>{"before", "after"}));
  auto stats = client.stats(q);
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->dead_lettered, 1) << "the undecodable message was lost";
  EXPECT_EQ(stats->active + stats->in_flight, 0);
}

// Peek reads the same messages without locking them: the one qrt cannot decode is left out of
// the page, the others are returned (one bad message affects only itself), and a page holding
// nothing but it is an error that says why rather than an empty page.
TEST_F(ServiceBusProvider, PeekSkipsAnUndecodableMessageAndReturnsTheOthers) {
  const auto q = make_queue("peek-undecodable");
  sdk_send_around_an_undecodable_one(q);
  auto page = client.peek(q, 10);
  ASSERT_TRUE(page) << page.error().to_string();
  std::vector<std::string> bodies;
  for (const auto& m : *page) bodies.push_back(m.body);
  EXPECT_EQ(bodies, (std::vector<std::string>{"before", "after"}));
  ASSERT_EQ(page->size(), 2u);
  auto only_bad = client.peek(q, 1, (*page)[0].sequence_number + 1);
  ASSERT_FALSE(only_bad) << "a page of one undecodable message read as an empty queue";
  EXPECT_NE(only_bad.error().message.find("undecodable"), std::string::npos)
      << only_bad.error().to_string();
}

/// The bodies of every message `c` receives from `q` until `count` arrived or 15 s passed,
/// completing each.
std::vector<std::string> receive_bodies(qrt::sync::queue_client& c, const queue_name& q,
                                        std::size_t count) {
  std::vector<std::string> bodies;
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  while (bodies.size() < count && std::chrono::steady_clock::now() < deadline) {
    auto got = c.receive(q, count, 1s);
    if (!got) throw qrt::exception(got.error());
    for (auto& m : *got) {
      bodies.push_back(m.body);
      if (auto done = c.complete(m.receipt); !done) throw qrt::exception(done.error());
    }
  }
  return bodies;
}

// A poison message (well-formed, but its amqp-value body of arrays of nulls, zero bytes each,
// renders to far more than its size) sent by the official SDK between good ones: qrt refuses it
// with rejected{amqp:decode-error}, the service dead-letters it, the good ones around it
// arrive in order, and the link carries on.
TEST_F(ServiceBusProvider, ADecodingBombBetweenGoodMessagesIsDeadLetteredAndTheGoodOnesArrive) {
  const auto q = make_queue("bomb");
  boost::json::array messages;
  for (const char* body : {"good-1", "good-2"}) {
    messages.push_back(boost::json::object{{"bodyBase64", base64(body)}});
  }
  // 2 KB that decoded to 2.4 MB of text before decoding had an output budget (the same shape
  // at 100 KB decoded to gigabytes).
  messages.push_back(boost::json::object{
      {"zeroWidthArrayBomb", boost::json::object{{"arrays", 200}, {"nulls", 2000}}}});
  for (const char* body : {"good-3", "good-4"}) {
    messages.push_back(boost::json::object{{"bodyBase64", base64(body)}});
  }
  qrt::test::run_sdk(
      {"send", std::to_string(peer->port()), q.str(), boost::json::serialize(messages)});
  EXPECT_EQ(receive_bodies(client, q, 4),
            (std::vector<std::string>{"good-1", "good-2", "good-3", "good-4"}));
  auto stats = client.stats(q);
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->dead_lettered, 1) << "the poison message was lost";
  EXPECT_EQ(stats->active + stats->in_flight, 0);

  qrt::message after;
  after.body = "after";
  ASSERT_TRUE(client.send(q, after));
  EXPECT_EQ(receive_bodies(client, q, 1), std::vector<std::string>{"after"});
}

// A message larger than the receiver link's max-message-size (the provider's max_message_bytes
// plus room for the broker's annotations) is refused with amqp:link:message-size-exceeded as
// its first frames arrive, so the service dead-letters it; the messages around it arrive.
TEST_F(ServiceBusProvider, AMessageLargerThanTheReceiverTakesIsDeadLetteredAndTheOthersArrive) {
  const auto q = make_queue("oversize");
  auto small_client =
      qrt::sync::queue_client::open({{"provider", "servicebus"},
                                     {"connection_string", peer->connection_string()},
                                     {"operation_timeout", "3s"},
                                     {"max_message_bytes", "16384"},
                                     {"test_peer_admin", "true"}},
                                    registry(), qrt::client_options{.send_timeout = 3s});
  ASSERT_TRUE(small_client) << small_client.error().to_string();
  boost::json::array messages;
  messages.push_back(boost::json::object{{"bodyBase64", base64("small-1")}});
  // 16 KiB + the 64 KiB headroom is what the link takes; this is well past it.
  messages.push_back(
      boost::json::object{{"bodyFill", boost::json::object{{"byte", "B"}, {"count", 200'000}}}});
  messages.push_back(boost::json::object{{"bodyBase64", base64("small-2")}});
  qrt::test::run_sdk(
      {"send", std::to_string(peer->port()), q.str(), boost::json::serialize(messages)});
  EXPECT_EQ(receive_bodies(*small_client, q, 2), (std::vector<std::string>{"small-1", "small-2"}));
  auto stats = small_client->stats(q);
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->dead_lettered, 1) << "the oversize message was lost";
  EXPECT_EQ(stats->active + stats->in_flight, 0);
}

// Closing a client gives back, released, what its receiver prefetched and never handed out:
// those messages come back at once without a delivery counted (no application saw them), while
// the one handed out and not settled comes back counted as a failed delivery. Nothing is lost.
TEST_F(ServiceBusProvider, ClosingAClientReleasesItsPrefetchUncounted) {
  const auto q = make_queue("prefetch-close");
  for (const char* body : {"a", "b", "c"}) ASSERT_TRUE(client.send(q, qrt::message{.body = body}));
  auto prefetching =
      qrt::sync::queue_client::open({{"provider", "servicebus"},
                                     {"connection_string", peer->connection_string()},
                                     {"operation_timeout", "3s"},
                                     {"prefetch_count", "5"},
                                     {"test_peer_admin", "true"}},
                                    registry(), qrt::client_options{.send_timeout = 3s});
  ASSERT_TRUE(prefetching) << prefetching.error().to_string();
  std::vector<qrt::received_message> first;
  for (int i = 0; i < 10 && first.empty(); ++i) first = prefetching->receive(q, 1, 2s).value();
  ASSERT_EQ(first.size(), 1u);
  // The other two reached the receiver's buffer: all three are locked by its link.
  bool all_locked = false;
  for (int i = 0; i < 200 && !all_locked; ++i) {
    all_locked = prefetching->stats(q).value().in_flight == 3;
    if (!all_locked) std::this_thread::sleep_for(10ms);  // polling the service's state
  }
  ASSERT_TRUE(all_locked) << "the prefetch did not fill";
  prefetching->close();

  std::map<std::string, std::uint32_t> counts;
  for (auto& m : receive_n(q, 3)) {
    counts[m.body] = m.delivery_count;
    ASSERT_TRUE(client.complete(m.receipt));
  }
  ASSERT_EQ(counts.size(), 3u) << "a message was lost";
  EXPECT_EQ(counts[first[0].body], 2u) << "the handed-out message came back uncounted";
  for (const auto& [body, count] : counts) {
    if (body == first[0].body) continue;
    EXPECT_EQ(count, 1u) << body << " was counted as a delivery";
  }
}

TEST_F(ServiceBusProvider, OfficialSdkSendsQrtReceivesEverythingIntact) {
  const auto q = make_queue("sdk-to-qrt");
  const std::string body("\0\x01\x02\xfe\xff payload", 13);
  boost::json::array messages;
  messages.push_back({{"bodyBase64", base64(body)},
                      {"messageId", "sdk-1"},
                      {"correlationId", "corr-sdk"},
                      {"contentType", "application/x-test"},
                      {"subject", "from-sdk"},
                      {"sessionId", "s-sdk"},
                      {"applicationProperties", {{"tenant", "t1"}, {"zone", "z9"}}}});
  qrt::test::run_sdk(
      {"send", std::to_string(peer->port()), q.str(), boost::json::serialize(messages)});
  auto s = client.accept_session(q, session_id::from("s-sdk"), 5s);
  ASSERT_TRUE(s) << s.error().to_string();
  auto got = receive_from(*s, 1);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  const auto& m = (*got)[0];
  EXPECT_EQ(m.body, body);
  EXPECT_EQ(m.id, "sdk-1");
  EXPECT_EQ(m.correlation_id, "corr-sdk");
  EXPECT_EQ(m.content_type, "application/x-test");
  EXPECT_EQ(m.subject, "from-sdk");
  ASSERT_TRUE(m.session.has_value());
  EXPECT_EQ(m.session->str(), "s-sdk");
  EXPECT_EQ(m.attributes, (std::map<std::string, std::string>{{"tenant", "t1"}, {"zone", "z9"}}));
  ASSERT_TRUE(s->complete(m.receipt));
  ASSERT_TRUE(s->close());
}

TEST_F(ServiceBusProvider, QrtSendsOfficialSdkReceivesEverythingIntact) {
  const auto q = make_queue("qrt-to-sdk");
  qrt::message m;
  m.body = std::string("\xff\x00\x10 qrt body", 13);
  m.id = "qrt-1";
  m.correlation_id = "corr-qrt";
  m.content_type = "text/x-qrt";
  m.subject = "from-qrt";
  m.session = session_id::from("s-qrt");
  m.attributes = {{"a", "1"}, {"b", "two"}};
  ASSERT_TRUE(client.send(q, m));
  const auto out =
      qrt::test::run_sdk({"receive", std::to_string(peer->port()), q.str(), "1", "s-qrt"});
  const auto received = boost::json::parse(out).as_array();
  ASSERT_EQ(received.size(), 1u);
  const auto& r = received[0].as_object();
  EXPECT_EQ(r.at("bodyBase64").as_string(), base64(m.body));
  EXPECT_EQ(r.at("messageId").as_string(), "qrt-1");
  EXPECT_EQ(r.at("correlationId").as_string(), "corr-qrt");
  EXPECT_EQ(r.at("contentType").as_string(), "text/x-qrt");
  EXPECT_EQ(r.at("subject").as_string(), "from-qrt");
  EXPECT_EQ(r.at("sessionId").as_string(), "s-qrt");
  EXPECT_EQ(r.at("applicationProperties").as_object().at("a").as_string(), "1");
  EXPECT_EQ(r.at("applicationProperties").as_object().at("b").as_string(), "two");
  EXPECT_EQ(r.at("deliveryCount").as_int64(), 0);  // the SDK counts from 0, qrt from 1
}

}  // namespace
