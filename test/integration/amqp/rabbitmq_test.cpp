// The amqp provider against a real RabbitMQ 3.10 (rabbitmq_amqp1_0), started once for this
// binary on loopback ports picked at run time (test/servers/rabbitmq/rabbitmq.sh).
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <charconv>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <qrt/amqp.hpp>
#include <qrt/instrumented_provider.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "amqp/connection.hpp"
#include "rabbitmq_server.hpp"
#include "unit/support/run.hpp"

namespace {

using namespace std::chrono_literals;
using qrt::errc;

using qrt::test::broker;

const auto* const environment =
    ::testing::AddGlobalTestEnvironment(new qrt::test::rabbitmq_environment);  // gtest owns it

using qrt::test::io_thread;

std::string unique_queue() {
  static std::atomic<int> n{0};
  return "qrt-it-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
}

qrt::amqp::options rabbit(std::uint32_t prefetch = 10) {
  auto o = qrt::amqp::options::for_rabbitmq();
  o.port = static_cast<std::uint16_t>(broker->amqp_port());
  o.user = "guest";
  o.password = "guest";
  o.prefetch = prefetch;
  o.connect_timeout = 2s;
  return o;
}

/// The text in `column` of `queue`'s row in `rabbitmqctl list_queues name <column>`; empty when
/// the queue or the value is missing.
std::string broker_text(const std::string& queue, const std::string& column) {
  std::istringstream in(broker->ctl({"list_queues", "-q", "--no-table-headers", "name", column}));
  std::string line;
  while (std::getline(in, line)) {
    const auto tab = line.find('\t');
    if (tab != std::string::npos && line.substr(0, tab) == queue) return line.substr(tab + 1);
  }
  return {};
}

/// The number in `column` of `queue`'s row in `rabbitmqctl list_queues name <column>`; -1 when
/// the queue is missing or the value is not a number.
long broker_count(const std::string& queue, const std::string& column) {
  const std::string text = broker_text(queue, column);
  long value = -1;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

/// broker_count polled (each poll is a rabbitmqctl run) until it reads `want` or 15 s passed;
/// returns the last reading.
long broker_count_reaching(const std::string& queue, const std::string& column, long want) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  long now = broker_count(queue, column);
  while (now != want && std::chrono::steady_clock::now() < deadline) {
    now = broker_count(queue, column);
  }
  return now;
}

class amqp_rabbitmq : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(broker, nullptr);
    provider_ = make(rabbit());
    queue_ = qrt::queue_name::from(unique_queue());
    auto created = io_.run(provider_->create_queue(queue_, {}));
    ASSERT_TRUE(created) << created.error().to_string();
  }
  void TearDown() override {
    if (provider_) io_.run(provider_->close());
  }

  qrt::provider_ptr make(const qrt::amqp::options& o) {
    auto p = qrt::amqp::make_provider(o, io_.executor());
    if (!p) throw std::runtime_error(p.error().to_string());
    return *p;
  }
  qrt::message_id send(qrt::provider& p, qrt::message m) {
    std::vector<qrt::message> one;
    one.push_back(std::move(m));
    auto r = io_.run(p.send(queue_, std::move(one), 10s));
    EXPECT_TRUE(r) << r.error().to_string();
    if (!r) return {};
    EXPECT_EQ(r->size(), 1u);
    EXPECT_TRUE(r->at(0)) << r->at(0).error().to_string();
    return r->at(0) ? *r->at(0) : qrt::message_id{};
  }
  qrt::message_id send(qrt::message m) { return send(*provider_, std::move(m)); }
  std::vector<qrt::received_message> receive(qrt::provider& p, std::size_t max,
                                             std::chrono::milliseconds wait) {
    auto r = io_.run(p.receive(queue_, max, wait));
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? std::move(*r) : std::vector<qrt::received_message>{};
  }
  /// What receives of `p` return until `count` messages arrived (each completed) or 15 s
  /// passed, and one receive more (a refusal is reported by the first receive that has nothing
  /// else to hand out): the bodies, and the errors that reported refused deliveries.
  struct received_and_refused {
    std::vector<std::string> bodies;
    std::vector<qrt::error> refusals;
  };
  received_and_refused receive_reporting_refusals(qrt::provider& p, std::size_t count) {
    received_and_refused out;
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (out.bodies.size() < count && std::chrono::steady_clock::now() < deadline) {
      auto r = io_.run(p.receive(queue_, count, 1s));
      if (!r) {
        out.refusals.push_back(r.error());
        if (out.refusals.size() > 5) break;  // not a one-off report: stop and let it show
        continue;
      }
      for (auto& m : *r) {
        out.bodies.push_back(m.body);
        std::vector<qrt::settlement> one{qrt::settlement::complete(m.receipt)};
        auto done = io_.run(p.settle(std::move(one)));
        EXPECT_TRUE(done.at(0)) << done.at(0).error().to_string();
      }
    }
    auto last = io_.run(p.receive(queue_, 1, 300ms));
    if (!last) {
      out.refusals.push_back(last.error());
    } else {
      for (auto& m : *last) out.bodies.push_back(m.body);
    }
    return out;
  }
  qrt::received_message receive_one(qrt::provider& p) {
    auto got = receive(p, 1, 5s);
    if (got.size() != 1)
      throw std::runtime_error("expected one message, got " + std::to_string(got.size()));
    return std::move(got[0]);
  }
  qrt::received_message receive_one() { return receive_one(*provider_); }
  qrt::result<void> settle(qrt::provider& p, qrt::settlement s) {
    std::vector<qrt::settlement> one;
    one.push_back(std::move(s));
    return io_.run(p.settle(std::move(one))).at(0);
  }
  qrt::result<void> settle(qrt::settlement s) { return settle(*provider_, std::move(s)); }

  io_thread io_;
  qrt::provider_ptr provider_;
  qrt::queue_name queue_;
};

TEST_F(amqp_rabbitmq, round_trip_keeps_binary_body_and_properties) {
  qrt::message m;
  for (int i = 0; i < 256; ++i) m.body.push_back(static_cast<char>(i));
  m.attributes = {{"tenant", "acme"}, {"empty", ""}, {"unicode", "h\xc3\xa9llo"}};
  m.correlation_id = "corr-42";
  m.content_type = "application/octet-stream";
  m.subject = "invoice";
  m.session = qrt::session_id::from("customer-7");
  m.time_to_live = 60s;
  m.id = "my-id-1";
  ASSERT_EQ(send(m), "my-id-1");

  auto got = receive_one();
  EXPECT_EQ(got.body, m.body);
  EXPECT_EQ(got.attributes, m.attributes);
  EXPECT_EQ(got.correlation_id, "corr-42");
  EXPECT_EQ(got.content_type, "application/octet-stream");
  EXPECT_EQ(got.subject, "invoice");
  ASSERT_TRUE(got.session);
  EXPECT_EQ(got.session->str(), "customer-7");
  EXPECT_EQ(got.id, "my-id-1");
  EXPECT_EQ(got.delivery_count, 1u);
  EXPECT_TRUE(got.receipt.valid());
  EXPECT_TRUE(settle(qrt::settlement::complete(got.receipt)));
}

