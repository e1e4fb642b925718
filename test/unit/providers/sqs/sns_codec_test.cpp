// The SNS codec: names, filter policies, Query request bodies, the bounded XML reader, answer
// parsers (samples in the shape AWS documents and fauxqs writes) and error mapping.
#include "sns_codec.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "../../support/shown_text.hpp"
#include "digest.hpp"

using namespace qrt;
using namespace qrt::sqs::detail;
namespace sns = qrt::sqs::detail::sns;

namespace {

queue_name subscription(std::string_view topic, std::string_view name) {
  return queue_name::subscription(topic_name::from(topic), name).value();
}

// Answers as AWS documents them (namespace, indentation and ResponseMetadata included).
constexpr std::string_view aws_create_topic =
    R"(<CreateTopicResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <CreateTopicResult>
    <TopicArn>arn:aws:sns:us-east-2:123456789012:My-Topic</TopicArn>
  </CreateTopicResult>
  <ResponseMetadata>
    <RequestId>a8dec8b3-33a4-11df-8963-01868b7c937a</RequestId>
  </ResponseMetadata>
</CreateTopicResponse>)";

constexpr std::string_view aws_publish = R"(<?xml version="1.0"?>
<PublishResponse xmlns="https://sns.amazonaws.com/doc/2010-03-31/">
    <PublishResult>
        <MessageId>567910cd-659e-55d4-8ccb-5aaf14679dc0</MessageId>
    </PublishResult>
    <ResponseMetadata>
        <RequestId>d74b8436-ae13-5ab4-a9ff-ce54dfea72a0</RequestId>
    </ResponseMetadata>
</PublishResponse>)";

constexpr std::string_view aws_list_subscriptions =
    R"(<ListSubscriptionsByTopicResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <ListSubscriptionsByTopicResult>
    <Subscriptions>
      <member>
        <TopicArn>arn:aws:sns:us-east-2:123456789012:My-Topic</TopicArn>
        <Protocol>email</Protocol>
        <SubscriptionArn>arn:aws:sns:us-east-2:123456789012:My-Topic:80289ba6-0fd4-4079-afb4-ce8c8260f0ca</SubscriptionArn>
        <Owner>123456789012</Owner>
        <Endpoint>example@amazon.com</Endpoint>
      </member>
      <member>
        <TopicArn>arn:aws:sns:us-east-2:123456789012:My-Topic</TopicArn>
        <Protocol>sqs</Protocol>
        <SubscriptionArn>arn:aws:sns:us-east-2:123456789012:My-Topic:1f0e0d0c</SubscriptionArn>
        <Owner>123456789012</Owner>
        <Endpoint>arn:aws:sqs:us-east-2:123456789012:My-Topic--audit</Endpoint>
      </member>
    </Subscriptions>
    <NextToken>AAF2/+token==</NextToken>
  </ListSubscriptionsByTopicResult>
  <ResponseMetadata>
    <RequestId>b9275252-3774-11df-9540-99d0768312d3</RequestId>
  </ResponseMetadata>
</ListSubscriptionsByTopicResponse>)";

constexpr std::string_view aws_not_found =
    R"(<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <Error>
    <Type>Sender</Type>
    <Code>NotFound</Code>
    <Message>Topic does not exist</Message>
  </Error>
  <RequestId>9dd01905-5012-5f99-8663-4b3ecd0dfaef</RequestId>
</ErrorResponse>)";

// fauxqs's PublishBatch answer (test/servers/sqs/node_modules/fauxqs/dist/sns/actions/publish.js
// and common/xml.js): one entry published, one refused as too long.
constexpr std::string_view fauxqs_publish_batch =
    R"(<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <PublishBatchResult>
    <Successful><member><Id>0</Id><MessageId>5b4d0a47-2f6e-4a34-9e39-5d1c0d7c2f3e</MessageId></member></Successful><Failed><member><Id>1</Id><Code>InvalidParameter</Code><Message>Message too long</Message><SenderFault>true</SenderFault></member></Failed>
  </PublishBatchResult>
  <ResponseMetadata>
    <RequestId>2f1c7d1e-9a57-4a55-8f07-1b2f0f9e8c11</RequestId>
  </ResponseMetadata>
