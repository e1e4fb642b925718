// Every provider decorator qrt ships forwards the publish/subscribe calls: a decorator that
// missed one would answer errc::unsupported from the provider interface's default although the
// provider underneath has topics (docs/adr/0050-topics-and-subscriptions.md). Also the client's
// refusals: what it checks before a topic call reaches the provider.
#include <gtest/gtest.h>

#include <mutex>
#include <qrt/client.hpp>
#include <qrt/fault_injection.hpp>
#include <qrt/instrumented_provider.hpp>
#include <qrt/metrics.hpp>
#include <qrt/retry.hpp>
#include <qrt/runtime.hpp>
#include <string>
#include <vector>

#include "../support/forwarding_provider.hpp"

namespace {

using namespace std::chrono_literals;
using qrt::errc;

// Answers each topic call and records its name with what it was given; the queue calls are
// not what these tests are about and only stats answers (for the metrics labels).
class topic_recorder final : public qrt::provider {
 public:
  explicit topic_recorder(bool topics = true) {
    caps_.topics = topics;
    caps_.subscription_filters = topics;
    caps_.subscription_sessions = topics;
    caps_.sessions = qrt::session_support::native;
    caps_.peek = true;
  }

  std::vector<std::string> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }

  std::string_view name() const noexcept override { return "recorder"; }
  const qrt::capabilities& caps() const noexcept override { return caps_; }
  qrt::awaitable<qrt::result<void>> create_queue(const qrt::queue_name& q,
                                                 const qrt::queue_options&) override {
    note("create_queue " + q.to_string());
    co_return qrt::result<void>{};
  }
  qrt::awaitable<qrt::result<void>> delete_queue(const qrt::queue_name&) override {
    co_return refused();
  }
  qrt::awaitable<qrt::result<qrt::queue_stats>> stats(const qrt::queue_name& q) override {
    note("stats " + q.to_string());
    qrt::queue_stats s;
    s.active = 3;
    co_return s;
  }
  qrt::awaitable<qrt::result<std::vector<qrt::send_outcome>>> send(const qrt::queue_name& q,
                                                                   std::vector<qrt::message> m,
                                                                   qrt::milliseconds) override {
    note("send " + q.to_string() + " " + std::to_string(m.size()));
    co_return std::vector<qrt::send_outcome>(m.size(), qrt::send_outcome{qrt::message_id{"id"}});
  }
  qrt::awaitable<qrt::result<std::vector<qrt::received_message>>> receive(
      const qrt::queue_name& q, std::size_t, qrt::milliseconds) override {
    note("receive " + q.to_string());
    co_return std::vector<qrt::received_message>{};
  }
  qrt::awaitable<qrt::result<std::vector<qrt::received_message>>> peek(const qrt::queue_name& q,
                                                                       std::size_t,
                                                                       std::int64_t) override {
    note("peek " + q.to_string());
    co_return std::vector<qrt::received_message>{};
  }
  qrt::awaitable<std::vector<qrt::result<void>>> settle(std::vector<qrt::settlement> s) override {
    co_return std::vector<qrt::result<void>>(s.size(), qrt::result<void>{refused()});
  }
  qrt::awaitable<qrt::result<qrt::time_point>> renew_lock(const qrt::receipt_handle&) override {
    co_return refused();
  }
  qrt::awaitable<qrt::result<std::shared_ptr<qrt::session_receiver>>> accept_session(
      const qrt::queue_name& q, std::optional<qrt::session_id>, qrt::milliseconds) override {
    note("accept_session " + q.to_string());
    co_return refused();
  }
  qrt::awaitable<void> close() override { co_return; }

  qrt::awaitable<qrt::result<void>> create_topic(const qrt::topic_name& t) override {
    note("create_topic " + t.str());
    co_return qrt::result<void>{};
  }
  qrt::awaitable<qrt::result<void>> delete_topic(const qrt::topic_name& t) override {
    note("delete_topic " + t.str());
    co_return qrt::result<void>{};
  }
  qrt::awaitable<qrt::result<std::vector<qrt::send_outcome>>> publish(const qrt::topic_name& t,
                                                                      std::vector<qrt::message> m,
                                                                      qrt::milliseconds) override {
    note("publish " + t.str() + " " + std::to_string(m.size()));
    co_return std::vector<qrt::send_outcome>(m.size(), qrt::send_outcome{qrt::message_id{"id"}});
  }
  qrt::awaitable<qrt::result<void>> create_subscription(
      const qrt::queue_name& s, const qrt::subscription_options& o) override {
    note("create_subscription " + s.to_string() + " " + o.filter.subject.value_or("-"));
    co_return qrt::result<void>{};
  }
  qrt::awaitable<qrt::result<void>> delete_subscription(const qrt::queue_name& s) override {
    note("delete_subscription " + s.to_string());
    co_return qrt::result<void>{};
  }
  qrt::awaitable<qrt::result<std::vector<qrt::subscription_info>>> list_subscriptions(
      const qrt::topic_name& t) override {
    note("list_subscriptions " + t.str());
    std::vector<qrt::subscription_info> out;
    out.push_back({qrt::queue_name::subscription(t, "audit").value(), {}});
    co_return out;
  }

