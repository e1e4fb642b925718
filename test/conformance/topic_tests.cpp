// Topics and subscriptions (docs/adr/0050-topics-and-subscriptions.md): what a publish reaches,
// and that a subscription is read as a queue with every queue guarantee. Each test names the
// item of docs/contract.md it checks; each skips, naming the capability, where the provider
// lacks it.
#include <future>
#include <qrt/processor.hpp>
#include <set>

#include "conformance/suite.hpp"

namespace qrt::conformance {
namespace {

using namespace std::chrono_literals;

std::multiset<std::string> bodies(const std::vector<received_message>& got) {
  std::multiset<std::string> out;
  for (const auto& m : got) out.insert(m.body);
  return out;
}

// Contract C39: every message published reaches every subscription (whose filter it matches)
// once, with its content and id; each subscription holds its own copy.
TEST_P(provider_test, Topic_PublishFansOutToEverySubscription) {
  QRT_REQUIRE(caps().topics, "topics");
  QRT_MAKE_TOPIC(topic);
  const subscription_options options{.queue = {.lock_duration = tgt().long_lock()}};
  const auto audit = make_subscription(topic, "audit", options);
  const auto billing = make_subscription(topic, "billing", options);
  message m{.body = "order-1", .attributes = {{"tenant", "t-1"}}};
  m.subject = "order.created";
  m.correlation_id = "corr-1";
  const auto id = publish(topic, m);
  publish(topic, {.body = "order-2"});
  reopen();  // persisted: the published copies are stored in every subscription

  for (const auto& subscription : {audit, billing}) {
    const auto got = receive_count(subscription, 2);
    EXPECT_EQ(bodies(got), (std::multiset<std::string>{"order-1", "order-2"}))
        << subscription.to_string();
    for (const auto& r : got) {
      if (r.body != "order-1") continue;
      EXPECT_EQ(r.id, id);
      EXPECT_EQ(r.attributes, m.attributes);
      EXPECT_EQ(r.subject, m.subject);
      EXPECT_EQ(r.correlation_id, m.correlation_id);
      EXPECT_EQ(r.delivery_count, 1u);
    }
    complete_all(got);
    expect_empty(subscription, tgt().empty_wait, "a subscription got a message twice");
  }
}

// Contract C40: a filtered subscription receives only the messages whose subject and
// attributes match its filter; an unfiltered one receives everything.
TEST_P(provider_test, Topic_FilteredSubscriptionReceivesOnlyItsMatches) {
  QRT_REQUIRE(caps().topics, "topics");
  QRT_REQUIRE(caps().subscription_filters, "subscription filters");
  QRT_MAKE_TOPIC(topic);
  subscription_options by_subject{.queue = {.lock_duration = tgt().long_lock()}};
  by_subject.filter.subject = "order.created";
  subscription_options by_attribute{.queue = {.lock_duration = tgt().long_lock()}};
  by_attribute.filter.attributes = {{"region", "eu"}};
  subscription_options both{.queue = {.lock_duration = tgt().long_lock()}};
  both.filter.subject = "order.created";
  both.filter.attributes = {{"region", "eu"}};
  const auto created = make_subscription(topic, "created", by_subject);
  const auto europe = make_subscription(topic, "europe", by_attribute);
  const auto created_in_europe = make_subscription(topic, "created-eu", both);
  const auto everything = make_subscription(topic, "everything");

  auto publish_one = [&](std::string body, std::string subject, std::string region) {
    message m{.body = std::move(body)};
    m.subject = std::move(subject);
    if (!region.empty()) m.attributes["region"] = std::move(region);
    m.attributes["other"] = "ignored by every filter";
    publish(topic, std::move(m));
  };
  publish_one("created-eu", "order.created", "eu");
  publish_one("created-us", "order.created", "us");
  publish_one("shipped-eu", "order.shipped", "eu");
  publish_one("created-none", "order.created", "");
  publish_one("shipped-none", "order.shipped", "");

  auto expect_exactly = [&](const queue_name& s, std::multiset<std::string> expected) {
    const auto got = receive_count(s, expected.size());
    EXPECT_EQ(bodies(got), expected) << s.to_string();
    complete_all(got);
    expect_empty(s, tgt().empty_wait, "a subscription received a message its filter excludes");
  };
  expect_exactly(created, {"created-eu", "created-us", "created-none"});
  expect_exactly(europe, {"created-eu", "shipped-eu"});
  expect_exactly(created_in_europe, {"created-eu"});
  expect_exactly(everything,
                 {"created-eu", "created-us", "shipped-eu", "created-none", "shipped-none"});
}

// Contract C41: a subscription receives what is published after it exists, never anything
// published before.
TEST_P(provider_test, Topic_SubscriptionCreatedAfterAPublishReceivesNothingFromBefore) {
  QRT_REQUIRE(caps().topics, "topics");
  QRT_MAKE_TOPIC(topic);
  const auto early = make_subscription(topic, "early");
  publish(topic, {.body = "before"});
  const auto late = make_subscription(topic, "late");
  expect_empty(late, tgt().empty_wait, "a new subscription received an earlier publish");
  publish(topic, {.body = "after"});
  const auto got = receive_one(late);
  EXPECT_EQ(got.body, "after");
  complete(got.receipt);
  expect_empty(late, tgt().empty_wait, "a new subscription received an earlier publish");
  const auto both = receive_count(early, 2);
  EXPECT_EQ(bodies(both), (std::multiset<std::string>{"before", "after"}));
  complete_all(both);
}

// Contract C39 (a subscription has a queue's dead-letter queue, C18): a message dead-lettered
// from a subscription is read from sub.dead_letter() with its reason, and leaves the other
// subscriptions' copies alone.
TEST_P(provider_test, Topic_SubscriptionDeadLetterQueueHoldsItsDeadLetters) {
  QRT_REQUIRE(caps().topics, "topics");
  QRT_REQUIRE(caps().dead_letter_queue, "a dead-letter queue");
  QRT_MAKE_TOPIC(topic);
  const subscription_options options{.queue = {.lock_duration = tgt().long_lock()}};
  const auto audit = make_subscription(topic, "audit", options);
  const auto billing = make_subscription(topic, "billing", options);
  const auto id = publish(topic, {.body = "bad", .attributes = {{"k", "v"}}});
  const auto got = receive_one(audit);
  must(run(client().dead_letter(got.receipt, "Rejected", "billing refused it")), "dead_letter");
  expect_empty(audit, tgt().empty_wait, "a dead-lettered message came back to its subscription");
  reopen();
  const auto dead = receive_one(audit.dead_letter());
  EXPECT_EQ(dead.id, id);
  EXPECT_EQ(dead.body, "bad");
  ASSERT_TRUE(dead.dead_letter.has_value());
  EXPECT_EQ(dead.dead_letter->reason, "Rejected");
  EXPECT_EQ(dead.dead_letter->description, "billing refused it");
  complete(dead.receipt);
  // The other subscription's copy is untouched.
  const auto other = receive_one(billing);
  EXPECT_EQ(other.body, "bad");
  EXPECT_EQ(other.delivery_count, 1u);
  complete(other.receipt);
  expect_empty(billing.dead_letter(), tgt().empty_wait,
               "a dead letter of one subscription appeared in another's");
}

// Contract C39 (C19 per subscription): after the subscription's max_delivery_count deliveries
// its copy goes to the subscription's dead-letter queue by itself.
TEST_P(provider_test, Topic_MaxDeliveryCountDeadLettersOnASubscription) {
  QRT_REQUIRE(caps().topics, "topics");
  QRT_REQUIRE(caps().max_delivery_count, "max_delivery_count");
  QRT_REQUIRE(caps().dead_letter_queue, "a dead-letter queue");
  QRT_REQUIRE(caps().abandon, "abandon");
  QRT_MAKE_TOPIC(topic);
  constexpr std::uint32_t max_deliveries = 2;
  const auto poisoned = make_subscription(
      topic, "poisoned",
      {.queue = {.lock_duration = tgt().long_lock(), .max_delivery_count = max_deliveries}});
  const auto id = publish(topic, {.body = "poison"});
  for (std::uint32_t attempt = 1; attempt <= max_deliveries; ++attempt) {
    const auto got = receive_one(poisoned);
    EXPECT_EQ(got.delivery_count, attempt);
    must(run(client().abandon(got.receipt)), "abandon");
  }
  expect_empty(poisoned, tgt().empty_wait, "delivered more than max_delivery_count times");
  const auto dead = receive_one(poisoned.dead_letter());
  EXPECT_EQ(dead.id, id);
  ASSERT_TRUE(dead.dead_letter.has_value());
  EXPECT_FALSE(dead.dead_letter->reason.empty());
  complete(dead.receipt);
}

// Contract C39 (C20 per subscription): a subscription that requires sessions delivers each
// session's messages in publish order to the session's holder.
TEST_P(provider_test, Topic_SessionsOnASubscriptionKeepOrderPerSession) {
  QRT_REQUIRE(caps().topics, "topics");
  QRT_REQUIRE(caps().subscription_sessions, "subscription sessions");
  QRT_MAKE_TOPIC(topic);
  const auto sessions = make_subscription(
      topic, "sessions", {.queue = {.lock_duration = tgt().long_lock(), .requires_session = true}});
  for (int i = 0; i < 3; ++i) {
    for (const char* s : {"a", "b"}) {
      message m{.body = std::string(s) + std::to_string(i)};
      m.session = session_id::from(s);
      publish(topic, std::move(m));
    }
  }
  auto refused = run(client().receive(sessions, 1, 0ms));
  EXPECT_FALSE(refused) << "a receive without a session on a session subscription succeeded";
  for (const char* s : {"b", "a"}) {
    auto held =
        must(run(client().accept_session(sessions, session_id::from(s), tgt().event_timeout)),
             "accept_session");
    std::vector<std::string> order;
    while (order.size() < 3) {
      auto got = must(run(held.receive(3 - order.size(), tgt().event_timeout)), "session receive");
      ASSERT_FALSE(got.empty()) << "session " << s << " delivered " << order.size() << " of 3";
      for (const auto& m : got) {
        order.push_back(m.body);
        must(run(held.complete(m.receipt)), "session complete");
      }
    }
    EXPECT_EQ(order, (std::vector<std::string>{std::string(s) + "0", std::string(s) + "1",
                                               std::string(s) + "2"}));
    must(run(held.close()), "session close");
  }
}

// Contract C42 (C4 for publish): one outcome per message; a message over the size limit fails
// alone with message_too_large and goes nowhere, every other reaches every subscription in order.
// Checked through the client (which splits and checks sizes) and on the provider directly.
TEST_P(provider_test, Topic_BatchPublishOneOversizeFailsAloneOthersReachEverySubscription) {
  QRT_REQUIRE(caps().topics, "topics");
  QRT_REQUIRE(caps().max_message_bytes != 0, "a message size limit");
  QRT_MAKE_TOPIC(topic);
  const subscription_options options{.queue = {.lock_duration = tgt().long_lock()}};
  const auto audit = make_subscription(topic, "audit", options);
  const auto billing = make_subscription(topic, "billing", options);
  const std::string too_big(caps().max_message_bytes + 1, 'x');

  std::vector<message> batch{{.body = "first"}, {.body = too_big}, {.body = "third"}};
  auto outcomes = must(run(client().publish_batch(topic, batch)), "publish_batch");
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_TRUE(outcomes[0]) << describe(outcomes[0]);
  ASSERT_FALSE(outcomes[1]);
  EXPECT_EQ(outcomes[1].error().code, errc::message_too_large);
  EXPECT_TRUE(outcomes[2]) << describe(outcomes[2]);

  auto direct =
      must(run(client().underlying()->publish(topic, std::move(batch), 30s)), "provider publish");
  ASSERT_EQ(direct.size(), 3u);
  EXPECT_TRUE(direct[0]) << describe(direct[0]);
  ASSERT_FALSE(direct[1]);
  EXPECT_EQ(direct[1].error().code, errc::message_too_large);
  EXPECT_TRUE(direct[2]) << describe(direct[2]);

  for (const auto& subscription : {audit, billing}) {
    const auto got = receive_count(subscription, 4);
    EXPECT_EQ(bodies(got), (std::multiset<std::string>{"first", "third", "first", "third"}));
    if (tgt().ordered_queues) {
      std::vector<std::string> order;
      for (const auto& m : got) order.push_back(m.body);
      EXPECT_EQ(order, (std::vector<std::string>{"first", "third", "first", "third"}));
    }
    complete_all(got);
    expect_empty(subscription, tgt().empty_wait, "an oversize message was delivered");
  }
}

// Contract C42: publishing to a topic that does not exist fails as a whole with
// topic_not_found, and so does creating a subscription of one.
TEST_P(provider_test, Topic_PublishToAMissingTopicFailsWithTopicNotFound) {
  QRT_REQUIRE(caps().topics, "topics");
  if (!tgt().missing_topics_detected) {
    GTEST_SKIP() << tgt().name << ": a topic needs no creating there, so none is missing";
  }
  QRT_MAKE_TOPIC(existing);  // the target can create topics; this one is not used
  (void)existing;
  const auto missing = unique_topic_name();
  auto one = run(client().publish(missing, {.body = "nowhere"}));
  ASSERT_FALSE(one);
  EXPECT_EQ(one.error().code, errc::topic_not_found) << one.error().to_string();
  auto batch =
      run(client().publish_batch(missing, std::vector<message>{{.body = "a"}, {.body = "b"}}));
  ASSERT_FALSE(batch);
  EXPECT_EQ(batch.error().code, errc::topic_not_found) << batch.error().to_string();
  auto subscription = run(client().create_subscription(
      must(queue_name::subscription(missing, "s"), "subscription name")));
  ASSERT_FALSE(subscription);
  EXPECT_EQ(subscription.error().code, errc::topic_not_found) << subscription.error().to_string();
}

// Contract C40: list_subscriptions reports every subscription of the topic, ordered by name,
// with the filter it was created with.
TEST_P(provider_test, Topic_ListSubscriptionsReturnsNamesAndFilters) {
  QRT_REQUIRE(caps().topics, "topics");
  QRT_REQUIRE(caps().subscription_filters, "subscription filters");
  QRT_MAKE_TOPIC(topic);
  subscription_options filtered;
  filtered.filter.subject = "order.created";
  filtered.filter.attributes = {{"region", "eu"}, {"tier", "gold"}};
  const auto zeta = make_subscription(topic, "zeta");
  const auto alpha = make_subscription(topic, "alpha", filtered);
  reopen();  // persisted: names and filters are stored
  const auto listed = must(run(client().list_subscriptions(topic)), "list_subscriptions");
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].name, alpha);
  EXPECT_EQ(listed[0].filter, filtered.filter);
  EXPECT_EQ(listed[1].name, zeta);
  EXPECT_TRUE(listed[1].filter.empty());
}

