// Adaptive batch sizing: the batch size follows how long messages take, aiming at a target
// batch duration.
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <iostream>
#include <qrt/adaptive_batch.hpp>
#include <qrt/memory.hpp>
#include <qrt/runtime.hpp>

using namespace std::chrono_literals;

int main() {
  qrt::runtime rt;
  auto provider =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(provider);
  const auto q = qrt::queue_name::from("thumbnails");
  rt.block_on(client.create_queue(q)).value();
  rt.block_on(client.send_batch(q, std::vector<qrt::message>(60, {.body = "image"}))).value();

  qrt::adaptive_batch_processor processor(
      client, q,
      [](const qrt::received_message&) -> qrt::awaitable<qrt::result<void>> {
        boost::asio::steady_timer work(co_await boost::asio::this_coro::executor, 2ms);
        co_await work.async_wait(boost::asio::use_awaitable);
        co_return qrt::result<void>{};
      },
      {.min_batch_size = 1, .max_batch_size = 32, .target_batch_duration = 20ms}, 0ms);
  std::size_t total = 0;
  std::cout << "batch sizes:";
  for (;;) {
    auto n = rt.block_on(processor.process_batch()).value();
    if (n == 0) break;
    total += n;
    std::cout << ' ' << n;
  }
  std::cout << "\nprocessed " << total << '\n';
  return total == 60 ? 0 : 1;
}