 private:
  static qrt::error refused() { return qrt::fail(errc::unsupported, "not in this test"); }
  void note(std::string call) {
    std::lock_guard lock(mutex_);
    calls_.push_back(std::move(call));
  }

  qrt::capabilities caps_;
  mutable std::mutex mutex_;
  std::vector<std::string> calls_;
};

const std::vector<std::string> every_topic_call = {
    "create_topic events",
    "create_subscription events/Subscriptions/audit orders",
    "publish events 2",
    "list_subscriptions events",
    "delete_subscription events/Subscriptions/audit",
    "delete_topic events",
};

// Makes each topic call once through `p` and expects each to succeed.
void call_every_topic_operation(qrt::runtime& rt, qrt::provider& p) {
  const auto topic = qrt::topic_name::from("events");
  const auto audit = qrt::queue_name::subscription(topic, "audit").value();
  qrt::subscription_options options;
  options.filter.subject = "orders";
  EXPECT_TRUE(rt.block_on(p.create_topic(topic)));
  EXPECT_TRUE(rt.block_on(p.create_subscription(audit, options)));
  std::vector<qrt::message> two(2);
  two[0].body = "a";
  two[1].body = "b";
  auto published = rt.block_on(p.publish(topic, std::move(two), 1s));
  ASSERT_TRUE(published);
  EXPECT_EQ(published->size(), 2u);
  auto listed = rt.block_on(p.list_subscriptions(topic));
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->front().name, audit);
  EXPECT_TRUE(rt.block_on(p.delete_subscription(audit)));
  EXPECT_TRUE(rt.block_on(p.delete_topic(topic)));
}

TEST(TopicForwarding, RetryingProviderForwardsEveryTopicCall) {
  qrt::runtime rt;
  auto recorder = std::make_shared<topic_recorder>();
  auto p = qrt::make_retrying_provider(recorder, qrt::retry_policy::client_default());
  call_every_topic_operation(rt, *p);
  EXPECT_EQ(recorder->calls(), every_topic_call);
}

TEST(TopicForwarding, RetryingProviderRetriesAWholePublishFailureWithEveryMessage) {
  qrt::runtime rt;
  auto recorder = std::make_shared<topic_recorder>();
  auto faulty = qrt::make_fault_injecting_provider(recorder);
  faulty->fail_next(qrt::fault_ops::send, 1, qrt::fail(errc::connection_failed, "reset"));
  auto p =
      qrt::make_retrying_provider(faulty, qrt::retry_policy::client_default(),
                                  [](qrt::milliseconds) -> qrt::awaitable<void> { co_return; });
  std::vector<qrt::message> two(2);
  auto published = rt.block_on(p->publish(qrt::topic_name::from("events"), std::move(two), 1s));
  ASSERT_TRUE(published);
  EXPECT_EQ(published->size(), 2u);
  // The injected failure never reached the recorder; the retry published both messages.
  EXPECT_EQ(recorder->calls(), std::vector<std::string>{"publish events 2"});
  EXPECT_EQ(faulty->stats().scheduled_failures, 1u);
}

TEST(TopicForwarding, FaultInjectingProviderForwardsEveryTopicCall) {
  qrt::runtime rt;
  auto recorder = std::make_shared<topic_recorder>();
  auto p = qrt::make_fault_injecting_provider(recorder);
  call_every_topic_operation(rt, *p);
  EXPECT_EQ(recorder->calls(), every_topic_call);
}

TEST(TopicForwarding, FaultInjectingProviderFailsPublishAsASend) {
  qrt::runtime rt;
  auto recorder = std::make_shared<topic_recorder>();
  auto p = qrt::make_fault_injecting_provider(recorder);
  p->fail_next(qrt::fault_ops::send, 1, qrt::fail(errc::throttled, "busy"));
  auto published = rt.block_on(p->publish(qrt::topic_name::from("events"), {}, 1s));
  ASSERT_FALSE(published);
  EXPECT_EQ(published.error().code, errc::throttled);
  EXPECT_TRUE(recorder->calls().empty());
}

