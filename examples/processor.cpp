// A processor: handlers run with bounded concurrency, locks are renewed while they run, a
// failure is retried by redelivery and a poison message ends in the dead-letter queue, and
// shutdown is graceful.
#include <atomic>
#include <future>
#include <iostream>
#include <qrt/memory.hpp>
#include <qrt/processor.hpp>
#include <qrt/runtime.hpp>

using namespace std::chrono_literals;

int main() {
  qrt::runtime rt(qrt::runtime_configuration::for_low_resource());  // 2 worker threads
  auto provider =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(provider);
  const auto orders = qrt::queue_name::from("orders");
  rt.block_on(client.create_queue(orders, {.lock_duration = 5s})).value();
  for (int i = 0; i < 20; ++i) {
    rt.block_on(client.send(orders, {.body = "order-" + std::to_string(i)})).value();
  }
  rt.block_on(client.send(orders, {.body = "poison"})).value();

  std::atomic<int> handled{0};
  std::atomic<bool> poison_given_up{false}, signalled{false};
  std::promise<void> all_done;
  auto maybe_done = [&] {
    if (handled == 20 && poison_given_up && !signalled.exchange(true)) all_done.set_value();
  };
  auto options = qrt::processor_options::for_low_latency();  // 4 handlers, prefetch 1
  options.max_delivery_count = 3;                            // poison after 3 failed tries
  options.receive_wait = 100ms;
  qrt::processor processor(
      client, orders,
      [&](const qrt::received_message& m) -> qrt::awaitable<qrt::result<void>> {
        if (m.body == "poison") {
          if (m.delivery_count == 3) poison_given_up = true;  // its last try
          maybe_done();
          co_return qrt::fail(qrt::errc::timeout, "payment service did not answer");
        }
        ++handled;
        maybe_done();
        co_return qrt::result<void>{};
      },
      options);
  processor.start(rt.executor());

  if (all_done.get_future().wait_for(30s) != std::future_status::ready) {
    std::cerr << "timed out\n";
    return 1;
  }
  auto report = rt.block_on(processor.stop(5s));
  auto stats = processor.stats();
  std::cout << "handled " << handled << ", completed " << stats.completed << ", dead-lettered "
            << stats.dead_lettered << ", abandoned at shutdown "
            << report.abandoned_buffered + report.abandoned_running << '\n';

  auto dlq = rt.block_on(client.receive(orders.dead_letter(), 10, 0ms)).value();
  for (auto& m : dlq) {
    std::cout << "DLQ: " << m.body << " (" << m.dead_letter->reason << ": "
              << m.dead_letter->description << ")\n";
  }
  return stats.completed == 20 && dlq.size() == 1 ? 0 : 1;
}
