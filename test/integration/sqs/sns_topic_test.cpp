// Topics on the SQS provider against fauxqs: SNS topics fanning out to SQS queues, read
// through queue_name::subscription. fauxqs delivers to the subscribed queues before it answers
// Publish, so a subscription's depth (stats) right after a publish says what it received.
#include <map>
#include <qrt/client.hpp>
#include <random>
#include <set>

#include "sqs_fixture.hpp"

using namespace qrt;
using namespace std::chrono_literals;
using qrt::test::text;

class SqsTopics : public qrt::test::sqs_fixture {
 protected:
  static topic_name unique_topic(std::string_view prefix) {
    static std::mt19937_64 rng{std::random_device{}()};
    return topic_name::from(std::string(prefix) + "." + std::to_string(rng() % 1'000'000'000));
  }

  topic_name topic(std::string_view prefix) {
    auto t = unique_topic(prefix);
    auto r = run(provider_->create_topic(t));
    EXPECT_TRUE(r) << r.error().to_string();
    return t;
  }

  queue_name subscribe(const topic_name& t, std::string_view name, subscription_filter f = {},
                       queue_options qo = {}) {
    auto sub = queue_name::subscription(t, name).value();
    auto r = run(provider_->create_subscription(sub, subscription_options{std::move(f), qo}));
    EXPECT_TRUE(r) << r.error().to_string();
    return sub;
  }

  std::vector<send_outcome> publish(const topic_name& t, std::vector<message> messages) {
    auto r = run(provider_->publish(t, std::move(messages), 5s));
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? *r : std::vector<send_outcome>{};
  }

  std::int64_t depth(const queue_name& q) {
    auto s = run(provider_->stats(q));
    EXPECT_TRUE(s) << s.error().to_string();
    return s ? s->active : -1;
  }

  /// Exactly `n` messages: all of them, received and completed.
  std::vector<received_message> take(const queue_name& q, std::size_t n) {
    std::vector<received_message> out;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (out.size() < n && std::chrono::steady_clock::now() < deadline) {
      auto r = run(provider_->receive(q, n - out.size(), 2s));
      EXPECT_TRUE(r) << r.error().to_string();
      if (!r) break;
      std::vector<settlement> done;
      for (auto& m : *r) {
        done.push_back(settlement::complete(m.receipt));
        out.push_back(std::move(m));
      }
      for (auto& s : run(provider_->settle(std::move(done)))) EXPECT_TRUE(s);
    }
    EXPECT_EQ(out.size(), n) << q.to_string();
    return out;
  }

  static std::multiset<std::string> bodies(const std::vector<received_message>& ms) {
    std::multiset<std::string> out;
    for (const auto& m : ms) out.insert(m.body);
    return out;
  }
};

TEST_F(SqsTopics, CapabilitiesSayTopicsWithFilters) {
  const auto& caps = provider_->caps();
  EXPECT_TRUE(caps.topics);
  EXPECT_TRUE(caps.subscription_filters);
  EXPECT_TRUE(caps.durable_subscriptions);
  // FIFO topics' subscriptions have emulated sessions only (no named session locks).
  EXPECT_FALSE(caps.subscription_sessions);
}

TEST_F(SqsTopics, EverySubscriptionGetsItsOwnCopyWithEveryField) {
  auto t = topic("fanout");
  auto a = subscribe(t, "a");
  auto b = subscribe(t, "b_2.x");
  message m;
  m.body = std::string("\x00\x01\xff binary \xe2\x98", 12);  // not valid UTF-8: travels base64
  m.attributes = {
      {"tenant", "acme"}, {"empty", ""}, {"spaced name", "v"}, {"raw", std::string("\x01\x02", 2)}};
  m.correlation_id = "corr-9";
  m.content_type = "application/octet-stream";
  m.subject = "invoice";
  auto out = publish(t, {m});
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(out[0]) << out[0].error().to_string();
  EXPECT_FALSE(out[0]->empty());

  for (const auto& sub : {a, b}) {
    EXPECT_EQ(depth(sub), 1) << sub.to_string();
    auto got = take(sub, 1);
    ASSERT_EQ(got.size(), 1u);
    // Raw delivery: the body and every attribute arrive as published.
    EXPECT_EQ(got[0].body, m.body);
    EXPECT_EQ(got[0].attributes, m.attributes);
    EXPECT_EQ(got[0].correlation_id, "corr-9");
    EXPECT_EQ(got[0].content_type, "application/octet-stream");
    EXPECT_EQ(got[0].subject, "invoice");
    EXPECT_EQ(got[0].delivery_count, 1u);
    EXPECT_EQ(got[0].id, *out[0]) << "every copy carries the id publish reported";
    EXPECT_EQ(depth(sub), 0);
  }
}

TEST_F(SqsTopics, AFilteredSubscriptionGetsOnlyWhatMatchesSubjectAndAttributes) {
  auto t = topic("filtered");
  subscription_filter by_subject;
  by_subject.subject = "created";
  subscription_filter by_attribute;
  by_attribute.attributes = {{"region", "eu"}, {"tenant id", "7"}};  // the second name is encoded
  subscription_filter both = by_attribute;
  both.subject = "created";
  auto all = subscribe(t, "all");
  auto subject_only = subscribe(t, "subject", by_subject);
  auto attribute_only = subscribe(t, "attribute", by_attribute);
  auto subject_and_attribute = subscribe(t, "both", both);

  auto with = [](std::string body, std::optional<std::string> subject,
                 std::map<std::string, std::string> attributes) {
    message m = text(std::move(body));
    if (subject) m.subject = *subject;
    m.attributes = std::move(attributes);
    return m;
  };
  auto out = publish(
      t, {with("plain", std::nullopt, {}), with("created-us", "created", {{"region", "us"}}),
          with("deleted-eu", "deleted", {{"region", "eu"}, {"tenant id", "7"}}),
          with("created-eu", "created", {{"region", "eu"}, {"tenant id", "7"}, {"x", "y"}}),
          with("created-eu-other-tenant", "created", {{"region", "eu"}, {"tenant id", "8"}}),
          with("subject-in-attribute", std::nullopt, {{"subject", "created"}})});
  for (const auto& o : out) ASSERT_TRUE(o) << o.error().to_string();

  EXPECT_EQ(bodies(take(all, 6)).size(), 6u);
  EXPECT_EQ(bodies(take(subject_only, 3)),
            (std::multiset<std::string>{"created-us", "created-eu", "created-eu-other-tenant"}));
  EXPECT_EQ(bodies(take(attribute_only, 2)),
            (std::multiset<std::string>{"deleted-eu", "created-eu"}));
  EXPECT_EQ(bodies(take(subject_and_attribute, 1)), (std::multiset<std::string>{"created-eu"}));
  // Nothing else arrived (delivery happens before Publish answers).
  for (const auto& sub : {all, subject_only, attribute_only, subject_and_attribute}) {
    EXPECT_EQ(depth(sub), 0) << sub.to_string();
  }
}

TEST_F(SqsTopics, ASubscriptionCreatedAfterAPublishGetsNothingFromBefore) {
  auto t = topic("late");
  auto early = subscribe(t, "early");
  ASSERT_TRUE(publish(t, {text("before")}).at(0));
  auto late = subscribe(t, "late");
  EXPECT_EQ(depth(late), 0);
  ASSERT_TRUE(publish(t, {text("after")}).at(0));
  EXPECT_EQ(bodies(take(late, 1)), (std::multiset<std::string>{"after"}));
  EXPECT_EQ(depth(late), 0);
  EXPECT_EQ(bodies(take(early, 2)), (std::multiset<std::string>{"before", "after"}));
}

TEST_F(SqsTopics, ASubscriptionDeadLettersIntoItsOwnDeadLetterQueue) {
  auto t = topic("dlq");
  queue_options qo;
  qo.max_delivery_count = 3;
  auto sub = subscribe(t, "worker", {}, qo);
  ASSERT_TRUE(publish(t, {text("poison")}).at(0));
  auto got = run(provider_->receive(sub, 1, 2s));
  ASSERT_TRUE(got) << got.error().to_string();
  ASSERT_EQ(got->size(), 1u);
  const auto id = got->at(0).id;
  std::vector<settlement> s;
  s.push_back({got->at(0).receipt, settle_action::dead_letter, "Poison", "cannot parse"});
  auto settled = run(provider_->settle(std::move(s)));
  ASSERT_TRUE(settled.at(0)) << settled.at(0).error().to_string();

  auto stats = run(provider_->stats(sub));
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->active, 0);
  EXPECT_EQ(stats->dead_lettered, 1);
  auto dead = take(sub.dead_letter(), 1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].body, "poison");
  EXPECT_EQ(dead[0].id, id);
  ASSERT_TRUE(dead[0].dead_letter);
  EXPECT_EQ(dead[0].dead_letter->reason, "Poison");
  EXPECT_EQ(dead[0].dead_letter->description, "cannot parse");
}

