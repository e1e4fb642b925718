// The AMQP engine on its own: no Asio, no socket, no clock. The test is the transport: it
// moves the bytes between the engine and a broker in memory (memory_brokers.hpp) and passes
// the time by hand, so each test says exactly what happened before what, and a timeout is a
// later time given to tick(), not a wait.
#include "amqp/engine.hpp"

#include <gtest/gtest.h>
#include <proton/delivery.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "memory_brokers.hpp"

namespace {

using namespace std::chrono_literals;
using namespace qrt::amqp::test;  // the brokers
using qrt::amqp::detail::delivery_ref;
using qrt::amqp::detail::endpoint;
using qrt::amqp::detail::engine;
using qrt::amqp::detail::inbound;
using qrt::amqp::detail::outcome;
using qrt::amqp::detail::receiver_spec;

/// Where a callback's result lands.
template <class T>
struct answer {
  std::optional<T> value;
  engine::callback<T> into() {
    return [this](T v) { value.emplace(std::move(v)); };
  }
};

using settle_items = std::vector<engine::settle_item>;

/// One engine, and a broker of its own for every connection attempt (a broker restarted), run
/// by `handler` — or, for the garbage test, a peer that answers with bytes of the test's own.
struct engine_harness {
  using peer_fn = std::function<std::string(std::string_view)>;

  explicit engine_harness(proton::messaging_handler& handler)
      : engine_harness(handler, broker_test()) {}
  engine_harness(proton::messaging_handler& handler, endpoint where)
      : e(std::move(where)), next_peer([this, &handler]() -> peer_fn {
          brokers.push_back(std::make_unique<memory_broker>(handler));
          return [b = brokers.back().get()](std::string_view in) { return b->exchange(in); };
        }) {}
  explicit engine_harness(std::function<peer_fn()> peers) : next_peer(std::move(peers)) {}

  static endpoint broker_test() {
    endpoint where;
    where.host = "broker.test";
    return where;
  }

  /// Plays the transport until neither side has anything more to say: opens the stream the
  /// engine asks for, carries the bytes both ways (in reads of up to 64 KiB, as the Asio
  /// transport does), forgets the streams the engine is done with.
  void exchange() {
    for (;;) {
      for (const auto& closing : e.take_closing()) {
        if (attempt == closing.attempt) {
          attempt.reset();
          peer = nullptr;
          to_engine.clear();
        }
      }
      if (auto wanted = e.take_stream_request()) {
        ++attempts;
        attempt = *wanted;
        peer = next_peer();
        e.stream_opened(*attempt, now);
        continue;
      }
      if (!attempt) return;
      std::string out;
      e.take_output(out);
      if (!out.empty()) to_engine += peer(out);
      if (to_engine.empty() || !e.reading(*attempt)) return;
      const std::size_t chunk = std::min<std::size_t>(to_engine.size(), 64 * 1024);
      const std::size_t took = e.bytes_in(*attempt, {to_engine.data(), chunk}, now);
      bytes_taken += took;
      to_engine.erase(0, chunk);  // what the engine did not take is dropped, as a read's is
    }
  }

  /// The broker of the current attempt is gone (the transport read end-of-file).
  void hang_up() {
    e.stream_failed(*attempt, qrt::fail(qrt::errc::connection_failed, "end of file"), now);
    exchange();
  }

  void tick_at(engine::time_point t) {
    now = t;
    e.tick(now);
    exchange();
  }