</PublishBatchResponse>)";

constexpr std::string_view fauxqs_subscription_attributes =
    R"(<GetSubscriptionAttributesResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <GetSubscriptionAttributesResult>
    <Attributes><entry><key>SubscriptionArn</key><value>arn:aws:sns:us-east-1:000000000000:t:1</value></entry>
    <entry><key>RawMessageDelivery</key><value>true</value></entry>
    <entry><key>FilterPolicy</key><value>{&quot;qrt.subject&quot;:[&quot;a&amp;b&quot;]}</value></entry></Attributes>
  </GetSubscriptionAttributesResult>
  <ResponseMetadata>
    <RequestId>0c1d</RequestId>
  </ResponseMetadata>
</GetSubscriptionAttributesResponse>)";

}  // namespace

// ---- names ----

TEST(SnsNames, PartsMapInjectivelyOntoWhatSnsAndSqsAccept) {
  EXPECT_EQ(sns::aws_name_part("orders"), "orders");
  EXPECT_EQ(sns::aws_name_part("orders.created"), "orders_dcreated");
  EXPECT_EQ(sns::aws_name_part("my_topic"), "my__topic");
  EXPECT_EQ(sns::aws_name_part("a-b.c_d"), "a-b_dc__d");
  // The pairs a one-character mapping would merge stay apart.
  EXPECT_NE(sns::aws_name_part("a._b"), sns::aws_name_part("a_.b"));
  EXPECT_NE(sns::aws_name_part("a.b"), sns::aws_name_part("a_b"));
  for (std::string_view name : {"orders", "a.b", "a_b", "a._b", "a_.b", "x-y.z__w", "..", "_"}) {
    const auto aws = sns::aws_name_part(name);
    for (char c : aws) {
      EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << aws;
    }
    EXPECT_EQ(aws.find("--"), std::string::npos) << aws;
    EXPECT_EQ(sns::qrt_name_part(aws), std::string(name));
  }
  for (std::string_view bad : {"", "a_", "a_x", "a.b", "a b"}) {
    EXPECT_FALSE(sns::qrt_name_part(bad)) << bad;
  }
}

TEST(SnsNames, ASubscriptionsQueueIsTopicDashDashNameAndItsDeadLetterQueueAddsDlq) {
  const auto sub = subscription("orders.created", "audit_log");
  EXPECT_EQ(sns::subscription_queue_name(sub).value(), "orders_dcreated--audit__log");
  EXPECT_EQ(sns::subscription_queue_name(sub.dead_letter()).value(),
            "orders_dcreated--audit__log--dlq");
  EXPECT_TRUE(sns::is_subscription_queue_name("orders_dcreated--audit__log"));
  // Never an ordinary qrt queue: those cannot hold "--".
  EXPECT_FALSE(sns::is_subscription_queue_name("orders-sub-audit"));
  EXPECT_EQ(sns::parse_subscription_queue_name("orders_dcreated--audit__log"),
            std::make_pair(std::string("orders.created"), std::string("audit_log")));
  EXPECT_FALSE(sns::parse_subscription_queue_name("orders_dcreated--audit__log--dlq"));
  EXPECT_FALSE(sns::parse_subscription_queue_name("orders"));
  EXPECT_FALSE(sns::parse_subscription_queue_name("--x"));
  EXPECT_FALSE(sns::parse_subscription_queue_name("a_x--b"));
}

