// A processor whose concurrency follows the queue's depth: one handler per 25 waiting messages,
// between 1 and 16, changed while it runs (processor::set_max_concurrent_calls) rather than by
// stopping it and building a new one, which would give its prefetched messages back and start
// its stats again. Two bursts of work arrive; the processor grows for each and shrinks between.
#include <algorithm>
#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <iostream>
#include <qrt/memory.hpp>
#include <qrt/processor.hpp>
#include <qrt/runtime.hpp>
#include <thread>

using namespace std::chrono_literals;

namespace {

// The scaling policy, kept apart from the mechanics: how many handlers for this many waiting
// messages.
struct scaling_policy {
  std::size_t min_handlers = 1;
  std::size_t max_handlers = 16;
  std::int64_t messages_per_handler = 25;

  std::size_t handlers_for(std::int64_t waiting) const {
    const auto wanted = (std::max<std::int64_t>(waiting, 0) + messages_per_handler - 1) /
                        messages_per_handler;  // rounded up: 1 waiting message wants 1 handler
    return std::clamp(static_cast<std::size_t>(wanted), min_handlers, max_handlers);
  }
};

}  // namespace

int main() {
  qrt::runtime rt({.worker_threads = 4});
  auto provider =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(provider);
  const auto jobs = qrt::queue_name::from("jobs");
  rt.block_on(client.create_queue(jobs, {.lock_duration = 10s})).value();
  auto send_burst = [&](int n) {
    for (int i = 0; i < n; ++i) rt.block_on(client.send(jobs, {.body = "job"})).value();
  };

  std::atomic<int> handled{0};
  qrt::processor processor(client, jobs,
                           [&](const qrt::received_message&) -> qrt::awaitable<qrt::result<void>> {
                             // A job that waits on I/O for 5 ms: more handlers finish a backlog
                             // sooner.
                             boost::asio::steady_timer io(co_await boost::asio::this_coro::executor,
                                                          5ms);
                             co_await io.async_wait(boost::asio::use_awaitable);
                             ++handled;
                             co_return qrt::result<void>{};
                           },
                           {.max_concurrent_calls = 1, .prefetch_count = 4, .receive_wait = 50ms});
  processor.start(rt.executor());

  const scaling_policy policy;
  constexpr int burst = 400;
  int sent = 0;
  bool scaled_down_between_bursts = false;
  const auto give_up_at = std::chrono::steady_clock::now() + 60s;
  // The control loop: read the depth, apply the policy, tell the processor when it changes.
  while (std::chrono::steady_clock::now() < give_up_at) {
    if (sent == 0 || (sent == burst && scaled_down_between_bursts)) {
      send_burst(burst);
      sent += burst;
      std::cout << "burst of " << burst << " messages sent\n";
    }
    const auto depth = rt.block_on(client.stats(jobs)).value();
    const auto limit = processor.stats().max_concurrent_calls;
    const auto wanted = policy.handlers_for(depth.active);
    if (wanted != limit) {
      processor.set_max_concurrent_calls(wanted);
      std::cout << "depth " << depth.active << ": handlers " << limit << " -> " << wanted << '\n';
      if (sent == burst && wanted == policy.min_handlers) scaled_down_between_bursts = true;
    }
    if (sent == 2 * burst && handled == sent && wanted == policy.min_handlers) break;
    std::this_thread::sleep_for(20ms);  // the interval between two readings of the depth
  }

  rt.block_on(processor.stop(5s));
  const auto stats = processor.stats();
  std::cout << "handled " << handled << " of " << sent << ", at most " << stats.max_in_flight
            << " handlers at once, " << stats.max_concurrent_calls << " allowed at the end\n";
  const bool ok = handled == 2 * burst && stats.completed == 2u * burst &&
                  stats.max_in_flight > 1 && stats.max_concurrent_calls == policy.min_handlers;
  return ok ? 0 : 1;
}
