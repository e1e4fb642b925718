// SQS options: the presets (docs/sqs.md) and configuration parsing that names bad fields.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <qrt/runtime.hpp>
#include <qrt/sqs.hpp>
#include <string>
#include <utility>
#include <vector>

using namespace qrt;

TEST(SqsOptions, PresetsHaveTheirDocumentedValues) {
  const auto fast = sqs::options::for_high_throughput();
  EXPECT_EQ(fast.max_number_of_messages, 10);
  EXPECT_EQ(fast.wait_time_seconds, std::chrono::seconds(20));
  EXPECT_EQ(fast.visibility_timeout, std::chrono::seconds(300));
  EXPECT_TRUE(fast.receive_request_attempt_id);
  const auto cheap = sqs::options::for_cost_optimization();
  EXPECT_EQ(cheap.max_number_of_messages, 10);
  EXPECT_EQ(cheap.wait_time_seconds, std::chrono::seconds(20));
  EXPECT_EQ(cheap.visibility_timeout, std::chrono::seconds(30));
  EXPECT_FALSE(cheap.receive_request_attempt_id);
}

TEST(SqsOptions, ConfigFieldsAreRead) {
  config cfg{{"provider", "sqs"},          {"preset", "high_throughput"},
             {"region", "eu-west-1"},      {"endpoint", "https://127.0.0.1:9"},
             {"access_key_id", "AKID"},    {"secret_access_key", "s"},
             {"wait_time", "5s"},          {"max_number_of_messages", "4"},
             {"visibility_timeout", "1m"}, {"verify_tls", "false"},
             {"request_timeout", "2s"},    {"max_retries", "0"}};
  auto o = sqs::options_from_config(cfg);
  ASSERT_TRUE(o) << o.error().to_string();
  EXPECT_EQ(o->region, "eu-west-1");
  EXPECT_EQ(o->endpoint, "https://127.0.0.1:9");
  EXPECT_EQ(o->wait_time_seconds, std::chrono::seconds(5));
  EXPECT_EQ(o->max_number_of_messages, 4);
  EXPECT_EQ(o->visibility_timeout, std::chrono::seconds(60));
  EXPECT_TRUE(o->receive_request_attempt_id) << "from the preset";
  EXPECT_FALSE(o->verify_tls);
  EXPECT_EQ(o->request_timeout, std::chrono::milliseconds(2000));
  EXPECT_EQ(o->max_retries, 0);
}

TEST(SqsOptions, BadFieldsAreRefusedByName) {
  auto expect_field = [](config cfg, std::string_view field) {
    cfg.set("provider", "sqs");
    auto o = sqs::options_from_config(cfg);
    ASSERT_FALSE(o) << field;
    EXPECT_EQ(o.error().code, errc::configuration_error);
    EXPECT_NE(o.error().message.find(field), std::string::npos) << o.error().message;
  };
  expect_field({{"regoin", "x"}}, "regoin");
  expect_field({{"preset", "fastest"}}, "preset");
  expect_field({{"wait_time", "21s"}}, "wait_time");
  expect_field({{"wait_time", "1500ms"}}, "wait_time");
  expect_field({{"max_number_of_messages", "11"}}, "max_number_of_messages");
  expect_field({{"verify_tls", "maybe"}}, "verify_tls");
  expect_field({{"access_key_id", "AKID"}}, "secret_access_key");
  expect_field({{"max_message_bytes", "10"}}, "max_message_bytes");
}

// One configuration describes the client and the runtime it runs on: the provider accepts the
// runtime's key and checks it (so a bad value fails when the client is made), and the runtime
// reads it. Before, the provider refused worker_threads as unknown.
TEST(SqsOptions, TheRuntimeKeyIsAcceptedCheckedAndReadByTheRuntime) {
  const config cfg{{"provider", "sqs"}, {"region", "us-east-1"}, {"worker_threads", "3"}};
  auto o = sqs::options_from_config(cfg);
  ASSERT_TRUE(o) << o.error().to_string();
  auto rt = runtime_configuration::from_config(cfg);
  ASSERT_TRUE(rt) << rt.error().to_string();
  EXPECT_EQ(rt->worker_threads, 3u);
  for (const char* bad : {"0", "1025", "many"}) {
    auto refused = sqs::options_from_config(config{{"provider", "sqs"}, {"worker_threads", bad}});
    ASSERT_FALSE(refused) << bad;
    EXPECT_EQ(refused.error().code, errc::configuration_error);
    EXPECT_NE(refused.error().message.find("worker_threads"), std::string::npos)
        << refused.error().message;
  }
}