  engine e{broker_test()};
  engine::time_point now = engine::time_point{} + 1000h;  ///< any start: only differences count
  std::function<peer_fn()> next_peer;
  std::vector<std::unique_ptr<memory_broker>> brokers;
  std::optional<std::uint64_t> attempt;
  peer_fn peer;
  std::string to_engine;
  std::size_t bytes_taken = 0;
  int attempts = 0;
};

receiver_spec receiver_on(std::string address, std::uint32_t prefetch) {
  receiver_spec spec;
  spec.address = std::move(address);
  spec.prefetch = prefetch;
  return spec;
}

TEST(amqp_engine, connects_when_the_bytes_are_carried) {
  echoing_broker broker;
  engine_harness h(broker);
  answer<qrt::result<void>> connected;
  h.e.connect(5s, h.now, connected.into());
  EXPECT_FALSE(connected.value) << "opened before a byte went anywhere";
  h.exchange();
  ASSERT_TRUE(connected.value);
  EXPECT_TRUE(*connected.value) << connected.value->error().to_string();
  EXPECT_EQ(h.e.generation(), 1u);
  EXPECT_EQ(h.attempts, 1);
}

TEST(amqp_engine, credit_never_exceeds_the_prefetch_and_is_refilled_on_settle) {
  queue_with_messages broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<inbound>>> got;
  h.e.receive("r1", receiver_on("q", 3), 1, 2s, h.now, got.into());
  h.exchange();
  ASSERT_TRUE(got.value);
  ASSERT_TRUE(*got.value) << got.value->error().to_string();
  ASSERT_EQ((*got.value)->size(), 1u);
  EXPECT_EQ(broker.max_credit_seen, 3);
  EXPECT_EQ(broker.sent, 3);  // one handed out, two buffered: nothing more asked for

  answer<qrt::result<std::vector<inbound>>> buffered;
  h.e.receive("r1", receiver_on("q", 3), 5, 0ms, h.now, buffered.into());
  h.exchange();
  ASSERT_TRUE(buffered.value && *buffered.value);
  EXPECT_EQ((*buffered.value)->size(), 2u);
  EXPECT_EQ(broker.sent, 3) << "credit granted while all three were locked";

  answer<qrt::result<std::vector<qrt::result<void>>>> settled;
  h.e.settle(settle_items{{(*got.value)->front().ref, outcome::accepted()}}, 2s, h.now,
             settled.into());
  h.exchange();
  ASSERT_TRUE(settled.value && *settled.value);
  ASSERT_EQ((*settled.value)->size(), 1u);
  EXPECT_TRUE((**settled.value)[0]);
  EXPECT_EQ(broker.accepted, 1);
  EXPECT_EQ(broker.sent, 4) << "settling one frees exactly one place";
  EXPECT_EQ(broker.max_credit_seen, 3);
}

// A queue of three messages, sent as credit allows.
struct queue_of_three : queue_with_messages {
  void on_sendable(proton::sender& s) override {
    max_credit_seen = std::max(max_credit_seen, s.credit());
    while (s.credit() > 0 && sent < 3) s.send(proton::message("m" + std::to_string(++sent)));
  }
};

// A receive may ask for more than a link's credit can count (SIZE_MAX for "all there is", or
// anything past 32 bits): it gets credit all the same. Before, with no prefetch, the ask read
// as a negative number (or, cut to 32 bits, as none) and the receive waited out its time with
// messages on the queue.
TEST(amqp_engine, a_receive_asking_for_more_than_credit_can_count_still_gets_messages) {
  for (const std::size_t max : {std::numeric_limits<std::size_t>::max(), std::size_t{1} << 32}) {
    queue_of_three broker;
    engine_harness h(broker);
    answer<qrt::result<std::vector<inbound>>> got;
    h.e.receive("r1", receiver_on("q", 0), max, 30s, h.now, got.into());
    h.exchange();
    ASSERT_TRUE(got.value) << max << ": the receive waited with messages on the queue";
    ASSERT_TRUE(*got.value) << got.value->error().to_string();
    EXPECT_FALSE((*got.value)->empty()) << max;
    EXPECT_GT(broker.max_credit_seen, 0) << max;
  }
}

TEST(amqp_engine, credit_added_past_a_peers_overshoot_leaves_exactly_what_was_wanted) {
  EXPECT_EQ(qrt::amqp::detail::credit_increment(0, 50), 50u);
  EXPECT_EQ(qrt::amqp::detail::credit_increment(13, 37), 37u) << "added to what is outstanding";
  // The peer sent 103 past its credit: Proton's count is -103, and the flow it writes carries
  // the count after the addition, so the addition makes up the overshoot first.
  EXPECT_EQ(qrt::amqp::detail::credit_increment(-103, 50), 153u);
  EXPECT_EQ(-103 + static_cast<long>(qrt::amqp::detail::credit_increment(-103, 50)), 50);
}

// A call that finished leaves no deadline behind: the transport arms its timer for what can
// still time out only, so a finished receive or send costs no wake-up when its wait or timeout
// would have ended (one per call, long after it, in a consumer that runs for hours).
TEST(amqp_engine, a_finished_call_leaves_no_deadline_behind) {
  queue_with_messages broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<inbound>>> got;
  h.e.receive("r1", receiver_on("q", 3), 1, 2s, h.now, got.into());
  h.exchange();
  ASSERT_TRUE(got.value && *got.value);
  EXPECT_GT(h.e.next_deadline(), h.now + 2s) << "the finished receive's wait is still due";

  answer<qrt::result<std::vector<inbound>>> waited;
  h.e.receive("r1", receiver_on("q", 3), 5, 3s, h.now, waited.into());
  h.exchange();
  ASSERT_TRUE(waited.value && *waited.value);
  EXPECT_GT(h.e.next_deadline(), h.now + 3s) << "the finished receive's wait is still due";
}

TEST(amqp_engine, settle_second_completes_on_the_brokers_settlement_or_its_refusal) {
  settle_second_queue broker;
  engine_harness h(broker);
  receiver_spec spec = receiver_on("q", 2);
  spec.confirm_settlement = true;
  answer<qrt::result<std::vector<inbound>>> got;
  h.e.receive("r1", spec, 2, 2s, h.now, got.into());
  h.exchange();
  ASSERT_TRUE(got.value && *got.value);
  ASSERT_EQ((*got.value)->size(), 2u);

  answer<qrt::result<std::vector<qrt::result<void>>>> confirmed;
  h.e.settle(settle_items{{(**got.value)[0].ref, outcome::accepted()}}, 2s, h.now,
             confirmed.into());
  EXPECT_FALSE(confirmed.value) << "completed before the broker settled";
  h.exchange();
  ASSERT_TRUE(confirmed.value && *confirmed.value);
  EXPECT_TRUE((**confirmed.value)[0]) << (**confirmed.value)[0].error().to_string();
  EXPECT_EQ(broker.settled_by_client, 0);  // sent unsettled: the broker's settlement confirms

  broker.refuse = true;
  answer<qrt::result<std::vector<qrt::result<void>>>> refused;
  h.e.settle(settle_items{{(**got.value)[1].ref, outcome::accepted()}}, 2s, h.now, refused.into());
  h.exchange();
  ASSERT_TRUE(refused.value && *refused.value);
  const auto& item = (**refused.value)[0];
  ASSERT_FALSE(item);
  EXPECT_EQ(item.error().provider_code, "com.microsoft:message-lock-lost");
  EXPECT_NE(item.error().message.find("the lock on this message is lost"), std::string::npos)
      << item.error().to_string();
}

// A settlement retried after its confirmation timed out waits for the answer to the outcome
// already sent; a retry with another outcome (dead-letter after a complete that timed out) is
// refused, since an outcome cannot be changed once sent: taking over the first's confirmation
// would report a dead-lettering for a message that was completed.
TEST(amqp_engine, a_retried_settlement_with_another_outcome_is_refused_not_confirmed) {
  confirm_later_queue broker;
  engine_harness h(broker);
  receiver_spec spec = receiver_on("q", 1);
  spec.confirm_settlement = true;
  answer<qrt::result<std::vector<inbound>>> got;
  h.e.receive("r1", spec, 1, 2s, h.now, got.into());
  h.exchange();
  ASSERT_TRUE(got.value && *got.value);
  ASSERT_EQ((*got.value)->size(), 1u);
  const auto ref = (**got.value)[0].ref;

  answer<qrt::result<std::vector<qrt::result<void>>>> first;
  h.e.settle(settle_items{{ref, outcome::accepted()}}, 1s, h.now, first.into());
  h.exchange();
  EXPECT_EQ(broker.accepted, 1);
  h.tick_at(h.now + 1s);
  ASSERT_TRUE(first.value && *first.value);
  ASSERT_FALSE((**first.value)[0]);
  EXPECT_EQ((**first.value)[0].error().code, qrt::errc::unconfirmed)
      << (**first.value)[0].error().to_string();

  answer<qrt::result<std::vector<qrt::result<void>>>> other;
  h.e.settle(settle_items{{ref, outcome::rejected("amqp:internal-error", "poison")}}, 1s, h.now,
             other.into());
  h.exchange();
  ASSERT_TRUE(other.value && *other.value) << "the other outcome waited for the first's answer";
  const auto& refused = (**other.value)[0];
  ASSERT_FALSE(refused) << "a dead-lettering was reported for a delivery completed before";
  EXPECT_EQ(refused.error().code, qrt::errc::invalid_receipt) << refused.error().to_string();
  EXPECT_NE(refused.error().message.find("cannot be changed"), std::string::npos)
      << refused.error().to_string();

  answer<qrt::result<std::vector<qrt::result<void>>>> same;
  h.e.settle(settle_items{{ref, outcome::accepted()}}, 2s, h.now, same.into());
  h.exchange();
  EXPECT_FALSE(same.value) << "the same outcome again did not wait for the broker's answer";
  broker.confirm_held();
  h.to_engine += h.peer("");
  h.exchange();
  ASSERT_TRUE(same.value && *same.value);
  EXPECT_TRUE((**same.value)[0]) << (**same.value)[0].error().to_string();
  EXPECT_EQ(broker.accepted, 1) << "the outcome went out twice";
}

// What a receiver prefetched and never handed out goes back to the broker, released, when qrt
// closes the link or the connection, so the broker can deliver it elsewhere at once; what was
// handed out stays with its receipt (the application may still be working on it).
TEST(amqp_engine, closing_a_receiver_releases_what_it_prefetched_and_never_handed_out) {
  queue_with_messages broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<inbound>>> got;
  h.e.receive("r1", receiver_on("q", 3), 1, 2s, h.now, got.into());
  h.exchange();
  ASSERT_TRUE(got.value && *got.value);
  ASSERT_EQ((*got.value)->size(), 1u);
  ASSERT_EQ(broker.sent, 3) << "the prefetch was not filled";
  h.e.close_receiver("r1", h.now);
  h.exchange();
  EXPECT_EQ(broker.released, 2) << "the two buffered deliveries were not given back";
  EXPECT_EQ(broker.accepted, 0);
}

TEST(amqp_engine, shutting_down_releases_what_the_receivers_prefetched) {
  queue_with_messages broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<inbound>>> got;
  h.e.receive("r1", receiver_on("q", 4), 1, 2s, h.now, got.into());
  h.exchange();
  ASSERT_TRUE(got.value && *got.value);
  ASSERT_EQ((*got.value)->size(), 1u);
  ASSERT_EQ(broker.sent, 4);
  bool closed = false;
  h.e.shutdown(h.now, [&] { closed = true; });
  h.exchange();
  EXPECT_TRUE(closed) << "the broker answered every end and the close";
  EXPECT_EQ(broker.released, 3) << "the buffered deliveries were not given back before the end";
}

TEST(amqp_engine, a_refused_attach_fails_with_the_brokers_reason) {
  refusing_broker broker;
  engine_harness h(broker);
  receiver_spec spec;
  spec.address = "missing";
  answer<qrt::result<qrt::amqp::detail::link_info>> opened;
  h.e.open_receiver("r1", spec, 2s, h.now, opened.into());
  h.exchange();
  ASSERT_TRUE(opened.value) << "no answer without any time passing";
  ASSERT_FALSE(*opened.value);
  EXPECT_NE(opened.value->error().message.find("no queue 'missing' here"), std::string::npos)
      << opened.value->error().to_string();
}

TEST(amqp_engine, a_receive_that_waits_no_time_still_reports_a_refused_attach) {
  refusing_broker broker;
  engine_harness h(broker);
  receiver_spec spec;
  spec.address = "missing";
  answer<qrt::result<void>> connected;
  h.e.connect(5s, h.now, connected.into());
  h.exchange();
  ASSERT_TRUE(connected.value && *connected.value);
  answer<qrt::result<std::vector<inbound>>> got;
  h.e.receive("r1", spec, 1, 0ms, h.now, got.into());
  h.e.tick(h.now);  // a wait of no time is due at once, before any answer from the broker
  EXPECT_FALSE(got.value) << "the wait ran out before the broker answered the attach";
  h.exchange();
  ASSERT_TRUE(got.value);
  ASSERT_FALSE(*got.value) << "a missing queue read as an empty one";
  EXPECT_NE(got.value->error().message.find("no queue 'missing' here"), std::string::npos)
      << got.value->error().to_string();
}

TEST(amqp_engine, a_link_detached_with_an_error_fails_the_waiting_receive) {
  detaching_queue broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<inbound>>> got;
  h.e.receive("r1", receiver_on("q", 1), 1, 30s, h.now, got.into());
  h.exchange();
  ASSERT_TRUE(got.value) << "the receive waited for its time instead of failing";
  ASSERT_FALSE(*got.value);
  EXPECT_EQ(got.value->error().provider_code, "amqp:resource-deleted");
  EXPECT_NE(got.value->error().message.find("queue 'q' was deleted"), std::string::npos);
}

TEST(amqp_engine, a_receipt_of_the_previous_connection_is_refused_as_expired) {
  queue_with_messages broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<inbound>>> got;
  h.e.receive("r1", receiver_on("q", 1), 1, 2s, h.now, got.into());
  h.exchange();
  ASSERT_TRUE(got.value && *got.value);
  ASSERT_EQ((*got.value)->size(), 1u);
  const delivery_ref old_receipt = (*got.value)->front().ref;
  EXPECT_EQ(h.e.generation(), 1u);

  h.hang_up();
  answer<qrt::result<void>> reconnected;
  h.e.connect(5s, h.now, reconnected.into());  // a connection that was up retries at once
  h.exchange();
  ASSERT_TRUE(reconnected.value && *reconnected.value);
  EXPECT_EQ(h.e.generation(), 2u);
  EXPECT_EQ(h.attempts, 2);

  answer<qrt::result<std::vector<qrt::result<void>>>> settled;
  h.e.settle(settle_items{{old_receipt, outcome::accepted()}}, 2s, h.now, settled.into());
  h.exchange();
  ASSERT_TRUE(settled.value && *settled.value);
  const auto& item = (**settled.value)[0];
  ASSERT_FALSE(item);
  EXPECT_EQ(item.error().code, qrt::errc::receipt_expired) << item.error().to_string();
  EXPECT_EQ(broker.accepted, 0) << "the old receipt's outcome was sent on the new connection";
}

TEST(amqp_engine, a_reply_is_matched_by_correlation_id_and_a_stranger_dropped) {
  management_node broker;  // answers each request with a stranger first, then the reply
  engine_harness h(broker);
  answer<qrt::result<proton::message>> reply;
  h.e.request("$management", proton::message("ping"), 5s, h.now, reply.into());
  h.exchange();
  ASSERT_TRUE(reply.value && *reply.value);
  EXPECT_EQ(proton::get<std::string>((*reply.value)->body()), "pong");
  EXPECT_EQ(broker.requests, 1);
}

/// A $management node that also takes messages sent to "q" and holds them without an outcome
/// until the test decides one.
struct holding_queue_and_management : management_node {
  void on_receiver_open(proton::receiver& r) override {
    if (r.active()) return;
    attached_from_client.push_back(r.target().address());
    r.open(proton::receiver_options()
               .auto_accept(false)
               .source(proton::source_options().address(r.source().address()))
               .target(proton::target_options().address(r.target().address())));
  }
  void on_message(proton::delivery& d, proton::message& m) override {
    if (d.receiver().target().address() == "q") {
      held.push_back(d);
      return;
    }
    management_node::on_message(d, m);
  }
  std::vector<proton::delivery> held;
  std::vector<std::string> attached_from_client;  ///< the target of each link the client sent on
};

std::string encoded_message(const std::string& body) {
  std::vector<char> bytes;
  proton::message(body).encode(bytes);
  return {bytes.begin(), bytes.end()};
}

// A send's delivery and a request's are numbered apart (Proton numbers a node's requests from 1
// itself), so the same tag number can be in flight on both links. The broker's outcome for the
// request must not settle the send: it was taken as the send's acceptance, so a message the
// broker then refused or lost was reported stored, and a refused request failed a stored one.
TEST(amqp_engine, a_requests_outcome_never_settles_a_send_of_the_same_tag_number) {
  holding_queue_and_management broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> sent;
  std::vector<qrt::amqp::detail::outgoing_delivery> deliveries(1);
  deliveries[0].bytes = encoded_message("data");
  h.e.send("q", std::move(deliveries), 5s, h.now, sent.into());
  h.exchange();
  ASSERT_EQ(broker.held.size(), 1u);
  ASSERT_FALSE(sent.value) << "no outcome was given yet";

  answer<qrt::result<proton::message>> reply;
  h.e.request("$management", proton::message("ping"), 5s, h.now, reply.into());
  h.exchange();
  ASSERT_TRUE(reply.value && *reply.value) << "the request was answered";
  EXPECT_FALSE(sent.value) << "the send finished on the request's outcome";

  // The send's own outcome still decides it.
  broker.held.front().reject();
  h.to_engine += h.brokers.back()->exchange({});  // the broker writes what it decided
  h.exchange();
  ASSERT_TRUE(sent.value && *sent.value);
  ASSERT_EQ((**sent.value).size(), 1u);
  EXPECT_FALSE((**sent.value)[0]) << "the broker refused the message";
}

/// One delivery to "q" per body, sent in one call; the answer lands in `sent`.
void send_bodies(engine_harness& h, answer<qrt::result<std::vector<qrt::result<void>>>>& sent,
                 const std::vector<std::string>& bodies) {
  std::vector<qrt::amqp::detail::outgoing_delivery> deliveries(bodies.size());
  for (std::size_t i = 0; i < bodies.size(); ++i) deliveries[i].bytes = encoded_message(bodies[i]);
  h.e.send("q", std::move(deliveries), 5s, h.now, sent.into());
  h.exchange();
}

/// Three deliveries to "q", the first of `first_body_size` bytes, sent at once.
void send_three(engine_harness& h, answer<qrt::result<std::vector<qrt::result<void>>>>& sent,
                std::size_t first_body_size) {
  send_bodies(h, sent, {std::string(first_body_size, 'x'), "second", "third"});
}

/// `outcome` failed with errc::unconfirmed: transient, never `closed` or the cause's code (which
/// say "not sent"), its message saying it may be stored and, when given, naming `reason`.
void expect_unconfirmed(const qrt::result<void>& outcome, std::string_view reason = {}) {
  ASSERT_FALSE(outcome) << "a message the broker never settled was reported stored";
  const qrt::error& e = outcome.error();
  EXPECT_EQ(e.code, qrt::errc::unconfirmed) << e.to_string();
  EXPECT_TRUE(e.is_transient()) << e.to_string();
  EXPECT_NE(e.message.find("may or may not be stored"), std::string::npos) << e.to_string();
  if (!reason.empty()) {
    EXPECT_NE(e.message.find(reason), std::string::npos) << e.to_string();
  }
}

// A broker that ends a sender link whose deliveries it has not settled leaves their fate
// unknown (AMQP 1.0: the link's unsettled state is lost with it). The condition it gives is
// about the link, not a verdict on each message: they fail as unconfirmed and worth sending
// again, not with the condition's permanent error, which would call refused a message the
// broker may have stored.
TEST(amqp_engine, deliveries_in_flight_when_the_link_ends_are_unconfirmed_not_refused) {
  holding_queue_and_management broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> sent;
  send_three(h, sent, 10);
  ASSERT_EQ(broker.held.size(), 3u);
  proton::receiver link = broker.held.front().receiver();
  link.close(proton::error_condition("amqp:not-allowed", "the node went read-only"));
  h.to_engine += h.brokers.back()->exchange({});
  h.exchange();
  ASSERT_TRUE(sent.value && *sent.value) << "the send did not finish with the link";
  ASSERT_EQ((**sent.value).size(), 3u);
  for (const auto& outcome : **sent.value) {
    expect_unconfirmed(outcome, "the node went read-only");
    EXPECT_EQ(outcome.error().provider_code, "amqp:not-allowed");
  }
}

// A broker holding what it is sent, taking at most two messages at a time and at most 1000
// bytes each (as its attach announces).
struct small_holding_queue : holding_queue_and_management {
  void on_receiver_open(proton::receiver& r) override {
    if (r.active()) return;
    pn_link_set_max_message_size(proton::internal::factory<proton::link>::unwrap(r), 1000);
    r.open(proton::receiver_options()
               .auto_accept(false)
               .credit_window(0)
               .source(proton::source_options().address(r.source().address()))
               .target(proton::target_options().address(r.target().address())));
    r.add_credit(2);
  }
};

// A link ended over one message's size refuses that message only: the one over the size the
// broker announced is too large for good; the other in flight is unconfirmed, the one not yet
// sent was never judged, and both are worth sending again.
TEST(amqp_engine, a_link_ended_over_one_messages_size_refuses_that_message_only) {
  small_holding_queue broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> sent;
  send_three(h, sent, 2000);
  ASSERT_EQ(broker.held.size(), 2u) << "the broker's credit let more than two through";
  proton::receiver link = broker.held.front().receiver();
  link.close(proton::error_condition("amqp:link:message-size-exceeded", "over 1000 bytes"));
  h.to_engine += h.brokers.back()->exchange({});
  h.exchange();
  ASSERT_TRUE(sent.value && *sent.value) << "the send did not finish with the link";
  const auto& outcomes = **sent.value;
  ASSERT_EQ(outcomes.size(), 3u);
  ASSERT_FALSE(outcomes[0]);
  EXPECT_EQ(outcomes[0].error().code, qrt::errc::message_too_large)
      << outcomes[0].error().to_string();
  EXPECT_FALSE(outcomes[0].error().is_transient());
  for (std::size_t i = 1; i < outcomes.size(); ++i) {
    ASSERT_FALSE(outcomes[i]) << i;
    EXPECT_NE(outcomes[i].error().code, qrt::errc::message_too_large)
        << i << ": " << outcomes[i].error().to_string();
    EXPECT_TRUE(outcomes[i].error().is_transient()) << i << ": " << outcomes[i].error().to_string();
  }
}

/// Two deliveries to "q" in one call, the answer landing in `sent`.
void send_two(engine_harness& h, answer<qrt::result<std::vector<qrt::result<void>>>>& sent) {
  send_bodies(h, sent, {"first", "second"});
}

// A graceful close lets the messages already sent get their outcomes before it ends their
// sessions: ended first, their fate is unknown, and reporting them closed told the caller
// "not sent" about messages the broker may have stored. One accepted during the close is sent.
TEST(amqp_engine, a_send_in_flight_at_close_reports_the_outcome_the_broker_gives_meanwhile) {
  holding_queue_and_management broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> sent;
  send_two(h, sent);
  ASSERT_EQ(broker.held.size(), 2u);
  bool closed = false;
  h.e.shutdown(h.now, [&] { closed = true; });
  h.exchange();
  EXPECT_FALSE(closed) << "the close did not wait for the outcomes of the messages in flight";
  EXPECT_FALSE(sent.value) << "the send finished before the broker gave its outcomes";

  for (auto& d : broker.held) d.accept();
  h.to_engine += h.brokers.back()->exchange({});
  h.exchange();
  ASSERT_TRUE(sent.value && *sent.value);
  ASSERT_EQ((**sent.value).size(), 2u);
  for (const auto& outcome : **sent.value) {
    EXPECT_TRUE(outcome) << "an accepted message was reported " << outcome.error().to_string();
  }
  EXPECT_TRUE(closed) << "the sessions did not end once the outcomes came";
}

// An outcome that does not come within close_timeout leaves the message's fate unknown: it
// fails transient and says so (unconfirmed, as for a link ended under it), never plain closed
// as if it had not been sent; the close still ends at close_timeout.
TEST(amqp_engine, a_send_in_flight_at_close_without_an_outcome_is_unconfirmed_not_closed) {
  holding_queue_and_management broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> sent;
  send_two(h, sent);
  ASSERT_EQ(broker.held.size(), 2u);
  const auto close_timeout = engine_harness::broker_test().close_timeout;
  const auto asked = h.now;
  bool closed = false;
  h.e.shutdown(h.now, [&] { closed = true; });
  h.exchange();
  h.tick_at(asked + close_timeout - 1ms);
  EXPECT_FALSE(closed) << "the close gave up on the outcomes before close_timeout";
  h.tick_at(asked + close_timeout);
  EXPECT_TRUE(closed) << "the close took longer than close_timeout";
  ASSERT_TRUE(sent.value && *sent.value) << "the send did not finish with the close";
  ASSERT_EQ((**sent.value).size(), 2u);
  for (const auto& outcome : **sent.value) expect_unconfirmed(outcome);
}

// The connection lost while the close waits for outcomes ends the close at once; what was sent
// and not settled is unconfirmed, with the loss as its reason.
TEST(amqp_engine, a_send_in_flight_when_the_connection_drops_during_the_close_is_unconfirmed) {
  holding_queue_and_management broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> sent;
  send_two(h, sent);
  ASSERT_EQ(broker.held.size(), 2u);
  bool closed = false;
  h.e.shutdown(h.now, [&] { closed = true; });
  h.exchange();
  ASSERT_FALSE(closed) << "the close did not wait for the outcomes of the messages in flight";
  h.hang_up();
  EXPECT_TRUE(closed) << "the close went on waiting on a dropped connection";
  ASSERT_TRUE(sent.value && *sent.value) << "the send did not finish with the connection";
  for (const auto& outcome : **sent.value) expect_unconfirmed(outcome, "end of file");
}

// A connection lost outside a close (a broker restart, a network drop) leaves the fate of what
// was sent and not settled unknown, as a link ended under it does: those messages fail as
// unconfirmed with the loss as the reason, so the caller can tell "maybe stored" from "not
// sent". The message the broker's credit held back never went out and keeps the plain error.
TEST(amqp_engine, sends_in_flight_when_the_connection_drops_are_unconfirmed_the_unsent_are_not) {
  small_holding_queue broker;  // two credits: the third message waits
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> sent;
  send_three(h, sent, 10);
  ASSERT_EQ(broker.held.size(), 2u) << "the broker's credit let more than two through";
  h.hang_up();
  ASSERT_TRUE(sent.value && *sent.value) << "the send did not finish with the connection";
  const auto& outcomes = **sent.value;
  ASSERT_EQ(outcomes.size(), 3u);
  for (std::size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    expect_unconfirmed(outcomes[i], "end of file");
  }
  ASSERT_FALSE(outcomes[2]) << "a message that never went out was reported stored";
  EXPECT_TRUE(outcomes[2].error().is_transient()) << outcomes[2].error().to_string();
  EXPECT_NE(outcomes[2].error().code, qrt::errc::unconfirmed)
      << "a message never handed to the broker was called maybe stored: "
      << outcomes[2].error().to_string();
}

// A send whose deadline passes after its messages went out leaves their fate unknown, as a link
// ended under them does: the broker may have stored them, so they fail as unconfirmed (the
// timeout as the reason), not with a plain timeout that reads as "not sent". The message the
// broker's credit held back never went out: a plain timeout, and no claim it may be stored.
TEST(amqp_engine, sends_in_flight_when_the_deadline_passes_are_unconfirmed_the_unsent_time_out) {
  small_holding_queue broker;  // two credits: the third message waits
  engine_harness h(broker);
  const auto asked = h.now;
  answer<qrt::result<std::vector<qrt::result<void>>>> sent;
  send_three(h, sent, 10);  // within 5 s
  ASSERT_EQ(broker.held.size(), 2u) << "the broker's credit let more than two through";
  h.tick_at(asked + 4999ms);
  ASSERT_FALSE(sent.value) << "the send finished before its deadline";
  h.tick_at(asked + 5s);
  ASSERT_TRUE(sent.value && *sent.value) << "the send outlived its deadline";
  const auto& outcomes = **sent.value;
  ASSERT_EQ(outcomes.size(), 3u);
  for (std::size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    expect_unconfirmed(outcomes[i], "within 5000 ms");
  }
  ASSERT_FALSE(outcomes[2]) << "a message that never went out was reported stored";
  EXPECT_EQ(outcomes[2].error().code, qrt::errc::timeout) << outcomes[2].error().to_string();
  EXPECT_EQ(outcomes[2].error().message.find("may or may not"), std::string::npos)
      << "a message never handed to the broker was called maybe stored: "
      << outcomes[2].error().to_string();
}

/// Receives one message from a broker that confirms settlements only when told, and settles it
/// (complete): the outcome is with the broker, its confirmation held back.
template <class Broker>
void settle_one_unconfirmed(Broker& broker, engine_harness& h,
                            answer<qrt::result<std::vector<qrt::result<void>>>>& settled) {
  receiver_spec spec = receiver_on("q", 1);
  spec.confirm_settlement = true;
  answer<qrt::result<std::vector<inbound>>> got;
  h.e.receive("r1", spec, 1, 2s, h.now, got.into());
  h.exchange();
  ASSERT_TRUE(got.value && *got.value);
  ASSERT_EQ((*got.value)->size(), 1u);
  h.e.settle(settle_items{{(**got.value)[0].ref, outcome::accepted()}}, 5s, h.now, settled.into());
  h.exchange();
  ASSERT_EQ(broker.accepted, 1) << "the outcome did not reach the broker";
  ASSERT_FALSE(settled.value) << "the settlement finished before the broker confirmed it";
}

/// A settlement whose confirmation never came: the broker may have applied it, so it fails
/// transient saying so, never `closed` (which reads as not done).
void expect_unconfirmed_settlement(const qrt::result<std::vector<qrt::result<void>>>& settled,
                                   const std::string& reason) {
  ASSERT_TRUE(settled) << settled.error().to_string();
  ASSERT_EQ(settled->size(), 1u);
  const auto& item = (*settled)[0];
  ASSERT_FALSE(item) << "a settlement the broker never confirmed was reported done";
  EXPECT_EQ(item.error().code, qrt::errc::unconfirmed)
      << "reported as not applied: " << item.error().to_string();
  EXPECT_TRUE(item.error().is_transient()) << item.error().to_string();
  EXPECT_NE(item.error().message.find("may or may not have been applied"), std::string::npos)
      << item.error().to_string();
  EXPECT_NE(item.error().message.find(reason), std::string::npos) << item.error().to_string();
}

// In settle mode "second" a settlement waits for the broker's confirmation; the connection lost
// before it comes leaves unknown whether the broker applied it.
TEST(amqp_engine, a_settlement_unconfirmed_when_the_connection_drops_may_have_been_applied) {
  confirm_later_queue broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> settled;
  ASSERT_NO_FATAL_FAILURE(settle_one_unconfirmed(broker, h, settled));
  h.hang_up();
  ASSERT_TRUE(settled.value) << "the settlement did not finish with the connection";
  ASSERT_NO_FATAL_FAILURE(expect_unconfirmed_settlement(*settled.value, "end of file"));
}

// A settlement whose confirmation does not come within its own timeout is in the same place:
// the outcome went out, so the broker may have applied it; a plain timeout would read as not
// applied.
TEST(amqp_engine, a_settlement_unconfirmed_within_its_timeout_may_have_been_applied) {
  confirm_later_queue broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> settled;
  const auto asked = h.now;
  ASSERT_NO_FATAL_FAILURE(settle_one_unconfirmed(broker, h, settled));  // within 5 s
  h.tick_at(asked + 4999ms);
  ASSERT_FALSE(settled.value) << "the settlement finished before its timeout";
  h.tick_at(asked + 5s);
  ASSERT_TRUE(settled.value) << "the settlement outlived its timeout";
  ASSERT_NO_FATAL_FAILURE(expect_unconfirmed_settlement(*settled.value, "within 5000 ms"));
  EXPECT_NE((**settled.value)[0].error().message.find("a message from 'q' ("), std::string::npos)
      << (**settled.value)[0].error().to_string();
}

// The same for a close that ends before the confirmation comes: the outcome went out before the
// close, so the caller told `closed` would take a completed message for one still to settle.
TEST(amqp_engine, a_settlement_unconfirmed_at_close_is_not_reported_closed) {
  confirm_later_queue broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> settled;
  ASSERT_NO_FATAL_FAILURE(settle_one_unconfirmed(broker, h, settled));
  const auto close_timeout = engine_harness::broker_test().close_timeout;
  const auto asked = h.now;
  bool closed = false;
  h.e.shutdown(h.now, [&] { closed = true; });
  h.exchange();
  h.tick_at(asked + close_timeout - 1ms);
  EXPECT_FALSE(closed) << "the close gave up on the confirmation before close_timeout";
  h.tick_at(asked + close_timeout);
  ASSERT_TRUE(closed) << "the close took longer than close_timeout";
  ASSERT_TRUE(settled.value) << "the settlement did not finish with the close";
  ASSERT_NO_FATAL_FAILURE(expect_unconfirmed_settlement(*settled.value, "closed"));
}

// A settlement whose receiver link ends before the broker confirmed it (the broker detaches the
// link, or qrt closes it) is in the same place as one cut off by a lost connection: the broker
// may have applied it. The caller is told so, transient, with the queue it came from and why the
// link ended, never `closed` (not done) nor the detach's own error (which reads as a refusal).
void expect_unconfirmed_settlement_on_q(const qrt::result<std::vector<qrt::result<void>>>& settled,
                                        const std::string& reason) {
  ASSERT_NO_FATAL_FAILURE(expect_unconfirmed_settlement(settled, reason));
  const qrt::error& e = (*settled)[0].error();
  EXPECT_NE(e.message.find("a message from 'q' ("), std::string::npos) << e.to_string();
}

TEST(amqp_engine, a_settlement_unconfirmed_when_the_broker_detaches_the_link_names_the_queue) {
  confirm_later_queue broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> settled;
  ASSERT_NO_FATAL_FAILURE(settle_one_unconfirmed(broker, h, settled));
  ASSERT_EQ(broker.held.size(), 1u);
  broker.held.front().sender().close(
      proton::error_condition("amqp:resource-deleted", "queue 'q' was deleted"));
  h.to_engine += h.peer("");
  h.exchange();
  ASSERT_TRUE(settled.value) << "the settlement did not finish with its link";
  ASSERT_NO_FATAL_FAILURE(
      expect_unconfirmed_settlement_on_q(*settled.value, "queue 'q' was deleted"));
  EXPECT_EQ((**settled.value)[0].error().provider_code, "amqp:resource-deleted");
}

TEST(amqp_engine, a_settlement_unconfirmed_when_the_broker_detaches_without_error_names_the_queue) {
  confirm_later_queue broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> settled;
  ASSERT_NO_FATAL_FAILURE(settle_one_unconfirmed(broker, h, settled));
  ASSERT_EQ(broker.held.size(), 1u);
  broker.held.front().sender().close();
  h.to_engine += h.peer("");
  h.exchange();
  ASSERT_TRUE(settled.value) << "the settlement did not finish with its link";
  ASSERT_NO_FATAL_FAILURE(expect_unconfirmed_settlement_on_q(
      *settled.value, "the broker detached the receiver link from 'q'"));
}

TEST(amqp_engine, a_settlement_unconfirmed_when_qrt_closes_the_receiver_names_the_queue) {
  confirm_later_queue broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> settled;
  ASSERT_NO_FATAL_FAILURE(settle_one_unconfirmed(broker, h, settled));
  h.e.close_receiver("r1", h.now);
  h.exchange();
  ASSERT_TRUE(settled.value) << "the settlement did not finish with its link";
  ASSERT_NO_FATAL_FAILURE(expect_unconfirmed_settlement_on_q(*settled.value, "was closed"));
}

// A close waits for the confirmation of a settlement already sent, as it waits for the outcome
// of a send: ended first, the settlement's fate would be unknown although the broker was about
// to answer. The answer that comes within close_timeout is reported as it is.
TEST(amqp_engine, a_settlement_confirmed_during_the_close_is_reported_done) {
  confirm_later_queue broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> settled;
  ASSERT_NO_FATAL_FAILURE(settle_one_unconfirmed(broker, h, settled));
  bool closed = false;
  h.e.shutdown(h.now, [&] { closed = true; });
  h.exchange();
  EXPECT_FALSE(closed) << "the close did not wait for the confirmation of the settlement";
  ASSERT_FALSE(settled.value) << "the settlement finished before the broker confirmed it: "
                              << settled.value->value()[0].error().to_string();

  broker.confirm_held();
  h.to_engine += h.peer("");
  h.exchange();
  ASSERT_TRUE(settled.value && *settled.value);
  ASSERT_EQ((**settled.value).size(), 1u);
  EXPECT_TRUE((**settled.value)[0]) << (**settled.value)[0].error().to_string();
  EXPECT_TRUE(closed) << "the close did not end once the confirmation came";
}

// The broker's refusal that comes during the close is the settlement's outcome too: its error,
// not "unconfirmed".
TEST(amqp_engine, a_settlement_refused_during_the_close_reports_the_brokers_error) {
  confirm_later_queue broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> settled;
  ASSERT_NO_FATAL_FAILURE(settle_one_unconfirmed(broker, h, settled));
  bool closed = false;
  h.e.shutdown(h.now, [&] { closed = true; });
  h.exchange();
  ASSERT_FALSE(settled.value) << "the settlement finished before the broker answered it";

  broker.refuse_held();
  h.to_engine += h.peer("");
  h.exchange();
  ASSERT_TRUE(settled.value && *settled.value);
  ASSERT_EQ((**settled.value).size(), 1u);
  const auto& item = (**settled.value)[0];
  ASSERT_FALSE(item) << "a refused settlement was reported done";
  EXPECT_EQ(item.error().provider_code, "com.microsoft:message-lock-lost")
      << item.error().to_string();
  EXPECT_NE(item.error().code, qrt::errc::unconfirmed) << item.error().to_string();
  EXPECT_TRUE(closed) << "the close did not end once the answer came";
}

// A call whose messages never went out (no credit for them) is certainly not sent: it fails
// with closed at once, while the call sent before it waits for its outcomes.
TEST(amqp_engine, a_send_queued_at_close_fails_closed_while_the_one_in_flight_gets_its_outcome) {
  small_holding_queue broker;  // two credits: the first call takes both
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> in_flight;
  send_two(h, in_flight);
  answer<qrt::result<std::vector<qrt::result<void>>>> queued;
  std::vector<qrt::amqp::detail::outgoing_delivery> deliveries(1);
  deliveries[0].bytes = encoded_message("third");
  h.e.send("q", std::move(deliveries), 5s, h.now, queued.into());
  h.exchange();
  ASSERT_EQ(broker.held.size(), 2u) << "the broker's credit let more than two through";

  bool closed = false;
  h.e.shutdown(h.now, [&] { closed = true; });
  h.exchange();
  ASSERT_TRUE(queued.value) << "the call that sent nothing still waits";
  ASSERT_FALSE(*queued.value);
  EXPECT_EQ(queued.value->error().code, qrt::errc::closed) << queued.value->error().to_string();
  EXPECT_FALSE(in_flight.value) << "the call in flight finished before its outcomes came";

  for (auto& d : broker.held) d.accept();
  h.to_engine += h.brokers.back()->exchange({});
  h.exchange();
  ASSERT_TRUE(in_flight.value && *in_flight.value);
  for (const auto& outcome : **in_flight.value) {
    EXPECT_TRUE(outcome) << outcome.error().to_string();
  }
  EXPECT_TRUE(closed);
  EXPECT_EQ(broker.held.size(), 2u) << "a message queued at the close went out";
}

// A call waiting for room under max_links when the close begins never went out: it fails with
// closed at once, and no link is attached for it while the close waits for the outcomes of the
// messages already sent.
TEST(amqp_engine, a_send_waiting_for_a_link_at_close_fails_closed_and_never_attaches) {
  holding_queue_and_management broker;
  endpoint one_link = engine_harness::broker_test();
  one_link.max_links = 1;
  engine_harness h(broker, one_link);
  answer<qrt::result<std::vector<qrt::result<void>>>> in_flight;
  send_two(h, in_flight);
  ASSERT_EQ(broker.held.size(), 2u);
  answer<qrt::result<std::vector<qrt::result<void>>>> waiting;
  std::vector<qrt::amqp::detail::outgoing_delivery> deliveries(1);
  deliveries[0].bytes = encoded_message("elsewhere");
  h.e.send("q2", std::move(deliveries), 5s, h.now, waiting.into());
  h.exchange();
  ASSERT_FALSE(waiting.value) << "the second link was attached past max_links";

  bool closed = false;
  h.e.shutdown(h.now, [&] { closed = true; });
  h.exchange();
  ASSERT_TRUE(waiting.value) << "the call waiting for a link still waits";
  ASSERT_FALSE(*waiting.value);
  EXPECT_EQ(waiting.value->error().code, qrt::errc::closed) << waiting.value->error().to_string();

  for (auto& d : broker.held) d.accept();
  h.to_engine += h.brokers.back()->exchange({});
  h.exchange();
  ASSERT_TRUE(in_flight.value && *in_flight.value);
  for (const auto& outcome : **in_flight.value) {
    EXPECT_TRUE(outcome) << outcome.error().to_string();
  }
  EXPECT_TRUE(closed);
  EXPECT_EQ(
      std::count(broker.attached_from_client.begin(), broker.attached_from_client.end(), "q2"), 0)
      << "a link was attached during the close";
}

/// Holds what is sent to "q" without an outcome (so a close waits), and has a queue "inbox" whose
/// messages go out only when the test delivers one, on the credit the client gave. Counts every
/// disposition the client sends for them.
struct holding_queue_with_inbox : holding_queue_and_management {
  void on_sender_open(proton::sender& s) override {
    holding_queue_and_management::on_sender_open(s);
    if (s.source().address() == "inbox") inbox = s;
  }
  void deliver(const std::string& body) { inbox.send(proton::message(body)); }
  void on_tracker_accept(proton::tracker&) override { ++accepted; }
  void on_tracker_reject(proton::tracker&) override { ++rejected; }
  void on_tracker_release(proton::tracker&) override { ++released; }
  int dispositions() const { return accepted + rejected + released; }
  proton::sender inbox;
  int accepted = 0;
  int rejected = 0;
  int released = 0;
};

// While the close waits for the outcomes of sends, the connection is still open and a broker may
// still deliver on credit given before. A receive waiting when the close begins fails closed at
// once, and what arrives afterwards is never handed to anyone: the caller could not settle it
// any more, and the broker would deliver it again later, a duplicate nobody asked for. It is not
// accepted either: it goes back to the broker with the rest of the prefetch (docs/amqp.md).
TEST(amqp_engine, a_receive_waiting_at_close_fails_closed_and_a_later_delivery_is_not_handed_out) {
  holding_queue_with_inbox broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> sent;
  send_two(h, sent);
  ASSERT_EQ(broker.held.size(), 2u);
  answer<qrt::result<std::vector<inbound>>> waiting;
  h.e.receive("r1", receiver_on("inbox", 1), 1, 30s, h.now, waiting.into());
  h.exchange();
  ASSERT_FALSE(waiting.value) << "the inbox is empty: the receive should wait";
  ASSERT_EQ(broker.inbox.credit(), 1) << "the receive gave no credit before the close";

  bool closed = false;
  h.e.shutdown(h.now, [&] { closed = true; });
  h.exchange();
  ASSERT_FALSE(closed) << "the close did not wait for the outcomes of the messages in flight";
  ASSERT_TRUE(waiting.value) << "the receive waiting when the close began still waits";
  ASSERT_FALSE(*waiting.value) << "handed " << (*waiting.value)->size() << " messages";
  EXPECT_EQ(waiting.value->error().code, qrt::errc::closed) << waiting.value->error().to_string();

  broker.deliver("late");
  h.to_engine += h.peer("");
  h.exchange();
  answer<qrt::result<std::vector<inbound>>> after_close;
  h.e.receive("r1", receiver_on("inbox", 1), 1, 0ms, h.now, after_close.into());
  h.exchange();
  ASSERT_TRUE(after_close.value);
  ASSERT_FALSE(*after_close.value) << "a receive after the close began was handed "
                                   << (*after_close.value)->size() << " messages";
  EXPECT_EQ(after_close.value->error().code, qrt::errc::closed)
      << after_close.value->error().to_string();
  EXPECT_EQ(broker.dispositions(), 0) << "the delivery was settled while the close waited";
  EXPECT_EQ(broker.inbox.credit(), 0) << "credit was given after the close began";

  for (auto& d : broker.held) d.accept();
  h.to_engine += h.peer("");
  h.exchange();
  ASSERT_TRUE(closed) << "the close did not end once the outcomes came";
  EXPECT_EQ(broker.accepted, 0) << "the delivery no one was handed was accepted";
  EXPECT_EQ(broker.released, 1) << "the delivery did not go back with the prefetch";
}

// A receive whose attach the broker answers only after the close began gets no credit for it:
// nothing that would come on it could be handed out or settled.
TEST(amqp_engine, no_credit_is_given_once_the_close_begins) {
  holding_queue_with_inbox broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> sent;
  send_two(h, sent);
  ASSERT_EQ(broker.held.size(), 2u);
  answer<qrt::result<std::vector<inbound>>> waiting;
  h.e.receive("r1", receiver_on("inbox", 5), 1, 30s, h.now, waiting.into());
  bool closed = false;
  h.e.shutdown(h.now, [&] { closed = true; });  // before the attach reached the broker
  h.exchange();
  ASSERT_FALSE(closed) << "the close did not wait for the outcomes of the messages in flight";
  ASSERT_TRUE(broker.inbox) << "the receiver link was never attached";
  EXPECT_EQ(broker.inbox.credit(), 0) << "credit was given after the close began";
  ASSERT_TRUE(waiting.value) << "the receive waiting when the close began still waits";
  ASSERT_FALSE(*waiting.value);
  EXPECT_EQ(waiting.value->error().code, qrt::errc::closed) << waiting.value->error().to_string();
}

/// Starts a message in several frames on the first credit, then (abort_and_send_another) gives
/// it up with an aborted transfer and sends a whole message after it.
struct aborting_sender : echoing_broker {
  void on_sendable(proton::sender& s) override {
    if (link) return;
    link = s;
    pn_link_t* l = proton::internal::factory<proton::link>::unwrap(s);
    const std::string bytes = encoded_message(std::string(5000, 'x'));
    started = pn_delivery(l, pn_dtag("a", 1));
    pn_link_send(l, bytes.data(), bytes.size() / 2);  // not advanced: more frames to come
  }
  void abort_and_send_another() {
    pn_delivery_abort(started);
    link.send(proton::message("after"));
  }
  proton::sender link;
  pn_delivery_t* started = nullptr;
};

// A sender may give a message up halfway (an aborted transfer). That delivery is dropped, and
// only it: the message after it on the link is handed out. Before, the aborted delivery stayed
// the link's current one, every later message waited behind it for ever (receives came back
// empty), and each receive granted more credit for messages that piled up unseen.
TEST(amqp_engine, an_aborted_delivery_is_dropped_and_the_next_one_handed_out) {
  aborting_sender broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<inbound>>> got;
  h.e.receive("r1", receiver_on("q", 2), 1, 5s, h.now, got.into());
  h.exchange();
  ASSERT_NE(broker.started, nullptr) << "the broker did not start the first message";
  broker.abort_and_send_another();
  h.to_engine += h.brokers.back()->exchange({});  // the broker writes the abort and the next one
  h.exchange();
  ASSERT_TRUE(got.value) << "the message after the aborted one was not handed out";
  ASSERT_TRUE(*got.value) << got.value->error().to_string();
  ASSERT_EQ((*got.value)->size(), 1u);
  EXPECT_EQ((**got.value)[0].message.message.body, "after");
}

/// A $management node that starts its answer to the first request in several frames and
/// answers every later one whole; abort_first_answer() gives the first answer up.
struct node_aborting_its_first_answer : management_node {
  void on_message(proton::delivery& d, proton::message& request) override {
    if (started) {
      management_node::on_message(d, request);
      return;
    }
    d.accept();
    reply_link = reply_links.at(request.reply_to());
    proton::message answer(std::string(5000, 'x'));
    answer.correlation_id(request.id());
    std::vector<char> bytes;
    answer.encode(bytes);
    pn_link_t* l = proton::internal::factory<proton::link>::unwrap(reply_link);
    started = pn_delivery(l, pn_dtag("a", 1));
    pn_link_send(l, bytes.data(), bytes.size() / 2);  // not advanced: more frames to come
  }
  void abort_first_answer() { pn_delivery_abort(started); }
  proton::sender reply_link;
  pn_delivery_t* started = nullptr;
};

// The same on a request node's reply link: the next request is still answered.
TEST(amqp_engine, an_aborted_reply_holds_back_no_later_reply) {
  node_aborting_its_first_answer broker;
  engine_harness h(broker);
  answer<qrt::result<proton::message>> first;
  h.e.request("$management", proton::message("ping"), 5s, h.now, first.into());
  h.exchange();
  ASSERT_NE(broker.started, nullptr) << "the node did not start its first answer";
  broker.abort_first_answer();
  answer<qrt::result<proton::message>> second;
  h.e.request("$management", proton::message("ping"), 5s, h.now, second.into());
  h.exchange();
  ASSERT_TRUE(second.value) << "the second request's answer waited behind the aborted one";
  ASSERT_TRUE(*second.value) << second.value->error().to_string();
  EXPECT_EQ(proton::get<std::string>((*second.value)->body()), "pong");
  EXPECT_FALSE(first.value) << "an aborted answer is no answer; the first request waits";
}

/// A $management node whose first answer is a delivery that is not an AMQP message.
struct node_garbling_its_first_answer : management_node {
  void on_message(proton::delivery& d, proton::message& request) override {
    if (++answered > 1) {
      management_node::on_message(d, request);
      return;
    }
    d.accept();
    pn_link_t* l =
        proton::internal::factory<proton::link>::unwrap(reply_links.at(request.reply_to()));
    pn_delivery(l, pn_dtag("g", 1));
    const char junk[] = "\x00\x53\x77\xa1\xff not a message";
    pn_link_send(l, junk, sizeof junk - 1);
    pn_link_advance(l);
  }
  int answered = 0;
};

// Proton's driver catches what decoding such a reply throws (qrt never sees it): only that
// request goes unanswered and times out; the connection stays, and the next request on the
// same node is answered.
TEST(amqp_engine, a_reply_that_is_not_a_message_fails_only_its_request) {
  node_garbling_its_first_answer broker;
  engine_harness h(broker);
  answer<qrt::result<proton::message>> first;
  h.e.request("$management", proton::message("ping"), 1s, h.now, first.into());
  h.exchange();
  h.tick_at(h.now + 2s);
  ASSERT_TRUE(first.value);
  ASSERT_FALSE(*first.value);
  EXPECT_EQ(first.value->error().code, qrt::errc::timeout) << first.value->error().to_string();
  const auto generation = h.e.generation();
  answer<qrt::result<proton::message>> second;
  h.e.request("$management", proton::message("ping"), 1s, h.now, second.into());
  h.exchange();
  ASSERT_TRUE(second.value && *second.value) << "the request after the garbled answer";
  EXPECT_EQ(proton::get<std::string>((*second.value)->body()), "pong");
  EXPECT_EQ(h.e.generation(), generation) << "the connection was dropped for one bad reply";
}

TEST(amqp_engine, garbage_from_the_peer_is_a_framing_error_and_reading_stops) {
  const std::string garbage(1 << 20, '\x5a');
  bool answered = false;
  engine_harness h([&]() -> engine_harness::peer_fn {
    return [&](std::string_view) {
      if (answered) return std::string();
      answered = true;
      return "HTTP/1.1 400 Bad Request\r\n\r\n" + garbage;
    };
  });
  answer<qrt::result<void>> connected;
  h.e.connect(5s, h.now, connected.into());
  h.exchange();
  ASSERT_TRUE(connected.value);
  ASSERT_FALSE(*connected.value);
  EXPECT_EQ(connected.value->error().provider_code, "amqp:connection:framing-error");
  EXPECT_EQ(connected.value->error().code, qrt::errc::connection_failed);
  EXPECT_NE(connected.value->error().message.find("amqp://broker.test:5672"), std::string::npos);
  EXPECT_LE(h.bytes_taken, 64u * 1024) << "took bytes after the protocol header was refused";
  EXPECT_FALSE(h.attempt) << "the refused attempt's stream is still in use";
  EXPECT_EQ(h.e.generation(), 0u);
}

// Reconnecting is time too: after a failed attempt the next one waits out the back-off
// (endpoint::reconnect_initial_delay, 100 ms), however soon it is asked for.
TEST(amqp_engine, a_failed_attempt_is_retried_only_once_the_back_off_has_passed) {
  echoing_broker broker;
  engine_harness h(broker);
  answer<qrt::result<void>> first;
  h.e.connect(5s, h.now, first.into());
  const auto refused = h.e.take_stream_request();
  ASSERT_TRUE(refused);
  h.e.stream_failed(*refused, qrt::fail(qrt::errc::connection_failed, "refused"), h.now);
  ASSERT_TRUE(first.value);
  ASSERT_FALSE(*first.value);

  answer<qrt::result<void>> second;
  h.e.connect(5s, h.now, second.into());
  EXPECT_FALSE(h.e.take_stream_request()) << "tried again before the back-off passed";
  h.tick_at(h.now + 50ms);
  EXPECT_EQ(h.attempts, 0) << "tried again before the back-off passed";
  EXPECT_FALSE(second.value);

  h.tick_at(h.now + 100ms);
  EXPECT_EQ(h.attempts, 1);
  ASSERT_TRUE(second.value);
  EXPECT_TRUE(*second.value) << second.value->error().to_string();
  EXPECT_EQ(h.e.generation(), 1u);
}

// RabbitMQ 3.10 answers each session on the channel number the client began it on, and writes
// the frames of different sessions independently of each other: an old session's last frames
// (its detach, its end) can reach the client after a new session's begin on the same number. A
// Proton broker numbers its own channels, and while the old session's end is still to be sent
// it begins the new one on another number; this puts every broker frame on the channel the
// client chose for its session, which gives the wire RabbitMQ's order. Each call is whole
// frames and protocol headers: a memory broker's output for one exchange.
class on_the_clients_channels {
 public:
  std::string operator()(std::string bytes) {
    std::size_t at = 0;
    while (at < bytes.size()) {
      if (bytes.compare(at, 4, "AMQP") == 0) {  // a protocol header
        at += 8;
        continue;
      }
      if (bytes.size() - at < 8) {
        ADD_FAILURE() << "half a frame header from the broker";
        break;
      }
      const auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(bytes[at + i]); };
      const std::size_t size = (std::size_t{byte(0)} << 24) | (std::size_t{byte(1)} << 16) |
                               (std::size_t{byte(2)} << 8) | byte(3);
      const std::size_t body = std::size_t{byte(4)} * 4;
      const bool amqp = byte(5) == 0;
      const auto channel = static_cast<std::uint16_t>((byte(6) << 8) | byte(7));
      if (size < 8 || size > bytes.size() - at) {
        ADD_FAILURE() << "a frame of " << size << " bytes runs past the broker's output";
        break;
      }
      const bool described =
          amqp && size >= body + 3 && byte(body) == 0x00 && byte(body + 1) == 0x53;
      if (described && byte(body + 2) == begin_code) {
        if (auto remote = remote_channel(bytes.substr(at + body + 3, size - body - 3))) {
          clients_channel_[channel] = *remote;
        }
      }
      if (described && byte(body + 2) == end_code && drop_ends) {
        bytes.erase(at, size);
        continue;
      }
      if (auto it = clients_channel_.find(channel); amqp && it != clients_channel_.end()) {
        bytes[at + 6] = static_cast<char>(it->second >> 8);
        bytes[at + 7] = static_cast<char>(it->second & 0xff);
      }
      at += size;
    }
    return bytes;
  }

