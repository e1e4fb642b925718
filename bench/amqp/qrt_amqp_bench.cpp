// qrt's generic AMQP provider on RabbitMQ, one half of a side-by-side measurement with rhea (an
// independent pure-JavaScript AMQP 1.0 client, rhea_bench.mjs) on the same broker: send COUNT
// messages of SIZE bytes in batches of 100 (each batch's outcomes awaited before the next), then
// receive 50 at a time (prefetch 50) and complete each batch. Prints one JSON line: messages/s
// and this process's user and system CPU time per message, for each phase.
// A program, not a test: bench/amqp/run.sh starts the broker and runs both clients.
//   qrt_amqp_bench PORT [COUNT=20000] [SIZE=256]
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <qrt/amqp.hpp>
#include <qrt/bench/process_cpu.hpp>
#include <qrt/client.hpp>
#include <qrt/config.hpp>
#include <qrt/registry.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

struct phase {
  double seconds = 0;
  qrt::bench::cpu_time cpu;
};

/// Runs `op` to completion on `io` (run by another thread) and returns its wall and CPU time
/// (the whole process's: the calling thread only waits).
template <class Op>
phase measure(boost::asio::io_context& io, Op op) {
  const auto cpu0 = qrt::bench::self_cpu_time();
  const auto t0 = std::chrono::steady_clock::now();
  boost::asio::co_spawn(io, std::move(op), boost::asio::use_future).get();  // rethrows
  return {std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
          qrt::bench::self_cpu_time() - cpu0};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: qrt_amqp_bench PORT [COUNT=20000] [SIZE=256]\n";
    return 2;
  }
  const std::string port = argv[1];
  const std::size_t count = argc > 2 ? std::stoul(argv[2]) : 20'000;
  const std::size_t size = argc > 3 ? std::stoul(argv[3]) : 256;
  try {
    qrt::provider_registry registry;
    qrt::amqp::register_provider(registry);
    // The connection keeps work on the io_context between phases, so it runs on its own
    // thread until the end rather than once per phase.
    boost::asio::io_context io;
    const auto work = boost::asio::make_work_guard(io);
    std::jthread io_thread([&io] { io.run(); });
    struct stop_at_exit {  // destroyed before io_thread joins, also when a phase throws
      boost::asio::io_context& io;
      ~stop_at_exit() { io.stop(); }
    } stopper{io};
    const auto cfg =
        qrt::config::from_pairs({"provider=amqp", "broker=rabbitmq", "host=127.0.0.1",
                                 "port=" + port, "user=guest", "password=guest", "prefetch=50"})
            .value();
    qrt::queue_client client(registry.make(cfg, io.get_executor()).value());
    // Named locals, not temporaries: the coroutines below read them after this statement.
    const auto queue = qrt::queue_name::from("bench-qrt");
    const auto peer_queue = qrt::queue_name::from("bench-rhea");  // rhea attaches, cannot declare

    // Results are kept in named locals: GCC 12 mishandles temporaries inside co_await
    // expressions.
    measure(io, [&]() -> qrt::awaitable<void> {
      auto created = co_await client.create_queue(queue);
      created.value();
      auto peer_created = co_await client.create_queue(peer_queue);
      peer_created.value();
      // Warm-up: connection and links, as the other client warms up too.
      qrt::message warm_up{.body = "warm-up"};
      auto sent = co_await client.send(queue, std::move(warm_up));
      (void)sent.value();
      auto warm = co_await client.receive(queue, 1, 5s);
      for (auto& m : warm.value()) {
        auto completed = co_await client.complete(m.receipt);
        completed.value();
      }
    });

    const std::string body(size, 'x');
    const phase send = measure(io, [&]() -> qrt::awaitable<void> {
      for (std::size_t sent = 0; sent < count;) {
        std::vector<qrt::message> batch;
        for (; batch.size() < 100 && sent < count; ++sent) batch.push_back({.body = body});
        auto outcomes = co_await client.send_batch(queue, std::move(batch));
        for (auto& outcome : outcomes.value()) (void)outcome.value();
      }
    });
    std::size_t received = 0;
    const phase receive = measure(io, [&]() -> qrt::awaitable<void> {
      while (received < count) {
        auto got = co_await client.receive(queue, 50, 5s);
        if (got.value().empty()) throw std::runtime_error("no message for 5 s");
        std::vector<qrt::settlement> done;
        for (auto& m : *got) done.push_back(qrt::settlement::complete(m.receipt));
        auto settled = co_await client.settle(std::move(done));
        for (auto& r : settled) r.value();
        received += got->size();
      }
    });
    measure(io, [&]() -> qrt::awaitable<void> { co_await client.close(); });

    const auto per_message = [](double us, std::size_t n) { return us / static_cast<double>(n); };
    std::printf(
        "{\"client\":\"qrt\",\"count\":%zu,\"size\":%zu,\"received\":%zu,"
        "\"send_per_s\":%.0f,\"send_user_us\":%.2f,\"send_system_us\":%.2f,"
        "\"receive_per_s\":%.0f,\"receive_user_us\":%.2f,\"receive_system_us\":%.2f}\n",
        count, size, received, static_cast<double>(count) / send.seconds,
        per_message(send.cpu.user_us, count), per_message(send.cpu.system_us, count),
        static_cast<double>(received) / receive.seconds, per_message(receive.cpu.user_us, received),
        per_message(receive.cpu.system_us, received));
  } catch (const std::exception& e) {
    std::cerr << "qrt_amqp_bench failed: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