TEST_F(amqp_rabbitmq, complete_removes_the_message) {
  qrt::message m;
  m.body = "once";
  const auto id = send(m);
  EXPECT_FALSE(id.empty());
  auto got = receive_one();
  EXPECT_EQ(got.id, id);
  ASSERT_TRUE(settle(qrt::settlement::complete(got.receipt)));
  EXPECT_TRUE(receive(*provider_, 1, 300ms).empty());
  // A second provider (a fresh link) sees nothing either: the broker removed it.
  auto other = make(rabbit());
  EXPECT_TRUE(receive(*other, 1, 300ms).empty());
  io_.run(other->close());
  // It got there because the connection stayed up: the broker confirms no settlement, and the
  // provider says so (docs/contract.md, C12).
  EXPECT_FALSE(provider_->caps().confirmed_settlement);
}

// RabbitMQ confirms no settlement: a completion travels in a disposition frame the provider
// sends settled, and close() must not cut it off. Every message completed before close()
// stays completed: a later consumer finds none of them (before close() ended each session and
// waited for the broker's answer, the last few batches came back in most runs). Several rounds,
// since a lost frame depends on how far the broker had got when the connection went.
TEST_F(amqp_rabbitmq, completions_made_just_before_close_reach_the_broker) {
  constexpr std::size_t rounds = 5;
  constexpr std::size_t per_round = 1000;
  for (std::size_t round = 0; round < rounds; ++round) {
    for (std::size_t sent = 0; sent < per_round;) {
      std::vector<qrt::message> batch;
      for (; batch.size() < 100 && sent < per_round; ++sent) {
        qrt::message m;
        m.body = std::to_string(round) + "/" + std::to_string(sent);
        batch.push_back(std::move(m));
      }
      auto outcomes = io_.run(provider_->send(queue_, std::move(batch), 10s));
      ASSERT_TRUE(outcomes) << outcomes.error().to_string();
      for (auto& o : *outcomes) ASSERT_TRUE(o) << o.error().to_string();
    }
    auto consumer = make(rabbit(100));
    std::size_t completed = 0;
    while (completed < per_round) {
      auto got = receive(*consumer, 100, 5s);
      ASSERT_FALSE(got.empty()) << "round " << round << ": " << completed << " completed";
      std::vector<qrt::settlement> done;
      for (auto& m : got) done.push_back(qrt::settlement::complete(m.receipt));
      for (auto& r : io_.run(consumer->settle(std::move(done)))) {
        ASSERT_TRUE(r) << r.error().to_string();
      }
      completed += got.size();
    }
    io_.run(consumer->close());
    // A fresh receiver: one left attached would keep taking the next round's messages.
    auto check = make(rabbit(100));
    auto again = receive(*check, 100, 500ms);
    io_.run(check->close());
    ASSERT_TRUE(again.empty()) << "round " << round << ": " << again.size()
                               << " completed messages delivered again, the first "
                               << again.front().body;
  }
  EXPECT_EQ(broker_count(queue_.str(), "messages"), 0);
}

// A receiver closed with messages in its prefetch buffer gives them back (released) and the
// one it handed out goes back unsettled with the link: another receiver gets all of them, none
// lost, none twice.
TEST_F(amqp_rabbitmq, closing_a_receiver_with_a_full_prefetch_loses_nothing) {
  for (int i = 0; i < 4; ++i) {
    qrt::message m;
    m.body = "p" + std::to_string(i);
    send(m);
  }
  auto prefetching = make(rabbit(4));
  auto first = receive(*prefetching, 1, 5s);
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(broker_count_reaching(queue_.str(), "messages_unacknowledged", 4), 4)
      << "the prefetch did not fill";
  io_.run(prefetching->close());
  auto other = make(rabbit(10));
  std::multiset<std::string> bodies;
  for (int i = 0; i < 10 && bodies.size() < 4; ++i) {
    for (auto& m : receive(*other, 10, 2s)) {
      bodies.insert(m.body);
      ASSERT_TRUE(settle(*other, qrt::settlement::complete(m.receipt)));
    }
  }
  EXPECT_EQ(bodies, (std::multiset<std::string>{"p0", "p1", "p2", "p3"}));
  EXPECT_TRUE(receive(*other, 10, 300ms).empty()) << "a message came twice";
  io_.run(other->close());
}

TEST_F(amqp_rabbitmq, settling_twice_is_an_invalid_receipt) {
  qrt::message m;
  m.body = "x";
  send(m);
  auto got = receive_one();
  ASSERT_TRUE(settle(qrt::settlement::complete(got.receipt)));
  auto again = settle(qrt::settlement::complete(got.receipt));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, errc::invalid_receipt);
}

TEST_F(amqp_rabbitmq, abandon_releases_for_redelivery) {
  qrt::message m;
  m.body = "again";
  const auto id = send(m);
  auto first = receive_one();
  ASSERT_TRUE(settle(qrt::settlement::abandon(first.receipt)));
  auto second = receive_one();
  EXPECT_EQ(second.id, id);
  EXPECT_EQ(second.body, "again");
  EXPECT_NE(second.receipt, first.receipt);
  ASSERT_TRUE(settle(qrt::settlement::complete(second.receipt)));
  EXPECT_TRUE(receive(*provider_, 1, 300ms).empty());
}

TEST_F(amqp_rabbitmq, dead_letter_rejects_and_the_queue_no_longer_holds_it) {
  qrt::message m;
  m.body = "poison";
  send(m);
  auto got = receive_one();
  ASSERT_TRUE(settle(qrt::settlement::dead_letter(got.receipt, "bad-format", "not JSON")));
  // Without a dead-letter policy RabbitMQ drops a rejected message: it must not come back.
  EXPECT_TRUE(receive(*provider_, 1, 300ms).empty());
  EXPECT_EQ(broker_count(queue_.str(), "messages"), 0);
}

