// qrt's side of the Service Bus benchmark, and the SDK's in the same run against the same peer:
// send COUNT messages of SIZE bytes in batches of 100, then receive (prefetch from the preset)
// and complete them all. Prints one JSON line per client: messages/s per phase and client CPU
// time per message (this process only; the peer runs in its own process).
//   qrt_servicebus_bench [COUNT] [SIZE] [preset: high_throughput|low_latency]
// Not a test: a measurement. The peer is single-threaded Node and may be the bottleneck; the CPU
// figure is the one that isolates the client.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <qrt/bench/process_cpu.hpp>
#include <qrt/client.hpp>
#include <qrt/config.hpp>
#include <qrt/servicebus.hpp>

#include "peer_process.hpp"

namespace {

double secs(std::chrono::steady_clock::time_point from, std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

/// qrt's half: warm up, send COUNT messages in batches of 100, then receive 50 at a time and
/// complete each batch with one settle call. Runs on the caller's io_context (one thread, as
/// the SDK runs on Node's one event loop) through the asynchronous client.
boost::asio::awaitable<void> run_qrt(qrt::queue_client& client,
                                     const qrt::test::servicebus_peer& peer, std::size_t count,
                                     std::size_t size, const std::string& preset) {
  using namespace std::chrono_literals;
  const auto q = qrt::queue_name::from("bench-qrt");
  // Warm-up: connection, CBS token, links.
  // Results are kept in named locals: GCC 12 mishandles temporaries inside co_await expressions.
  qrt::message warm_up{.body = "warm-up"};
  auto warm_sent = co_await client.send(q, std::move(warm_up));
  (void)warm_sent.value();
  auto warm = co_await client.receive(q, 1, 5s);
  for (auto& m : warm.value()) (void)co_await client.complete(m.receipt);

  const std::string body(size, 'x');
  const auto cpu0 = qrt::bench::self_cpu_time();
  const auto peer_cpu0 = qrt::bench::process_cpu_time(peer.pid());
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t sent = 0; sent < count;) {
    std::vector<qrt::message> batch;
    for (; batch.size() < 100 && sent < count; ++sent) batch.push_back(qrt::message{.body = body});
    auto outcomes = co_await client.send_batch(q, std::move(batch));
    for (auto& outcome : outcomes.value()) (void)outcome.value();
  }
  const auto t1 = std::chrono::steady_clock::now();
  const auto cpu_sent = qrt::bench::self_cpu_time();
  std::size_t received = 0;
  while (received < count) {
    auto received_now = co_await client.receive(q, 50, 5s);
    auto& got = received_now.value();
    if (got.empty()) break;
    std::vector<qrt::settlement> done;
    for (auto& m : got) done.push_back(qrt::settlement::complete(m.receipt));
    auto settled = co_await client.settle(std::move(done));
    for (auto& r : settled) (void)r.value();
    received += got.size();
  }
  const auto t2 = std::chrono::steady_clock::now();
  const auto cpu1 = qrt::bench::self_cpu_time();
  const double peer_cpu_s = (qrt::bench::process_cpu_time(peer.pid()) - peer_cpu0).total_us() / 1e6;
  const auto both = cpu1 - cpu0;
  const auto send = cpu_sent - cpu0;
  const auto receive = cpu1 - cpu_sent;
  const double ops = static_cast<double>(count + received);
  const auto per_message = [](double us, std::size_t n) { return us / static_cast<double>(n); };
  std::printf(
      "{\"client\":\"qrt\",\"preset\":\"%s\",\"count\":%zu,\"size\":%zu,\"received\":%zu,"
      "\"send_per_s\":%.0f,\"receive_complete_per_s\":%.0f,\"cpu_us_per_message\":%.2f,"
      "\"user_us_per_message\":%.2f,\"system_us_per_message\":%.2f,"
      "\"send_user_us\":%.2f,\"send_system_us\":%.2f,"
      "\"receive_user_us\":%.2f,\"receive_system_us\":%.2f,\"peer_cpu_share\":%.2f}\n",
      preset.c_str(), count, size, received, static_cast<double>(count) / secs(t0, t1),
      static_cast<double>(received) / secs(t1, t2), both.total_us() / ops, both.user_us / ops,
      both.system_us / ops, per_message(send.user_us, count), per_message(send.system_us, count),
      per_message(receive.user_us, received), per_message(receive.system_us, received),
      peer_cpu_s / secs(t0, t2));
  std::fflush(stdout);
  co_await client.close();
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t count = argc > 1 ? std::stoul(argv[1]) : 20'000;
  const std::size_t size = argc > 2 ? std::stoul(argv[2]) : 256;
  const std::string preset = argc > 3 ? argv[3] : "high_throughput";
  try {
    qrt::test::servicebus_peer peer({"--sas-key-name", "x", "--sas-key", "y"});
    qrt::provider_registry registry;
    qrt::servicebus::register_provider(registry);
    {
      boost::asio::io_context io;
      const auto cfg = qrt::config::from_pairs({"provider=servicebus", "preset=" + preset,
                                                "connection_string=" + peer.connection_string()})
                           .value();
      qrt::queue_client client(registry.make(cfg, io.get_executor()).value());
      std::exception_ptr failed;
      boost::asio::co_spawn(io, run_qrt(client, peer, count, size, preset),
                            [&failed](std::exception_ptr e) { failed = e; });
      io.run();
      if (failed) std::rethrow_exception(failed);
    }

    // The official SDK, same workload, same peer (its own queue). QRT_BENCH_QRT_ONLY=1 skips it
    // (for profiling qrt alone).
    if (std::getenv("QRT_BENCH_QRT_ONLY") != nullptr) return 0;
    // peer_cpu_share: the peer's CPU over the whole SDK run (its start-up included), a lower
    // bound on its share while the SDK works.
    const auto sdk_peer_cpu0 = qrt::bench::process_cpu_time(peer.pid());
    const auto s0 = std::chrono::steady_clock::now();
    std::string sdk = qrt::test::run_sdk_script(
        "sdk-bench.js",
        {std::to_string(peer.port()), "bench-sdk", std::to_string(count), std::to_string(size)});
    const double sdk_peer_share =
        (qrt::bench::process_cpu_time(peer.pid()) - sdk_peer_cpu0).total_us() / 1e6 /
        secs(s0, std::chrono::steady_clock::now());
    if (const auto brace = sdk.rfind('}'); brace != std::string::npos) {
      char extra[64];
      std::snprintf(extra, sizeof extra, ",\"peer_cpu_share\":%.2f", sdk_peer_share);
      sdk.insert(brace, extra);
    }
    std::cout << sdk << std::flush;
  } catch (const std::exception& e) {
    std::cerr << "bench failed: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
