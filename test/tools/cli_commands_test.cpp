// The CLI's commands in-process against the embedded provider: what they print, and that
// receive completes only what it printed, dlq replay moves without losing anything.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <qrt/qrt.hpp>
#include <random>
#include <set>
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
  s.subject = "order.created";
  s.content_type = "application/octet-stream";
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
  EXPECT_EQ(m.at("subject").as_string(), "order.created");
  EXPECT_EQ(m.at("content_type").as_string(), "application/octet-stream");
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

// The embedded provider's queues must outlive the command; other providers' always do.
TEST(CliStore, OnlyAnEmbeddedProviderWithoutPersistenceIsRefused) {
  const auto refused = require_lasting_queues(config{{"provider", "memory"}});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::configuration_error);
  EXPECT_NE(refused.error().message.find("--persistence-path"), std::string::npos);
  EXPECT_FALSE(
      require_lasting_queues(config{{"provider", "memory"}, {"enable_persistence", "off"}}));
  EXPECT_FALSE(
      require_lasting_queues(config{{"provider", "memory"}, {"enable_persistence", "maybe"}}));
  EXPECT_TRUE(require_lasting_queues(
      config{{"provider", "memory"}, {"enable_persistence", "yes"}, {"persistence_path", "/q"}}));
  EXPECT_TRUE(require_lasting_queues(config{{"provider", "sqs"}}));
}

/// An output that takes `good_flushes` flushes, then fails every later one (like stdout on a
/// full disk: the bytes are accepted into a buffer, the flush to the device fails).
class failing_output : public std::stringbuf {
 public:
  explicit failing_output(int good_flushes) : good_flushes_(good_flushes) {}

 protected:
  int sync() override { return good_flushes_-- > 0 ? 0 : -1; }

 private:
  int good_flushes_;
};

struct CliOutputFailure : ::testing::Test {
  sync::queue_client client =
      sync::queue_client::open(config{{"provider", "memory"}, {"queues", "orders"}},
                               builtin_providers())
          .value();
  queue_name orders = queue_name::from("orders");

  void send_bodies(std::initializer_list<const char*> bodies) {
    for (const char* body : bodies) {
      message m;
      m.body = body;
      ASSERT_TRUE(client.send(orders, m));
    }
  }
  std::vector<std::string> bodies_left(const queue_name& q) {
    std::vector<std::string> out;
    for (auto& m : client.receive(q, 10, 200ms).value()) out.push_back(m.body);
    return out;
  }
};

// A message is completed only once its output was written and flushed; when writing fails, the
// rest of the batch is abandoned at once (not left locked) and the command fails saying so.
TEST_F(CliOutputFailure, ReceiveCompletesOnlyWhatItWroteAndAbandonsTheRest) {
  send_bodies({"first", "second", "third"});
  failing_output buffer(1);
  std::ostream out(&buffer);
  receive_options r;
  r.max = 3;
  r.wait = 200ms;
  auto n = receive(client, orders, r, out);
  ASSERT_FALSE(n);
  EXPECT_NE(n.error().message.find("cannot write the output"), std::string::npos)
      << n.error().message;
  EXPECT_NE(n.error().message.find("2 message(s) not written were abandoned"), std::string::npos)
      << n.error().message;
  const auto st = client.stats(orders).value();
  EXPECT_EQ(st.active, 2);
  EXPECT_EQ(st.in_flight, 0);
  EXPECT_EQ(bodies_left(orders), (std::vector<std::string>{"second", "third"}));
}

TEST_F(CliOutputFailure, ReceiveWithNoCompleteAlsoGivesBackWhatItCouldNotWrite) {
  send_bodies({"first", "second"});
  failing_output buffer(0);
  std::ostream out(&buffer);
  receive_options r;
  r.max = 2;
  r.wait = 200ms;
  r.complete = false;
  ASSERT_FALSE(receive(client, orders, r, out));
  EXPECT_EQ(client.stats(orders).value().active, 2);
}