// A poison message between good ones (application properties holding a list, which AMQP forbids
// and qrt's codec refuses; another AMQP 1.0 client can send any bytes) does not hold the good
// ones back: qrt rejects it with amqp:decode-error (RabbitMQ, without a dead-letter exchange,
// drops it; docs/amqp.md), and the good ones arrive in order on the same link. RabbitMQ 3.10
// drops the connection of a sender whose message holds arrays of nulls, so the decoding bomb is
// tested against Service Bus only.
TEST_F(amqp_rabbitmq, a_poison_message_between_good_ones_does_not_hold_them_back) {
  for (const char* body : {"good-1", "good-2"}) {
    qrt::message m;
    m.body = body;
    send(m);
  }
  // The raw bytes go through qrt's own AMQP core, which sends encoded payloads as they are.
  qrt::amqp::detail::endpoint where;
  where.port = static_cast<std::uint16_t>(broker->amqp_port());
  where.user = "guest";
  where.password = "guest";
  auto raw = qrt::amqp::detail::connection::create(where, io_.executor());
  std::vector<qrt::amqp::detail::outgoing_delivery> poison(1);
  poison[0].bytes = std::string(
      "\x00\x53\x74\xc1\x0e\x02\xa1\x04list\xc0\x05\x02\x54\x01\x54\x02"  // {list: [1, 2]}
      "\x00\x53\x75\xa0\x03"
      "bad",
      27);
  auto sent = io_.run(raw->send("/amq/queue/" + queue_.str(), std::move(poison), 10s));
  ASSERT_TRUE(sent) << sent.error().to_string();
  ASSERT_TRUE(sent->at(0)) << sent->at(0).error().to_string();
  io_.run(raw->close());
  for (const char* body : {"good-3", "good-4"}) {
    qrt::message m;
    m.body = body;
    send(m);
  }

  const auto got = receive_reporting_refusals(*provider_, 4);
  EXPECT_EQ(got.bodies, (std::vector<std::string>{"good-1", "good-2", "good-3", "good-4"}));
  // Dropped by the broker, but not silently: one receive said so, naming why.
  ASSERT_EQ(got.refusals.size(), 1u);
  EXPECT_EQ(got.refusals[0].code, errc::protocol_error) << got.refusals[0].to_string();
  EXPECT_NE(got.refusals[0].message.find("cannot decode"), std::string::npos)
      << got.refusals[0].to_string();
  EXPECT_TRUE(receive(*provider_, 1, 300ms).empty());
  EXPECT_EQ(broker_count(queue_.str(), "messages"), 0) << "the poison message is still queued";
}

// A message larger than the receiver takes (max_message_bytes plus headroom for the broker's
// annotations) is refused as its first frames arrive; RabbitMQ without a dead-letter policy
// then drops it, so the next receive with nothing else to hand out fails once, naming it: the
// loss is reported, never silent. The messages around it arrive.
TEST_F(amqp_rabbitmq, a_message_too_large_for_the_receiver_is_reported_not_dropped_silently) {
  auto o = rabbit();
  o.max_message_bytes = 1024;  // the receiver link takes 1024 bytes + 64 KiB of headroom
  auto small = make(o);
  for (const char* body : {"small-1", "big", "small-2"}) {
    qrt::message m;
    m.body = std::string(body) == "big" ? std::string(200'000, 'B') : std::string(body);
    send(m);
  }
  const auto got = receive_reporting_refusals(*small, 2);
  EXPECT_EQ(got.bodies, (std::vector<std::string>{"small-1", "small-2"}));
  ASSERT_EQ(got.refusals.size(), 1u) << "the oversize message was dropped without a word";
  EXPECT_EQ(got.refusals[0].code, errc::message_too_large) << got.refusals[0].to_string();
  EXPECT_NE(got.refusals[0].message.find("drops it"), std::string::npos)
      << got.refusals[0].to_string();
  io_.run(small->close());
}

// A message within max_message_bytes but over the broker's own max_message_size: RabbitMQ ends
// the sender's session (amqp:precondition-failed, naming both sizes), which takes with it every
// message of the batch still in flight or not yet sent. The large one fails as
// message_too_large (permanent); the others were not refused, so they fail transient (to be
// sent again: unconfirmed if they were in flight, "not sent" if not), never as the caller's
// invalid argument. What was reported sent is in the queue;
// one reported failed may be there too (the broker stored it and its confirmation went down
// with the session): a second copy on a resend, never a loss.
TEST_F(amqp_rabbitmq, a_message_over_the_brokers_max_size_fails_alone_as_too_large) {
  struct broker_max_size {
    explicit broker_max_size(std::size_t bytes) { set(bytes); }
    ~broker_max_size() { set(134'217'728); }  // RabbitMQ's default
    static void set(std::size_t bytes) {
      broker->ctl({"eval", "application:set_env(rabbit, max_message_size, " +
                               std::to_string(bytes) + ")."});
    }
  } limit(1 << 20);
  auto o = rabbit();
  o.max_message_bytes = 4 << 20;
  auto p = make(o);
  std::vector<qrt::message> batch(3);
  batch[0].body = "small-1";
  batch[1].body = std::string(2 << 20, 'B');
  batch[2].body = "small-2";
  auto sent = io_.run(p->send(queue_, std::move(batch), 10s));
  std::set<std::string> stored;
  if (sent) {
    ASSERT_EQ(sent->size(), 3u);
    ASSERT_FALSE(sent->at(1)) << "a message over the broker's max size was reported sent";
    EXPECT_EQ(sent->at(1).error().code, errc::message_too_large) << sent->at(1).error().to_string();
    EXPECT_FALSE(sent->at(1).error().is_transient());
    EXPECT_NE(sent->at(1).error().message.find("1048576"), std::string::npos)
        << sent->at(1).error().to_string();
    for (std::size_t i : {0u, 2u}) {
      if (sent->at(i)) {
        stored.insert(i == 0 ? "small-1" : "small-2");
      } else {
        const auto& e = sent->at(i).error();
        EXPECT_TRUE(e.is_transient()) << e.to_string();
        EXPECT_NE(e.code, errc::invalid_argument) << e.to_string();
        // In flight when the session ended: maybe stored, and the code says so. Never handed
        // over: "not sent".
        EXPECT_TRUE(e.code == errc::unconfirmed || e.message.find("not sent") != std::string::npos)
            << e.to_string();
      }
    }
  } else {
    EXPECT_TRUE(sent.error().is_transient()) << sent.error().to_string();
  }
  std::set<std::string> received;
  for (auto& m : receive(*p, 10, 1s)) {
    received.insert(m.body.size() > 100 ? "big" : m.body);
    EXPECT_TRUE(settle(*p, qrt::settlement::complete(m.receipt)));
  }
  for (const auto& body : stored) {
    EXPECT_TRUE(received.count(body)) << body << " was reported sent and is not in the queue";
  }
  EXPECT_FALSE(received.count("big")) << "the broker stored the message it refused";
  io_.run(p->close());
}

// The provider declares no native dead-letter queue: a rejected message goes where the broker's
// policy routes it. With a dead-letter policy on the queue (as an operator would set one), a
// dead_letter settlement lands the message, whole, in the policy's queue.
TEST_F(amqp_rabbitmq, dead_letter_with_a_broker_policy_reaches_the_policys_queue) {
  const auto dead = qrt::queue_name::from(queue_.str() + "-dead");
  auto created = io_.run(provider_->create_queue(dead, {}));
  ASSERT_TRUE(created) << created.error().to_string();
  broker->ctl({"set_policy", "dlx-" + queue_.str(), "^" + queue_.str() + "$",
               R"({"dead-letter-exchange":"","dead-letter-routing-key":")" + dead.str() + R"("})",
               "--apply-to", "queues"});
  qrt::message m;
  m.body = "poison";
  m.id = "poison-1";
  m.attributes = {{"tenant", "acme"}};
  send(m);
  auto got = receive_one();
  ASSERT_TRUE(settle(qrt::settlement::dead_letter(got.receipt, "bad-format", "not JSON")));
  EXPECT_TRUE(receive(*provider_, 1, 300ms).empty()) << "a dead-lettered message came back";

  auto r = io_.run(provider_->receive(dead, 1, 5s));
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->size(), 1u) << "the rejected message did not reach the policy's queue";
  EXPECT_EQ((*r)[0].body, "poison");
  EXPECT_EQ((*r)[0].id, "poison-1");
  EXPECT_EQ((*r)[0].attributes.at("tenant"), "acme");
  ASSERT_TRUE(settle(qrt::settlement::complete((*r)[0].receipt)));
  broker->ctl({"clear_policy", "dlx-" + queue_.str()});
}

