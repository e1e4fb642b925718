// The embedded provider's topics beyond what the conformance suite checks: a full subscription
// (backpressure), a message one subscription refuses, idempotent creation, deletion, names that
// are not queues, and publishes racing each other (docs/contract.md, topics).
#include <gtest/gtest.h>

#include <future>
#include <qrt/memory.hpp>
#include <qrt/qrt.hpp>
#include <qrt/runtime.hpp>
#include <set>
#include <thread>

using namespace std::chrono_literals;
using qrt::errc;
using qrt::message;
using qrt::queue_name;
using qrt::topic_name;

namespace {

struct fixture : ::testing::Test {
  qrt::runtime rt;
  qrt::provider_ptr provider =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client{provider};
  topic_name topic = topic_name::from("events");

  queue_name subscription(std::string_view name, qrt::subscription_options options = {}) {
    auto s = queue_name::subscription(topic, name).value();
    EXPECT_TRUE(rt.block_on(client.create_subscription(s, options)));
    return s;
  }
  std::multiset<std::string> drain(const queue_name& q) {
    std::multiset<std::string> out;
    for (;;) {
      auto got = rt.block_on(client.receive(q, 100, 0ms));
      EXPECT_TRUE(got) << got.error().to_string();
      if (!got || got->empty()) return out;
      for (const auto& m : *got) {
        out.insert(m.body);
        EXPECT_TRUE(rt.block_on(client.complete(m.receipt)));
      }
    }
  }
  static message text(std::string body) {
    message m;
    m.body = std::move(body);
    return m;
  }
  void SetUp() override { ASSERT_TRUE(rt.block_on(client.create_topic(topic))); }
  void TearDown() override { rt.block_on(client.close()); }
};

using MemoryTopics = fixture;

TEST_F(MemoryTopics, AFullSubscriptionFailsThePublishAfterItsTimeoutAndNoSubscriptionGetsIt) {
  const auto small = subscription("small", {.queue = {.max_size = 1}});
  const auto large = subscription("large");
  auto first = rt.block_on(provider->publish(topic, {text("first")}, 1s));
  ASSERT_TRUE(first);
  ASSERT_TRUE((*first)[0]);
  // "small" is full: the next two wait for room until the timeout, then fail with queue_full
  // (the second fails with the first: no subscription may see it without the one before).
  auto held = rt.block_on(provider->publish(topic, {text("second"), text("third")}, 20ms));
  ASSERT_TRUE(held);
  ASSERT_EQ(held->size(), 2u);
  for (const auto& outcome : *held) {
    ASSERT_FALSE(outcome);
    EXPECT_EQ(outcome.error().code, errc::queue_full) << outcome.error().to_string();
  }
  EXPECT_EQ(drain(large), std::multiset<std::string>{"first"});
  EXPECT_EQ(drain(small), std::multiset<std::string>{"first"});
}

TEST_F(MemoryTopics, AFullSubscriptionTakesThePublishOnceRoomIsMade) {
  const auto small = subscription("small", {.queue = {.max_size = 1}});
  const auto large = subscription("large");
  ASSERT_TRUE(rt.block_on(client.publish(topic, text("first"))));
  // Waits for room in "small" (a long timeout: it must not run out).
  auto waiting = std::async(std::launch::async, [&] {
    return rt.block_on(provider->publish(topic, {text("second")}, 60s));
  });
  auto got = rt.block_on(client.receive(small, 1, 10s));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  ASSERT_TRUE(rt.block_on(client.complete(got->front().receipt)));
  auto second = waiting.get();
  ASSERT_TRUE(second);
  EXPECT_TRUE((*second)[0]) << (*second)[0].error().to_string();
  EXPECT_EQ(drain(small), std::multiset<std::string>{"second"});
  EXPECT_EQ(drain(large), (std::multiset<std::string>{"first", "second"}));
}

TEST_F(MemoryTopics, AMessageOneSubscriptionRefusesFailsAloneAndGoesNowhere) {
  const auto sessions = subscription("sessions", {.queue = {.requires_session = true}});
  const auto plain = subscription("plain");
  message with_session = text("with-session");
  with_session.session = qrt::session_id::from("s1");
  auto out = rt.block_on(
      client.publish_batch(topic, {text("no-session"), with_session, text("also-none")}));
  ASSERT_TRUE(out);
  ASSERT_EQ(out->size(), 3u);
  EXPECT_FALSE((*out)[0]);
  EXPECT_EQ((*out)[0].error().code, errc::invalid_argument);
  EXPECT_TRUE((*out)[1]);
  EXPECT_FALSE((*out)[2]);
  EXPECT_EQ(drain(plain), std::multiset<std::string>{"with-session"});
  auto s = rt.block_on(client.accept_session(sessions, std::nullopt, 1s));
  ASSERT_TRUE(s);
  auto got = rt.block_on(s->receive(10, 0ms));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->front().body, "with-session");
}