TEST_F(SqsTopics, ABatchPublishesEachMessageAndRefusesAnOversizedOneAlone) {
  auto t = topic("batch");
  auto sub = subscribe(t, "s");
  std::vector<message> batch;
  for (int i = 0; i < 12; ++i) batch.push_back(text("m" + std::to_string(i)));
  batch[4] = text(std::string(300'000, 'x'));  // over SNS's 256 KiB
  batch[7].session = session_id::from("g");    // a session needs a FIFO topic
  for (int k = 0; k < 10; ++k) batch[9].attributes["k" + std::to_string(k)] = "v";  // no room

  auto out = publish(t, std::move(batch));
  ASSERT_EQ(out.size(), 12u);
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (i == 4) {
      ASSERT_FALSE(out[i]);
      EXPECT_EQ(out[i].error().code, errc::message_too_large);
    } else if (i == 7 || i == 9) {
      ASSERT_FALSE(out[i]);
      EXPECT_EQ(out[i].error().code, errc::invalid_argument);
    } else {
      EXPECT_TRUE(out[i]) << i << ": " << out[i].error().to_string();
    }
  }
  std::set<std::string> ids;
  for (const auto& o : out)
    if (o) ids.insert(*o);
  EXPECT_EQ(ids.size(), 9u) << "each published message has its own id";
  auto received = take(sub, 9);
  std::set<std::string> received_ids;
  for (const auto& m : received) received_ids.insert(m.id);
  EXPECT_EQ(received_ids, ids) << "each copy carries the id publish reported";
  auto got = bodies(received);
  EXPECT_EQ(got.count("m4"), 0u);
  EXPECT_EQ(got.count("m7"), 0u);
  EXPECT_EQ(got.count("m9"), 0u);
  EXPECT_EQ(got.count("m11"), 1u);
  EXPECT_EQ(depth(sub), 0);
}

TEST_F(SqsTopics, PublishingToAMissingTopicIsTopicNotFound) {
  // A provider that knows no topic yet looks the name up (ListTopics)...
  auto fresh = make();
  auto r = run(fresh->publish(unique_topic("missing"), {text("x")}, 5s));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::topic_not_found) << r.error().to_string();
  run(fresh->close());
  // ...one that knows the account's ARN prefix publishes and SNS answers NotFound.
  topic("known");
  r = run(provider_->publish(unique_topic("missing"), {text("x")}, 5s));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::topic_not_found) << r.error().to_string();
  auto missing = unique_topic("missing");
  EXPECT_EQ(run(provider_->list_subscriptions(missing)).error().code, errc::topic_not_found);
  EXPECT_EQ(run(provider_->delete_topic(missing)).error().code, errc::topic_not_found);
  EXPECT_EQ(run(provider_->create_subscription(queue_name::subscription(missing, "s").value(), {}))
                .error()
                .code,
            errc::topic_not_found);
}