// Nor does it declare a max delivery count: RabbitMQ counts deliveries only on quorum queues,
// where a delivery-limit policy bounds them. Abandoned (released) once more than the limit, the
// message goes to the policy's dead-letter queue instead of coming back.
TEST_F(amqp_rabbitmq, delivery_limit_policy_dead_letters_after_repeated_abandons) {
  const auto quorum = qrt::queue_name::from(queue_.str() + "-quorum");
  const auto dead = qrt::queue_name::from(queue_.str() + "-quorum-dead");
  // AMQP 1.0 declares classic queues only; a quorum queue is declared on the node itself.
  broker->ctl({"eval", "rabbit_amqqueue:declare(rabbit_misc:r(<<\"/\">>, queue, <<\"" +
                           quorum.str() +
                           "\">>), true, false, [{<<\"x-queue-type\">>, longstr, "
                           "<<\"quorum\">>}], none, <<\"guest\">>)."});
  auto created = io_.run(provider_->create_queue(dead, {}));
  ASSERT_TRUE(created) << created.error().to_string();
  constexpr int limit = 2;
  broker->ctl({"set_policy", "limit-" + quorum.str(), "^" + quorum.str() + "$",
               "{\"delivery-limit\":" + std::to_string(limit) +
                   R"(,"dead-letter-exchange":"","dead-letter-routing-key":")" + dead.str() +
                   R"("})",
               "--apply-to", "queues"});

  // A quorum queue takes a moment to elect its leader after the declare returns; until then
  // the broker detaches a sender (a transient error whose outcome is unknown). A send retried
  // then may store the message twice, and the abandons below would be spread over two copies,
  // neither reaching the limit. So the leader is waited for first; a send that still fails
  // transiently is sent again, as a client's retry would, and the attempts are reported.
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (broker_text(quorum.str(), "leader").empty() &&
         std::chrono::steady_clock::now() < give_up) {
  }
  qrt::result<std::vector<qrt::send_outcome>> sent = qrt::fail(errc::timeout, "not sent");
  int attempts = 0;
  do {
    ++attempts;
    std::vector<qrt::message> one(1);
    one[0].body = "poison";
    sent = io_.run(provider_->send(quorum, std::move(one), 10s));
    const bool stored = sent && sent->at(0);
    if (stored) break;
    const auto& e = sent ? sent->at(0).error() : sent.error();
    ASSERT_EQ(e.kind, qrt::error_kind::transient) << e.to_string();
  } while (std::chrono::steady_clock::now() < give_up);
  ASSERT_TRUE(sent && sent->at(0)) << (sent ? sent->at(0).error() : sent.error()).to_string();
  for (int delivery = 1; delivery <= limit + 1; ++delivery) {
    auto got = io_.run(provider_->receive(quorum, 1, 5s));
    ASSERT_TRUE(got) << got.error().to_string();
    ASSERT_EQ(got->size(), 1u) << "delivery " << delivery << " did not come";
    EXPECT_EQ((*got)[0].body, "poison");
    ASSERT_TRUE(settle(qrt::settlement::abandon((*got)[0].receipt)));
  }
  auto after = io_.run(provider_->receive(quorum, 1, 500ms));
  ASSERT_TRUE(after) << after.error().to_string();
  EXPECT_TRUE(after->empty()) << "delivered again past the broker's delivery limit (sent in "
                              << attempts << " attempts)";
  auto moved = io_.run(provider_->receive(dead, 1, 5s));
  ASSERT_TRUE(moved) << moved.error().to_string();
  ASSERT_EQ(moved->size(), 1u) << "the message did not reach the policy's dead-letter queue";
  EXPECT_EQ((*moved)[0].body, "poison");
  ASSERT_TRUE(settle(qrt::settlement::complete((*moved)[0].receipt)));
}

TEST_F(amqp_rabbitmq, missing_queue_is_queue_not_found) {
  const auto missing = qrt::queue_name::from(unique_queue());
  std::vector<qrt::message> one(1);
  one[0].body = "x";
  auto sent = io_.run(provider_->send(missing, std::move(one), 5s));
  const auto failure =
      sent ? (sent->at(0) ? std::optional<qrt::error>{} : sent->at(0).error()) : sent.error();
  ASSERT_TRUE(failure) << "sending to a missing queue succeeded";
  EXPECT_EQ(failure->code, errc::queue_not_found) << failure->to_string();
  EXPECT_NE(failure->message.find(missing.str()), std::string::npos) << failure->to_string();
  auto got = io_.run(provider_->receive(missing, 1, 1s));
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, errc::queue_not_found) << got.error().to_string();
  EXPECT_NE(got.error().message.find(missing.str()), std::string::npos) << got.error().to_string();
  // stats cannot count (AMQP 1.0 has no queue depth), but it does not answer "unknown" for a
  // queue that is not there.
  auto depth = io_.run(provider_->stats(missing));
  ASSERT_FALSE(depth) << "stats answered for a missing queue";
  EXPECT_EQ(depth.error().code, errc::queue_not_found) << depth.error().to_string();
  // The connection survives a refused link: the existing queue still works.
  qrt::message m;
  m.body = "still fine";
  send(m);
  EXPECT_EQ(receive_one().body, "still fine");
  auto unknown = io_.run(provider_->stats(queue_));
  ASSERT_TRUE(unknown) << unknown.error().to_string();
  EXPECT_EQ(unknown->active, -1);
}

