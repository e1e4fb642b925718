// qrt's side of the Service Bus benchmark, and the SDK's in the same run against the same peer:
// send COUNT messages of SIZE bytes in batches of 100, then receive (prefetch from the preset)
// and complete them all. Prints one JSON line per client: messages/s per phase and client CPU
// time per message (this process only; the peer runs in its own process), then one with qrt's
// CPU per message over the SDK's, per phase.
//   qrt_servicebus_bench [COUNT] [SIZE] [preset: high_throughput|low_latency]
//   qrt_servicebus_bench topic [COUNT] [SIZE] [SUBSCRIPTIONS] [preset]
// The topic mode publishes the batches to a topic with SUBSCRIPTIONS subscriptions (2 unless
// given; each client has a topic of its own, made through the peer's admin node) and then reads
// every subscription in turn; receive figures are per received message, over all subscriptions.
// It fails unless every subscription got every message (as the queue mode fails unless the
// queue gave back every message).
// Not a test: a measurement. The peer is single-threaded Node and may be the bottleneck; the CPU
// figure is the one that isolates the client.
#include <algorithm>
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
#include <stdexcept>
#include <string>
#include <vector>

#include "peer_process.hpp"

namespace {

double secs(std::chrono::steady_clock::time_point from, std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

/// What one client's run works on: the queue it sends to and reads, or the topic it publishes to
/// and the subscriptions it reads.
struct entity {
  std::string name;                        ///< the queue or the topic
  std::vector<std::string> subscriptions;  ///< empty for a queue
  std::vector<qrt::queue_name> read_from() const {
    if (subscriptions.empty()) return {qrt::queue_name::from(name)};
    std::vector<qrt::queue_name> out;
    for (const auto& s : subscriptions) {
      out.push_back(qrt::queue_name::subscription(qrt::topic_name::from(name), s).value());
    }
    return out;
  }
};

/// Makes `e`'s topic and subscriptions through the peer's admin node (a queue needs nothing).
boost::asio::awaitable<void> create(qrt::queue_client& client, const entity& e) {
  if (e.subscriptions.empty()) co_return;
  auto made = co_await client.create_topic(qrt::topic_name::from(e.name));
  made.value();
  for (const auto& q : e.read_from()) {
    auto sub = co_await client.create_subscription(q);
    sub.value();
  }
}

/// Sends `batch` to `e`'s queue, or publishes it to its topic; throws on any failed message.
boost::asio::awaitable<void> send_to(qrt::queue_client& client, const entity& e,
                                     std::vector<qrt::message> batch) {
  // Results are kept in named locals: GCC 12 mishandles temporaries inside co_await expressions.
  qrt::result<std::vector<qrt::send_outcome>> outcomes;
  if (e.subscriptions.empty()) {
    outcomes = co_await client.send_batch(qrt::queue_name::from(e.name), std::move(batch));
  } else {
    outcomes = co_await client.publish_batch(qrt::topic_name::from(e.name), std::move(batch));
  }
  for (auto& outcome : outcomes.value()) (void)outcome.value();
}

/// Receives 50 at a time from `q` and completes each batch with one settle call, until `count`
/// arrived or a 5 s wait brings nothing; returns how many arrived.
boost::asio::awaitable<std::size_t> receive_all(qrt::queue_client& client, const qrt::queue_name& q,
                                                std::size_t count) {
  using namespace std::chrono_literals;
  std::size_t received = 0;
  while (received < count) {
    auto received_now = co_await client.receive(q, std::min<std::size_t>(50, count - received), 5s);
    auto& got = received_now.value();
    if (got.empty()) break;
    std::vector<qrt::settlement> done;
    for (auto& m : got) done.push_back(qrt::settlement::complete(m.receipt));
    auto settled = co_await client.settle(std::move(done));
    for (auto& r : settled) (void)r.value();
    received += got.size();
  }
  co_return received;
}

/// One client's CPU per message, per phase (µs, user + system).
struct phase_cpu {
  double send_us = 0;     ///< per sent (published) message
  double receive_us = 0;  ///< per received and completed message
};

/// qrt's half: warm up, send COUNT messages in batches of 100, then receive and complete them
/// from every queue `e` reads. Runs on the caller's io_context (one thread, as the SDK runs on
/// Node's one event loop) through the asynchronous client. Sets `cpu` to the per-message CPU.
boost::asio::awaitable<void> run_qrt(qrt::queue_client& client,
                                     const qrt::test::servicebus_peer& peer, const entity& e,
                                     std::size_t count, std::size_t size, const std::string& preset,
                                     phase_cpu& cpu) {
  using namespace std::chrono_literals;
  const auto queues = e.read_from();
  // Warm-up: connection, CBS token, links.
  std::vector<qrt::message> warm_up;
  warm_up.push_back(qrt::message{.body = "warm-up"});
  co_await send_to(client, e, std::move(warm_up));
  for (const auto& q : queues) {
    auto warm = co_await client.receive(q, 1, 5s);
    for (auto& m : warm.value()) (void)co_await client.complete(m.receipt);
  }

  const std::string body(size, 'x');
  const auto cpu0 = qrt::bench::self_cpu_time();
  const auto peer_cpu0 = qrt::bench::process_cpu_time(peer.pid());
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t sent = 0; sent < count;) {
    std::vector<qrt::message> batch;
    for (; batch.size() < 100 && sent < count; ++sent) batch.push_back(qrt::message{.body = body});
    co_await send_to(client, e, std::move(batch));
  }
  const auto t1 = std::chrono::steady_clock::now();
  const auto cpu_sent = qrt::bench::self_cpu_time();
  std::size_t received = 0;
  std::string per_queue;
  bool all = true;
  for (const auto& q : queues) {
    const auto got = co_await receive_all(client, q, count);
    received += got;
    all = all && got == count;
    per_queue += (per_queue.empty() ? "" : ",") + std::to_string(got);
  }
  const auto t2 = std::chrono::steady_clock::now();
  const auto cpu1 = qrt::bench::self_cpu_time();
  const double peer_cpu_s = (qrt::bench::process_cpu_time(peer.pid()) - peer_cpu0).total_us() / 1e6;
  const auto both = cpu1 - cpu0;
  const auto send = cpu_sent - cpu0;
  const auto receive = cpu1 - cpu_sent;
  const double ops = static_cast<double>(count + received);
  const auto per_message = [](double us, std::size_t n) { return us / static_cast<double>(n); };
  const std::string topic = e.subscriptions.empty()
                                ? std::string()
                                : ",\"subscriptions\":" + std::to_string(queues.size()) +
                                      ",\"received_per_subscription\":[" + per_queue + "]";
  std::printf(
      "{\"client\":\"qrt\",\"preset\":\"%s\",\"count\":%zu,\"size\":%zu,\"received\":%zu%s,"
      "\"send_per_s\":%.0f,\"receive_complete_per_s\":%.0f,\"cpu_us_per_message\":%.2f,"
      "\"user_us_per_message\":%.2f,\"system_us_per_message\":%.2f,"
      "\"send_user_us\":%.2f,\"send_system_us\":%.2f,"
      "\"receive_user_us\":%.2f,\"receive_system_us\":%.2f,\"peer_cpu_share\":%.2f}\n",
      preset.c_str(), count, size, received, topic.c_str(),
      static_cast<double>(count) / secs(t0, t1), static_cast<double>(received) / secs(t1, t2),
      both.total_us() / ops, both.user_us / ops, both.system_us / ops,
      per_message(send.user_us, count), per_message(send.system_us, count),
      per_message(receive.user_us, received), per_message(receive.system_us, received),
      peer_cpu_s / secs(t0, t2));
  std::fflush(stdout);
  cpu = {per_message(send.total_us(), count), per_message(receive.total_us(), received)};
  co_await client.close();
  if (!all) throw std::runtime_error("qrt got back fewer messages than it sent (counts above)");
}

/// Makes both clients' topics, before either measures, then runs qrt's half.
boost::asio::awaitable<void> run_all(qrt::queue_client& client,
                                     const qrt::test::servicebus_peer& peer, const entity& ours,
                                     const entity& sdks, std::size_t count, std::size_t size,
                                     const std::string& preset, phase_cpu& cpu) {
  co_await create(client, ours);
  co_await create(client, sdks);
  co_await run_qrt(client, peer, ours, count, size, preset, cpu);
}

/// The number after `"key":` in the JSON line `line`; throws when it is missing.
double json_number(const std::string& line, const std::string& key) {
  const auto at = line.find("\"" + key + "\":");
  if (at == std::string::npos) throw std::runtime_error("no " + key + " in: " + line);
  return std::stod(line.substr(at + key.size() + 3));
}

}  // namespace