  bool drop_ends = false;  ///< a broker that never answers a session's end

 private:
  static constexpr std::uint8_t begin_code = 0x11;
  static constexpr std::uint8_t end_code = 0x17;

  /// The begin's first field (remote-channel: the client's channel the broker answers), from
  /// the begin's field list; nullopt when it is not set.
  static std::optional<std::uint16_t> remote_channel(std::string_view list) {
    std::size_t first = 0;
    if (list.empty()) return std::nullopt;
    switch (static_cast<std::uint8_t>(list[0])) {
      case 0xc0:
        first = 3;
        break;  // list8: size, count
      case 0xd0:
        first = 9;
        break;  // list32: size, count
      default:
        return std::nullopt;  // list0, or not a list
    }
    if (list.size() < first + 3 || static_cast<std::uint8_t>(list[first]) != 0x60) {
      return std::nullopt;  // null, or missing
    }
    return static_cast<std::uint16_t>((static_cast<std::uint8_t>(list[first + 1]) << 8) |
                                      static_cast<std::uint8_t>(list[first + 2]));
  }

  std::map<std::uint16_t, std::uint16_t> clients_channel_;  ///< broker's channel -> client's
};

/// A queue of messages behind a broker whose frames go out on the client's channel numbers, and
/// an engine talking to it.
struct renumbered_queue {
  queue_with_messages broker;
  on_the_clients_channels renumber;
  std::unique_ptr<memory_broker> peer;
  engine_harness h{[this]() -> engine_harness::peer_fn {
    peer = std::make_unique<memory_broker>(broker);
    return [this](std::string_view in) { return renumber(peer->exchange(in)); };
  }};