TEST(TopicForwarding, InstrumentedProviderForwardsEveryTopicCall) {
  qrt::runtime rt;
  qrt::metrics::registry reg;
  qrt::metrics::runtime_metrics m{reg};
  auto recorder = std::make_shared<topic_recorder>();
  auto p = qrt::metrics::instrument(recorder, m);
  call_every_topic_operation(rt, *p);
  EXPECT_EQ(recorder->calls(), every_topic_call);
}

TEST(TopicForwarding, TestForwardingProviderForwardsEveryTopicCall) {
  qrt::runtime rt;
  auto recorder = std::make_shared<topic_recorder>();
  qrt::test::forwarding_provider p(recorder);
  call_every_topic_operation(rt, p);
  EXPECT_EQ(recorder->calls(), every_topic_call);
}

TEST(TopicForwarding, ClientReachesTheProviderThroughItsRetryLayer) {
  qrt::runtime rt;
  auto recorder = std::make_shared<topic_recorder>();
  qrt::queue_client client(recorder);
  const auto topic = qrt::topic_name::from("events");
  const auto audit = qrt::queue_name::subscription(topic, "audit").value();
  qrt::subscription_options options;
  options.filter.subject = "orders";
  EXPECT_TRUE(rt.block_on(client.create_topic(topic)));
  EXPECT_TRUE(rt.block_on(client.create_subscription(audit, options)));
  qrt::message one;
  one.body = "a";
  EXPECT_TRUE(rt.block_on(client.publish(topic, one)));
  auto listed = rt.block_on(client.list_subscriptions(topic));
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), 1u);
  EXPECT_TRUE(rt.block_on(client.delete_subscription(audit)));
  EXPECT_TRUE(rt.block_on(client.delete_topic(topic)));
  EXPECT_EQ(recorder->calls(),
            (std::vector<std::string>{
                "create_topic events", "create_subscription events/Subscriptions/audit orders",
                "publish events 1", "list_subscriptions events",
                "delete_subscription events/Subscriptions/audit", "delete_topic events"}));
}

TEST(TopicForwarding, PublishBatchIsSplitWithinTheProviderLimitsAsSendBatchIs) {
  qrt::runtime rt;
  auto recorder = std::make_shared<topic_recorder>();
  // topic_recorder's caps: default limits; set a batch of at most 2 through a copy.
  struct limited final : qrt::test::forwarding_provider {
    explicit limited(qrt::provider_ptr inner) : forwarding_provider(std::move(inner)) {
      caps_ = inner_->caps();
      caps_.max_batch_messages = 2;
      caps_.max_message_bytes = 100;
    }
    const qrt::capabilities& caps() const noexcept override { return caps_; }
    qrt::capabilities caps_;
  };
  qrt::queue_client client(std::make_shared<limited>(recorder));
  std::vector<qrt::message> five(5);
  for (std::size_t i = 0; i < five.size(); ++i) five[i].body = std::to_string(i);
  five[2].body = std::string(200, 'x');  // over max_message_bytes: fails alone
  auto out = rt.block_on(client.publish_batch(qrt::topic_name::from("events"), std::move(five)));
  ASSERT_TRUE(out);
  ASSERT_EQ(out->size(), 5u);
  EXPECT_FALSE((*out)[2]);
  EXPECT_EQ((*out)[2].error().code, errc::message_too_large);
  for (std::size_t i : {0u, 1u, 3u, 4u}) EXPECT_TRUE((*out)[i]) << i;
  EXPECT_EQ(recorder->calls(), (std::vector<std::string>{"publish events 2", "publish events 2"}));
}

TEST(TopicClient, RefusesEveryTopicCallWithoutTheTopicsCapability) {
  qrt::runtime rt;
  auto recorder = std::make_shared<topic_recorder>(false);
  qrt::queue_client client(recorder);
  const auto topic = qrt::topic_name::from("events");
  const auto audit = qrt::queue_name::subscription(topic, "audit").value();
  auto expect_unsupported = [](const auto& r) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::unsupported);
    EXPECT_NE(r.error().message.find("topics"), std::string::npos) << r.error().message;
  };
  expect_unsupported(rt.block_on(client.create_topic(topic)));
  expect_unsupported(rt.block_on(client.delete_topic(topic)));
  expect_unsupported(rt.block_on(client.publish(topic, qrt::message{})));
  expect_unsupported(rt.block_on(client.publish_batch(topic, std::vector<qrt::message>(1))));
  expect_unsupported(rt.block_on(client.create_subscription(audit)));
  expect_unsupported(rt.block_on(client.delete_subscription(audit)));
  expect_unsupported(rt.block_on(client.list_subscriptions(topic)));
  // Reading a subscription needs topics too; a plain queue is read as before.
  expect_unsupported(rt.block_on(client.receive(audit, 1, 0ms)));
  expect_unsupported(rt.block_on(client.peek(audit, 1)));
  expect_unsupported(rt.block_on(client.stats(audit)));
  expect_unsupported(rt.block_on(client.stats(audit.dead_letter())));
  expect_unsupported(rt.block_on(client.accept_session(audit, std::nullopt, 0ms)));
  EXPECT_TRUE(rt.block_on(client.stats(qrt::queue_name::from("orders"))));
  EXPECT_EQ(recorder->calls(), std::vector<std::string>{"stats orders"});
}