int main(int argc, char** argv) {
  const bool topic_mode = argc > 1 && std::string(argv[1]) == "topic";
  const int first = topic_mode ? 2 : 1;  // the first positional argument after the mode
  const auto arg = [&](int i) -> const char* {
    return first + i < argc ? argv[first + i] : nullptr;
  };
  const std::size_t count = arg(0) ? std::stoul(arg(0)) : 20'000;
  const std::size_t size = arg(1) ? std::stoul(arg(1)) : 256;
  const std::size_t subscriptions = topic_mode && arg(2) ? std::stoul(arg(2)) : 2;
  const std::string preset = arg(topic_mode ? 3 : 2) ? arg(topic_mode ? 3 : 2) : "high_throughput";
  const auto entity_for = [&](const std::string& client) {
    entity e{.name = "bench-" + client + (topic_mode ? "-topic" : "")};
    for (std::size_t i = 0; topic_mode && i < subscriptions; ++i) {
      e.subscriptions.push_back("s" + std::to_string(i + 1));
    }
    return e;
  };
  const entity qrt_entity = entity_for("qrt");
  const entity sdk_entity = entity_for("sdk");
  try {
    qrt::test::servicebus_peer peer({"--sas-key-name", "x", "--sas-key", "y"});
    qrt::provider_registry registry;
    qrt::servicebus::register_provider(registry);
    phase_cpu qrt_cpu;
    {
      boost::asio::io_context io;
      const auto cfg = qrt::config::from_pairs(
                           {"provider=servicebus", "preset=" + preset,
                            "connection_string=" + peer.connection_string(),
                            std::string("test_peer_admin=") + (topic_mode ? "true" : "false")})
                           .value();
      qrt::queue_client client(registry.make(cfg, io.get_executor()).value());
      std::exception_ptr failed;
      boost::asio::co_spawn(
          io, run_all(client, peer, qrt_entity, sdk_entity, count, size, preset, qrt_cpu),
          [&failed](std::exception_ptr e) { failed = e; });
      io.run();
      if (failed) std::rethrow_exception(failed);
    }

    // The official SDK, same workload, same peer (its own queue or topic). QRT_BENCH_QRT_ONLY=1
    // skips it (for profiling qrt alone).
    if (std::getenv("QRT_BENCH_QRT_ONLY") != nullptr) return 0;
    // peer_cpu_share: the peer's CPU over the whole SDK run (its start-up included), a lower
    // bound on its share while the SDK works.
    const auto sdk_peer_cpu0 = qrt::bench::process_cpu_time(peer.pid());
    const auto s0 = std::chrono::steady_clock::now();
    std::vector<std::string> sdk_args{std::to_string(peer.port()), sdk_entity.name,
                                      std::to_string(count), std::to_string(size)};
    sdk_args.insert(sdk_args.end(), sdk_entity.subscriptions.begin(),
                    sdk_entity.subscriptions.end());
    std::string sdk = qrt::test::run_sdk_script("sdk-bench.js", sdk_args);
    const double sdk_peer_share =
        (qrt::bench::process_cpu_time(peer.pid()) - sdk_peer_cpu0).total_us() / 1e6 /
        secs(s0, std::chrono::steady_clock::now());
    if (const auto brace = sdk.rfind('}'); brace != std::string::npos) {
      char extra[64];
      std::snprintf(extra, sizeof extra, ",\"peer_cpu_share\":%.2f", sdk_peer_share);
      sdk.insert(brace, extra);
    }
    std::cout << sdk << std::flush;
    const auto expected = static_cast<double>(count * sdk_entity.read_from().size());
    if (json_number(sdk, "received") != expected) {
      throw std::runtime_error("the SDK got back fewer messages than it sent (counts above)");
    }
    const double sdk_send = json_number(sdk, "send_user_us") + json_number(sdk, "send_system_us");
    const double sdk_receive =
        json_number(sdk, "receive_user_us") + json_number(sdk, "receive_system_us");
    std::printf("{\"qrt_over_sdk\":{\"send\":%.3f,\"receive_complete\":%.3f}}\n",
                qrt_cpu.send_us / sdk_send, qrt_cpu.receive_us / sdk_receive);
  } catch (const std::exception& e) {
    std::cerr << "bench failed: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