TEST_F(SqsTopics, ATopicPublishedToByAnotherProviderIsFoundByName) {
  auto t = topic("shared");
  auto sub = subscribe(t, "s");
  auto other = make();
  auto r = run(other->publish(t, {text("from another process")}, 5s));
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_TRUE(r->at(0)) << r->at(0).error().to_string();
  run(other->close());
  EXPECT_EQ(bodies(take(sub, 1)), (std::multiset<std::string>{"from another process"}));
}

TEST_F(SqsTopics, SubscriptionsAreListedWithTheirFiltersAndDeletedWithTheirQueues) {
  auto t = topic("list");
  subscription_filter f;
  f.subject = "s";
  f.attributes = {{"k", "v"}, {"a b", "c"}};
  auto b = subscribe(t, "b", f);
  auto a = subscribe(t, "a.1");
  // Creating it again with the same settings is no change.
  subscribe(t, "b", f);

  auto listed = run(provider_->list_subscriptions(t));
  ASSERT_TRUE(listed) << listed.error().to_string();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ(listed->at(0).name, a);
  EXPECT_TRUE(listed->at(0).filter.empty());
  EXPECT_EQ(listed->at(1).name, b);
  EXPECT_EQ(listed->at(1).filter, f);

  ASSERT_TRUE(run(provider_->delete_subscription(b)));
  listed = run(provider_->list_subscriptions(t));
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->at(0).name, a);
  EXPECT_EQ(run(provider_->receive(b, 1, 0ms)).error().code, errc::queue_not_found);
  EXPECT_EQ(run(provider_->receive(b.dead_letter(), 1, 0ms)).error().code, errc::queue_not_found);
  EXPECT_EQ(run(provider_->delete_subscription(b)).error().code, errc::queue_not_found);
  // A deleted subscription gets nothing more.
  ASSERT_TRUE(publish(t, {text("after delete")}).at(0));
  EXPECT_EQ(bodies(take(a, 1)), (std::multiset<std::string>{"after delete"}));

  // Deleting the topic takes its subscriptions' queues with it.
  ASSERT_TRUE(run(provider_->delete_topic(t)));
  EXPECT_EQ(run(provider_->list_subscriptions(t)).error().code, errc::topic_not_found);
  EXPECT_EQ(run(provider_->receive(a, 1, 0ms)).error().code, errc::queue_not_found);
  EXPECT_EQ(run(provider_->publish(t, {text("x")}, 5s)).error().code, errc::topic_not_found);
}