  /// Attaches receiver link "r1" to the queue.
  void attach_first_receiver() {
    answer<qrt::result<qrt::amqp::detail::link_info>> first;
    h.e.open_receiver("r1", receiver_on("q", 1), 5s, h.now, first.into());
    h.exchange();
    ASSERT_TRUE(first.value && *first.value);
  }
};

// A link closed and the next opened in the same turn: the client's end for the old session and
// its begin for the new one go out together, and Proton gives the new session the channel
// number the old one just freed. The broker's detach and end for the old session must not land
// on the new one (its link would read as detached by the broker, or the broker's frames for it
// as frames on a handle never attached).
TEST(amqp_engine, a_session_begins_only_once_the_broker_ended_the_one_before_on_its_channel) {
  renumbered_queue f;
  ASSERT_NO_FATAL_FAILURE(f.attach_first_receiver());
  engine_harness& h = f.h;

  h.e.close_receiver("r1", h.now);
  answer<qrt::result<std::vector<inbound>>> got;
  h.e.receive("r2", receiver_on("q", 1), 1, 5s, h.now, got.into());
  h.exchange();
  ASSERT_TRUE(got.value) << "no answer to the receive on the new link";
  ASSERT_TRUE(*got.value) << got.value->error().to_string();
  ASSERT_EQ((*got.value)->size(), 1u);
  EXPECT_EQ(h.e.generation(), 1u) << "the connection was lost on the way";
}

