// Topics and subscriptions on the Service Bus provider (docs/adr/0050-topics-and-subscriptions.md)
// against the test peer, through the provider interface: fan-out, correlation filters as rules on
// the subscription's $management node, a subscription read as a queue (dead-letter queue,
// sessions, lock renewal), per-message publish outcomes, missing entities; and interop both ways
// with the official SDK, its rule manager included.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <memory>
#include <qrt/runtime.hpp>
#include <qrt/servicebus.hpp>
#include <set>

#include "peer_process.hpp"

namespace {

using namespace std::chrono_literals;
using qrt::errc;
using qrt::message;
using qrt::queue_name;
using qrt::received_message;
using qrt::session_id;
using qrt::subscription_filter;
using qrt::subscription_options;
using qrt::topic_name;

// One peer for the binary: only entities made through its admin node exist (as on a namespace,
// where they are made through ARM), so a missing topic is amqp:not-found. SAS signatures are
// verified (key "y").
std::unique_ptr<qrt::test::servicebus_peer> peer;
std::unique_ptr<qrt::runtime> rt;
qrt::provider_ptr provider;

class PeerEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    peer = std::make_unique<qrt::test::servicebus_peer>(std::vector<std::string>{
        "--sas-key-name", "x", "--sas-key", "y", "--require-created", "--quiet"});
    rt = std::make_unique<qrt::runtime>();
    qrt::provider_registry registry;
    qrt::servicebus::register_provider(registry);
    auto made = registry.make({{"provider", "servicebus"},
                               {"connection_string", peer->connection_string()},
                               {"operation_timeout", "5s"},
                               {"max_message_bytes", "65536"},
                               {"test_peer_admin", "true"}},
                              rt->executor());
    if (!made) throw qrt::exception(made.error());
    provider = std::move(*made);
  }
  void TearDown() override {
    rt->block_on(provider->close());
    provider.reset();
    rt.reset();
    peer.reset();
  }
};
const auto* const environment = ::testing::AddGlobalTestEnvironment(new PeerEnvironment);

template <class T>
T run(qrt::awaitable<T> op) {
  return rt->block_on(std::move(op));
}

std::atomic<int> counter{0};
std::string fresh(const std::string& what) {
  return "sbt-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

topic_name make_topic(const std::string& what) {
  const auto t = topic_name::from(fresh(what));
  auto created = run(provider->create_topic(t));
  if (!created) throw qrt::exception(created.error());
  return t;
}

queue_name make_subscription(const topic_name& t, const std::string& name,
                             subscription_options o = {}) {
  auto sub = queue_name::subscription(t, name).value();
  auto created = run(provider->create_subscription(sub, o));
  if (!created) throw qrt::exception(created.error());
  return sub;
}

std::vector<qrt::send_outcome> publish(const topic_name& t, std::vector<message> messages) {
  auto sent = run(provider->publish(t, std::move(messages), 5s));
  if (!sent) throw qrt::exception(sent.error());
  return std::move(*sent);
}

void publish_one(const topic_name& t, message m) {
  std::vector<message> one;
  one.push_back(std::move(m));
  auto outcomes = publish(t, std::move(one));
  if (!outcomes.at(0)) throw qrt::exception(outcomes[0].error());
}

/// Receives until `n` messages arrived (or 10 s passed), completing none.
std::vector<received_message> receive_n(const queue_name& q, std::size_t n) {
  std::vector<received_message> got;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
    auto r = run(provider->receive(q, n - got.size(), 2s));
    if (!r) throw qrt::exception(r.error());
    for (auto& m : *r) got.push_back(std::move(m));
  }
  return got;
}

void complete_all(const std::vector<received_message>& got) {
  std::vector<qrt::settlement> s;
  for (const auto& m : got) s.push_back(qrt::settlement::complete(m.receipt));
  for (const auto& r : run(provider->settle(std::move(s)))) {
    if (!r) throw qrt::exception(r.error());
  }
}

/// Everything `q` holds now, by body: receives it all (a short wait proves nothing else is
/// there) and completes it.
std::multiset<std::string> drain(const queue_name& q, std::size_t expected) {
  auto got = receive_n(q, expected);
  auto more = run(provider->receive(q, 10, 500ms));
  if (!more) throw qrt::exception(more.error());
  for (auto& m : *more) got.push_back(std::move(m));
  complete_all(got);
  std::multiset<std::string> bodies;
  for (const auto& m : got) bodies.insert(m.body);
  return bodies;
}

message msg(std::string body, std::optional<std::string> subject = std::nullopt,
            std::map<std::string, std::string> attributes = {}) {
  message m;
  m.body = std::move(body);
  if (subject) m.subject = *subject;
  m.attributes = std::move(attributes);
  return m;
}

