// Topics against the official AWS SDK for JavaScript (@aws-sdk/client-sns and client-sqs) on
// the same emulator: what the SDK publishes to a qrt topic, qrt reads intact from a
// subscription; what qrt publishes, the SDK reads intact from the subscription's SQS queue; and
// the subscription is set up as AWS needs it (raw delivery, the filter policy, the queue policy
// letting the topic send, the redrive to its dead-letter queue).
#include <boost/json.hpp>
#include <random>

#include "sns_codec.hpp"
#include "sqs_fixture.hpp"

using namespace qrt;
using namespace std::chrono_literals;
namespace json = boost::json;
namespace sns = qrt::sqs::detail::sns;

class SnsInterop : public qrt::test::sqs_fixture {
 protected:
  json::object node(std::string_view script, json::object command) {
    command["endpoint"] = server_->endpoint();
    const std::string cmd = "cd '" + qrt::test::fauxqs_server::servers_dir() + "' && '" +
                            qrt::test::fauxqs_server::node_binary() + "' --no-warnings " +
                            std::string(script);
    return json::parse(qrt::test::run_command(cmd, json::serialize(command))).as_object();
  }

  topic_name topic(std::string_view prefix) {
    static std::mt19937_64 rng{std::random_device{}()};
    auto t = topic_name::from(std::string(prefix) + "." + std::to_string(rng() % 1'000'000'000));
    auto r = run(provider_->create_topic(t));
    EXPECT_TRUE(r) << r.error().to_string();
    return t;
  }

  queue_name subscribe(const topic_name& t, std::string_view name, subscription_filter f = {}) {
    auto sub = queue_name::subscription(t, name).value();
    queue_options qo;
    qo.max_delivery_count = 5;
    auto r = run(provider_->create_subscription(sub, subscription_options{std::move(f), qo}));
    EXPECT_TRUE(r) << r.error().to_string();
    return sub;
  }
};

TEST_F(SnsInterop, QrtReadsWhatTheSdkPublishes) {
  auto t = topic("sdk-in");
  subscription_filter f;
  f.subject = "invoice";
  auto sub = subscribe(t, "billing", f);
  auto everything = subscribe(t, "all");
  const std::string body = "h\xc3\xa9llo \xe2\x98\x83 {\"json\": true}";
  json::object attributes{
      {"qrt.subject", {{"DataType", "String"}, {"StringValue", "invoice"}}},
      {"qrt.correlation_id", {{"DataType", "String"}, {"StringValue", "corr-5"}}},
      {"tenant", {{"DataType", "String"}, {"StringValue", "acme"}}},
      {"raw", {{"DataType", "Binary"}, {"BinaryBase64", "AAH/"}}}};
  json::object other{{"qrt.subject", {{"DataType", "String"}, {"StringValue", "receipt"}}}};
  auto answer =
      node("sns-client.mjs",
           {{"op", "publish"},
            {"topic", sns::topic_aws_name(t).value()},
            {"messages", json::array{json::object{{"body", body}, {"attributes", attributes}},
                                     json::object{{"body", "other"}, {"attributes", other}}}}});
  ASSERT_EQ(answer.at("ids").as_array().size(), 2u);

  auto got = run(provider_->receive(sub, 10, 3s));
  ASSERT_TRUE(got) << got.error().to_string();
  ASSERT_EQ(got->size(), 1u) << "the subject filter lets only the invoice through";
  const auto& m = got->at(0);
  EXPECT_EQ(m.body, body);
  EXPECT_EQ(m.subject, "invoice");
  EXPECT_EQ(m.correlation_id, "corr-5");
  EXPECT_EQ(m.attributes, (std::map<std::string, std::string>{
                              {"tenant", "acme"}, {"raw", std::string("\x00\x01\xff", 3)}}));
  auto all = run(provider_->receive(everything, 10, 3s));
  ASSERT_TRUE(all) << all.error().to_string();
  std::size_t n = all->size();
  while (n < 2) {
    auto more = run(provider_->receive(everything, 10, 3s));
    ASSERT_TRUE(more) << more.error().to_string();
    if (more->empty()) break;
    n += more->size();
  }
  EXPECT_EQ(n, 2u);
}

TEST_F(SnsInterop, TheSdkReadsWhatQrtPublishes) {
  auto t = topic("sdk-out");
  auto sub = subscribe(t, "reader");
  message textual;
  textual.body = "h\xc3\xa9llo \xe2\x98\x83";
  textual.subject = "invoice";
  textual.attributes = {{"tenant", "acme"}, {"empty", ""}};
  message binary;
  binary.body = std::string("\x00\x01\x80\xff", 4);
  auto out = run(provider_->publish(t, {textual, binary}, 5s));
  ASSERT_TRUE(out) << out.error().to_string();
  for (const auto& o : *out) ASSERT_TRUE(o) << o.error().to_string();

  auto answer = node("sdk-client.mjs", {{"op", "receive"},
                                        {"queue", sns::subscription_queue_name(sub).value()},
                                        {"max", 2},
                                        {"waitSeconds", 3},
                                        {"delete", true}});
  const auto& msgs = answer.at("messages").as_array();
  ASSERT_EQ(msgs.size(), 2u);
  bool saw_text = false, saw_binary = false;
  for (const auto& v : msgs) {
    const auto& m = v.as_object();
    const auto& attrs = m.at("attributes").as_object();
    if (attrs.contains("qrt.body_encoding")) {
      EXPECT_EQ(attrs.at("qrt.body_encoding").at("StringValue"), "base64");
      EXPECT_EQ(m.at("body").as_string(), "AAGA/w==");
      saw_binary = true;
    } else {
      EXPECT_EQ(m.at("body").as_string(), textual.body);
      EXPECT_EQ(attrs.at("qrt.subject").at("StringValue"), "invoice");
      EXPECT_EQ(attrs.at("tenant").at("StringValue"), "acme");
      EXPECT_EQ(attrs.at("empty").at("DataType"), "String.qrt-empty");
      saw_text = true;
    }
  }
  EXPECT_TRUE(saw_text);
  EXPECT_TRUE(saw_binary);
}

TEST_F(SnsInterop, TheSubscriptionIsSetUpAsAwsNeedsIt) {
  auto t = topic("setup");
  subscription_filter f;
  f.subject = "s";
  f.attributes = {{"k", "v"}};
  auto sub = subscribe(t, "checked", f);
  const auto queue = sns::subscription_queue_name(sub).value();
  auto answer =
      node("sns-client.mjs",
           {{"op", "inspect"}, {"topic", sns::topic_aws_name(t).value()}, {"queue", queue}});
  const std::string topic_arn(answer.at("topicArn").as_string());
  const auto& queue_attributes = answer.at("queueAttributes").as_object();
  const auto policy = json::parse(queue_attributes.at("Policy").as_string()).as_object();
  const auto& statement = policy.at("Statement").as_array().at(0).as_object();
  EXPECT_EQ(statement.at("Principal").at("Service"), "sns.amazonaws.com");
  EXPECT_EQ(statement.at("Action"), "sqs:SendMessage");
  EXPECT_EQ(statement.at("Resource"), queue_attributes.at("QueueArn"));
  EXPECT_EQ(statement.at("Condition").at("ArnEquals").at("aws:SourceArn"), topic_arn.c_str());
  const auto redrive = json::parse(queue_attributes.at("RedrivePolicy").as_string()).as_object();
  EXPECT_EQ(sns::arn_resource(std::string(redrive.at("deadLetterTargetArn").as_string())),
            sns::subscription_queue_name(sub.dead_letter()).value());

  const auto& subs = answer.at("subscriptions").as_array();
  ASSERT_EQ(subs.size(), 1u);
  const auto& s = subs.at(0).as_object();
  EXPECT_EQ(s.at("protocol"), "sqs");
  EXPECT_EQ(s.at("endpoint"), queue_attributes.at("QueueArn"));
  EXPECT_EQ(s.at("attributes").at("RawMessageDelivery"), "true");
  EXPECT_EQ(json::parse(s.at("attributes").at("FilterPolicy").as_string()),
            json::parse(R"({"k":["v"],"qrt.subject":["s"]})"));
}