// Replay reports each move after it happened; when that report cannot be written, the command
// stops, and what it has not moved stays in the dead-letter queue, abandoned rather than locked.
TEST_F(CliOutputFailure, DlqReplayStopsAtAWriteFailureAndTheRestStaysInTheDlq) {
  send_bodies({"a", "b", "c"});
  for (const auto& m : client.receive(orders, 3, 200ms).value())
    ASSERT_TRUE(client.dead_letter(m.receipt, "bad-input", "test"));
  failing_output buffer(1);
  std::ostream out(&buffer);
  auto n = dlq_replay(client, orders, 100, 200ms, out);
  ASSERT_FALSE(n);
  EXPECT_NE(n.error().message.find("cannot write the output"), std::string::npos)
      << n.error().message;
  const auto st = client.stats(orders).value();
  EXPECT_EQ(st.active, 2);         // "a" (reported) and "b" (moved, report failed)
  EXPECT_EQ(st.dead_lettered, 1);  // "c": not moved, abandoned, ready in the DLQ again
  EXPECT_EQ(bodies_left(orders.dead_letter()), (std::vector<std::string>{"c"}));
}

TEST_F(CliOutputFailure, SendPeekAndStatsFailWhenTheirOutputCannotBeWritten) {
  failing_output buffer(0);
  std::ostream out(&buffer);
  send_options s;
  s.body = "x";
  EXPECT_FALSE(send(client, orders, s, out));
  EXPECT_FALSE(peek(client, orders, 10, 0, output_format::text, out));
  EXPECT_FALSE(stats(client, orders, output_format::json, out));
}

// Bodies and attributes are whatever the sender put there: text output must not let them drive
// the terminal (ESC sequences, a CR that rewrites the line, C1 controls, stray bytes).
TEST_F(CliOutputFailure, TextOutputEscapesControlCharactersOfBodiesAndAttributes) {
  message m;
  m.body = "line1\nline2\r\x1b[2J\x07\tend\xc2\x9b\xff\xe2\x82\xac";
  m.attributes["k\x1b]0;title\x07"] = "v\rX";
  m.correlation_id = "c\x1b";
  m.subject = "s\x1b";
  m.content_type = "text/plain\r";
  ASSERT_TRUE(client.send(orders, m));
  receive_options r;
  r.wait = 200ms;
  std::ostringstream out;
  ASSERT_EQ(receive(client, orders, r, out).value(), 1u);
  const std::string text = out.str();
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << text;
  EXPECT_EQ(text.find('\x07'), std::string::npos) << text;
  EXPECT_EQ(text.find("\xc2\x9b"), std::string::npos) << text;
  EXPECT_NE(text.find(" k\\x1b]0;title\\x07=v\\rX"), std::string::npos) << text;
  EXPECT_NE(text.find(" correlation=c\\x1b"), std::string::npos) << text;
  EXPECT_NE(text.find(" subject=s\\x1b content_type=text/plain\\r"), std::string::npos) << text;
  // The body keeps its lines and tabs (it is printed on lines of its own) and valid UTF-8.
  EXPECT_NE(text.find("line1\nline2\\r\\x1b[2J\\x07\tend\\u009b\\xff\xe2\x82\xac\n"),
            std::string::npos)
      << text;
}

