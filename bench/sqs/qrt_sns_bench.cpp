// Publishing to a topic (SNS fanning out to SQS queues) through qrt's SQS provider against the
// official JS SDK (@aws-sdk/client-sns, sns_sdk_bench.mjs) on the same fauxqs, same workload:
// N messages published 10 per PublishBatch by C concurrent publishers to a topic with S
// subscriptions. Prints publish throughput, client CPU per message and the emulator's CPU per
// message (it does the fan-out), and checks every subscription got every message. A program,
// not a test: run bench/sqs/run_topics.sh.
//   qrt_sns_bench [messages=20000] [size=256] [concurrency=8] [subscriptions=2]
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <qrt/bench/process_cpu.hpp>
#include <qrt/sqs.hpp>

#include "fauxqs_server.hpp"

using namespace qrt;
using namespace std::chrono_literals;
using qrt::bench::process_cpu_time;
using qrt::bench::self_cpu_time;

int main(int argc, char** argv) {
  const std::size_t total = argc > 1 ? std::stoul(argv[1]) : 20'000;
  const std::size_t size = argc > 2 ? std::stoul(argv[2]) : 256;
  const std::size_t concurrency = argc > 3 ? std::stoul(argv[3]) : 8;
  const std::size_t fan_out = argc > 4 ? std::stoul(argv[4]) : 2;
  ::setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
  qrt::test::fauxqs_server server;

  boost::asio::io_context io;
  auto o = sqs::options::for_high_throughput();
  o.endpoint = server.endpoint();
  o.region = "us-east-1";
  o.access_key_id = "test";
  o.secret_access_key = "test";
  auto provider = sqs::make_provider(o, io.get_executor()).value();
  auto run = [&](auto op) {
    auto f = boost::asio::co_spawn(io, std::move(op), boost::asio::use_future);
    io.restart();
    io.run();
    return f.get();
  };
  // Each client publishes to its own topic, each with `fan_out` subscriptions.
  const auto qrt_topic = topic_name::from("bench-qrt");
  const auto sdk_topic = topic_name::from("bench-sdk");
  std::vector<queue_name> qrt_subs, sdk_subs;
  for (const auto& [t, subs] : {std::pair{qrt_topic, &qrt_subs}, std::pair{sdk_topic, &sdk_subs}}) {
    if (auto r = run(provider->create_topic(t)); !r) {
      std::cerr << r.error().to_string() << '\n';
      return 1;
    }
    for (std::size_t i = 0; i < fan_out; ++i) {
      auto sub = queue_name::subscription(t, "s" + std::to_string(i)).value();
      auto r = run(provider->create_subscription(sub, subscription_options{}));
      if (!r) {
        std::cerr << r.error().to_string() << '\n';
        return 1;
      }
      subs->push_back(sub);
    }
  }
  auto delivered = [&](const std::vector<queue_name>& subs) {
    std::int64_t least = -1;
    for (const auto& s : subs) {
      auto st = run(provider->stats(s));
      const auto n = st ? st->active + st->in_flight : -1;
      least = least < 0 ? n : std::min(least, n);
    }
    return least;
  };

  // ---- qrt: publish ----
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> failures{0};
  const std::string body(size, 'x');
  auto publisher = [&]() -> awaitable<void> {
    for (;;) {
      const auto start = next.fetch_add(10);
      if (start >= total) co_return;
      std::vector<message> batch(std::min<std::size_t>(10, total - start));
      for (auto& m : batch) m.body = body;
      auto r = co_await provider->publish(qrt_topic, std::move(batch), 10s);
      if (!r)
        ++failures;
      else
        for (auto& o2 : *r)
          if (!o2) ++failures;
    }
  };
  const auto server_cpu0 = process_cpu_time(server.pid()).total_us();
  const auto cpu0 = self_cpu_time();
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < concurrency; ++i)
    boost::asio::co_spawn(io, publisher(), boost::asio::detached);
  io.restart();
  io.run();
  const double publish_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const qrt::bench::cpu_time publish_cpu = self_cpu_time() - cpu0;
  const double publish_server_cpu = process_cpu_time(server.pid()).total_us() - server_cpu0;

  std::printf(
      "{\"client\":\"qrt\",\"messages\":%zu,\"subscriptions\":%zu,\"failures\":%zu,"
      "\"delivered_per_subscription\":%lld,\"publish_msgs_per_s\":%.0f,"
      "\"publish_cpu_us_per_msg\":%.1f,\"publish_user_us_per_msg\":%.2f,"
      "\"publish_system_us_per_msg\":%.2f,\"publish_emulator_cpu_us_per_msg\":%.1f}\n",
      total, fan_out, failures.load(), static_cast<long long>(delivered(qrt_subs)),
      total / publish_s, publish_cpu.total_us() / total, publish_cpu.user_us / total,
      publish_cpu.system_us / total, publish_server_cpu / total);
  std::fflush(stdout);

  // ---- the JS SDK, same emulator, its own topic ----
  const auto sdk_server_cpu0 = process_cpu_time(server.pid()).total_us();
  const std::string cmd = "QRT_SQS_SERVERS_DIR='" + qrt::test::fauxqs_server::servers_dir() +
                          "' '" + qrt::test::fauxqs_server::node_binary() + "' --no-warnings '" +
                          std::string(QRT_SQS_BENCH_DIR) + "/sns_sdk_bench.mjs' " +
                          server.endpoint() + " bench-sdk " + std::to_string(total) + " " +
                          std::to_string(size) + " " + std::to_string(concurrency);
  std::cout << qrt::test::run_command(cmd);
  std::printf(
      "{\"emulator_cpu_us_per_msg_during_sdk_run\":%.1f,\"sdk_delivered_per_subscription\":%lld}"
      "\n",
      (process_cpu_time(server.pid()).total_us() - sdk_server_cpu0) / total,
      static_cast<long long>(delivered(sdk_subs)));
  const bool all_delivered = delivered(qrt_subs) == static_cast<std::int64_t>(total) &&
                             delivered(sdk_subs) == static_cast<std::int64_t>(total);
  run(provider->close());
  return failures == 0 && all_delivered ? 0 : 1;
}
