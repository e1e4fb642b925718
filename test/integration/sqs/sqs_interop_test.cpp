// Wire compatibility with the official AWS SDK for JavaScript (@aws-sdk/client-sqs) on the
// same emulator and queues: what qrt sends, the SDK reads intact (binary body included), and
// what the SDK sends, qrt reads intact.
#include <boost/json.hpp>
#include <map>
#include <set>

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

namespace {

json::object string_attribute(std::string value) {
  return json::object{{"DataType", "String"}, {"StringValue", std::move(value)}};
}

}  // namespace

// Another client's messages that qrt cannot decode (an encoding it does not know, a malformed
// encoded attribute name), sent between good ones: the good ones come back in the first
// receive, the bad ones end in the paired DLQ with the reason, and nothing is lost.
TEST_F(SqsInterop, UndecodableMessagesFromTheSdkAreDeadLetteredAndTheGoodOnesReturned) {
  auto q = create("poison");
  std::vector<std::string> warnings;
  auto options = default_options();
  options.warn = [&](const std::string& line) { warnings.push_back(line); };
  auto consumer = make(options);
  const std::string gzip_body = "H4sIAAAAAAAAA8tIzcnJBwCGphA2BQAAAA==";
  json::array messages{
      json::object{{"body", "good-1"}},
      json::object{{"body", gzip_body},
                   {"attributes", json::object{{"qrt.body_encoding", string_attribute("gzip")}}}},
      json::object{{"body", "bad-name"},
                   {"attributes", json::object{{"qrt.k.A", string_attribute("v")}}}},
      json::object{{"body", "good-2"}}};
  auto sent = sdk({{"op", "send"}, {"queue", q.str()}, {"messages", messages}});
  const auto& ids = sent.at("ids").as_array();
  ASSERT_EQ(ids.size(), 4u);

  auto first = run(consumer->receive(q, 10, 2s));
  ASSERT_TRUE(first) << first.error().to_string();
  std::multiset<std::string> bodies;
  std::vector<settlement> done;
  for (auto& m : *first) {
    bodies.insert(m.body);
    done.push_back(settlement::complete(m.receipt));
  }
  EXPECT_EQ(bodies, (std::multiset<std::string>{"good-1", "good-2"}));
  for (auto& r : run(consumer->settle(std::move(done)))) EXPECT_TRUE(r) << r.error().to_string();

  std::map<std::string, received_message> dead;  // by body
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (dead.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    auto r = run(consumer->receive(q.dead_letter(), 10, 1s));
    ASSERT_TRUE(r) << r.error().to_string();
    for (auto& m : *r) dead.emplace(m.body, std::move(m));
  }
  ASSERT_EQ(dead.size(), 2u);
  const auto& gzip = dead.at(gzip_body);
  ASSERT_TRUE(gzip.dead_letter);
  EXPECT_EQ(gzip.dead_letter->reason, "UndecodableMessage");
  EXPECT_NE(gzip.dead_letter->description.find("unknown body encoding 'gzip'"), std::string::npos)
      << gzip.dead_letter->description;
  EXPECT_EQ(gzip.id, ids[1].as_string()) << "the DLQ copy keeps the source queue's id";
  EXPECT_EQ(gzip.attributes.at("qrt.body_encoding"), "gzip") << "read verbatim from the DLQ";
  const auto& bad_name = dead.at("bad-name");
  ASSERT_TRUE(bad_name.dead_letter);
  EXPECT_EQ(bad_name.dead_letter->reason, "UndecodableMessage");
  EXPECT_NE(bad_name.dead_letter->description.find("malformed encoded attribute name"),
            std::string::npos);
  EXPECT_EQ(bad_name.attributes.at("qrt.k.A"), "v");
  std::vector<settlement> cleanup;
  for (auto& [body, m] : dead) cleanup.push_back(settlement::complete(m.receipt));
  for (auto& r : run(consumer->settle(std::move(cleanup)))) EXPECT_TRUE(r);

  auto stats = run(consumer->stats(q));
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->active, 0);
  EXPECT_EQ(stats->in_flight, 0);
  ASSERT_EQ(warnings.size(), 2u);
  for (const auto& line : warnings) {
    EXPECT_NE(line.find("dead-lettered message"), std::string::npos) << line;
  }
  run(consumer->close());
}

// A bad message that cannot take the dead-letter reason (it already has SQS's 10 attributes)
// is released, counted and left in the queue for SQS's redrive, never deleted.
TEST_F(SqsInterop, AnUndecodableMessageThatCannotBeDeadLetteredIsReleasedNotLost) {
  auto q = create("poison-full");
  std::vector<std::string> warnings;
  auto options = default_options();
  options.warn = [&](const std::string& line) { warnings.push_back(line); };
  auto consumer = make(options);
  json::object full{{"qrt.body_encoding", string_attribute("zstd")}};
  for (int i = 0; i < 9; ++i) full["a" + std::to_string(i)] = string_attribute("v");
  json::array messages{json::object{{"body", "poison"}, {"attributes", full}},
                       json::object{{"body", "good"}}};
  sdk({{"op", "send"}, {"queue", q.str()}, {"messages", messages}});

  auto first = run(consumer->receive(q, 10, 2s));
  ASSERT_TRUE(first) << first.error().to_string();
  ASSERT_EQ(first->size(), 1u);
  EXPECT_EQ(first->front().body, "good");
  for (auto& r : run(consumer->settle({settlement::complete(first->front().receipt)}))) {
    EXPECT_TRUE(r);
  }
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("released message"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("1 message refused"), std::string::npos) << warnings[0];

  // Released at once (visibility 0): the other client gets it, every attribute intact.
  auto answer = sdk(
      {{"op", "receive"}, {"queue", q.str()}, {"max", 1}, {"waitSeconds", 3}, {"delete", true}});
  const auto& msgs = answer.at("messages").as_array();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].at("body"), "poison");
  EXPECT_EQ(msgs[0].at("attributes").at("qrt.body_encoding").at("StringValue"), "zstd");
  EXPECT_EQ(msgs[0].at("attributes").as_object().size(), 10u);
  auto stats = run(consumer->stats(q));
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->dead_lettered, 0);
  run(consumer->close());
}