TEST(SnsNames, AFifoTopicKeepsItsSuffixAndItsSubscriptionsAreFifoQueues) {
  const auto fifo = topic_name::from("orders.created.fifo");
  EXPECT_TRUE(sns::is_fifo_topic(fifo));
  EXPECT_FALSE(sns::is_fifo_topic(topic_name::from("orders")));
  EXPECT_FALSE(sns::is_fifo_topic(topic_name::from(".fifo")));
  EXPECT_EQ(sns::topic_aws_name(fifo).value(), "orders_dcreated.fifo");
  const auto sub = queue_name::subscription(fifo, "audit").value();
  EXPECT_EQ(sns::subscription_queue_name(sub).value(), "orders_dcreated--audit.fifo");
  EXPECT_EQ(sns::subscription_queue_name(sub.dead_letter()).value(),
            "orders_dcreated--audit--dlq.fifo");
  EXPECT_EQ(sns::subscription_dead_letter_queue_name("orders_dcreated--audit.fifo"),
            "orders_dcreated--audit--dlq.fifo");
  EXPECT_EQ(sns::subscription_dead_letter_queue_name("t--s"), "t--s--dlq");
  EXPECT_EQ(sns::parse_subscription_queue_name("orders_dcreated--audit.fifo"),
            std::make_pair(std::string("orders.created.fifo"), std::string("audit")));
  EXPECT_FALSE(sns::parse_subscription_queue_name("orders_dcreated--audit--dlq.fifo"));
  // A standard queue cannot be a FIFO topic's: "x.fifo" is always a FIFO topic.
  EXPECT_FALSE(sns::parse_subscription_queue_name("x_dfifo--s"));
  // A FIFO topic's base may end with '-'.
  const auto dashed = queue_name::subscription(topic_name::from("a-.fifo"), "s").value();
  EXPECT_EQ(sns::subscription_queue_name(dashed).value(), "a---s.fifo");
  EXPECT_EQ(sns::parse_subscription_queue_name("a---s.fifo"),
            std::make_pair(std::string("a-.fifo"), std::string("s")));
  // ".fifo" counts against the 80 characters too: 70 before the suffixes.
  const auto fits = queue_name::subscription(topic_name::from(std::string(40, 't') + ".fifo"),
                                             std::string(28, 's'))
                        .value();
  EXPECT_EQ(sns::subscription_queue_name(fits.dead_letter()).value().size(), 80u);
  const auto too_long = queue_name::subscription(topic_name::from(std::string(40, 't') + ".fifo"),
                                                 std::string(29, 's'))
                            .value();
  EXPECT_EQ(sns::subscription_queue_name(too_long).error().code, errc::invalid_argument);
  EXPECT_EQ(sns::encode_create_topic("t.fifo", true),
            "Action=CreateTopic&Version=2010-03-31&Name=t.fifo"
            "&Attributes.entry.1.key=FifoTopic&Attributes.entry.1.value=true");
}

TEST(SnsNames, NamesThatDoNotFitAreRefusedNamingTheLimit) {
  // 80 characters with "--dlq": a 40-character topic and a 33-character subscription fit.
  const auto fits = subscription(std::string(40, 't'), std::string(33, 's'));
  EXPECT_EQ(sns::subscription_queue_name(fits).value().size(), 75u);
  EXPECT_EQ(sns::subscription_queue_name(fits.dead_letter()).value().size(), 80u);
  const auto too_long = subscription(std::string(40, 't'), std::string(34, 's'));
  auto r = sns::subscription_queue_name(too_long);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
  EXPECT_NE(r.error().message.find("80"), std::string::npos) << r.error().message;
  // Dots count twice.
  auto dotted = sns::subscription_queue_name(subscription(std::string(40, '.') + "x", "s"));
  ASSERT_FALSE(dotted);
  EXPECT_EQ(dotted.error().code, errc::invalid_argument);

  EXPECT_EQ(sns::topic_aws_name(topic_name::from(std::string(256, 't'))).value().size(), 256u);
  auto topic = sns::topic_aws_name(topic_name::from(std::string(129, '_')));
  ASSERT_FALSE(topic);
  EXPECT_EQ(topic.error().code, errc::invalid_argument);
  EXPECT_FALSE(sns::subscription_queue_name(queue_name::from("orders")));
}

TEST(SnsNames, ArnResourceIsTheLastPart) {
  EXPECT_EQ(sns::arn_resource("arn:aws:sqs:us-east-1:000000000000:q--s"), "q--s");
  EXPECT_EQ(sns::arn_resource("no-colons"), "");
}

// ---- filters ----