TEST_F(amqp_rabbitmq, a_send_after_the_queue_was_deleted_fails_and_nothing_is_reported_sent) {
  qrt::message before;
  before.body = "before";
  send(before);  // attaches the sender link and checks the queue on this connection
  ASSERT_EQ(broker_count_reaching(queue_.str(), "messages", 1), 1);
  broker->ctl({"delete_queue", queue_.str()});

  // The broker takes a message for the deleted queue and drops it: the send must not say sent.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::vector<qrt::message> two(2);
    two[0].body = "after-1";
    two[1].body = "after-2";
    auto sent = io_.run(provider_->send(queue_, std::move(two), 10s));
    if (sent) {
      for (const auto& outcome : *sent) {
        ASSERT_FALSE(outcome) << "attempt " << attempt
                              << ": a message sent to a deleted queue was reported sent";
        EXPECT_EQ(outcome.error().code, errc::queue_not_found) << outcome.error().to_string();
      }
    } else {
      EXPECT_EQ(sent.error().code, errc::queue_not_found) << sent.error().to_string();
      EXPECT_NE(sent.error().message.find(queue_.str()), std::string::npos)
          << sent.error().to_string();
    }
  }
  auto depth = io_.run(provider_->stats(queue_));
  ASSERT_FALSE(depth) << "stats answered for a deleted queue";
  EXPECT_EQ(depth.error().code, errc::queue_not_found) << depth.error().to_string();

  // Made again, the queue holds what is sent from then on, and only that.
  ASSERT_TRUE(io_.run(provider_->create_queue(queue_, {})));
  qrt::message again;
  again.body = "again";
  send(again);
  EXPECT_EQ(receive_one().body, "again");
  EXPECT_TRUE(receive(*provider_, 1, 300ms).empty());
}

TEST_F(amqp_rabbitmq, a_receive_after_the_queue_was_deleted_is_queue_not_found) {
  qrt::message m;
  m.body = "x";
  send(m);
  auto got = receive_one();  // attaches the receiver link
  ASSERT_TRUE(settle(qrt::settlement::complete(got.receipt)));
  broker->ctl({"delete_queue", queue_.str()});
  bool refused = false;
  for (int attempt = 0; attempt < 5 && !refused; ++attempt) {
    auto r = io_.run(provider_->receive(queue_, 1, 1s));
    if (!r) {
      // RabbitMQ 3.x may also drop the whole connection when it cancels the deleted queue's
      // consumer: a transient failure, after which the next receive connects again.
      if (r.error().code == errc::connection_failed) continue;
      EXPECT_EQ(r.error().code, errc::queue_not_found) << r.error().to_string();
      refused = r.error().code == errc::queue_not_found;
      continue;
    }
    EXPECT_TRUE(r->empty());
  }
  EXPECT_TRUE(refused) << "receives on a deleted queue answered as if it were empty";

  // Made again, the queue is read on a new link: the old one was the deleted queue's.
  ASSERT_TRUE(io_.run(provider_->create_queue(queue_, {})));
  qrt::message again;
  again.body = "again";
  send(again);
  EXPECT_EQ(receive_one().body, "again");
}

TEST_F(amqp_rabbitmq, prefetch_bounds_the_messages_locked_by_a_receiver) {
  for (int i = 0; i < 10; ++i) {
    qrt::message m;
    m.body = "m" + std::to_string(i);
    send(m);
  }
  auto small = make(rabbit(3));
  auto first = receive(*small, 1, 5s);
  ASSERT_EQ(first.size(), 1u);
  // The receiver holds 3 locked (1 handed out + 2 buffered) and asks for no more until one
  // is settled: a second consumer gets the other 7.
  auto other = make(rabbit(20));
  std::vector<qrt::received_message> rest;
  while (rest.size() < 7) {
    auto got = receive(*other, 10, 3s);
    if (got.empty()) break;
    for (auto& m : got) rest.push_back(std::move(m));
  }
  EXPECT_EQ(rest.size(), 7u);
  EXPECT_TRUE(receive(*other, 10, 300ms).empty());
  EXPECT_EQ(broker_count(queue_.str(), "messages_unacknowledged"), 10);
  // Settling one lets the small receiver take one more; nothing is lost or duplicated.
  ASSERT_TRUE(settle(*small, qrt::settlement::complete(first[0].receipt)));
  auto more = receive(*small, 10, 5s);
  EXPECT_EQ(more.size(), 2u);  // the 2 it had buffered
  io_.run(small->close());
  io_.run(other->close());
}

// The prefetch is bounded in bytes per client, not only in messages per link: a receiver allowed
// 100 messages of prefetch but 512 KiB for the whole client takes only what fits, and another
// consumer gets the rest. Nothing is lost or duplicated between the two.
TEST_F(amqp_rabbitmq, prefetch_is_bounded_by_the_clients_byte_budget) {
  constexpr int count = 20;
  for (int i = 0; i < count; ++i) {
    qrt::message m;
    m.id = "big-" + std::to_string(i);
    m.body = std::string(60 * 1024, static_cast<char>('a' + i % 26));
    send(m);
  }
  auto o = rabbit(100);
  o.max_message_bytes = 64 * 1024;  // one credit counts 64 KiB + 64 KiB of headroom
  o.max_prefetch_bytes = 512 * 1024;
  auto bounded = make(o);
  auto first = receive(*bounded, 1, 5s);
  ASSERT_EQ(first.size(), 1u);
  // What the bounded client can hold besides the one handed out: 512 KiB of 60 KiB messages.
  constexpr std::size_t most_buffered = 512 / 60;

  auto other = make(rabbit(20));
  std::set<std::string> ids{first[0].id};
  std::size_t taken_by_other = 0;
  for (auto got = receive(*other, 10, 3s); !got.empty(); got = receive(*other, 10, 1s)) {
    for (auto& m : got) {
      EXPECT_TRUE(ids.insert(m.id).second) << "delivered twice: " << m.id;
      ASSERT_TRUE(settle(*other, qrt::settlement::complete(m.receipt)));
      ++taken_by_other;
    }
  }
  EXPECT_GE(taken_by_other, count - 1 - most_buffered)
      << "the bounded client prefetched more than its byte budget holds";
  // The bounded client's buffer is handed out in full, and nothing is missing.
  ASSERT_TRUE(settle(*bounded, qrt::settlement::complete(first[0].receipt)));
  for (auto got = receive(*bounded, 10, 3s); !got.empty(); got = receive(*bounded, 10, 300ms)) {
    for (auto& m : got) {
      EXPECT_TRUE(ids.insert(m.id).second) << "delivered twice: " << m.id;
      ASSERT_TRUE(settle(*bounded, qrt::settlement::complete(m.receipt)));
    }
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(count));
  io_.run(bounded->close());
  io_.run(other->close());
}

