// Wire compatibility with the official AWS SDK for JavaScript (@aws-sdk/client-sqs) on the
// same emulator and queues: what qrt sends, the SDK reads intact (binary body included), and
// what the SDK sends, qrt reads intact.
#include <boost/json.hpp>

#include "sqs_fixture.hpp"

using namespace qrt;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

std::string base64(std::string_view bytes) {
  static constexpr char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned n = (unsigned(static_cast<unsigned char>(bytes[i])) << 16) |
                       (unsigned(static_cast<unsigned char>(bytes[i + 1])) << 8) |
                       unsigned(static_cast<unsigned char>(bytes[i + 2]));
    out += {a[(n >> 18) & 63], a[(n >> 12) & 63], a[(n >> 6) & 63], a[n & 63]};
  }
  if (bytes.size() - i == 1) {
    const unsigned n = unsigned(static_cast<unsigned char>(bytes[i])) << 16;
    out += {a[(n >> 18) & 63], a[(n >> 12) & 63], '=', '='};
  } else if (bytes.size() - i == 2) {
    const unsigned n = (unsigned(static_cast<unsigned char>(bytes[i])) << 16) |
                       (unsigned(static_cast<unsigned char>(bytes[i + 1])) << 8);
    out += {a[(n >> 18) & 63], a[(n >> 12) & 63], a[(n >> 6) & 63], '='};
  }
  return out;
}

}  // namespace

class SqsInterop : public qrt::test::sqs_fixture {
 protected:
  json::object sdk(json::object command) {
    command["endpoint"] = server_->endpoint();
    const std::string cmd = "cd '" + qrt::test::fauxqs_server::servers_dir() + "' && '" +
                            qrt::test::fauxqs_server::node_binary() +
                            "' --no-warnings sdk-client.mjs";
    return json::parse(qrt::test::run_command(cmd, json::serialize(command))).as_object();
  }
};

TEST_F(SqsInterop, SdkReadsWhatQrtSends) {
  auto q = create("interop-out");
  message textual;
  textual.body = "h\xc3\xa9llo \xe2\x98\x83 {\"json\": true}";
  textual.attributes = {{"tenant", "acme"}, {"emoji", "\xf0\x9f\x98\x80"}};
  textual.correlation_id = "corr-1";
  message binary;
  binary.body = std::string("\x00\x01\x02\x80\xff\xfe\r\n", 8);
  ASSERT_TRUE(run(provider_->send(q, {textual, binary}, 5s)));

  auto answer = sdk(
      {{"op", "receive"}, {"queue", q.str()}, {"max", 2}, {"waitSeconds", 3}, {"delete", true}});
  const auto& msgs = answer.at("messages").as_array();
  ASSERT_EQ(msgs.size(), 2u);
  bool saw_text = false, saw_binary = false;
  for (const auto& v : msgs) {
    const auto& m = v.as_object();
    const auto& attrs = m.at("attributes").as_object();
    if (attrs.contains("qrt.body_encoding")) {
      // A body SQS cannot carry as text travels base64, flagged so any client can decode it.
      EXPECT_EQ(attrs.at("qrt.body_encoding").at("StringValue"), "base64");
      EXPECT_EQ(m.at("body").as_string(), base64(binary.body));
      saw_binary = true;
    } else {
      EXPECT_EQ(m.at("body").as_string(), textual.body);
      EXPECT_EQ(attrs.at("tenant").at("StringValue"), "acme");
      EXPECT_EQ(attrs.at("emoji").at("StringValue"), "\xf0\x9f\x98\x80");
      EXPECT_EQ(attrs.at("qrt.correlation_id").at("StringValue"), "corr-1");
      saw_text = true;
    }
  }
  EXPECT_TRUE(saw_text && saw_binary);
}

TEST_F(SqsInterop, QrtReadsWhatTheSdkSends) {
  auto q = create("interop-in");
  const std::string raw("\x00\xff\x10 bytes", 8);
  json::array messages{
      json::object{
          {"body", "from the sdk \xe2\x9c\x93"},
          {"attributes",
           json::object{
               {"s", json::object{{"DataType", "String"}, {"StringValue", "v"}}},
               {"n", json::object{{"DataType", "Number"}, {"StringValue", "42.5"}}},
               {"b", json::object{{"DataType", "Binary"}, {"BinaryBase64", base64(raw)}}},
               {"qrt.subject", json::object{{"DataType", "String"}, {"StringValue", "subj"}}}}}},
      json::object{{"body", base64(raw)},
                   {"attributes",
                    json::object{{"qrt.body_encoding", json::object{{"DataType", "String"},
                                                                    {"StringValue", "base64"}}}}}}};
  auto sent = sdk({{"op", "send"}, {"queue", q.str()}, {"messages", messages}});
  ASSERT_EQ(sent.at("ids").as_array().size(), 2u);

  std::vector<received_message> got;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (got.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    auto r = run(provider_->receive(q, 2, 2s));
    ASSERT_TRUE(r) << r.error().to_string();  // includes qrt's MD5 check of the SDK's attributes
    for (auto& m : *r) got.push_back(std::move(m));
  }
  ASSERT_EQ(got.size(), 2u);
  bool saw_attrs = false, saw_binary = false;
  for (auto& m : got) {
    if (m.attributes.empty()) {
      EXPECT_EQ(m.body, raw);
      saw_binary = true;
    } else {
      EXPECT_EQ(m.body, "from the sdk \xe2\x9c\x93");
      EXPECT_EQ(m.attributes.at("s"), "v");
      EXPECT_EQ(m.attributes.at("n"), "42.5");
      EXPECT_EQ(m.attributes.at("b"), raw) << "binary attributes arrive as their bytes";
      EXPECT_EQ(m.subject, "subj");
      saw_attrs = true;
    }
  }
  EXPECT_TRUE(saw_attrs && saw_binary);
}

TEST_F(SqsInterop, FifoGroupsAndDedupIdsInteroperate) {
  auto q = create("interop", {}, true);
  json::array messages;
  for (int i = 0; i < 4; ++i) {
    messages.push_back(json::object{
        {"body", std::to_string(i)}, {"groupId", "g1"}, {"dedupId", "d" + std::to_string(i)}});
  }
  sdk({{"op", "send"}, {"queue", q.str()}, {"messages", messages}});
  std::vector<std::string> order;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (order.size() < 4 && std::chrono::steady_clock::now() < deadline) {
    auto r = run(provider_->receive(q, 10, 1s));
    ASSERT_TRUE(r) << r.error().to_string();
    std::vector<settlement> done;
    for (auto& m : *r) {
      ASSERT_TRUE(m.session);
      EXPECT_EQ(m.session->str(), "g1");
      order.push_back(m.body);
      done.push_back(settlement::complete(m.receipt));
    }
    run(provider_->settle(std::move(done)));
  }
  EXPECT_EQ(order, (std::vector<std::string>{"0", "1", "2", "3"}));

  // And the reverse: qrt's session becomes the SDK's MessageGroupId.
  message m;
  m.body = "from-qrt";
  m.session = session_id::from("g2");
  m.id = "dedup-qrt";
  ASSERT_TRUE(run(provider_->send(q, {m}, 5s)));
  auto answer = sdk(
      {{"op", "receive"}, {"queue", q.str()}, {"max", 1}, {"waitSeconds", 3}, {"delete", true}});
  const auto& msgs = answer.at("messages").as_array();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].at("system").at("MessageGroupId"), "g2");
  EXPECT_EQ(msgs[0].at("system").at("MessageDeduplicationId"), "dedup-qrt");
}
