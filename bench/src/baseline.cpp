// The ceiling for the embedded provider: a raw lock-free queue moving the same qrt::message
// payloads, with the same producer/consumer counts and batch sizes, and the same end-to-end
// latency measurement (send time in the body -> consumer). No locks, no receipts, no
// settlement: whatever the provider adds on top of this is its cost.
#include <concurrentqueue/concurrentqueue.h>

#include <atomic>
#include <qrt/bench/harness.hpp>
#include <qrt/message.hpp>
#include <thread>

namespace qrt::bench {

baseline_result run_baseline(const bench_options& o) {
  using steady = std::chrono::steady_clock;
  const std::uint64_t total = o.messages;
  moodycamel::ConcurrentQueue<message> queue;
  std::atomic<std::uint64_t> claimed{0};
  std::atomic<std::uint64_t> received{0};
  std::vector<latency_histogram> e2e(o.consumers);
  const double per_producer_rate = o.rate > 0 ? o.rate / static_cast<double>(o.producers) : 0;

  const double cpu_before = resource_usage::now().cpu_s;
  const auto start = steady::now();
  std::vector<std::thread> threads;
  for (std::size_t c = 0; c < o.consumers; ++c) {
    threads.emplace_back([&, c] {
      moodycamel::ConsumerToken token(queue);
      std::vector<message> batch(o.receive_batch);
      while (received.load(std::memory_order_relaxed) < total) {
        const auto n = queue.try_dequeue_bulk(token, batch.begin(), batch.size());
        if (n == 0) {
          std::this_thread::yield();
          continue;
        }
        // As qrt's consumer does: one clock read per batch while handlers cost nothing.
        const auto received_at = steady::now();
        for (std::size_t i = 0; i < n; ++i) {
          const auto handler_start = o.handler_cost.count() > 0 ? steady::now() : received_at;
          if (auto sent_at = read_send_time(batch[i].body)) e2e[c].record(handler_start - *sent_at);
          burn_cpu(o.handler_cost);
        }
        received.fetch_add(n, std::memory_order_relaxed);
      }
    });
  }
  for (std::size_t p = 0; p < o.producers; ++p) {
    threads.emplace_back([&] {
      moodycamel::ProducerToken token(queue);
      std::uint64_t mine = 0;
      for (;;) {
        const auto first = claimed.fetch_add(o.send_batch);
        if (first >= total) break;
        const auto n =
            static_cast<std::size_t>(std::min<std::uint64_t>(o.send_batch, total - first));
        if (per_producer_rate > 0) {
          std::this_thread::sleep_until(
              start + std::chrono::duration_cast<steady::duration>(
                          std::chrono::duration<double>(mine / per_producer_rate)));
        }
        std::vector<message> batch(n);
        const auto now = steady::now();
        for (auto& m : batch) m.body = make_body(o.message_size, now);
        queue.enqueue_bulk(token, std::make_move_iterator(batch.begin()), n);
        mine += n;
      }
    });
  }
  for (auto& t : threads) t.join();
  const auto wall = std::chrono::duration<double>(steady::now() - start).count();
  const double cpu = resource_usage::now().cpu_s - cpu_before;

  latency_histogram all;
  for (auto& h : e2e) all.merge(h);
  baseline_result out;
  out.messages = received.load();
  out.wall_s = wall;
  out.throughput = wall > 0 ? out.messages / wall : 0;
  out.e2e = latency_summary::of(all);
  out.cpu_s = cpu;
  out.cpu_s_per_message = out.messages ? cpu / static_cast<double>(out.messages) : 0;
  return out;
}

}  // namespace qrt::bench