TEST(SnsFilters, SubjectAndAttributesBecomeOneValueListsUnderTheNamesQrtSends) {
  EXPECT_EQ(sns::encode_filter_policy({}).value(), "");
  subscription_filter f;
  f.subject = "order.created";
  f.attributes = {{"region", "eu"}, {"tenant id", "7"}};
  const auto policy = sns::encode_filter_policy(f).value();
  // Keys sorted, so one filter always gives the same text.
  EXPECT_EQ(policy,
            R"({"qrt.k.dGVuYW50IGlk":["7"],"qrt.subject":["order.created"],"region":["eu"]})");
  EXPECT_EQ(sns::decode_filter_policy(policy).value(), f);

  subscription_filter only_attrs;
  only_attrs.attributes = {{"kind", "a\"b\\c"}};
  EXPECT_EQ(sns::decode_filter_policy(sns::encode_filter_policy(only_attrs).value()).value(),
            only_attrs);
}

TEST(SnsFilters, WhatSnsCannotMatchIsRefused) {
  subscription_filter six;
  for (int i = 0; i < 5; ++i) six.attributes["k" + std::to_string(i)] = "v";
  six.subject = "s";
  auto r = sns::encode_filter_policy(six);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
  six.subject.reset();
  EXPECT_TRUE(sns::encode_filter_policy(six));  // five keys are allowed

  subscription_filter empty_value;
  empty_value.attributes["k"] = "";
  EXPECT_EQ(sns::encode_filter_policy(empty_value).error().code, errc::invalid_argument);
  subscription_filter binary;
  binary.attributes["k"] = std::string("\x01\xff", 2);
  EXPECT_EQ(sns::encode_filter_policy(binary).error().code, errc::invalid_argument);
  subscription_filter empty_subject;
  empty_subject.subject = "";
  EXPECT_EQ(sns::encode_filter_policy(empty_subject).error().code, errc::invalid_argument);
}

TEST(SnsFilters, PoliciesQrtDidNotWriteAreProtocolErrors) {
  for (std::string_view p :
       {"", "[]", "{", R"({"a":"b"})", R"({"a":["b","c"]})", R"({"a":[{"prefix":"b"}]})",
        R"({"a":[1]})", R"({"qrt.correlation_id":["x"]})", R"({"qrt.k.!!":["x"]})",
        R"({"a":[[[[[[[[[["x"]]]]]]]]]]})"}) {
    auto r = sns::decode_filter_policy(p);
    ASSERT_FALSE(r) << p;
    EXPECT_EQ(r.error().code, errc::protocol_error) << p;
  }
}

// ---- requests ----

TEST(SnsRequests, BodiesAreFormEncodedByteForByte) {
  EXPECT_EQ(sns::encode_create_topic("orders_dcreated"),
            "Action=CreateTopic&Version=2010-03-31&Name=orders_dcreated");
  EXPECT_EQ(sns::encode_topic_action("DeleteTopic", "arn:aws:sns:us-east-1:1:t"),
            "Action=DeleteTopic&Version=2010-03-31&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A1%3At");
  EXPECT_EQ(sns::encode_list_topics(""), "Action=ListTopics&Version=2010-03-31");
  EXPECT_EQ(sns::encode_list_topics("a+b/c="),
            "Action=ListTopics&Version=2010-03-31&NextToken=a%2Bb%2Fc%3D");
  EXPECT_EQ(sns::encode_subscription_action("Unsubscribe", "arn:x"),
            "Action=Unsubscribe&Version=2010-03-31&SubscriptionArn=arn%3Ax");
  EXPECT_EQ(sns::encode_list_subscriptions_by_topic("arn:t", "tok"),
            "Action=ListSubscriptionsByTopic&Version=2010-03-31&TopicArn=arn%3At&NextToken=tok");
  EXPECT_EQ(sns::encode_subscribe("arn:t", "arn:q", ""),
            "Action=Subscribe&Version=2010-03-31&TopicArn=arn%3At&Protocol=sqs&Endpoint=arn%3Aq"
            "&Attributes.entry.1.key=RawMessageDelivery&Attributes.entry.1.value=true"
            "&ReturnSubscriptionArn=true");
  EXPECT_EQ(sns::encode_subscribe("arn:t", "arn:q", R"({"a":["b"]})"),
            "Action=Subscribe&Version=2010-03-31&TopicArn=arn%3At&Protocol=sqs&Endpoint=arn%3Aq"
            "&Attributes.entry.1.key=RawMessageDelivery&Attributes.entry.1.value=true"
            "&Attributes.entry.2.key=FilterPolicy"
            "&Attributes.entry.2.value=%7B%22a%22%3A%5B%22b%22%5D%7D&ReturnSubscriptionArn=true");
}