// `qrt process` runs the command per message with the body on stdin and the message in QRT_MSG_*
// variables: exit 0 completes, anything else abandons, and the queue's max delivery count then
// dead-letters. The persisted provider carries the queue from the sending client to the worker.
TEST(Process, RunsTheCommandPerMessageAndSettlesByItsExitStatus) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("qrt-process-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const config cfg{{"provider", "memory"},
                   {"queues", "jobs"},
                   {"max_delivery_count", "2"},
                   {"enable_persistence", "true"},
                   {"persistence_path", (dir / "log").string()}};
  const auto jobs = queue_name::from("jobs");
  {
    auto client = sync::queue_client::open(cfg, builtin_providers()).value();
    for (const char* body : {"ok-1", "ok-2", "bad", "ok-3"}) {
      message m{.body = body};
      m.attributes = {{"tenant-name", "acme"}};
      ASSERT_TRUE(client.send(jobs, std::move(m)));
    }
  }
  const auto out = dir / "seen";
  process_options o;
  o.command =
      "body=$(cat); printf '%s %s %s\\n' \"$body\" \"$QRT_MSG_DELIVERY_COUNT\" "
      "\"$QRT_MSG_ATTR_TENANT_NAME\" >> '" +
      out.string() + "'; [ \"$body\" != bad ]";
  o.concurrency = 2;
  o.idle_exit = 1s;
  o.metrics_listen = "127.0.0.1:0";
  std::ostringstream log;
  auto r = process(cfg, jobs, o, log);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->completed, 3u);
  EXPECT_EQ(r->failed, 2u) << "the bad message runs twice, then the queue dead-letters it";
  EXPECT_NE(log.str().find("serving /metrics on 127.0.0.1:"), std::string::npos) << log.str();

  std::ifstream seen(out);
  std::multiset<std::string> lines;
  for (std::string line; std::getline(seen, line);) lines.insert(line);
  EXPECT_EQ(lines, (std::multiset<std::string>{"ok-1 1 acme", "ok-2 1 acme", "ok-3 1 acme",
                                               "bad 1 acme", "bad 2 acme"}));
  {
    auto client = sync::queue_client::open(cfg, builtin_providers()).value();
    auto stats = client.stats(jobs);
    ASSERT_TRUE(stats) << stats.error().to_string();
    EXPECT_EQ(stats->active, 0);
    EXPECT_EQ(stats->dead_lettered, 1);
  }
  std::filesystem::remove_all(dir);
}

// Served metrics show how much the queue holds: before, nothing in `qrt process` called stats(),
// so queue_runtime_queue_depth stayed at 0 whatever the queue held and a backlog alert on it
// could never fire.
TEST(Process, ItsMetricsShowTheQueueDepth) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("qrt-process-depth-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const config cfg{{"provider", "memory"},
                   {"queues", "jobs"},
                   {"enable_persistence", "true"},
                   {"persistence_path", (dir / "log").string()}};
  const auto jobs = queue_name::from("jobs");
  {
    auto client = sync::queue_client::open(cfg, builtin_providers()).value();
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(client.send(jobs, message{.body = "job"}));
  }
  process_options o;
  o.command = "cat > /dev/null";
  o.max_messages = 2;  // three stay in the queue
  o.metrics_listen = "127.0.0.1:0";
  o.depth_interval = 1ms;
  std::ostringstream log;
  auto r = process(cfg, jobs, o, log);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->completed, 2u);
  EXPECT_NE(
      r->metrics.find(
          "queue_runtime_queue_depth{queue=\"jobs\",provider=\"memory\",state=\"active\"} 3\n"),
      std::string::npos)
      << r->metrics;
  EXPECT_EQ(log.str().find("cannot read the depth"), std::string::npos) << log.str();

  o.depth_interval = 0ms;
  auto refused = process(cfg, jobs, o, log);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("--depth-interval"), std::string::npos)
      << refused.error().message;
  std::filesystem::remove_all(dir);
}

// The resource alerts (monitoring/qrt-alerts.yml) need the process series where qrt serves its
// metrics: before, `qrt process --metrics-listen` served none.
TEST(Process, ItsMetricsShowTheProcessResources) {
  const config cfg{{"provider", "memory"}, {"queues", "jobs"}};
  process_options o;
  o.command = "cat > /dev/null";
  o.idle_exit = 100ms;
  o.metrics_listen = "127.0.0.1:0";
  std::ostringstream log;
  auto r = process(cfg, queue_name::from("jobs"), o, log);
  ASSERT_TRUE(r) << r.error().to_string();
  for (const char* series : {"process_cpu_seconds_total", "process_resident_memory_bytes",
                             "process_open_fds", "process_max_fds", "process_start_time_seconds"}) {
    const auto at = r->metrics.find("\n" + std::string(series) + " ");
    ASSERT_NE(at, std::string::npos) << series << "\n" << r->metrics;
  }
  const auto at = r->metrics.find("\nprocess_resident_memory_bytes ");
  EXPECT_GT(std::strtod(r->metrics.c_str() + at + 31, nullptr), 0) << r->metrics;
}

