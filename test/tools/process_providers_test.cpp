// `qrt process` on every network provider, against the real servers on loopback: fauxqs for SQS,
// the project's Service Bus peer, RabbitMQ for AMQP 1.0. A command that fails the first time it
// sees one message: that message is abandoned, comes back and is completed; the others are
// completed at once; the exposition the worker serves counts each outcome and the failure.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <qrt/qrt.hpp>
#include <sstream>

#include "commands.hpp"
#include "fauxqs_server.hpp"
#include "peer_process.hpp"
#include "rabbitmq_server.hpp"

namespace qrt::cli {
namespace {

using namespace std::chrono_literals;

const auto* const environment =
    ::testing::AddGlobalTestEnvironment(new test::rabbitmq_environment);  // gtest owns it

/// Sends four messages to a new queue of `cfg`, runs the worker until it idles, and checks what
/// it did and what its metrics say.
void run_worker_on(const config& cfg, const std::string& provider_label) {
  static int runs = 0;
  const auto queue =
      queue_name::from("qrt-process-" + std::to_string(::getpid()) + "-" + std::to_string(++runs));
  const auto dir = std::filesystem::temp_directory_path() / ("qrt-process-" + queue.str());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  {
    auto client = sync::queue_client::open(cfg, builtin_providers());
    ASSERT_TRUE(client) << client.error().to_string();
    auto created = client->create_queue(queue);
    ASSERT_TRUE(created) << created.error().to_string();
    for (const char* body : {"ok-1", "ok-2", "bad", "ok-3"}) {
      auto sent = client->send(queue, message{.body = body});
      ASSERT_TRUE(sent) << sent.error().to_string();
    }
  }
  // "bad" fails the first time (a marker file records it), then succeeds: the delivery count
  // cannot say so on RabbitMQ, which redelivers a released message with its count unchanged.
  const std::string marker = (dir / "failed-once").string();
  process_options o;
  o.command = "body=$(cat); [ \"$body\" != bad ] || [ -e '" + marker + "' ] || { touch '" + marker +
              "'; exit 3; }";
  o.concurrency = 2;
  o.max_messages = 5;
  o.idle_exit = 20s;  // a bound: the run ends at max_messages
  std::ostringstream log;
  auto r = process(cfg, queue, o, log);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->completed, 4u) << log.str();
  EXPECT_EQ(r->failed, 1u) << log.str();
  EXPECT_TRUE(std::filesystem::exists(marker));
  const auto has = [&](const std::string& series) {
    return r->metrics.find(series) != std::string::npos;
  };
  const std::string labels = "{queue=\"" + queue.str() + "\",provider=\"" + provider_label + "\"";
  EXPECT_TRUE(has("queue_runtime_messages_processed_total" + labels + ",outcome=\"completed\"} 4"))
      << r->metrics;
  EXPECT_TRUE(has("queue_runtime_messages_processed_total" + labels + ",outcome=\"abandoned\"} 1"))
      << r->metrics;
  EXPECT_TRUE(has("queue_runtime_errors_total" + labels +
                  ",operation=\"process\",error=\"provider_error\"} 1"))
      << r->metrics;
  EXPECT_TRUE(has("queue_runtime_processing_duration_seconds_count" + labels + "} 5"))
      << r->metrics;
  {
    auto client = sync::queue_client::open(cfg, builtin_providers());
    ASSERT_TRUE(client) << client.error().to_string();
    auto left = client->receive(queue, 10, 500ms);
    ASSERT_TRUE(left) << left.error().to_string();
    EXPECT_TRUE(left->empty()) << "a message was left in the queue: " << left->front().body;
    (void)client->delete_queue(queue);
  }
  std::filesystem::remove_all(dir);
}

TEST(ProcessOnProviders, Sqs) {
  ::setenv("AWS_EC2_METADATA_DISABLED", "true", 1);  // never a credential probe off the machine
  test::fauxqs_server server;
  run_worker_on(config{{"provider", "sqs"},
                       {"endpoint", server.endpoint()},
                       {"region", "us-east-1"},
                       {"access_key_id", "test"},
                       {"secret_access_key", "test"}},
                "sqs");
}

TEST(ProcessOnProviders, ServiceBus) {
  test::servicebus_peer peer;
  run_worker_on(
      config{{"provider", "servicebus"},
             {"connection_string",
              "Endpoint=sb://127.0.0.1:" + std::to_string(peer.port()) +
                  "/;SharedAccessKeyName=x;SharedAccessKey=y;UseDevelopmentEmulator=true"},
             {"test_peer_admin", "true"}},
      "servicebus");
}

config rabbitmq_config() {
  return config{{"provider", "amqp"},
                {"broker", "rabbitmq"},
                {"port", std::to_string(test::broker->amqp_port())},
                {"user", "guest"},
                {"password", "guest"}};
}

TEST(ProcessOnProviders, Amqp) {
  ASSERT_NE(test::broker, nullptr);
  run_worker_on(rabbitmq_config(), "amqp");
}

// A worker that can never receive stops at once and says why, instead of retrying until its
// idle time runs out and reporting success: here a queue the broker does not have.
TEST(ProcessOnProviders, AMissingQueueStopsTheWorkerWithTheReason) {
  ASSERT_NE(test::broker, nullptr);
  process_options o;
  o.command = "cat";
  o.idle_exit = 120s;  // what the worker would otherwise wait before reporting nothing done
  std::ostringstream log;
  const auto missing = queue_name::from("qrt-no-such-queue-" + std::to_string(::getpid()));
  auto r = process(rabbitmq_config(), missing, o, log);
  ASSERT_FALSE(r) << "the worker reported success on a queue that does not exist: " << log.str();
  EXPECT_EQ(r.error().code, errc::queue_not_found) << r.error().to_string();
}

// `qrt subscription create` on a provider whose subscriptions end with their connection is
// refused: it would report a subscription that is gone when the command exits.
TEST(ProcessOnProviders, ASubscriptionThatWouldNotOutliveTheCommandIsNotCreated) {
  ASSERT_NE(test::broker, nullptr);
  auto client = sync::queue_client::open(rabbitmq_config(), builtin_providers());
  ASSERT_TRUE(client) << client.error().to_string();
  const auto s = queue_name::subscription(topic_name::from("qrt-events"), "audit").value();
  std::ostringstream out;
  auto r = create_subscription(*client, s, {}, out);
  ASSERT_FALSE(r) << "reported: " << out.str();
  EXPECT_EQ(r.error().code, errc::unsupported) << r.error().to_string();
  EXPECT_TRUE(out.str().empty()) << out.str();
}

#ifdef QRT_PUBSUB_EXAMPLE
// The publish/subscribe example unchanged, its configuration alone (QRT_* variables) pointing
// it at each provider with topics: it creates a topic and two subscriptions, one filtered,
// publishes, and exits non-zero unless each subscription got exactly its messages.
int run_pubsub_example(const std::vector<std::pair<std::string, std::string>>& env,
                       std::string& output) {
  const auto log = std::filesystem::temp_directory_path() /
                   ("qrt-pubsub-example-" + std::to_string(::getpid()) + ".log");
  std::string command = "env";
  for (const auto& [name, value] : env) command += " " + name + "='" + value + "'";
  command += " '" QRT_PUBSUB_EXAMPLE "' > '" + log.string() + "' 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream in(log);
  output.assign(std::istreambuf_iterator<char>(in), {});
  std::filesystem::remove(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(PublishSubscribeExample, RunsOnSnsAndSqsByConfigurationAlone) {
  test::fauxqs_server server;
  std::string output;
  const int code = run_pubsub_example({{"AWS_EC2_METADATA_DISABLED", "true"},
                                       {"QRT_PROVIDER", "sqs"},
                                       {"QRT_ENDPOINT", server.endpoint()},
                                       {"QRT_REGION", "us-east-1"},
                                       {"QRT_ACCESS_KEY_ID", "test"},
                                       {"QRT_SECRET_ACCESS_KEY", "test"}},
                                      output);
  EXPECT_EQ(code, 0) << output;
}

TEST(PublishSubscribeExample, RunsOnServiceBusByConfigurationAlone) {
  test::servicebus_peer peer({"--require-created"});
  std::string output;
  const int code = run_pubsub_example(
      {{"QRT_PROVIDER", "servicebus"},
       {"QRT_CONNECTION_STRING", "Endpoint=sb://127.0.0.1:" + std::to_string(peer.port()) +
                                     "/;SharedAccessKeyName=x;SharedAccessKey=y;"
                                     "UseDevelopmentEmulator=true"},
       {"QRT_TEST_PEER_ADMIN", "true"}},
      output);
  EXPECT_EQ(code, 0) << output;
}
#endif

}  // namespace
}  // namespace qrt::cli