TEST(SnsRequests, PublishCarriesTheMessageAsASendToAQueueWould) {
  message m;
  m.body = "h\xc3\xa9llo world&=+";
  m.subject = "s";
  m.attributes = {{"bin", std::string("\x01\x02", 2)}, {"e", ""}};
  const auto w = to_wire(m, false, {}, std::chrono::system_clock::now()).value();
  EXPECT_EQ(sns::encode_publish("arn:t", w),
            "Action=Publish&Version=2010-03-31&TopicArn=arn%3At"
            "&Message=h%C3%A9llo%20world%26%3D%2B"
            "&MessageAttributes.entry.1.Name=bin"
            "&MessageAttributes.entry.1.Value.DataType=Binary"
            "&MessageAttributes.entry.1.Value.BinaryValue=AQI%3D"
            "&MessageAttributes.entry.2.Name=e"
            "&MessageAttributes.entry.2.Value.DataType=String.qrt-empty"
            "&MessageAttributes.entry.2.Value.StringValue=-"
            "&MessageAttributes.entry.3.Name=qrt.subject"
            "&MessageAttributes.entry.3.Value.DataType=String"
            "&MessageAttributes.entry.3.Value.StringValue=s");

  wire_message a;
  a.body = "one";
  wire_message b;
  b.body = "two";
  b.attributes["k"] = wire_attribute{"String", "v"};
  EXPECT_EQ(sns::encode_publish_batch("arn:t", {{"0", a}, {"1", b}}),
            "Action=PublishBatch&Version=2010-03-31&TopicArn=arn%3At"
            "&PublishBatchRequestEntries.member.1.Id=0"
            "&PublishBatchRequestEntries.member.1.Message=one"
            "&PublishBatchRequestEntries.member.2.Id=1"
            "&PublishBatchRequestEntries.member.2.Message=two"
            "&PublishBatchRequestEntries.member.2.MessageAttributes.entry.1.Name=k"
            "&PublishBatchRequestEntries.member.2.MessageAttributes.entry.1.Value.DataType=String"
            "&PublishBatchRequestEntries.member.2.MessageAttributes.entry.1.Value.StringValue=v");
}

TEST(SnsRequests, QueuePolicyLetsOnlyTheTopicSend) {
  const auto p = boost::json::parse(sns::queue_policy("arn:q", "arn:t")).as_object();
  const auto& st = p.at("Statement").as_array().at(0).as_object();
  EXPECT_EQ(st.at("Effect").as_string(), "Allow");
  EXPECT_EQ(st.at("Principal").at("Service").as_string(), "sns.amazonaws.com");
  EXPECT_EQ(st.at("Action").as_string(), "sqs:SendMessage");
  EXPECT_EQ(st.at("Resource").as_string(), "arn:q");
  EXPECT_EQ(st.at("Condition").at("ArnEquals").at("aws:SourceArn").as_string(), "arn:t");
}

// ---- XML ----

TEST(SnsXml, ReadsElementsTextEntitiesCdataAndSkipsTheRest) {
  auto doc = sns::parse_xml(
      "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c -->"
      "<a:Root xmlns:a='x' b=\"1 > 0\"><a:V>&lt;&amp;&gt;&quot;&apos;&#65;&#x263a;</a:V>"
      "<W><![CDATA[<raw&>]]> tail</W><E/><E k='v' /></a:Root>\n");
  ASSERT_TRUE(doc) << doc.error().message;
  const auto& root = doc->root();
  EXPECT_EQ(root.name, "Root");
  ASSERT_EQ(root.children.size(), 4u);
  EXPECT_EQ(doc->child(root, "V")->text, "<&>\"'A\xe2\x98\xba");
  EXPECT_EQ(doc->child(root, "W")->text, "<raw&> tail");
  EXPECT_EQ(doc->child(root, "E")->text, "");
  EXPECT_EQ(doc->child(root, "missing"), nullptr);
  EXPECT_EQ(doc->path(root, {"V"}), doc->child(root, "V"));
  EXPECT_EQ(doc->path(root, {"V", "x"}), nullptr);
}