// A broker that never answers an end (RabbitMQ 3.10, now and then) holds the next new link back
// for unanswered_end_wait, no longer: the receive on it waits, then attaches and gets its message.
TEST(amqp_engine, an_end_the_broker_never_answers_holds_new_links_back_only_briefly) {
  renumbered_queue f;
  ASSERT_NO_FATAL_FAILURE(f.attach_first_receiver());
  engine_harness& h = f.h;

  f.renumber.drop_ends = true;
  const engine::time_point closed = h.now;
  h.e.close_receiver("r1", closed);
  answer<qrt::result<std::vector<inbound>>> got;
  h.e.receive("r2", receiver_on("q", 1), 1, 60s, closed, got.into());
  h.exchange();
  const auto hold = qrt::amqp::detail::unanswered_end_wait;
  h.tick_at(closed + hold - 1ms);
  EXPECT_FALSE(got.value) << "the new link began while the end was unanswered";
  h.tick_at(closed + hold);
  ASSERT_TRUE(got.value) << "the new link still waits after unanswered_end_wait";
  ASSERT_TRUE(*got.value) << got.value->error().to_string();
  EXPECT_EQ((*got.value)->size(), 1u);
}

// No answer, and no clock: the request fails with timeout exactly when tick() is given a time
// past its deadline, and not a moment before.
struct silent_node : echoing_broker {
  void on_message(proton::delivery& d, proton::message&) override {
    ++requests;
    d.accept();
  }
  int requests = 0;
};