TEST_F(MemoryTopics, AMessageNoSubscriptionMatchesIsAcceptedAndKeptNowhere) {
  qrt::subscription_options only_eu;
  only_eu.filter.attributes["region"] = "eu";
  const auto eu = subscription("eu", only_eu);
  auto id = rt.block_on(client.publish(topic, text("us")));
  ASSERT_TRUE(id);
  EXPECT_FALSE(id->empty());
  EXPECT_TRUE(drain(eu).empty());
  auto stats = rt.block_on(client.stats(eu));
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->active, 0);
}

// A message is checked whoever listens: one no subscription takes is refused for what is wrong
// with it (an empty session id, a time to live past 100 years) as it would be with subscribers,
// and the rest of the publish goes on.
TEST_F(MemoryTopics, ABadMessageIsRefusedEvenWhenNoSubscriptionWouldTakeIt) {
  qrt::subscription_options only_eu;
  only_eu.filter.attributes["region"] = "eu";
  const auto eu = subscription("eu", only_eu);
  auto unnamed = text("unnamed session");
  unnamed.session = qrt::session_id{};
  auto forever = text("too long a life");
  forever.time_to_live = std::chrono::hours(24 * 365 * 200);
  std::vector<message> batch;
  batch.push_back(std::move(unnamed));
  batch.push_back(std::move(forever));
  batch.push_back(text("fine"));
  auto outcomes = rt.block_on(provider->publish(topic, std::move(batch), 1s));
  ASSERT_TRUE(outcomes) << outcomes.error().to_string();
  ASSERT_EQ(outcomes->size(), 3u);
  ASSERT_FALSE((*outcomes)[0]);
  EXPECT_EQ((*outcomes)[0].error().code, errc::invalid_argument);
  EXPECT_NE((*outcomes)[0].error().message.find("session id"), std::string::npos);
  ASSERT_FALSE((*outcomes)[1]);
  EXPECT_EQ((*outcomes)[1].error().code, errc::invalid_argument);
  EXPECT_NE((*outcomes)[1].error().message.find("time_to_live"), std::string::npos);
  EXPECT_TRUE((*outcomes)[2]) << (*outcomes)[2].error().to_string();
  EXPECT_TRUE(drain(eu).empty());
}

// Each subscription's copy counts against max_memory_bytes. A message whose copies together
// could never fit the budget, even with every queue empty, is refused at once as too large,
// rather than held until the publish's timeout (or for ever) waiting for room that cannot come.
TEST(MemoryTopicsBudget, AMessageWhoseCopiesExceedTheByteBudgetFailsAloneAsTooLarge) {
  constexpr std::uint64_t overhead = qrt::memory::stored_message_overhead_bytes;
  qrt::runtime rt;
  auto o = qrt::memory::options::for_testing();
  o.max_memory_bytes = 2 * (100 + overhead) - 1;  // one copy of a 100-byte message, not two
  qrt::provider_ptr provider = qrt::memory::make_provider(o, rt.executor()).value();
  qrt::queue_client client{provider};
  const auto topic = topic_name::from("events");
  ASSERT_TRUE(rt.block_on(client.create_topic(topic)));
  const auto a = queue_name::subscription(topic, "a").value();
  const auto b = queue_name::subscription(topic, "b").value();
  ASSERT_TRUE(rt.block_on(client.create_subscription(a)));
  ASSERT_TRUE(rt.block_on(client.create_subscription(b)));
  std::vector<message> batch;
  batch.push_back(fixture::text(std::string(100, 'x')));
  batch.push_back(fixture::text("small"));
  // A timeout long enough that running into it would be a failure of its own.
  auto out = rt.block_on(provider->publish(topic, std::move(batch), 10s));
  ASSERT_TRUE(out) << out.error().to_string();
  ASSERT_EQ(out->size(), 2u);
  ASSERT_FALSE((*out)[0]);
  EXPECT_EQ((*out)[0].error().code, errc::message_too_large) << (*out)[0].error().to_string();
  EXPECT_NE((*out)[0].error().message.find("max_memory_bytes"), std::string::npos)
      << (*out)[0].error().message;
  EXPECT_TRUE((*out)[1]) << (*out)[1].error().to_string();
  for (const auto& s : {a, b}) {
    auto got = rt.block_on(client.receive(s, 10, 0ms));
    ASSERT_TRUE(got);
    ASSERT_EQ(got->size(), 1u) << s.to_string();
    EXPECT_EQ(got->front().body, "small");
  }
  rt.block_on(client.close());
}