TEST_F(SqsTopics, AFifoTopicKeepsEachSessionInOrderInEverySubscription) {
  static std::mt19937_64 rng{std::random_device{}()};
  const auto t = topic_name::from("ordered-" + std::to_string(rng() % 1'000'000'000) + ".fifo");
  ASSERT_TRUE(run(provider_->create_topic(t)));
  queue_options sessions;
  sessions.requires_session = true;
  auto plain = subscribe(t, "plain");
  auto by_session = subscribe(t, "sessions", {}, sessions);

  auto in = [](std::string body, std::string_view session) {
    message m = text(std::move(body));
    m.session = session_id::from(session);
    return m;
  };
  for (const auto& o :
       publish(t, {in("a1", "a"), in("b1", "b"), in("a2", "a"), in("b2", "b"), in("a3", "a")})) {
    ASSERT_TRUE(o) << o.error().to_string();
  }
  // Read one at a time (a FIFO queue holds a group back while one of its messages is out): each
  // session's messages come in the order they were published, and carry their session.
  std::map<std::string, std::vector<std::string>> order;
  for (int i = 0; i < 20 && order["a"].size() + order["b"].size() < 5; ++i) {
    for (auto& m : take(plain, 1)) {
      ASSERT_TRUE(m.session);
      order[m.session->str()].push_back(m.body);
    }
  }
  EXPECT_EQ(order["a"], (std::vector<std::string>{"a1", "a2", "a3"}));
  EXPECT_EQ(order["b"], (std::vector<std::string>{"b1", "b2"}));

  // Through accept_session: one group, its first message first.
  auto session = run(provider_->accept_session(by_session, std::nullopt, 3s));
  ASSERT_TRUE(session) << session.error().to_string();
  const std::string id = (*session)->id().str();
  auto got = run((*session)->receive(10, 2s));
  ASSERT_TRUE(got) << got.error().to_string();
  ASSERT_FALSE(got->empty());
  EXPECT_EQ(got->front().body, id + "1");
  for (const auto& m : *got) EXPECT_EQ(m.session->str(), id);
  run((*session)->close());

  // The same message id published twice is one message (FIFO deduplication).
  message once = in("once", "c");
  once.id = "the-same-id";
  EXPECT_EQ(publish(t, {once}).at(0).value(), "the-same-id");
  EXPECT_EQ(publish(t, {once}).at(0).value(), "the-same-id");
  auto deduplicated = take(plain, 1);
  ASSERT_EQ(deduplicated.size(), 1u);
  EXPECT_EQ(deduplicated[0].body, "once");
  EXPECT_EQ(deduplicated[0].id, "the-same-id");
  EXPECT_EQ(depth(plain), 0);
  auto listed = run(provider_->list_subscriptions(t));
  ASSERT_TRUE(listed) << listed.error().to_string();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ(listed->at(0).name, plain);
  ASSERT_TRUE(run(provider_->delete_topic(t)));
  EXPECT_EQ(run(provider_->receive(by_session, 1, 0ms)).error().code, errc::queue_not_found);
}

TEST_F(SqsTopics, ListingsReadEveryPage) {
  // fauxqs, like SNS, answers 100 subscriptions or topics per page.
  auto t = topic("paged");
  constexpr std::size_t subscriptions = 105;
  for (std::size_t i = 0; i < subscriptions; ++i) subscribe(t, "s" + std::to_string(i));
  auto listed = run(provider_->list_subscriptions(t));
  ASSERT_TRUE(listed) << listed.error().to_string();
  EXPECT_EQ(listed->size(), subscriptions);

  // A provider that knows no topic finds one past the first page of ListTopics ("zz" sorts
  // after the others).
  for (int i = 0; i < 101; ++i) topic("filler");
  auto last = topic("zz-last");
  auto sub = subscribe(last, "s");
  auto fresh = make();
  auto r = run(fresh->publish(last, {text("found")}, 5s));
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_TRUE(r->at(0)) << r->at(0).error().to_string();
  run(fresh->close());
  EXPECT_EQ(bodies(take(sub, 1)), (std::multiset<std::string>{"found"}));
}

TEST_F(SqsTopics, WhatASubscriptionCannotBeIsRefusedBeforeAnythingIsCreated) {
  auto t = topic("refused");
  auto sub = queue_name::subscription(t, "s").value();
  EXPECT_EQ(run(provider_->send(sub, {text("x")}, 5s)).error().code, errc::invalid_argument);
  EXPECT_EQ(run(provider_->create_queue(sub, {})).error().code, errc::invalid_argument);
  EXPECT_EQ(run(provider_->delete_queue(sub)).error().code, errc::invalid_argument);
  queue_options sessions;
  sessions.requires_session = true;
  EXPECT_EQ(run(provider_->create_subscription(sub, {{}, sessions})).error().code,
            errc::invalid_argument)
      << "sessions need a FIFO topic";
  subscription_filter unmatchable;
  unmatchable.attributes["k"] = "";
  EXPECT_EQ(run(provider_->create_subscription(sub, {unmatchable, {}})).error().code,
            errc::invalid_argument);
  auto too_long =
      queue_name::subscription(topic_name::from(std::string(40, 't')), std::string(40, 's'))
          .value();
  EXPECT_EQ(run(provider_->create_subscription(too_long, {})).error().code, errc::invalid_argument);
  // None of those left a queue or a subscription behind.
  EXPECT_EQ(run(provider_->stats(sub)).error().code, errc::queue_not_found);
  auto listed = run(provider_->list_subscriptions(t));
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
}