TEST(amqp_engine, a_request_times_out_when_tick_is_given_a_time_past_its_deadline) {
  silent_node broker;
  engine_harness h(broker);
  const engine::time_point asked = h.now;
  answer<qrt::result<proton::message>> reply;
  h.e.request("$cbs", proton::message("put-token"), 5s, asked, reply.into());
  h.exchange();
  EXPECT_EQ(broker.requests, 1);
  EXPECT_LE(h.e.next_deadline(), asked + 5s) << "the engine does not say when to wake it";

  h.tick_at(asked + 4999ms);
  EXPECT_FALSE(reply.value) << "failed before its deadline";

  h.tick_at(asked + 5s);
  ASSERT_TRUE(reply.value);
  ASSERT_FALSE(*reply.value);
  EXPECT_EQ(reply.value->error().code, qrt::errc::timeout) << reply.value->error().to_string();
}

// What a probe costs the broker, counted where the broker sees it: the sessions begun and
// ended, and the links attached and detached.
struct counting_queue : echoing_broker {
  void on_session_open(proton::session& s) override {
    ++begins;
    echoing_broker::on_session_open(s);
  }
  void on_session_close(proton::session& s) override {
    ++ends;
    echoing_broker::on_session_close(s);
  }
  void on_sender_open(proton::sender& s) override {
    if (!s.active()) ++attaches;
    echoing_broker::on_sender_open(s);
  }
  void on_sender_close(proton::sender& s) override {
    ++detaches;
    echoing_broker::on_sender_close(s);
  }
  int begins = 0;
  int ends = 0;
  int attaches = 0;
  int detaches = 0;
};