// Contract C42: a deleted subscription is gone with its messages and dead letters: reading it
// fails with queue_not_found, and a publish no longer reaches it.
TEST_P(provider_test, Topic_DeletedSubscriptionFailsWithQueueNotFound) {
  QRT_REQUIRE(caps().topics, "topics");
  QRT_MAKE_TOPIC(topic);
  const auto doomed = make_subscription(topic, "doomed");
  const auto kept = make_subscription(topic, "kept");
  publish(topic, {.body = "one"});
  must(run(client().delete_subscription(doomed)), "delete_subscription");
  reopen();
  auto got = run(client().receive(doomed, 1, 0ms));
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, errc::queue_not_found) << got.error().to_string();
  if (caps().dead_letter_queue) {
    auto dead = run(client().receive(doomed.dead_letter(), 1, 0ms));
    ASSERT_FALSE(dead);
    EXPECT_EQ(dead.error().code, errc::queue_not_found) << dead.error().to_string();
  }
  publish(topic, {.body = "two"});
  const auto listed = must(run(client().list_subscriptions(topic)), "list_subscriptions");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].name, kept);
  // A subscription of the same name made again starts empty.
  const auto again = make_subscription(topic, "doomed");
  expect_empty(again, tgt().empty_wait, "a recreated subscription held its old messages");
  const auto both = receive_count(kept, 2);
  EXPECT_EQ(bodies(both), (std::multiset<std::string>{"one", "two"}));
  complete_all(both);
}