TEST(ServiceBusTopics, CapabilitiesSayTopicsWork) {
  const auto& caps = provider->caps();
  EXPECT_TRUE(caps.topics);
  EXPECT_TRUE(caps.subscription_filters);
  EXPECT_TRUE(caps.durable_subscriptions);
  EXPECT_TRUE(caps.subscription_sessions);
}

TEST(ServiceBusTopics, EachSubscriptionGetsEveryPublishedMessageIntact) {
  const auto t = make_topic("fanout");
  const auto a = make_subscription(t, "a");
  const auto b = make_subscription(t, "b");
  message m = msg("first", "created", {{"region", "eu"}});
  m.id = "fan-1";
  m.correlation_id = "corr-1";
  publish_one(t, m);
  publish_one(t, msg("second"));
  for (const auto& sub : {a, b}) {
    auto got = receive_n(sub, 2);
    ASSERT_EQ(got.size(), 2u) << sub.str();
    EXPECT_EQ(got[0].body, "first");
    EXPECT_EQ(got[0].id, "fan-1");
    EXPECT_EQ(got[0].correlation_id, "corr-1");
    EXPECT_EQ(got[0].subject, "created");
    EXPECT_EQ(got[0].attributes, (std::map<std::string, std::string>{{"region", "eu"}}));
    EXPECT_EQ(got[0].delivery_count, 1u);
    EXPECT_EQ(got[1].body, "second");
    complete_all(got);
    auto again = run(provider->receive(sub, 5, 300ms));
    ASSERT_TRUE(again) << again.error().to_string();
    EXPECT_TRUE(again->empty()) << "a completed message came back on " << sub.str();
  }
}

TEST(ServiceBusTopics, FiltersSelectBySubjectAndAttributes) {
  const auto t = make_topic("filters");
  const auto all = make_subscription(t, "all");
  const auto red = make_subscription(t, "red", {.filter = {.subject = "red"}});
  const auto tenant =
      make_subscription(t, "tenant", {.filter = {.attributes = {{"tenant", "t1"}}}});
  const auto both = make_subscription(
      t, "both", {.filter = {.subject = "red", .attributes = {{"tenant", "t1"}}}});
  publish(t, {msg("red-t1", "red", {{"tenant", "t1"}}), msg("red-t2", "red", {{"tenant", "t2"}}),
              msg("blue-t1", "blue", {{"tenant", "t1"}}), msg("blue", "blue")});
  using bodies = std::multiset<std::string>;
  EXPECT_EQ(drain(all, 4), (bodies{"red-t1", "red-t2", "blue-t1", "blue"}));
  EXPECT_EQ(drain(red, 2), (bodies{"red-t1", "red-t2"}));
  EXPECT_EQ(drain(tenant, 2), (bodies{"red-t1", "blue-t1"}));
  EXPECT_EQ(drain(both, 1), (bodies{"red-t1"}));

  // The filters read back from the subscriptions' rules, ordered by name.
  auto listed = run(provider->list_subscriptions(t));
  ASSERT_TRUE(listed) << listed.error().to_string();
  ASSERT_EQ(listed->size(), 4u);
  EXPECT_EQ((*listed)[0].name, all);
  EXPECT_TRUE((*listed)[0].filter.empty());
  EXPECT_EQ((*listed)[1].name, both);
  EXPECT_EQ((*listed)[1].filter,
            (subscription_filter{.subject = "red", .attributes = {{"tenant", "t1"}}}));
  EXPECT_EQ((*listed)[2].name, red);
  EXPECT_EQ((*listed)[2].filter, subscription_filter{.subject = "red"});
  EXPECT_EQ((*listed)[3].name, tenant);
  EXPECT_EQ((*listed)[3].filter, (subscription_filter{.attributes = {{"tenant", "t1"}}}));
}

TEST(ServiceBusTopics, ASubscriptionCreatedAfterAPublishGetsNothingFromBefore) {
  const auto t = make_topic("late");
  const auto early = make_subscription(t, "early");
  publish_one(t, msg("before"));
  const auto late = make_subscription(t, "late");
  publish_one(t, msg("after"));
  EXPECT_EQ(drain(early, 2), (std::multiset<std::string>{"before", "after"}));
  EXPECT_EQ(drain(late, 1), std::multiset<std::string>{"after"});
}