// RabbitMQ 3.10 refuses an attach to a missing queue by ending the whole session, with a reason
// that names no link, and what comes on that session after it is dropped unanswered: here the
// broker does the same for the address "missing".
struct session_ending_queue : counting_queue {
  void on_sender_open(proton::sender& s) override {
    if (s.active()) return;
    if (!s.session().active()) return;  // ended: the attach goes unanswered
    if (s.source().address() == "missing") {
      ++attaches;
      s.session().close(proton::error_condition("amqp:not-found", "no queue 'missing' here"));
      return;
    }
    counting_queue::on_sender_open(s);
  }
};

TEST(amqp_engine, probes_answered_one_after_another_share_one_session_never_ended) {
  counting_queue broker;
  engine_harness h(broker);
  for (int i = 0; i < 3; ++i) {
    answer<qrt::result<void>> probed;
    h.e.probe("q", 5s, h.now, probed.into());
    h.exchange();
    ASSERT_TRUE(probed.value) << "probe " << i << " got no answer";
    EXPECT_TRUE(*probed.value) << probed.value->error().to_string();
  }
  EXPECT_EQ(broker.attaches, 3);
  EXPECT_EQ(broker.detaches, 3) << "a probe's link stayed attached after its answer";
  EXPECT_EQ(broker.begins, 1) << "a probe began a session of its own";
  EXPECT_EQ(broker.ends, 0) << "a probe ended the session the next one could have used";
  EXPECT_EQ(h.e.current_usage().links, 0u);
}

TEST(amqp_engine, a_refusal_that_ends_the_probe_session_fails_only_the_probe_it_refused) {
  session_ending_queue broker;
  engine_harness h(broker);
  answer<qrt::result<void>> connected;
  h.e.connect(5s, h.now, connected.into());
  h.exchange();
  ASSERT_TRUE(connected.value && *connected.value);

  // Both attaches go out before the broker answers either: the end it sends for the first must
  // not fail the second.
  answer<qrt::result<void>> missing;
  answer<qrt::result<void>> present;
  h.e.probe("missing", 5s, h.now, missing.into());
  h.e.probe("q", 5s, h.now, present.into());
  h.exchange();
  ASSERT_TRUE(missing.value && present.value) << "a probe got no answer";
  ASSERT_FALSE(*missing.value) << "a missing queue passed its probe";
  EXPECT_EQ(missing.value->error().code, qrt::errc::queue_not_found)
      << missing.value->error().to_string();
  EXPECT_TRUE(*present.value) << "the other probe was failed by the refusal: "
                              << present.value->error().to_string();

  answer<qrt::result<void>> after;
  h.e.probe("q", 5s, h.now, after.into());
  h.exchange();
  ASSERT_TRUE(after.value);
  EXPECT_TRUE(*after.value) << after.value->error().to_string();
  EXPECT_EQ(h.e.generation(), 1u) << "the connection was lost on the way";
  EXPECT_EQ(h.e.current_usage().links, 0u);
}

// A probe whose answer never came may still be refused, and a refusal ends its session: the
// probe that timed out takes the probe session with it, and the next probe begins another.
struct silent_on_slow : counting_queue {
  void on_sender_open(proton::sender& s) override {
    if (!s.active() && s.source().address() == "slow") {
      ++attaches;
      return;  // never answered
    }
    counting_queue::on_sender_open(s);
  }
};

TEST(amqp_engine, a_probe_that_times_out_leaves_the_next_one_a_session_of_its_own) {
  silent_on_slow broker;
  engine_harness h(broker);
  const engine::time_point asked = h.now;
  answer<qrt::result<void>> slow;
  h.e.probe("slow", 5s, asked, slow.into());
  h.exchange();
  EXPECT_FALSE(slow.value) << "answered by a broker that never answered";
  h.tick_at(asked + 5s);
  ASSERT_TRUE(slow.value) << "the probe outlived its timeout";
  ASSERT_FALSE(*slow.value);
  EXPECT_EQ(slow.value->error().code, qrt::errc::timeout) << slow.value->error().to_string();

  answer<qrt::result<void>> next;
  h.e.probe("q", 5s, h.now, next.into());
  h.exchange();
  ASSERT_TRUE(next.value);
  EXPECT_TRUE(*next.value) << next.value->error().to_string();
  EXPECT_EQ(broker.begins, 2) << "the next probe went on the session of the one that timed out";
  EXPECT_EQ(h.e.current_usage().links, 0u);
}

// ---------- a request whose answer never comes ----------

using qrt::amqp::detail::request_kind;

request_kind changes_state(std::string operation) {
  return request_kind{std::move(operation), true};
}
request_kind reads(std::string operation) {
  return request_kind{std::move(operation), false};
}

/// Sent, it may have been applied: transient, saying so, naming the node, the operation and the
/// reason, never `closed` (which reads as not done).
void expect_unconfirmed_request(const qrt::result<proton::message>& reply,
                                std::string_view operation, std::string_view reason) {
  ASSERT_FALSE(reply) << "a request never answered reported an answer";
  const qrt::error& e = reply.error();
  EXPECT_EQ(e.code, qrt::errc::unconfirmed) << "reported as not done: " << e.to_string();
  EXPECT_TRUE(e.is_transient()) << e.to_string();
  EXPECT_NE(e.message.find("may or may not have been applied"), std::string::npos) << e.to_string();
  EXPECT_NE(e.message.find("'q/$management'"), std::string::npos) << e.to_string();
  EXPECT_NE(e.message.find(operation), std::string::npos) << e.to_string();
  EXPECT_NE(e.message.find(reason), std::string::npos) << e.to_string();
}

/// A read, or a request never sent: the plain reason, and no claim that it may have happened.
void expect_plainly_failed_request(const qrt::result<proton::message>& reply,
                                   std::string_view operation, std::string_view what,
                                   std::string_view reason) {
  ASSERT_FALSE(reply) << "a request never answered reported an answer";
  const qrt::error& e = reply.error();
  EXPECT_NE(e.code, qrt::errc::unconfirmed) << "called maybe applied: " << e.to_string();
  EXPECT_EQ(e.message.find("may or may not"), std::string::npos)
      << "called maybe applied: " << e.to_string();
  EXPECT_NE(e.message.find("'q/$management'"), std::string::npos) << e.to_string();
  EXPECT_NE(e.message.find(operation), std::string::npos) << e.to_string();
  EXPECT_NE(e.message.find(what), std::string::npos) << e.to_string();
  EXPECT_NE(e.message.find(reason), std::string::npos) << e.to_string();
}

TEST(amqp_engine, a_state_change_sent_when_the_connection_drops_is_unconfirmed_a_read_is_not) {
  silent_node broker;  // takes every request, answers none
  engine_harness h(broker);
  answer<qrt::result<proton::message>> renewed;
  answer<qrt::result<proton::message>> peeked;
  h.e.request("q/$management", proton::message("renew"), 5s, h.now, renewed.into(),
              changes_state("renew-lock"));
  h.e.request("q/$management", proton::message("peek"), 5s, h.now, peeked.into(),
              reads("peek-message"));
  h.exchange();
  ASSERT_EQ(broker.requests, 2) << "the requests did not reach the broker";
  h.hang_up();
  ASSERT_TRUE(renewed.value && peeked.value) << "the requests did not end with the connection";
  expect_unconfirmed_request(*renewed.value, "renew-lock", "end of file");
  expect_plainly_failed_request(*peeked.value, "peek-message", "got no answer", "end of file");
  EXPECT_TRUE(peeked.value->error().is_transient()) << peeked.value->error().to_string();
}

// The broker grants the request link no credit: the request never goes out.
struct creditless_node : silent_node {
  void on_receiver_open(proton::receiver& r) override {
    if (r.active()) return;
    r.open(proton::receiver_options()
               .credit_window(0)
               .source(proton::source_options().address(r.source().address()))
               .target(proton::target_options().address(r.target().address())));
  }
};