TEST(Process, RefusesABadListenAddressAndAMissingCommandByName) {
  const config cfg{{"provider", "memory"}, {"queues", "jobs"}};
  std::ostringstream log;
  process_options none;
  auto missing = process(cfg, queue_name::from("jobs"), none, log);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("--exec"), std::string::npos);
  process_options bad;
  bad.command = "true";
  bad.metrics_listen = "127.0.0.1:99999";
  auto refused = process(cfg, queue_name::from("jobs"), bad, log);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("--metrics-listen"), std::string::npos)
      << refused.error().message;
}

// A command reads the message from its environment. Attribute names that differ only in case or
// punctuation would meet in one QRT_MSG_ATTR_ variable, the value seen depending on the
// environment's order: that variable is left out, and QRT_MSG_ATTRIBUTES carries every
// attribute exactly.
TEST(Process, GivesTheCommandEveryFieldAndNoAmbiguousAttributeVariable) {
  received_message m;
  m.id = "id-1";
  m.delivery_count = 3;
  m.correlation_id = "corr";
  m.session = session_id::parse("s-1").value();
  m.subject = "order.created";
  m.content_type = "application/json";
  m.attributes = {{"tenant-name", "acme"}, {"a-b", "dash"}, {"A_B", "underscore"}, {"bin", "\xff"}};
  const auto env = process_environment(m);
  std::map<std::string, std::vector<std::string>> seen;
  for (const auto& entry : env) {
    const auto eq = entry.find('=');
    ASSERT_NE(eq, std::string::npos) << entry;
    if (entry.starts_with("QRT_MSG_")) seen[entry.substr(0, eq)].push_back(entry.substr(eq + 1));
  }
  const std::map<std::string, std::vector<std::string>> expected{
      {"QRT_MSG_ID", {"id-1"}},
      {"QRT_MSG_DELIVERY_COUNT", {"3"}},
      {"QRT_MSG_CORRELATION_ID", {"corr"}},
      {"QRT_MSG_SESSION_ID", {"s-1"}},
      {"QRT_MSG_SUBJECT", {"order.created"}},
      {"QRT_MSG_CONTENT_TYPE", {"application/json"}},
      {"QRT_MSG_ATTR_TENANT_NAME", {"acme"}},
      {"QRT_MSG_ATTR_BIN", {"\xff"}},
      {"QRT_MSG_ATTRIBUTES", {attributes_json(m.attributes)}}};
  EXPECT_EQ(seen, expected);
  const auto attrs = boost::json::parse(seen["QRT_MSG_ATTRIBUTES"].at(0)).as_object();
  EXPECT_EQ(attrs.at("attributes").at("a-b").as_string(), "dash");
  EXPECT_EQ(attrs.at("attributes").at("A_B").as_string(), "underscore");
  EXPECT_EQ(attrs.at("attributes_base64").as_array().at(0).at("value_base64").as_string(),
            base64_encode("\xff"));
}