TEST(ServiceBusTopics, ASubscriptionIsReadAsAQueueWithItsOwnDeadLetterQueue) {
  const auto t = make_topic("dlq");
  const auto sub = make_subscription(t, "s");
  publish_one(t, msg("poison", "bad"));
  auto peeked = run(provider->peek(sub, 5, 0));
  ASSERT_TRUE(peeked) << peeked.error().to_string();
  ASSERT_EQ(peeked->size(), 1u);
  EXPECT_EQ((*peeked)[0].body, "poison");

  auto got = receive_n(sub, 1);
  ASSERT_EQ(got.size(), 1u);
  // Lock renewal goes through the subscription's $management node.
  auto renewed = run(provider->renew_lock(got[0].receipt));
  ASSERT_TRUE(renewed) << renewed.error().to_string();
  EXPECT_GT(*renewed, qrt::clock::now());
  std::vector<qrt::settlement> dead;
  dead.push_back({got[0].receipt, qrt::settle_action::dead_letter, "Unreadable", "no parser"});
  auto settled = run(provider->settle(std::move(dead)));
  ASSERT_TRUE(settled.at(0)) << settled[0].error().to_string();

  auto stats = run(provider->stats(sub));
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->dead_lettered, 1);
  EXPECT_EQ(stats->active + stats->in_flight, 0);

  const auto dlq = sub.dead_letter();
  EXPECT_EQ(dlq.to_string(), t.str() + "/Subscriptions/s/$DeadLetterQueue");
  auto dead_got = receive_n(dlq, 1);
  ASSERT_EQ(dead_got.size(), 1u);
  EXPECT_EQ(dead_got[0].body, "poison");
  EXPECT_EQ(dead_got[0].subject, "bad");
  ASSERT_TRUE(dead_got[0].dead_letter.has_value());
  EXPECT_EQ(dead_got[0].dead_letter->reason, "Unreadable");
  EXPECT_EQ(dead_got[0].dead_letter->description, "no parser");
  complete_all(dead_got);
}

TEST(ServiceBusTopics, ASessionfulSubscriptionIsReadThroughSessions) {
  const auto t = make_topic("sessions");
  qrt::queue_options q;
  q.requires_session = true;
  const auto sub = make_subscription(t, "s", {.queue = q});
  std::vector<message> batch;
  for (const char* id : {"s1", "s2", "s1"}) {
    message m = msg(std::string("for-") + id);
    m.session = session_id::from(id);
    batch.push_back(std::move(m));
  }
  batch[2].body = "for-s1-again";
  for (const auto& o : publish(t, std::move(batch))) ASSERT_TRUE(o) << o.error().to_string();

  // A receiver without a session is refused, as on a sessionful queue.
  auto plain = run(provider->receive(sub, 1, 500ms));
  EXPECT_FALSE(plain);

  const auto wanted = session_id::from("s1");
  auto s = run(provider->accept_session(sub, wanted, 5s));
  ASSERT_TRUE(s) << s.error().to_string();
  auto& session = **s;
  EXPECT_EQ(session.id().str(), "s1");
  std::vector<received_message> got;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (got.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    auto r = run(session.receive(2 - got.size(), 2s));
    ASSERT_TRUE(r) << r.error().to_string();
    for (auto& m : *r) got.push_back(std::move(m));
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].body, "for-s1");
  EXPECT_EQ(got[1].body, "for-s1-again");
  ASSERT_TRUE(run(session.set_state("progress")));
  auto state = run(session.get_state());
  ASSERT_TRUE(state) << state.error().to_string();
  EXPECT_EQ(*state, "progress");
  std::vector<qrt::settlement> done;
  for (const auto& m : got) done.push_back(qrt::settlement::complete(m.receipt));
  for (const auto& r : run(session.settle(std::move(done))))
    ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_TRUE(run(session.close()));

  auto next = run(provider->accept_session(sub, std::nullopt, 5s));
  ASSERT_TRUE(next) << next.error().to_string();
  EXPECT_EQ((*next)->id().str(), "s2");
  ASSERT_TRUE(run((*next)->close()));
}