TEST(SnsXml, GarbageIsAProtocolErrorNamingTheProblem) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"", "no element"},
      {"   ", "no element"},
      {"text", "outside the root"},
      {"<a>", "not closed"},
      {"<a></b>", "closes"},
      {"<a></a><b/>", "second root"},
      {"<a>&bogus;</a>", "unknown entity"},
      {"<a>& </a>", "starts no entity"},
      {"<a>&#0;</a>", "character reference"},
      {"<a>&#xD800;</a>", "character reference"},
      {"<a>&#x110000;</a>", "character reference"},
      {"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>", "DOCTYPE"},
      {"<a b=c></a>", "quotes"},
      {"<a b></a>", "'='"},
      {"<a b='1></a>", "unterminated"},
      {"<a><!-- </a>", "comment"},
      {"<a><![CDATA[x</a>", "CDATA"},
      {"<?xml ", "processing instruction"},
      {"</a>", "without a start tag"},
      {"<>", "element name"},
      {"<a", "unterminated start tag"},
  };
  for (const auto& [input, says] : cases) {
    auto r = sns::parse_xml(input);
    ASSERT_FALSE(r) << input;
    EXPECT_EQ(r.error().code, errc::protocol_error) << input;
    EXPECT_NE(r.error().message.find(says), std::string::npos)
        << input << " -> " << r.error().message;
  }
}

TEST(SnsXml, NestingAndElementCountAreBounded) {
  std::string deep;
  for (std::size_t i = 0; i < sns::max_xml_depth; ++i) deep += "<a>";
  for (std::size_t i = 0; i < sns::max_xml_depth; ++i) deep += "</a>";
  EXPECT_TRUE(sns::parse_xml(deep));
  std::string deeper(100'000, '<');
  for (std::size_t i = 0; i < deeper.size(); i += 3) deeper.replace(i, 3, "<a>");
  auto r = sns::parse_xml(deeper);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("deeper"), std::string::npos) << r.error().message;

  std::string wide = "<r>";
  for (std::size_t i = 0; i < sns::max_xml_elements; ++i) wide += "<m/>";
  wide += "</r>";
  r = sns::parse_xml(wide);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("elements"), std::string::npos) << r.error().message;
}

// ---- responses ----

TEST(SnsResponses, ParsesTheAnswersAwsDocuments) {
  EXPECT_EQ(sns::decode_create_topic(aws_create_topic).value(),
            "arn:aws:sns:us-east-2:123456789012:My-Topic");
  EXPECT_EQ(sns::decode_publish(aws_publish).value(), "567910cd-659e-55d4-8ccb-5aaf14679dc0");
  auto page = sns::decode_list_subscriptions(aws_list_subscriptions).value();
  ASSERT_EQ(page.subscriptions.size(), 2u);
  EXPECT_EQ(page.subscriptions[0].protocol, "email");
  EXPECT_EQ(page.subscriptions[1].protocol, "sqs");
  EXPECT_EQ(page.subscriptions[1].endpoint, "arn:aws:sqs:us-east-2:123456789012:My-Topic--audit");
  EXPECT_EQ(page.subscriptions[1].subscription_arn,
            "arn:aws:sns:us-east-2:123456789012:My-Topic:1f0e0d0c");
  EXPECT_EQ(page.next_token, "AAF2/+token==");

  auto topics = sns::decode_list_topics(
                    "<ListTopicsResponse><ListTopicsResult><Topics><member><TopicArn>arn:a:b:c:d:t1"
                    "</TopicArn></member><member><TopicArn>arn:a:b:c:d:t2</TopicArn></member>"
                    "</Topics></ListTopicsResult></ListTopicsResponse>")
                    .value();
  EXPECT_EQ(topics.topic_arns, (std::vector<std::string>{"arn:a:b:c:d:t1", "arn:a:b:c:d:t2"}));
  EXPECT_EQ(topics.next_token, "");
  EXPECT_EQ(sns::decode_subscribe("<SubscribeResponse><SubscribeResult><SubscriptionArn>arn:s"
                                  "</SubscriptionArn></SubscribeResult></SubscribeResponse>")
                .value(),
            "arn:s");
  // Real SNS answers DeleteTopic and Unsubscribe without a result element; fauxqs with an
  // empty one.
  EXPECT_TRUE(sns::decode_empty(
      "<DeleteTopicResponse><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>"
      "</DeleteTopicResponse>",
      "DeleteTopic"));
  EXPECT_TRUE(
      sns::decode_empty("<UnsubscribeResponse><UnsubscribeResult>\n</UnsubscribeResult>"
                        "</UnsubscribeResponse>",
                        "Unsubscribe"));
  EXPECT_FALSE(sns::decode_empty("<PublishResponse/>", "DeleteTopic"));
}

