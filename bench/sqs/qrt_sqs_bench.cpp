// qrt's SQS provider against the official JS SDK on the same fauxqs, same workload (see
// sdk_bench.mjs): throughput and client CPU per message, plus the emulator's CPU to show when
// it is the bottleneck. A program, not a test: run bench/sqs/run.sh.
//   qrt_sqs_bench [messages=20000] [size=256] [concurrency=8]
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <qrt/bench/process_cpu.hpp>
#include <qrt/client.hpp>
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
  ::setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
  qrt::test::fauxqs_server server;

  boost::asio::io_context io;
  auto o = sqs::options::for_high_throughput();
  o.endpoint = server.endpoint();
  o.region = "us-east-1";
  o.access_key_id = "test";
  o.secret_access_key = "test";
  o.visibility_timeout = 60s;
  auto provider = sqs::make_provider(o, io.get_executor()).value();
  queue_client client(provider);
  auto run = [&](auto op) {
    auto f = boost::asio::co_spawn(io, std::move(op), boost::asio::use_future);
    io.restart();
    io.run();
    return f.get();
  };
  const auto qrt_queue = queue_name::from("bench-qrt");
  const auto sdk_queue = queue_name::from("bench-sdk");
  for (const auto& q : {qrt_queue, sdk_queue}) {
    if (!run(client.create_queue(q, queue_options{.max_delivery_count = 0}))) return 1;
  }

  // ---- qrt: send ----
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> failures{0};
  const std::string body(size, 'x');
  auto sender = [&]() -> awaitable<void> {
    for (;;) {
      const auto start = next.fetch_add(10);
      if (start >= total) co_return;
      std::vector<message> batch(std::min<std::size_t>(10, total - start));
      for (auto& m : batch) m.body = body;
      auto r = co_await client.send_batch(qrt_queue, std::move(batch));
      if (!r)
        ++failures;
      else
        for (auto& o2 : *r)
          if (!o2) ++failures;
    }
  };
  auto server_cpu0 = process_cpu_time(server.pid()).total_us();
  auto cpu0 = self_cpu_time();
  auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < concurrency; ++i)
    boost::asio::co_spawn(io, sender(), boost::asio::detached);
  io.restart();
  io.run();
  const double send_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const qrt::bench::cpu_time send_cpu = self_cpu_time() - cpu0;
  const double send_server_cpu = process_cpu_time(server.pid()).total_us() - server_cpu0;

  // ---- qrt: receive + complete ----
  std::atomic<std::size_t> received{0};
  auto consumer = [&]() -> awaitable<void> {
    while (received < total) {
      auto got = co_await client.receive(qrt_queue, 10, 1s);
      if (!got) {
        ++failures;
        continue;
      }
      if (got->empty()) continue;
      received += got->size();
      std::vector<settlement> done;
      for (auto& m : *got) done.push_back(settlement::complete(m.receipt));
      for (auto& r : co_await client.settle(std::move(done)))
        if (!r) ++failures;
    }
  };
  server_cpu0 = process_cpu_time(server.pid()).total_us();
  cpu0 = self_cpu_time();
  t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < concurrency; ++i)
    boost::asio::co_spawn(io, consumer(), boost::asio::detached);
  io.restart();
  io.run();
  const double recv_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const qrt::bench::cpu_time recv_cpu = self_cpu_time() - cpu0;
  const double recv_server_cpu = process_cpu_time(server.pid()).total_us() - server_cpu0;

  std::printf(
      "{\"client\":\"qrt\",\"messages\":%zu,\"received\":%zu,\"failures\":%zu,"
      "\"send_msgs_per_s\":%.0f,\"send_cpu_us_per_msg\":%.1f,\"send_user_us_per_msg\":%.2f,"
      "\"send_system_us_per_msg\":%.2f,\"send_emulator_cpu_us_per_msg\":%.1f,"
      "\"recv_msgs_per_s\":%.0f,\"recv_cpu_us_per_msg\":%.1f,\"recv_user_us_per_msg\":%.2f,"
      "\"recv_system_us_per_msg\":%.2f,\"recv_emulator_cpu_us_per_msg\":%.1f}\n",
      total, received.load(), failures.load(), total / send_s, send_cpu.total_us() / total,
      send_cpu.user_us / total, send_cpu.system_us / total, send_server_cpu / total,
      received / recv_s, recv_cpu.total_us() / received, recv_cpu.user_us / received,
      recv_cpu.system_us / received, recv_server_cpu / received);
  std::fflush(stdout);

  // ---- the JS SDK, same emulator, its own queue ----
  const auto sdk_server_cpu0 = process_cpu_time(server.pid()).total_us();
  const std::string cmd = "QRT_SQS_SERVERS_DIR='" + qrt::test::fauxqs_server::servers_dir() +
                          "' '" + qrt::test::fauxqs_server::node_binary() + "' --no-warnings '" +
                          std::string(QRT_SQS_BENCH_DIR) + "/sdk_bench.mjs' " + server.endpoint() +
                          " " + sdk_queue.str() + " " + std::to_string(total) + " " +
                          std::to_string(size) + " " + std::to_string(concurrency);
  std::cout << qrt::test::run_command(cmd);
  std::printf("{\"emulator_cpu_us_per_msg_during_sdk_run\":%.1f}\n",
              (process_cpu_time(server.pid()).total_us() - sdk_server_cpu0) / total);
  run(provider->close());
  return failures == 0 ? 0 : 1;
}