TEST(TopicClient, RefusesFiltersAndSessionsTheProviderCannotHonour) {
  qrt::runtime rt;
  struct no_extras final : qrt::test::forwarding_provider {
    explicit no_extras(qrt::provider_ptr inner) : forwarding_provider(std::move(inner)) {
      caps_ = inner_->caps();
      caps_.subscription_filters = false;
      caps_.subscription_sessions = false;
    }
    const qrt::capabilities& caps() const noexcept override { return caps_; }
    qrt::capabilities caps_;
  };
  auto recorder = std::make_shared<topic_recorder>();
  qrt::queue_client client(std::make_shared<no_extras>(recorder));
  const auto audit =
      qrt::queue_name::subscription(qrt::topic_name::from("events"), "audit").value();
  qrt::subscription_options filtered;
  filtered.filter.attributes["region"] = "eu";
  auto r = rt.block_on(client.create_subscription(audit, filtered));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsupported);
  EXPECT_NE(r.error().message.find("subscription_filters"), std::string::npos);
  qrt::subscription_options sessions;
  sessions.queue.requires_session = true;
  r = rt.block_on(client.create_subscription(audit, sessions));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsupported);
  EXPECT_NE(r.error().message.find("subscription_sessions"), std::string::npos);
  EXPECT_TRUE(recorder->calls().empty());
  // Without filter or sessions the subscription is created.
  EXPECT_TRUE(rt.block_on(client.create_subscription(audit)));
}

TEST(TopicClient, RefusesSendToASubscriptionAndNamesItsTopic) {
  qrt::runtime rt;
  auto recorder = std::make_shared<topic_recorder>();
  qrt::queue_client client(recorder);
  const auto audit =
      qrt::queue_name::subscription(qrt::topic_name::from("events"), "audit").value();
  auto one = rt.block_on(client.send(audit, qrt::message{}));
  ASSERT_FALSE(one);
  EXPECT_EQ(one.error().code, errc::invalid_argument);
  EXPECT_NE(one.error().message.find("publish to its topic events"), std::string::npos);
  auto batch = rt.block_on(client.send_batch(audit.dead_letter(), std::vector<qrt::message>(2)));
  ASSERT_FALSE(batch);
  EXPECT_EQ(batch.error().code, errc::invalid_argument);
  auto queue = rt.block_on(client.create_subscription(qrt::queue_name::from("orders")));
  ASSERT_FALSE(queue);
  EXPECT_EQ(queue.error().code, errc::invalid_argument);
  EXPECT_TRUE(recorder->calls().empty());
}

TEST(TopicMetrics, PublishIsCountedUnderItsTopicAndSubscriptionsCarryTopicLabels) {
  qrt::runtime rt;
  qrt::metrics::registry reg;
  qrt::metrics::runtime_metrics m{reg};
  auto recorder = std::make_shared<topic_recorder>();
  auto p = qrt::metrics::instrument(recorder, m);
  const auto topic = qrt::topic_name::from("events");
  const auto audit = qrt::queue_name::subscription(topic, "audit").value();
  ASSERT_TRUE(rt.block_on(p->publish(topic, std::vector<qrt::message>(3), 1s)));
  ASSERT_TRUE(rt.block_on(p->stats(audit)));
  ASSERT_TRUE(rt.block_on(p->stats(qrt::queue_name::from("orders"))));
  const std::string text = reg.expose();
  EXPECT_NE(text.find(R"(queue_runtime_messages_sent_total{topic="events",provider="recorder"} 3)"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find(
          R"(queue_runtime_operations_total{topic="events",provider="recorder",operation="publish"} 1)"),
      std::string::npos)
      << text;
  EXPECT_NE(
      text.find(
          R"(queue_runtime_queue_depth{queue="events/Subscriptions/audit",topic="events",subscription="audit",provider="recorder",state="active"} 3)"),
      std::string::npos)
      << text;
  // A queue's series are as before, and no queue series counts publish.
  EXPECT_NE(
      text.find(
          R"(queue_runtime_queue_depth{queue="orders",provider="recorder",state="active"} 3)"),
      std::string::npos)
      << text;
  EXPECT_EQ(text.find(R"(queue="orders",provider="recorder",operation="publish")"),
            std::string::npos)
      << text;
}

}  // namespace