TEST(PrintableText, EscapesExactlyWhatCanDriveATerminal) {
  EXPECT_EQ(printable_text("plain text, caf\xc3\xa9 \xf0\x9f\x98\x80"),
            "plain text, caf\xc3\xa9 \xf0\x9f\x98\x80");
  EXPECT_EQ(printable_text("a\nb\tc"), "a\\nb\\tc");
  EXPECT_EQ(printable_text("a\nb\tc", true), "a\nb\tc");
  EXPECT_EQ(printable_text(std::string("\0\x7f", 2)), "\\x00\\x7f");
  // Overlong forms, surrogates, truncated sequences and bytes past U+10FFFF are not UTF-8.
  EXPECT_EQ(printable_text("\xc0\xaf"), "\\xc0\\xaf");
  EXPECT_EQ(printable_text("\xed\xa0\x80"), "\\xed\\xa0\\x80");
  EXPECT_EQ(printable_text("\xe2\x82"), "\\xe2\\x82");
  EXPECT_EQ(printable_text("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");
}

// Whatever bytes a message's text fields carry, its JSON line parses (JSON is UTF-8, and
// Boost.JSON's parser checks it) and carries them exactly: as they are when they are UTF-8,
// else in base64 under a `_base64` name.
TEST(MessageJson, StaysValidJsonAndExactForAnyBytes) {
  std::mt19937 rng(20261206);
  const auto random_bytes = [&] {
    std::string out(rng() % 12, '\0');
    for (auto& c : out) c = static_cast<char>(rng() % 4 == 0 ? rng() % 256 : 'a' + rng() % 26);
    return out;
  };
  for (int round = 0; round < 500; ++round) {
    received_message m;
    m.id = random_bytes();
    m.correlation_id = random_bytes();
    m.subject = random_bytes();
    m.content_type = random_bytes();
    m.attributes[random_bytes()] = random_bytes();
    m.attributes["plain"] = "caf\xc3\xa9";
    const std::string line = message_json(m);
    boost::system::error_code ec;
    const auto v = boost::json::parse(line, ec);
    ASSERT_FALSE(ec) << "not valid JSON: " << printable_text(line);
    const auto& o = v.as_object();
    for (const auto& [field, value] : {std::pair<std::string, std::string>{"id", m.id},
                                       {"correlation_id", m.correlation_id},
                                       {"subject", m.subject},
                                       {"content_type", m.content_type}}) {
      if (is_utf8(value)) {
        EXPECT_EQ(o.at(field).as_string(), value);
      } else {
        EXPECT_FALSE(o.contains(field));
        EXPECT_EQ(o.at(field + "_base64").as_string(), base64_encode(value));
      }
    }
    EXPECT_EQ(o.at("attributes").at("plain").as_string(), "caf\xc3\xa9");
    std::size_t carried = o.at("attributes").as_object().size();
    if (const auto* binary = o.if_contains("attributes_base64")) {
      for (const auto& a : binary->as_array()) {
        ++carried;
        bool found = false;
        for (const auto& [k, v2] : m.attributes) {
          found = found || (a.at("name_base64").as_string() == base64_encode(k) &&
                            a.at("value_base64").as_string() == base64_encode(v2));
        }
        EXPECT_TRUE(found) << printable_text(line);
      }
    }
    EXPECT_EQ(carried, m.attributes.size()) << printable_text(line);
  }
  EXPECT_TRUE(is_utf8("caf\xc3\xa9 \xf0\x9f\x98\x80"));
  EXPECT_FALSE(is_utf8("acme\xff"));
  EXPECT_FALSE(is_utf8("\xed\xa0\x80"));  // a surrogate
}

// A filter set by another client may hold any bytes: subscription list --output json writes
// them as receive does (`subject_base64`, `attributes_base64`), so each line is valid JSON.
TEST_F(Cli, SubscriptionListJsonStaysValidForAFilterThatIsNotUtf8) {
  const auto events = topic_name::parse("events").value();
  ASSERT_TRUE(client.create_topic(events));
  subscription_options options;
  options.filter.subject = std::string("\xc3");
  options.filter.attributes = {{"plain", "eu"}, {"k", "\xff\xfe"}};
  ASSERT_TRUE(
      client.create_subscription(queue_name::subscription(events, "binary").value(), options));
  std::ostringstream out;
  ASSERT_TRUE(list_subscriptions(client, events, output_format::json, out));
  boost::system::error_code ec;
  const auto v = boost::json::parse(out.str(), ec);
  ASSERT_FALSE(ec) << "not valid JSON: " << printable_text(out.str());
  const auto& line = v.as_object();
  EXPECT_EQ(line.at("subject_base64").as_string(), base64_encode("\xc3"));
  EXPECT_FALSE(line.contains("subject"));
  EXPECT_EQ(line.at("attributes").at("plain").as_string(), "eu");
  EXPECT_FALSE(line.at("attributes").as_object().contains("k"));
  const auto& binary = line.at("attributes_base64").as_array();
  ASSERT_EQ(binary.size(), 1u);
  EXPECT_EQ(binary[0].at("name_base64").as_string(), base64_encode("k"));
  EXPECT_EQ(binary[0].at("value_base64").as_string(), base64_encode("\xff\xfe"));
}

// The command line a benchmark report keeps (report.json's "command", chart.html) never holds a
// secret, however the flags carry it: report directories are compared, shared and committed.
TEST(CommandLine, SecretsAreMaskedHoweverTheyAreWritten) {
  const auto masked = [](std::vector<std::string> args) {
    args.insert(args.begin(), {"qrt", "bench"});
    return command_line_without_secrets(args);
  };
  EXPECT_EQ(masked({"--connection-string", "Endpoint=sb://x/;SharedAccessKey=hunter2"}),
            "qrt bench --connection-string '<redacted>'");
  EXPECT_EQ(masked({"--connection-string=Endpoint=sb://x/;SharedAccessKey=hunter2"}),
            "qrt bench '--connection-string=<redacted>'");
  EXPECT_EQ(masked({"--set", "password=hunter2", "--messages", "10"}),
            "qrt bench --set 'password=<redacted>' --messages 10");
  EXPECT_EQ(masked({"--set=sas_key=hunter2"}), "qrt bench '--set=sas_key=<redacted>'");
  EXPECT_EQ(masked({"--set", "prefetch=5"}), "qrt bench --set prefetch=5");
  // One --set takes several settings: each one after it is a setting until the next flag.
  EXPECT_EQ(masked({"--set", "user=guest", "password=hunter2", "--no-baseline"}),
            "qrt bench --set user=guest 'password=<redacted>' --no-baseline");
  EXPECT_EQ(masked({"--endpoint", "amqp://guest:hunter2@broker:5672"}),
            "qrt bench --endpoint 'amqp://<redacted>@broker:5672'");
  // The endpoint parser reads a password up to the last '@' (it may hold an '@' of its own).
  EXPECT_EQ(masked({"--endpoint", "amqps://guest:hun@ter2@broker"}),
            "qrt bench --endpoint 'amqps://<redacted>@broker'");
  EXPECT_EQ(masked({"--set", "endpoint=amqp://guest:p@ss@broker"}),
            "qrt bench --set 'endpoint=amqp://<redacted>@broker'");
}

// The command line and configuration errors hide the same settings the same way: one rule of
// what is secret (config::is_secret_key), one marker. Settings only the command line used to
// hide, or only the errors, were shown by the other.
TEST(CommandLine, HidesWhatConfigurationErrorsHideAndNothingElse) {
  const auto masked = [](std::string setting) {
    return command_line_without_secrets({"qrt", "bench", "--set", setting});
  };
  for (const char* key :
       {"password", "sas_key", "secret_access_key", "session_token", "connection_string",
        "shared_access_signature", "client_credential", "http.proxy_password"}) {
    const std::string setting = std::string(key) + "=hunter2";
    ASSERT_TRUE(config::is_secret_key(key)) << key;
    const auto line = masked(setting);
    EXPECT_EQ(line.find("hunter2"), std::string::npos) << line;
    EXPECT_NE(line.find(config::printable_value(key, "hunter2")), std::string::npos) << line;
  }
  for (const char* key : {"access_key_id", "max_connections", "sasl_mechanisms", "region"}) {
    ASSERT_FALSE(config::is_secret_key(key)) << key;
    EXPECT_EQ(masked(std::string(key) + "=x"), "qrt bench --set " + std::string(key) + "=x");
  }
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