// A burst of sends to more queues than the link cap: every send is stored, and the connection
// never holds more links than the cap (idle senders are closed to make room, and sends wait for
// one while every link is busy).
// Concurrent first sends to one queue share one check that the queue exists. Measured in the
// bytes the provider writes: a burst costs about what the same sends cost one after another,
// not one more probe link (a session, an attach and a detach) per send. A thousand probes at
// once also made RabbitMQ 3.10 send frames for links Proton no longer knew.
TEST_F(amqp_rabbitmq, concurrent_first_sends_to_a_queue_share_one_existence_check) {
  auto sent_bytes = [&](qrt::provider& p) { return p.connections().bytes_sent; };
  auto spawn_send_by = [&](qrt::provider& p, const qrt::queue_name& q) {
    std::vector<qrt::message> one(1);
    one[0].body = "x";
    return boost::asio::co_spawn(io_.executor(), p.send(q, std::move(one), 30s),
                                 boost::asio::use_future);
  };
  auto spawn_send = [&](const qrt::queue_name& q) { return spawn_send_by(*provider_, q); };
  // What a first send to a queue costs (the check before, the sender link, the message, the
  // check after) and a later one (the message, the check after).
  auto first_start = sent_bytes(*provider_);
  ASSERT_TRUE(spawn_send(queue_).get());
  const auto first = sent_bytes(*provider_) - first_start;
  auto later_start = sent_bytes(*provider_);
  ASSERT_TRUE(spawn_send(queue_).get());
  const auto later = sent_bytes(*provider_) - later_start;
  ASSERT_GT(first, later);
  // A message alone: a later send without checks.
  auto unchecked_options = rabbit();
  unchecked_options.verify_queue_exists = false;
  auto unchecked = make(unchecked_options);
  ASSERT_TRUE(spawn_send_by(*unchecked, queue_).get());
  const auto bare_start = sent_bytes(*unchecked);
  ASSERT_TRUE(spawn_send_by(*unchecked, queue_).get());
  const auto bare = sent_bytes(*unchecked) - bare_start;
  io_.run(unchecked->close());
  ASSERT_GT(later, bare);
  const auto check = later - bare;

  const auto fresh = qrt::queue_name::from(unique_queue());
  ASSERT_TRUE(io_.run(provider_->create_queue(fresh, {})));
  constexpr std::uint64_t burst = 50;
  const auto burst_start = sent_bytes(*provider_);
  std::vector<std::future<qrt::result<std::vector<qrt::send_outcome>>>> sends;
  for (std::uint64_t i = 0; i < burst; ++i) sends.push_back(spawn_send(fresh));
  for (auto& f : sends) {
    auto r = f.get();
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_TRUE(r->at(0)) << r->at(0).error().to_string();
  }
  const auto written = sent_bytes(*provider_) - burst_start;
  // Two checks each (before and after) would be about 2 * burst * check; allow a dozen.
  EXPECT_LT(written, (first - later) + burst * bare + 12 * check)
      << "first send " << first << " bytes, later sends " << later << " bytes each, "
      << "unchecked " << bare << " bytes";
  EXPECT_EQ(broker_count_reaching(fresh.str(), "messages", static_cast<long>(burst)),
            static_cast<long>(burst));

  // Callers that joined a check that fails get its answer, naming the queue.
  const auto missing = qrt::queue_name::from(unique_queue());
  std::vector<std::future<qrt::result<std::vector<qrt::send_outcome>>>> refused;
  for (int i = 0; i < 20; ++i) refused.push_back(spawn_send(missing));
  for (auto& f : refused) {
    ASSERT_EQ(f.wait_for(60s), std::future_status::ready) << "a send to a missing queue hung";
    auto r = f.get();
    ASSERT_FALSE(r) << "a send to a missing queue succeeded";
    EXPECT_EQ(r.error().code, errc::queue_not_found) << r.error().to_string();
    EXPECT_NE(r.error().message.find(missing.str()), std::string::npos) << r.error().to_string();
  }
}

TEST_F(amqp_rabbitmq, a_burst_of_sends_to_many_queues_stays_within_the_link_cap) {
  constexpr std::size_t queues = 12;
  constexpr std::size_t per_queue = 3;
  std::vector<std::string> names;
  for (std::size_t q = 0; q < queues; ++q) {
    names.push_back(unique_queue());
    auto created = io_.run(provider_->create_queue(qrt::queue_name::from(names.back()), {}));
    ASSERT_TRUE(created) << created.error().to_string();
  }
  qrt::amqp::detail::endpoint where;
  where.port = static_cast<std::uint16_t>(broker->amqp_port());
  where.user = "guest";
  where.password = "guest";
  where.max_links = 4;
  auto conn = qrt::amqp::detail::connection::create(where, io_.executor());

  // Every send is spawned at once; each yields its failure, or nothing.
  auto one = [&conn](std::string address) -> qrt::awaitable<std::string> {
    std::vector<qrt::amqp::detail::outgoing_delivery> d(1);
    qrt::message m;
    m.body = address;
    qrt::amqp::detail::encode_message(m, {}, d[0].bytes);
    auto r = co_await conn->send(address, std::move(d), 30s);
    if (!r) co_return address + ": " + r.error().to_string();
    if (!r->at(0)) co_return address + ": " + r->at(0).error().to_string();
    co_return std::string();
  };
  std::vector<std::future<std::string>> burst;
  for (std::size_t i = 0; i < queues * per_queue; ++i) {
    burst.push_back(boost::asio::co_spawn(io_.executor(), one("/amq/queue/" + names[i % queues]),
                                          boost::asio::use_future));
  }
  for (auto& sent : burst) {
    ASSERT_EQ(sent.wait_for(60s), std::future_status::ready) << "a send hung";
    const std::string failure = sent.get();
    EXPECT_TRUE(failure.empty()) << failure;
  }
  auto usage = io_.run(conn->current_usage());
  ASSERT_TRUE(usage) << usage.error().to_string();
  EXPECT_LE(usage->peak_links, where.max_links);
  EXPECT_LE(usage->links, where.max_links);
  io_.run(conn->close());
  for (const auto& name : names) {
    EXPECT_EQ(broker_count_reaching(name, "messages", per_queue), static_cast<long>(per_queue))
        << name;
  }
}