// A state change sent and unanswered when its timeout passes may have been applied: unconfirmed,
// the timeout as the reason. A read sent, or a state change never sent (no credit), changed
// nothing: a plain timeout.
TEST(amqp_engine, a_state_change_sent_and_unanswered_by_its_deadline_is_unconfirmed_a_read_not) {
  silent_node broker;
  engine_harness h(broker);
  const auto asked = h.now;
  answer<qrt::result<proton::message>> renewed;
  answer<qrt::result<proton::message>> peeked;
  h.e.request("q/$management", proton::message("renew"), 5s, asked, renewed.into(),
              changes_state("renew-lock"));
  h.e.request("q/$management", proton::message("peek"), 5s, asked, peeked.into(),
              reads("peek-message"));
  h.exchange();
  ASSERT_EQ(broker.requests, 2) << "the requests did not reach the broker";
  h.tick_at(asked + 4999ms);
  ASSERT_FALSE(renewed.value || peeked.value) << "a request failed before its deadline";
  h.tick_at(asked + 5s);
  ASSERT_TRUE(renewed.value && peeked.value) << "a request outlived its deadline";
  expect_unconfirmed_request(*renewed.value, "renew-lock", "within 5000 ms");
  ASSERT_FALSE(*peeked.value);
  EXPECT_EQ(peeked.value->error().code, qrt::errc::timeout) << peeked.value->error().to_string();
  EXPECT_EQ(peeked.value->error().message.find("may or may not"), std::string::npos)
      << peeked.value->error().to_string();
}

TEST(amqp_engine, a_state_change_never_sent_by_its_deadline_is_a_plain_timeout) {
  creditless_node broker;
  engine_harness h(broker);
  const auto asked = h.now;
  answer<qrt::result<proton::message>> renewed;
  h.e.request("q/$management", proton::message("renew"), 5s, asked, renewed.into(),
              changes_state("renew-lock"));
  h.exchange();
  ASSERT_EQ(broker.requests, 0) << "the request went out without credit";
  h.tick_at(asked + 5s);
  ASSERT_TRUE(renewed.value) << "the request outlived its deadline";
  ASSERT_FALSE(*renewed.value);
  EXPECT_EQ(renewed.value->error().code, qrt::errc::timeout) << renewed.value->error().to_string();
  EXPECT_EQ(renewed.value->error().message.find("may or may not"), std::string::npos)
      << renewed.value->error().to_string();
}

TEST(amqp_engine, a_state_change_never_sent_when_the_connection_drops_is_not_called_maybe_applied) {
  creditless_node broker;
  engine_harness h(broker);
  answer<qrt::result<proton::message>> renewed;
  h.e.request("q/$management", proton::message("renew"), 5s, h.now, renewed.into(),
              changes_state("renew-lock"));
  h.exchange();
  ASSERT_EQ(broker.requests, 0) << "the request went out without credit";
  h.hang_up();
  ASSERT_TRUE(renewed.value) << "the request did not end with the connection";
  expect_plainly_failed_request(*renewed.value, "renew-lock", "was not sent", "end of file");
  EXPECT_TRUE(renewed.value->error().is_transient()) << renewed.value->error().to_string();
}

// The broker detaches the request link with an error once it has the request.
struct detaching_node : echoing_broker {
  void on_message(proton::delivery& d, proton::message&) override {
    ++requests;
    d.accept();
    d.receiver().close(
        proton::error_condition("amqp:link:detach-forced", "the node detached the link"));
  }
  int requests = 0;
};

TEST(amqp_engine, a_state_change_sent_when_its_link_detaches_is_unconfirmed_a_read_is_not) {
  detaching_node broker;
  engine_harness h(broker);
  answer<qrt::result<proton::message>> renewed;
  h.e.request("q/$management", proton::message("renew"), 5s, h.now, renewed.into(),
              changes_state("renew-lock"));
  h.exchange();
  ASSERT_EQ(broker.requests, 1);
  ASSERT_TRUE(renewed.value) << "the request did not end with its link";
  expect_unconfirmed_request(*renewed.value, "renew-lock", "the node detached the link");

  answer<qrt::result<proton::message>> peeked;
  h.e.request("q/$management", proton::message("peek"), 5s, h.now, peeked.into(),
              reads("peek-message"));
  h.exchange();
  ASSERT_EQ(broker.requests, 2) << "the node's links were not attached again";
  ASSERT_TRUE(peeked.value) << "the request did not end with its link";
  expect_plainly_failed_request(*peeked.value, "peek-message", "got no answer",
                                "the node detached the link");
}

// A close waits, within close_timeout, for the reply to a state change sent (docs/amqp.md): one
// that never comes leaves it unconfirmed (closed would read as not applied). A read is not waited
// for and fails closed, and a request after the close fails closed.
TEST(amqp_engine, at_close_a_state_change_sent_is_unconfirmed_a_read_and_a_later_request_closed) {
  silent_node broker;
  engine_harness h(broker);
  answer<qrt::result<proton::message>> renewed;
  answer<qrt::result<proton::message>> peeked;
  h.e.request("q/$management", proton::message("renew"), 30s, h.now, renewed.into(),
              changes_state("renew-lock"));
  h.e.request("q/$management", proton::message("peek"), 30s, h.now, peeked.into(),
              reads("peek-message"));
  h.exchange();
  ASSERT_EQ(broker.requests, 2);
  const auto asked = h.now;
  const auto close_timeout = engine_harness::broker_test().close_timeout;
  bool closed = false;
  h.e.shutdown(h.now, [&] { closed = true; });
  h.exchange();
  h.tick_at(asked + close_timeout - 1ms);
  EXPECT_FALSE(closed) << "the close did not wait for the reply to the state change sent";
  h.tick_at(asked + close_timeout);
  ASSERT_TRUE(closed) << "the close took longer than close_timeout";
  ASSERT_TRUE(renewed.value && peeked.value) << "the requests did not end with the close";
  expect_unconfirmed_request(*renewed.value, "renew-lock", "closed");
  ASSERT_FALSE(*peeked.value);
  EXPECT_EQ(peeked.value->error().code, qrt::errc::closed) << peeked.value->error().to_string();

  answer<qrt::result<proton::message>> later;
  h.e.request("q/$management", proton::message("renew"), 5s, h.now, later.into(),
              changes_state("renew-lock"));
  ASSERT_TRUE(later.value) << "a request after the close waited";
  ASSERT_FALSE(*later.value);
  EXPECT_EQ(later.value->error().code, qrt::errc::closed) << later.value->error().to_string();
}

/// A $management node that takes every request and replies only when the test says so.
struct replying_on_demand_node : echoing_broker {
  void on_sender_open(proton::sender& s) override {
    echoing_broker::on_sender_open(s);
    reply_links[s.target().address()] = s;
  }
  void on_message(proton::delivery& d, proton::message& request) override {
    d.accept();
    held.push_back(request);
  }
  void reply_to(const proton::message& request, const std::string& body) {
    proton::message reply(body);
    reply.correlation_id(request.id());
    reply_links.at(request.reply_to()).send(reply);
  }
  std::map<std::string, proton::sender> reply_links;
  std::vector<proton::message> held;
};

// A state change sent before the close may be applied and answered while the close goes on: the
// close waits for that reply, as for a send's outcome, and hands it to the caller, who otherwise
// could only be told "unconfirmed". A read is not waited for: it fails closed at once.
TEST(amqp_engine, at_close_a_state_change_sent_gets_the_reply_that_comes_before_the_close_ends) {
  replying_on_demand_node broker;
  engine_harness h(broker);
  answer<qrt::result<proton::message>> renewed;
  answer<qrt::result<proton::message>> peeked;
  h.e.request("q/$management", proton::message("renew"), 30s, h.now, renewed.into(),
              changes_state("renew-lock"));
  h.e.request("q/$management", proton::message("peek"), 30s, h.now, peeked.into(),
              reads("peek-message"));
  h.exchange();
  ASSERT_EQ(broker.held.size(), 2u) << "the requests did not reach the broker";
  bool closed = false;
  h.e.shutdown(h.now, [&] { closed = true; });
  h.exchange();
  ASSERT_FALSE(closed) << "the close did not wait for the reply to the state change sent";
  EXPECT_FALSE(renewed.value) << "the state change ended before its reply could come";
  ASSERT_TRUE(peeked.value) << "the close waited for the reply to a read";
  ASSERT_FALSE(*peeked.value);
  EXPECT_EQ(peeked.value->error().code, qrt::errc::closed) << peeked.value->error().to_string();

  ASSERT_EQ(proton::get<std::string>(broker.held[0].body()), "renew");
  broker.reply_to(broker.held[0], "renewed");
  h.to_engine += h.peer("");
  h.exchange();
  ASSERT_TRUE(renewed.value) << "the reply that came during the close was not handed over";
  ASSERT_TRUE(*renewed.value) << renewed.value->error().to_string();
  EXPECT_EQ(proton::get<std::string>((*renewed.value)->body()), "renewed");
  EXPECT_TRUE(closed) << "the close did not end once the reply came";
}

/// holding_queue_and_management that never answers the attach of a link from "slow".
struct holding_queue_with_unanswered_attach : holding_queue_and_management {
  void on_sender_open(proton::sender& s) override {
    if (!s.active() && s.source().address() == "slow") {
      ++unanswered_attaches;
      return;
    }
    holding_queue_and_management::on_sender_open(s);
  }
  int unanswered_attaches = 0;
};

// A receiver link whose attach is unanswered when the close begins could not be used any more:
// opening it fails closed then, as a receive waiting does, not only when the close ends. The
// half-attached link is ended with its session.
TEST(amqp_engine, a_receiver_attach_waiting_at_close_fails_closed_when_the_close_begins) {
  holding_queue_with_unanswered_attach broker;
  engine_harness h(broker);
  answer<qrt::result<std::vector<qrt::result<void>>>> sent;
  send_two(h, sent);
  ASSERT_EQ(broker.held.size(), 2u);
  answer<qrt::result<qrt::amqp::detail::link_info>> opened;
  h.e.open_receiver("r1", receiver_on("slow", 1), 30s, h.now, opened.into());
  h.exchange();
  ASSERT_EQ(broker.unanswered_attaches, 1) << "the attach did not reach the broker";
  ASSERT_FALSE(opened.value) << "the attach was answered";

  bool closed = false;
  h.e.shutdown(h.now, [&] { closed = true; });
  h.exchange();
  ASSERT_FALSE(closed) << "the close did not wait for the outcomes of the messages in flight";
  ASSERT_TRUE(opened.value) << "the attach waiting when the close began still waits";
  ASSERT_FALSE(*opened.value);
  EXPECT_EQ(opened.value->error().code, qrt::errc::closed) << opened.value->error().to_string();

  for (auto& d : broker.held) d.accept();
  h.to_engine += h.peer("");
  h.exchange();
  EXPECT_TRUE(closed) << "the close did not end: the half-attached link's session never ended";
  EXPECT_EQ(h.e.current_usage().links, 0u);
}

}  // namespace
