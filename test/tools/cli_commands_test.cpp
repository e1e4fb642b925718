// The CLI's commands in-process against the embedded provider: what they print, and that
// receive completes only what it printed, dlq replay moves without losing anything.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <qrt/qrt.hpp>
#include <sstream>

#include "commands.hpp"

namespace qrt::cli {
namespace {

using namespace std::chrono_literals;

std::vector<boost::json::object> json_lines(const std::string& text) {
  std::vector<boost::json::object> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    out.push_back(boost::json::parse(line).as_object());
  return out;
}

struct Cli : ::testing::Test {
  sync::queue_client client =
      sync::queue_client::open(
          config{{"provider", "memory"}, {"queues", "orders"}, {"max_delivery_count", "1"}},
          builtin_providers())
          .value();
  queue_name orders = queue_name::from("orders");
};

TEST_F(Cli, SendThenReceiveJsonHasEveryDocumentedFieldAndCompletes) {
  send_options s;
  s.body = std::string("bin\0ary\xff", 8);
  s.attributes = {{"tenant", "acme"}};
  s.correlation_id = "corr-1";
  s.output = output_format::json;
  std::ostringstream sent;
  ASSERT_TRUE(send(client, orders, s, sent));
  const auto id = json_lines(sent.str()).at(0).at("id").as_string();

  receive_options r;
  r.max = 10;
  r.wait = 200ms;
  r.output = output_format::json;
  std::ostringstream out;
  auto n = receive(client, orders, r, out);
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 1u);
  const auto lines = json_lines(out.str());
  ASSERT_EQ(lines.size(), 1u);
  const auto& m = lines[0];
  EXPECT_EQ(m.at("id").as_string(), id);
  EXPECT_EQ(m.at("body_base64").as_string(), base64_encode(s.body));
  EXPECT_EQ(m.at("attributes").at("tenant").as_string(), "acme");
  EXPECT_TRUE(m.at("session_id").is_null());
  EXPECT_EQ(m.at("correlation_id").as_string(), "corr-1");
  EXPECT_EQ(m.at("delivery_count").as_int64(), 1);
  EXPECT_TRUE(m.at("enqueued_time").as_string().ends_with("Z"));
  // Completed: nothing left.
  EXPECT_EQ(client.stats(orders).value().active, 0);
  EXPECT_EQ(client.stats(orders).value().in_flight, 0);
}

TEST_F(Cli, ReceiveWithNoCompleteLeavesTheMessagesLocked) {
  send_options s;
  s.body = "keep me";
  s.count = 3;
  std::ostringstream ignore;
  ASSERT_TRUE(send(client, orders, s, ignore));
  receive_options r;
  r.max = 2;
  r.wait = 200ms;
  r.complete = false;
  std::ostringstream out;
  EXPECT_EQ(receive(client, orders, r, out).value(), 2u);
  const auto st = client.stats(orders).value();
  EXPECT_EQ(st.in_flight, 2);
  EXPECT_EQ(st.active, 1);
}

TEST_F(Cli, SessionReceiveReadsOnlyThatSession) {
  auto sess = sync::queue_client::open(
                  config{{"provider", "memory"}, {"queues", "s"}, {"requires_session", "true"}},
                  builtin_providers())
                  .value();
  const auto q = queue_name::from("s");
  std::ostringstream ignore;
  send_options a;
  a.body = "for a";
  a.session = "a";
  send_options b;
  b.body = "for b";
  b.session = "b";
  ASSERT_TRUE(send(sess, q, a, ignore));
  ASSERT_TRUE(send(sess, q, b, ignore));
  receive_options r;
  r.max = 5;
  r.wait = 200ms;
  r.session = "b";
  r.output = output_format::json;
  std::ostringstream out;
  ASSERT_EQ(receive(sess, q, r, out).value(), 1u);
  EXPECT_EQ(json_lines(out.str()).at(0).at("session_id").as_string(), "b");
}

TEST_F(Cli, DlqListShowsReasonsAndReplayMovesEveryMessageBack) {
  std::ostringstream ignore;
  send_options s;
  s.body = "poison";
  s.attributes = {{"k", "v"}};
  s.count = 3;
  ASSERT_TRUE(send(client, orders, s, ignore));
  for (const auto& m : client.receive(orders, 3, 200ms).value()) {
    ASSERT_TRUE(client.dead_letter(m.receipt, "bad-input", "test"));
  }
  std::ostringstream listed;
  EXPECT_EQ(peek(client, orders.dead_letter(), 10, 0, output_format::json, listed).value(), 3u);
  EXPECT_EQ(json_lines(listed.str()).at(0).at("dead_letter_reason").as_string(), "bad-input");

  std::ostringstream replayed;
  EXPECT_EQ(dlq_replay(client, orders, 100, 200ms, replayed).value(), 3u);
  const auto st = client.stats(orders).value();
  EXPECT_EQ(st.dead_lettered, 0);
  EXPECT_EQ(st.active, 3);
  auto back = client.receive(orders, 10, 200ms).value();
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[0].body, "poison");
  EXPECT_EQ(back[0].attributes.at("k"), "v");
}

TEST_F(Cli, ErrorsNameTheProblem) {
  std::ostringstream out;
  receive_options r;
  r.wait = 0ms;
  auto missing = receive(client, queue_name::from("nope"), r, out);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::queue_not_found);
  EXPECT_FALSE(parse_attribute("novalue"));
  EXPECT_FALSE(parse_attribute("=v"));
  EXPECT_EQ(parse_attribute("k=a=b").value().second, "a=b");
  EXPECT_FALSE(build_config({}, config{}));
}

TEST(Base64, MatchesRfc4648Vectors) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
}

}  // namespace
}  // namespace qrt::cli