TEST_F(amqp_rabbitmq, a_message_that_expires_in_the_prefetch_buffer_goes_back_to_the_broker) {
  auto prefetching = make(rabbit(3));
  ASSERT_TRUE(receive(*prefetching, 1, 200ms).empty());  // attaches the link, credit 3
  qrt::message expiring;
  expiring.body = "expiring";
  expiring.time_to_live = 300ms;
  send(expiring);
  // The broker pushed it to the receiver's buffer (unasked): it is held there, unacknowledged.
  ASSERT_EQ(broker_count_reaching(queue_.str(), "messages_unacknowledged", 1), 1);
  // Its time-to-live runs out while qrt holds it: the passing of time is the behaviour here.
  std::this_thread::sleep_for(expiring.time_to_live.value() + 100ms);
  auto got = receive(*prefetching, 10, 300ms);
  EXPECT_TRUE(got.empty()) << "an expired message was handed out: " << got.front().body;
  // Released, not held or settled as done: the broker expires it by its own rule.
  EXPECT_EQ(broker_count_reaching(queue_.str(), "messages", 0), 0)
      << "the expired message is still held";
  qrt::message live;
  live.body = "live";
  send(live);
  auto after = receive(*prefetching, 10, 5s);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].body, "live");
  ASSERT_TRUE(settle(*prefetching, qrt::settlement::complete(after[0].receipt)));
  io_.run(prefetching->close());
}

TEST_F(amqp_rabbitmq, reconnects_after_the_broker_restarts_and_old_receipts_expire) {
  qrt::message m;
  m.body = "survivor";
  m.id = "survivor-1";
  send(m);
  auto before = receive_one();
  ASSERT_EQ(before.id, "survivor-1");
  // The connection series as a scrape shows them, through the metrics decorator.
  qrt::metrics::registry registry;
  qrt::metrics::runtime_metrics metrics(registry);
  auto instrumented = qrt::metrics::instrument(provider_, metrics);
  const auto up = provider_->connections();
  EXPECT_EQ(up.connections_opened, 1u);
  EXPECT_EQ(up.connection_failures, 0u);
  EXPECT_GT(up.bytes_sent, m.body.size()) << "the message went out in AMQP frames";
  EXPECT_GT(up.bytes_received, m.body.size()) << "and came back in a transfer";

  const auto stopped_at = std::chrono::steady_clock::now();
  broker->ctl({"stop_app"});
  broker->ctl({"start_app"});

  auto stale = settle(qrt::settlement::complete(before.receipt));
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, errc::receipt_expired) << stale.error().to_string();
  EXPECT_NE(stale.error().message.find("link that delivered the message died"), std::string::npos)
      << stale.error().message;

  // The unsettled message went back to the (durable) queue; the provider reconnects on demand.
  auto again = receive_one();
  EXPECT_EQ(again.id, "survivor-1");
  EXPECT_TRUE(settle(qrt::settlement::complete(again.receipt)));
  qrt::message after;
  after.body = "after restart";
  send(after);
  EXPECT_EQ(receive_one().body, "after restart");

  // The restart is one outage: the connection broke (and attempts may have failed while the
  // broker came up), then one recovery, no longer than the time since the broker was stopped.
  const auto back = provider_->connections();
  EXPECT_GE(back.connection_failures, 1u);
  EXPECT_EQ(back.connections_opened, up.connections_opened + 1);
  EXPECT_EQ(back.recoveries, 1u);
  EXPECT_GT(back.recovery_time_total.count(), 0);
  EXPECT_EQ(back.longest_recovery, back.recovery_time_total);
  EXPECT_LE(back.recovery_time_total, std::chrono::steady_clock::now() - stopped_at);
  EXPECT_GT(back.bytes_sent, up.bytes_sent);

  const auto scrape = registry.expose();
  EXPECT_NE(scrape.find("queue_runtime_connection_recovery_seconds_count{provider=\"amqp\"} 1\n"),
            std::string::npos)
      << scrape;
  EXPECT_NE(scrape.find("queue_runtime_connections_opened_total{provider=\"amqp\"} 2\n"),
            std::string::npos)
      << scrape;
  EXPECT_NE(
      scrape.find("queue_runtime_connection_bytes_total{provider=\"amqp\",direction=\"sent\"} "),
      std::string::npos)
      << scrape;
}

TEST_F(amqp_rabbitmq, time_to_live_reaches_the_broker_and_expired_messages_are_not_delivered) {
  qrt::message expiring;
  expiring.body = "expiring";
  expiring.time_to_live = 200ms;
  send(expiring);
  // The real event: the broker drops the message once its TTL runs out (RabbitMQ expires the
  // head of a queue on its own timer). Polled through rabbitmqctl, bounded.
  EXPECT_EQ(broker_count_reaching(queue_.str(), "messages", 0), 0) << "the message did not expire";
  qrt::message live;
  live.body = "live";
  send(live);
  auto got = receive(*provider_, 10, 2s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, "live");
}

TEST_F(amqp_rabbitmq, wrong_password_is_a_permission_error) {
  auto o = rabbit();
  o.password = "wrong";
  o.connect_timeout = 15s;  // RabbitMQ answers a failed login only after a delay
  auto p = make(o);
  auto got = io_.run(p->receive(queue_, 1, 1s));
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, errc::permission) << got.error().to_string();
  EXPECT_EQ(got.error().message.find("wrong"), std::string::npos) << "the password leaked";
  io_.run(p->close());
}

TEST_F(amqp_rabbitmq, sasl_anonymous_works) {
  auto o = rabbit();
  o.user.clear();
  o.password.clear();
  auto p = make(o);
  qrt::message m;
  m.body = "anonymous";
  send(*p, m);
  EXPECT_EQ(receive_one(*p).body, "anonymous");
  io_.run(p->close());
}

TEST_F(amqp_rabbitmq, tls_verifies_the_server_by_default) {
  auto o = rabbit();
  o.tls = true;
  o.port = static_cast<std::uint16_t>(broker->amqps_port());
  o.host = "localhost";
  {
    // The test CA is not in the system store: verification must refuse the server.
    auto p = make(o);
    auto got = io_.run(p->receive(queue_, 1, 1s));
    ASSERT_FALSE(got);
    EXPECT_EQ(got.error().code, errc::connection_failed) << got.error().to_string();
    io_.run(p->close());
  }
  o.tls_ca_file = broker->ca_file();
  auto p = make(o);
  qrt::message m;
  m.body = "over tls";
  send(*p, m);
  EXPECT_EQ(receive_one(*p).body, "over tls");
  io_.run(p->close());
}

}  // namespace

// ---- topics: "/topic/<name>" on amq.topic; a subscription is the queue behind one link ------

namespace {

qrt::message text(std::string body) {
  qrt::message m;
  m.body = std::move(body);
  return m;
}

}  // namespace