TEST(ServiceBusTopics, APublishedBatchHasAnOutcomePerMessageAndAnOversizedOneFailsAlone) {
  const auto t = make_topic("batch");
  const auto sub = make_subscription(t, "s");
  std::vector<message> batch;
  batch.push_back(msg("one"));
  batch.push_back(msg(std::string(200'000, 'x')));  // past max_message_bytes (64 KiB)
  batch.push_back(msg("three"));
  auto outcomes = publish(t, std::move(batch));
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_TRUE(outcomes[0]) << outcomes[0].error().to_string();
  ASSERT_FALSE(outcomes[1]);
  EXPECT_EQ(outcomes[1].error().code, errc::message_too_large) << outcomes[1].error().to_string();
  EXPECT_TRUE(outcomes[2]) << outcomes[2].error().to_string();
  EXPECT_EQ(drain(sub, 2), (std::multiset<std::string>{"one", "three"}));
}

TEST(ServiceBusTopics, MissingEntitiesAndMisuseAreNamed) {
  const auto missing = topic_name::from(fresh("missing"));
  std::vector<message> one;
  one.push_back(msg("x"));
  auto sent = run(provider->publish(missing, std::move(one), 5s));
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code, errc::topic_not_found) << sent.error().to_string();

  const auto orphan = queue_name::subscription(missing, "s").value();
  auto created = run(provider->create_subscription(orphan, {}));
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, errc::topic_not_found) << created.error().to_string();
  auto listed = run(provider->list_subscriptions(missing));
  ASSERT_FALSE(listed);
  EXPECT_EQ(listed.error().code, errc::topic_not_found) << listed.error().to_string();

  const auto t = make_topic("misuse");
  const auto sub = make_subscription(t, "s");
  // A subscription is published to through its topic, and made with create_subscription.
  std::vector<message> direct;
  direct.push_back(msg("x"));
  auto to_sub = run(provider->send(sub, std::move(direct), 5s));
  ASSERT_FALSE(to_sub);
  EXPECT_EQ(to_sub.error().code, errc::invalid_argument);
  auto as_queue = run(provider->create_queue(sub, {}));
  ASSERT_FALSE(as_queue);
  EXPECT_EQ(as_queue.error().code, errc::invalid_argument);
  // Creating an existing subscription again leaves it as it is.
  EXPECT_TRUE(run(provider->create_subscription(sub, {})));

  const auto gone = queue_name::subscription(t, "never-made").value();
  auto not_there = run(provider->receive(gone, 1, 500ms));
  ASSERT_FALSE(not_there);
  EXPECT_EQ(not_there.error().code, errc::queue_not_found) << not_there.error().to_string();

  ASSERT_TRUE(run(provider->delete_subscription(sub)));
  auto after_delete = run(provider->receive(sub, 1, 500ms));
  ASSERT_FALSE(after_delete);
  EXPECT_EQ(after_delete.error().code, errc::queue_not_found);
  ASSERT_TRUE(run(provider->delete_topic(t)));
  std::vector<message> late;
  late.push_back(msg("x"));
  auto to_deleted = run(provider->publish(t, std::move(late), 5s));
  ASSERT_FALSE(to_deleted);
  EXPECT_EQ(to_deleted.error().code, errc::topic_not_found) << to_deleted.error().to_string();
}

// A receiver waiting on a subscription that is deleted meanwhile learns it (the service detaches
// the link with amqp:not-found) rather than waiting out its time and reporting nothing.
TEST(ServiceBusTopics, ASubscriptionDeletedUnderAWaitingReceiverFailsItsReceive) {
  const auto t = make_topic("deleted");
  const auto sub = make_subscription(t, "s");
  // Attach the receiver link first, so the long receive below waits on an attached link.
  publish_one(t, msg("attach"));
  complete_all(receive_n(sub, 1));
  auto waiting = boost::asio::co_spawn(rt->executor(), provider->receive(sub, 1, 60s),
                                       boost::asio::use_future);
  ASSERT_TRUE(run(provider->delete_subscription(sub)));
  auto got = waiting.get();
  ASSERT_FALSE(got) << "the receive reported " << got->size() << " messages";
  EXPECT_EQ(got.error().code, errc::queue_not_found) << got.error().to_string();
}

// ----- interop with the official SDK -----

std::string base64(const std::string& in) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned n = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += table[(n >> s) & 63];
  }
  if (i < in.size()) {
    unsigned n = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) n |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += i + 1 < in.size() ? table[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string port() {
  return std::to_string(peer->port());
}

TEST(ServiceBusTopicsInterop, OfficialSdkPublishesQrtReceivesFromASubscription) {
  const auto t = make_topic("sdk-pub");
  const auto sub = make_subscription(t, "s", {.filter = {.subject = "from-sdk"}});
  const std::string body("\0\x01\xfe\xff sdk", 8);
  boost::json::array messages;
  messages.push_back({{"bodyBase64", base64(body)},
                      {"messageId", "sdk-topic-1"},
                      {"subject", "from-sdk"},
                      {"applicationProperties", {{"tenant", "t1"}, {"zone", "z9"}}}});
  messages.push_back({{"bodyBase64", base64("filtered out")}, {"subject", "other"}});
  qrt::test::run_sdk({"send", port(), t.str(), boost::json::serialize(messages)});
  auto got = receive_n(sub, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, body);
  EXPECT_EQ(got[0].id, "sdk-topic-1");
  EXPECT_EQ(got[0].subject, "from-sdk");
  EXPECT_EQ(got[0].attributes,
            (std::map<std::string, std::string>{{"tenant", "t1"}, {"zone", "z9"}}));
  complete_all(got);
  auto rest = run(provider->receive(sub, 5, 300ms));
  ASSERT_TRUE(rest) << rest.error().to_string();
  EXPECT_TRUE(rest->empty()) << "the filter let the other subject through";
}

TEST(ServiceBusTopicsInterop, QrtPublishesOfficialSdkSubscriptionReceiverReceives) {
  const auto t = make_topic("qrt-pub");
  const auto sub = make_subscription(t, "s");
  message m = msg(std::string("\xff\x00 qrt", 6), "from-qrt", {{"a", "1"}, {"b", "two"}});
  m.id = "qrt-topic-1";
  publish_one(t, m);
  const auto out = qrt::test::run_sdk({"receive", port(), sub.str(), "1"});
  const auto received = boost::json::parse(out).as_array();
  ASSERT_EQ(received.size(), 1u);
  const auto& r = received[0].as_object();
  EXPECT_EQ(r.at("bodyBase64").as_string(), base64(m.body));
  EXPECT_EQ(r.at("messageId").as_string(), "qrt-topic-1");
  EXPECT_EQ(r.at("subject").as_string(), "from-qrt");
  EXPECT_EQ(r.at("applicationProperties").as_object().at("a").as_string(), "1");
  EXPECT_EQ(r.at("applicationProperties").as_object().at("b").as_string(), "two");
}

// The SDK's rule manager sees the rule qrt made for a filter (and no $Default beside it); a rule
// it makes itself routes what qrt publishes and reads back through list_subscriptions.
TEST(ServiceBusTopicsInterop, OfficialSdkRuleManagerAndQrtFiltersAgree) {
  const auto t = make_topic("rules");
  const auto by_qrt = make_subscription(
      t, "by-qrt", {.filter = {.subject = "red", .attributes = {{"tenant", "t1"}}}});
  const auto by_sdk = make_subscription(t, "by-sdk");

  boost::json::array list_only;
  list_only.push_back(boost::json::object{{"op", "list"}});
  auto seen = boost::json::parse(qrt::test::run_sdk({"rules", port(), t.str(),
                                                     std::string(by_qrt.subscription_name()),
                                                     boost::json::serialize(list_only)}))
                  .as_array();
  ASSERT_EQ(seen.size(), 1u);
  const auto& qrt_rules = seen[0].as_array();
  ASSERT_EQ(qrt_rules.size(), 1u) << boost::json::serialize(qrt_rules);
  const auto& rule = qrt_rules[0].as_object();
  EXPECT_EQ(rule.at("name").as_string(), "qrt-filter");
  EXPECT_EQ(rule.at("subject").as_string(), "red");
  EXPECT_EQ(rule.at("applicationProperties").as_object().at("tenant").as_string(), "t1");

  boost::json::array steps;
  steps.push_back({{"op", "create"},
                   {"name", "sdk-rule"},
                   {"subject", "blue"},
                   {"applicationProperties", {{"zone", "z9"}}}});
  steps.push_back(boost::json::object{{"op", "delete"}, {"name", "$Default"}});
  steps.push_back(boost::json::object{{"op", "list"}});
  auto done = boost::json::parse(qrt::test::run_sdk({"rules", port(), t.str(),
                                                     std::string(by_sdk.subscription_name()),
                                                     boost::json::serialize(steps)}))
                  .as_array();
  ASSERT_EQ(done.size(), 3u);
  ASSERT_EQ(done[2].as_array().size(), 1u) << boost::json::serialize(done[2]);
  EXPECT_EQ(done[2].as_array()[0].as_object().at("name").as_string(), "sdk-rule");

  auto listed = run(provider->list_subscriptions(t));
  ASSERT_TRUE(listed) << listed.error().to_string();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].name, by_qrt);
  EXPECT_EQ((*listed)[1].name, by_sdk);
  EXPECT_EQ((*listed)[1].filter,
            (subscription_filter{.subject = "blue", .attributes = {{"zone", "z9"}}}));

  publish(t, {msg("red", "red", {{"tenant", "t1"}}), msg("blue", "blue", {{"zone", "z9"}}),
              msg("blue-elsewhere", "blue", {{"zone", "z1"}})});
  EXPECT_EQ(drain(by_qrt, 1), std::multiset<std::string>{"red"});
  EXPECT_EQ(drain(by_sdk, 1), std::multiset<std::string>{"blue"});
}

}  // namespace