TEST_F(MemoryTopics, CreationIsIdempotentAndAnExistingSubscriptionKeepsItsFilter) {
  EXPECT_TRUE(rt.block_on(client.create_topic(topic)));
  qrt::subscription_options first;
  first.filter.subject = "a";
  const auto s = subscription("s", first);
  qrt::subscription_options second;
  second.filter.subject = "b";
  EXPECT_TRUE(rt.block_on(client.create_subscription(s, second)));
  auto listed = rt.block_on(client.list_subscriptions(topic));
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->front().filter, first.filter);
}

TEST_F(MemoryTopics, DeletingATopicDeletesItsSubscriptionsAndTheirMessages) {
  const auto s = subscription("s");
  ASSERT_TRUE(rt.block_on(client.publish(topic, text("old"))));
  ASSERT_TRUE(rt.block_on(client.delete_topic(topic)));
  auto gone = rt.block_on(client.receive(s, 1, 0ms));
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, errc::queue_not_found);
  auto listed = rt.block_on(client.list_subscriptions(topic));
  ASSERT_FALSE(listed);
  EXPECT_EQ(listed.error().code, errc::topic_not_found);
  auto again = rt.block_on(client.delete_topic(topic));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, errc::topic_not_found);
  auto missing = rt.block_on(client.delete_subscription(s));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::topic_not_found);
  // Made again, topic and subscription start empty.
  ASSERT_TRUE(rt.block_on(client.create_topic(topic)));
  const auto fresh = subscription("s");
  EXPECT_TRUE(drain(fresh).empty());
  auto no_such =
      rt.block_on(client.delete_subscription(queue_name::subscription(topic, "x").value()));
  ASSERT_FALSE(no_such);
  EXPECT_EQ(no_such.error().code, errc::queue_not_found);
}

TEST_F(MemoryTopics, ASubscriptionIsNotAQueueForTheQueueCalls) {
  const auto s = subscription("s");
  auto created = rt.block_on(provider->create_queue(s, {}));
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, errc::invalid_argument);
  auto deleted = rt.block_on(provider->delete_queue(s));
  ASSERT_FALSE(deleted);
  EXPECT_EQ(deleted.error().code, errc::invalid_argument);
  auto sent = rt.block_on(provider->send(s, {text("direct")}, 1s));
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code, errc::invalid_argument);
  // Nor is a topic's name a queue's: a queue of the same name is another thing.
  const auto same_name = queue_name::from("events");
  ASSERT_TRUE(rt.block_on(client.create_queue(same_name)));
  ASSERT_TRUE(rt.block_on(client.send(same_name, text("to the queue"))));
  ASSERT_TRUE(rt.block_on(client.publish(topic, text("to the topic"))));
  EXPECT_EQ(drain(same_name), std::multiset<std::string>{"to the queue"});
  EXPECT_EQ(drain(s), std::multiset<std::string>{"to the topic"});
}

// Contract C39 under load: concurrent publishers, every subscription gets every message exactly
// once (the multi-lock enqueue neither loses nor duplicates, nor deadlocks).
TEST_F(MemoryTopics, ConcurrentPublishersReachEverySubscriptionExactlyOnce) {
  std::vector<queue_name> subscriptions;
  for (const char* name : {"a", "b", "c"}) subscriptions.push_back(subscription(name));
  constexpr int publishers = 4, each = 200;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int p = 0; p < publishers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < each; ++i) {
        auto r =
            rt.block_on(client.publish(topic, text(std::to_string(p) + "-" + std::to_string(i))));
        if (!r) ++failures;
      }
    });
  }
  // Consumers drain while the publishers run.
  std::vector<std::multiset<std::string>> received(subscriptions.size());
  std::vector<std::thread> consumers;
  for (std::size_t k = 0; k < subscriptions.size(); ++k) {
    consumers.emplace_back([&, k] {
      while (received[k].size() < std::size_t{publishers * each}) {
        auto got = rt.block_on(client.receive(subscriptions[k], 50, 5s));
        if (!got || got->empty()) break;
        std::vector<qrt::settlement> done;
        for (const auto& m : *got) {
          received[k].insert(m.body);
          done.push_back(qrt::settlement::complete(m.receipt));
        }
        rt.block_on(client.settle(std::move(done)));
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& t : consumers) t.join();
  EXPECT_EQ(failures.load(), 0);
  std::multiset<std::string> expected;
  for (int p = 0; p < publishers; ++p)
    for (int i = 0; i < each; ++i) expected.insert(std::to_string(p) + "-" + std::to_string(i));
  for (std::size_t k = 0; k < subscriptions.size(); ++k) {
    EXPECT_EQ(received[k], expected) << subscriptions[k].to_string();
    EXPECT_TRUE(drain(subscriptions[k]).empty());
  }
}

}  // namespace