TEST(SnsResponses, PublishBatchReportsEachEntry) {
  auto r = sns::decode_publish_batch(fauxqs_publish_batch).value();
  ASSERT_EQ(r.successful.size(), 1u);
  EXPECT_EQ(r.successful.at("0"), "5b4d0a47-2f6e-4a34-9e39-5d1c0d7c2f3e");
  ASSERT_EQ(r.failed.size(), 1u);
  const auto& f = r.failed.at("1");
  EXPECT_EQ(f.code, "InvalidParameter");
  EXPECT_TRUE(f.sender_fault);
  EXPECT_EQ(sns::map_error(f.code, f.message, 400).code, errc::message_too_large);

  std::string eleven = "<PublishBatchResponse><PublishBatchResult><Successful>";
  for (int i = 0; i < 11; ++i) {
    eleven += "<member><Id>" + std::to_string(i) + "</Id><MessageId>m</MessageId></member>";
  }
  eleven += "</Successful></PublishBatchResult></PublishBatchResponse>";
  auto too_many = sns::decode_publish_batch(eleven);
  ASSERT_FALSE(too_many);
  EXPECT_EQ(too_many.error().code, errc::protocol_error);
}

TEST(SnsResponses, AttributesAreReadWithTheirEntitiesDecoded) {
  auto attrs = sns::decode_attributes(fauxqs_subscription_attributes).value();
  EXPECT_EQ(attrs.at("RawMessageDelivery"), "true");
  EXPECT_EQ(attrs.at("FilterPolicy"), R"({"qrt.subject":["a&b"]})");
  EXPECT_EQ(sns::decode_filter_policy(attrs.at("FilterPolicy")).value().subject, "a&b");
  EXPECT_TRUE(
      sns::decode_attributes("<GetTopicAttributesResponse><GetTopicAttributesResult>"
                             "</GetTopicAttributesResult></GetTopicAttributesResponse>"));
  EXPECT_FALSE(sns::decode_attributes("<PublishResponse/>"));
}

TEST(SnsResponses, WrongOrIncompleteAnswersAreProtocolErrors) {
  for (std::string_view body :
       {std::string_view{"<PublishResponse><PublishResult/></PublishResponse>"},
        std::string_view{"<PublishResponse/>"},
        std::string_view{"<CreateTopicResponse><CreateTopicResult><TopicArn>a</TopicArn>"
                         "</CreateTopicResult></CreateTopicResponse>"},
        std::string_view{"{\"MessageId\":\"x\"}"}, std::string_view{""}}) {
    auto r = sns::decode_publish(body);
    ASSERT_FALSE(r) << body;
    EXPECT_EQ(r.error().code, errc::protocol_error) << body;
  }
  auto no_arn = sns::decode_list_subscriptions(
      "<ListSubscriptionsByTopicResponse><ListSubscriptionsByTopicResult><Subscriptions><member>"
      "<Protocol>sqs</Protocol></member></Subscriptions></ListSubscriptionsByTopicResult>"
      "</ListSubscriptionsByTopicResponse>");
  ASSERT_FALSE(no_arn);
  EXPECT_NE(no_arn.error().message.find("SubscriptionArn"), std::string::npos);
}

// ---- errors ----