// Contract C39: a processor runs on a subscription exactly as on a queue, through the
// subscription's queue_name.
TEST_P(provider_test, Topic_ProcessorRunsOnASubscriptionUnchanged) {
  QRT_REQUIRE(caps().topics, "topics");
  QRT_MAKE_TOPIC(topic);
  const auto work =
      make_subscription(topic, "work", {.queue = {.lock_duration = tgt().long_lock()}});
  constexpr int count = 5;
  for (int i = 0; i < count; ++i) publish(topic, {.body = "job-" + std::to_string(i)});

  std::mutex mutex;
  std::multiset<std::string> handled;
  std::promise<void> all_handled;
  auto options = processor_options::for_low_latency();
  options.receive_wait = std::min<milliseconds>(tgt().empty_wait, 1s);
  processor p(
      client(), work,
      [&](const received_message& m) -> awaitable<result<void>> {
        std::lock_guard lock(mutex);
        handled.insert(m.body);
        if (handled.size() == count) all_handled.set_value();
        co_return result<void>{};
      },
      options);
  p.start(io().executor());
  const bool done =
      all_handled.get_future().wait_for(tgt().event_timeout) == std::future_status::ready;
  run(p.stop(tgt().event_timeout));
  ASSERT_TRUE(done) << "the processor handled " << handled.size() << " of " << count;
  std::multiset<std::string> expected;
  for (int i = 0; i < count; ++i) expected.insert("job-" + std::to_string(i));
  EXPECT_EQ(handled, expected);
  EXPECT_EQ(p.stats().completed, static_cast<std::uint64_t>(count));
  expect_empty(work, tgt().empty_wait, "a message the processor completed came back");
}

}  // namespace
}  // namespace qrt::conformance