TEST(SqsOptions, RegistryBuildsAndRefusesBadEndpoints) {
  boost::asio::io_context io;
  provider_registry registry;
  sqs::register_provider(registry);
  auto p = registry.make(
      config{{"provider", "sqs"}, {"endpoint", "http://127.0.0.1:9"}, {"region", "us-east-1"}},
      io.get_executor());
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ((*p)->name(), "sqs");
  EXPECT_EQ((*p)->caps().sessions, session_support::emulated);
  EXPECT_EQ((*p)->caps().max_batch_messages, 10u);
  EXPECT_EQ((*p)->caps().max_message_bytes, 262'144u);
  EXPECT_FALSE((*p)->caps().peek);
  auto bad = registry.make(config{{"provider", "sqs"}, {"endpoint", "ftp://x"}}, io.get_executor());
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("endpoint"), std::string::npos);
  auto path = registry.make(config{{"provider", "sqs"}, {"endpoint", "http://h/queue/path"}},
                            io.get_executor());
  ASSERT_FALSE(path);
}

// A region that cannot be an AWS region's name is refused as the region, not later as an
// endpoint the user never wrote (the default endpoint is built from it).
TEST(SqsOptions, ARegionThatIsNoRegionNameIsRefusedByName) {
  boost::asio::io_context io;
  provider_registry registry;
  sqs::register_provider(registry);
  for (const char* region : {"us east 1", "US-EAST-1", "eu-west-1.evil.example"}) {
    auto p = registry.make(config{{"provider", "sqs"}, {"region", region}}, io.get_executor());
    ASSERT_FALSE(p) << region;
    EXPECT_EQ(p.error().code, errc::configuration_error);
    EXPECT_NE(p.error().message.find("field 'region'"), std::string::npos) << p.error().message;
    EXPECT_EQ(p.error().message.find("endpoint"), std::string::npos) << p.error().message;
  }
  auto ok = registry.make(
      config{{"provider", "sqs"}, {"region", "us-gov-west-1"}, {"endpoint", "http://127.0.0.1:9"}},
      io.get_executor());
  EXPECT_TRUE(ok) << ok.error().to_string();
}

// Options built in code skip options_from_config's bounds: make_provider checks them itself.
// A negative retry_base_delay made every back-off draw from an empty range (undefined
// behaviour; the pause could be anything), and a timeout of zero or less failed every call.
TEST(SqsOptions, OptionsOutsideTheirBoundsAreRefusedByMakeProvider) {
  boost::asio::io_context io;
  const auto base = [] {
    sqs::options o;
    o.endpoint = "http://127.0.0.1:9";
    o.region = "us-east-1";
    return o;
  };
  std::vector<std::pair<sqs::options, std::string>> cases;
  cases.emplace_back(base(), "retry_base_delay");
  cases.back().first.retry_base_delay = std::chrono::milliseconds(-100);
  cases.emplace_back(base(), "request_timeout");
  cases.back().first.request_timeout = std::chrono::milliseconds(0);
  cases.emplace_back(base(), "connect_timeout");
  cases.back().first.connect_timeout = std::chrono::milliseconds(-1);
  cases.emplace_back(base(), "max_retries");
  cases.back().first.max_retries = -1;
  cases.emplace_back(base(), "abandon_visibility");
  cases.back().first.abandon_visibility = std::chrono::seconds(43'201);
  cases.emplace_back(base(), "abandon_visibility");
  cases.back().first.abandon_visibility = std::chrono::seconds(-1);
  for (const auto& [o, field] : cases) {
    auto p = sqs::make_provider(o, io.get_executor());
    ASSERT_FALSE(p) << field;
    EXPECT_EQ(p.error().code, errc::configuration_error) << field;
    EXPECT_NE(p.error().message.find("'" + field + "'"), std::string::npos) << p.error().message;
  }
  EXPECT_TRUE(sqs::make_provider(base(), io.get_executor()));
}

// preset=low_resource sizes only the runtime built from the configuration (two threads, 1 MiB
// stacks): the provider accepts it and keeps its defaults, where an unknown preset is refused.
TEST(SqsOptions, TheLowResourcePresetSizesTheRuntimeOnly) {
  const config cfg{{"provider", "sqs"}, {"region", "us-east-1"}, {"preset", "low_resource"}};
  auto o = sqs::options_from_config(cfg);
  ASSERT_TRUE(o) << o.error().to_string();
  EXPECT_EQ(o->wait_time_seconds, sqs::options{}.wait_time_seconds);
  EXPECT_EQ(o->visibility_timeout, sqs::options{}.visibility_timeout);
  auto rt = runtime_configuration::from_config(cfg);
  ASSERT_TRUE(rt) << rt.error().to_string();
  EXPECT_EQ(rt->worker_threads, 2u);
  EXPECT_EQ(rt->thread_stack_size, std::size_t{1} << 20);
  auto unknown = sqs::options_from_config(config{{"provider", "sqs"}, {"preset", "low_res"}});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("'low_res'"), std::string::npos)
      << unknown.error().message;
}