// An SNS error answer's code and message reach the error as valid UTF-8 without control
// characters, whatever bytes (raw, or as XML character references) the server put there.
TEST(SnsErrors, AServersHostileBytesReachTheErrorFitToShow) {
  const std::string body =
      "<ErrorResponse><Error><Code>Not\xc2\x9b"
      "Found&#x1b;\xff</Code><Message>" +
      std::string(qrt::test::hostile_text) + " &#x9b;&#27;[2J" +
      "</Message></Error></ErrorResponse>";
  const auto e = sns::decode_error(400, body, "");
  EXPECT_TRUE(qrt::test::fit_to_show(e.message)) << e.message;
  EXPECT_TRUE(qrt::test::fit_to_show(e.provider_code)) << e.provider_code;
  EXPECT_NE(e.message.find("caf\xc3\xa9"), std::string::npos) << e.message;
  EXPECT_EQ(e.provider_code.rfind("Not", 0), 0u) << "the body's code was read: " << e.provider_code;
}

TEST(SnsErrors, CodesMapOntoQrtErrors) {
  auto e = sns::decode_error(404, aws_not_found, "");
  EXPECT_EQ(e.code, errc::topic_not_found);
  EXPECT_EQ(e.provider_code, "NotFound");
  EXPECT_EQ(e.message, "SNS: Topic does not exist");

  const std::pair<std::string_view, errc> codes[] = {
      {"AuthorizationError", errc::permission},
      {"InvalidClientTokenId", errc::permission},
      {"SignatureDoesNotMatch", errc::permission},
      {"ExpiredToken", errc::permission},
      {"Throttled", errc::throttled},
      {"Throttling", errc::throttled},
      {"InvalidParameter", errc::invalid_argument},
      {"InvalidParameterValue", errc::invalid_argument},
      {"TooManyEntriesInBatchRequest", errc::invalid_argument},
      {"BatchEntryIdsNotDistinct", errc::invalid_argument},
      {"FilterPolicyLimitExceeded", errc::invalid_argument},
      {"BatchRequestTooLong", errc::message_too_large},
      {"SubscriptionLimitExceeded", errc::provider_error},
      {"InternalError", errc::provider_error},
  };
  for (const auto& [code, expected] : codes) {
    EXPECT_EQ(sns::map_error(code, "m", 400).code, expected) << code;
  }
  EXPECT_EQ(sns::map_error("InternalError", "m", 500).kind, error_kind::transient);
  EXPECT_EQ(sns::map_error("Whatever", "m", 503).code, errc::throttled);
  EXPECT_EQ(sns::map_error("Whatever", "m", 403).code, errc::permission);
  EXPECT_EQ(sns::map_error("InvalidParameter",
                           "Invalid parameter: Message too long. Message must be shorter than "
                           "262144 bytes.",
                           400)
                .code,
            errc::message_too_large);
  EXPECT_EQ(sns::map_error("InvalidParameter", "Topic name too long", 400).code,
            errc::invalid_argument);
  EXPECT_EQ(sns::map_error("InvalidParameter", "m", 400).kind, error_kind::permanent);
}

TEST(SnsErrors, AnyBodyGivesACodedErrorWithABoundedMessage) {
  auto garbage = sns::decode_error(500, "<html>oops", "");
  EXPECT_EQ(garbage.code, errc::provider_error);
  EXPECT_EQ(garbage.provider_code, "HTTP500");
  EXPECT_NE(garbage.message.find("not XML"), std::string::npos);
  EXPECT_EQ(garbage.kind, error_kind::transient);

  auto throttled = sns::decode_error(
      400,
      "<ErrorResponse><Error><Code>Throttling</Code><Message>slow</Message></Error>"
      "</ErrorResponse>",
      "7");
  EXPECT_EQ(throttled.code, errc::throttled);
  EXPECT_EQ(throttled.retry_after, std::chrono::seconds(7));

  // The older "<Response><Errors><Error>" shape some AWS front ends use.
  EXPECT_EQ(sns::decode_error(
                403,
                "<Response><Errors><Error><Code>InvalidClientTokenId</Code></Error></Errors>"
                "</Response>",
                "")
                .code,
            errc::permission);

  const std::string huge = "<ErrorResponse><Error><Code>X</Code><Message>" +
                           std::string(100'000, 'm') + "</Message></Error></ErrorResponse>";
  EXPECT_LE(sns::decode_error(400, huge, "").message.size(), 600u);
}