class amqp_rabbitmq_topics : public amqp_rabbitmq {
 protected:
  void SetUp() override {
    amqp_rabbitmq::SetUp();
    topic_ = qrt::topic_name::from("qrt-topic-" + unique_queue());
    ASSERT_TRUE(provider_->caps().topics);
    ASSERT_TRUE(io_.run(provider_->create_topic(topic_)));
  }
  qrt::queue_name subscription(std::string_view name) {
    return qrt::queue_name::subscription(topic_, name).value();
  }
  qrt::result<void> subscribe(const qrt::queue_name& s, qrt::subscription_options o = {}) {
    return io_.run(provider_->create_subscription(s, o));
  }
  std::vector<qrt::send_outcome> publish(std::vector<qrt::message> messages) {
    auto r = io_.run(provider_->publish(topic_, std::move(messages), 10s));
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? std::move(*r) : std::vector<qrt::send_outcome>{};
  }
  /// Receives from `s` until `n` messages came or a receive came back empty; completes each.
  std::vector<std::string> drain(const qrt::queue_name& s, std::size_t n) {
    std::vector<std::string> out;
    while (out.size() < n) {
      auto got = io_.run(provider_->receive(s, n - out.size(), 3s));
      EXPECT_TRUE(got) << got.error().to_string();
      if (!got || got->empty()) break;
      for (auto& m : *got) {
        out.push_back(m.body);
        EXPECT_TRUE(settle(qrt::settlement::complete(m.receipt)));
      }
    }
    return out;
  }

  qrt::topic_name topic_;
};

TEST_F(amqp_rabbitmq_topics, every_subscription_gets_what_is_published_after_it_was_made) {
  const auto early = subscription("early");
  const auto late = subscription("late");
  ASSERT_TRUE(subscribe(early));
  std::vector<qrt::message> first;
  first.push_back(text("before-late"));
  ASSERT_TRUE(publish(std::move(first)).at(0));
  ASSERT_TRUE(subscribe(late));
  std::vector<qrt::message> second;
  second.push_back(text("to-both-1"));
  second.push_back(text(std::string(2 * 1024 * 1024, 'x')));  // over max_message_bytes
  second.push_back(text("to-both-2"));
  auto outcomes = publish(std::move(second));
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_TRUE(outcomes[0]);
  ASSERT_FALSE(outcomes[1]);
  EXPECT_EQ(outcomes[1].error().code, errc::message_too_large);
  EXPECT_TRUE(outcomes[2]);

  EXPECT_EQ(drain(early, 3), (std::vector<std::string>{"before-late", "to-both-1", "to-both-2"}));
  EXPECT_EQ(drain(late, 3), (std::vector<std::string>{"to-both-1", "to-both-2"}))
      << "a subscription made after a publish must not receive it";

  auto listed = io_.run(provider_->list_subscriptions(topic_));
  ASSERT_TRUE(listed) << listed.error().to_string();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].name, early);
  EXPECT_EQ((*listed)[1].name, late);
  EXPECT_TRUE((*listed)[0].filter.empty());
}

TEST_F(amqp_rabbitmq_topics, a_deleted_subscription_is_not_found_and_no_longer_receives) {
  const auto kept = subscription("kept");
  const auto gone = subscription("gone");
  ASSERT_TRUE(subscribe(kept));
  ASSERT_TRUE(subscribe(gone));
  ASSERT_TRUE(io_.run(provider_->delete_subscription(gone)));
  std::vector<qrt::message> one;
  one.push_back(text("after-delete"));
  ASSERT_TRUE(publish(std::move(one)).at(0));
  auto missing = io_.run(provider_->receive(gone, 1, 1s));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::queue_not_found) << missing.error().to_string();
  auto twice = io_.run(provider_->delete_subscription(gone));
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, errc::queue_not_found);
  EXPECT_EQ(drain(kept, 1), (std::vector<std::string>{"after-delete"}));
  auto listed = io_.run(provider_->list_subscriptions(topic_));
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name, kept);
  // Deleting the topic ends its subscriptions too.
  ASSERT_TRUE(io_.run(provider_->delete_topic(topic_)));
  auto after_topic = io_.run(provider_->receive(kept, 1, 1s));
  ASSERT_FALSE(after_topic);
  EXPECT_EQ(after_topic.error().code, errc::queue_not_found);
}

TEST_F(amqp_rabbitmq_topics, what_amqp_cannot_set_up_is_refused_by_name) {
  const auto s = subscription("refused");
  qrt::subscription_options filtered;
  filtered.filter.subject = "order.created";
  auto with_filter = subscribe(s, filtered);
  ASSERT_FALSE(with_filter);
  EXPECT_EQ(with_filter.error().code, errc::unsupported);
  EXPECT_NE(with_filter.error().message.find("filters"), std::string::npos);
  qrt::subscription_options sessions;
  sessions.queue.requires_session = true;
  auto with_sessions = subscribe(s, sessions);
  ASSERT_FALSE(with_sessions);
  EXPECT_EQ(with_sessions.error().code, errc::unsupported);
  EXPECT_FALSE(provider_->caps().subscription_filters);
  EXPECT_FALSE(provider_->caps().durable_subscriptions);

  ASSERT_TRUE(subscribe(s));
  std::vector<qrt::message> one;
  one.push_back(text("direct"));
  auto direct = io_.run(provider_->send(s, std::move(one), 5s));
  ASSERT_FALSE(direct);
  EXPECT_EQ(direct.error().code, errc::invalid_argument);
  EXPECT_NE(direct.error().message.find("publish to its topic"), std::string::npos);
  // A provider without topic_prefix has no topics at all.
  auto o = rabbit();
  o.topic_prefix.clear();
  auto plain = make(o);
  EXPECT_FALSE(plain->caps().topics);
  auto refused = io_.run(plain->create_topic(topic_));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::unsupported);
  EXPECT_NE(refused.error().message.find("topic_prefix"), std::string::npos);
  io_.run(plain->close());
}

TEST_F(amqp_rabbitmq_topics, a_subscription_ends_with_its_connection_and_says_so) {
  const auto s = subscription("volatile");
  ASSERT_TRUE(subscribe(s));
  std::vector<qrt::message> one;
  one.push_back(text("held-by-the-broker"));
  ASSERT_TRUE(publish(std::move(one)).at(0));
  broker->ctl({"stop_app"});
  broker->ctl({"start_app"});
  // The broker's queue behind the link died with the connection, and the message with it:
  // the subscription is reported gone instead of silently re-made empty.
  auto lost = io_.run(provider_->receive(s, 1, 3s));
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code, errc::queue_not_found) << lost.error().to_string();
  EXPECT_NE(lost.error().message.find("ended with the connection"), std::string::npos)
      << lost.error().message;
  auto listed = io_.run(provider_->list_subscriptions(topic_));
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
  // Made again, it receives what is published from then on.
  ASSERT_TRUE(subscribe(s));
  std::vector<qrt::message> next;
  next.push_back(text("after-restart"));
  ASSERT_TRUE(publish(std::move(next)).at(0));
  EXPECT_EQ(drain(s, 1), (std::vector<std::string>{"after-restart"}));
}
