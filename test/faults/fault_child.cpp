// The process the persisted-provider fault scenario SIGKILLs: a producer sending continuously
// and a qrt::processor at concurrency 16, on a persisted embedded provider (durability=always).
// It reports on stdout, one write() per line, what the ledger needs:
//   "READY"    the provider is open (the log replayed)
//   "S <id>"   a send the provider acknowledged
//   "H <id>"   a handler started on the message
//   "C <id>"   a complete the provider acknowledged
//   "DRAINED"  (drain mode) the queue is empty and every handler is done
//
//   qrt_fault_child DIR RUN run|drain
// run: produce and process until killed. drain: no producer; exit 0 once the queue is empty.
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <qrt/memory.hpp>
#include <qrt/processor.hpp>
#include <qrt/qrt.hpp>
#include <qrt/runtime.hpp>
#include <string>
#include <thread>

#include "ledger.hpp"

namespace {

void report(const char* kind, const std::string& id = {}) {
  const std::string line = std::string(kind) + (id.empty() ? "" : " " + id) + "\n";
  if (::write(STDOUT_FILENO, line.data(), line.size()) < 0) std::_Exit(3);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DIR RUN run|drain\n", argv[0]);
    return 2;
  }
  const std::string run = argv[2];
  const bool drain = std::string(argv[3]) == "drain";

  qrt::runtime rt(qrt::runtime_configuration{.worker_threads = 2});
  qrt::memory::options o;
  o.enable_persistence = true;
  o.persistence_path = argv[1];
  o.durability_mode = qrt::memory::durability::always;
  o.max_queue_size = 400;  // the producer waits on backpressure instead of piling up a backlog
  auto memory = qrt::memory::make_provider(o, rt.executor());
  if (!memory) {
    std::fprintf(stderr, "open failed: %s\n", memory.error().message.c_str());
    return 1;
  }
  report("READY");
  auto recorded = qrt::faults::record_completions(
      *memory, [](const std::string& id, const std::string&) { report("C", id); });
  qrt::queue_client client(recorded);
  const auto queue = qrt::queue_name::from("ledger");
  qrt::queue_options qo;
  qo.max_delivery_count = 0;  // never dead-letter: every message stays countable
  qo.lock_duration = std::chrono::seconds(5);
  if (auto r = rt.block_on(client.create_queue(queue, qo)); !r) {
    std::fprintf(stderr, "create_queue failed: %s\n", r.error().message.c_str());
    return 1;
  }

  qrt::processor_options po;
  po.max_concurrent_calls = 16;
  po.receive_wait = std::chrono::milliseconds(200);
  qrt::processor processor(
      client, queue,
      [](const qrt::received_message& m) -> qrt::awaitable<qrt::result<void>> {
        report("H", m.body);
        // A little work, so messages are in flight when the kill lands.
        boost::asio::steady_timer work(co_await boost::asio::this_coro::executor,
                                       std::chrono::milliseconds(2));
        co_await work.async_wait(boost::asio::use_awaitable);
        co_return qrt::result<void>{};
      },
      po);
  processor.start(rt.executor());

  if (!drain) {
    std::atomic<bool> forever{true};
    boost::asio::co_spawn(
        rt.executor(),
        [&]() -> qrt::awaitable<void> {
          for (std::uint64_t n = 0; forever; n += 4) {
            std::vector<qrt::message> batch;
            for (std::uint64_t k = 0; k < 4; ++k)
              batch.push_back(qrt::message{.body = run + "-" + std::to_string(n + k)});
            auto outcomes = co_await client.send_batch(queue, batch);
            if (!outcomes) continue;  // nothing acknowledged; new ids next time
            for (std::size_t k = 0; k < outcomes->size(); ++k)
              if ((*outcomes)[k]) report("S", batch[k].body);
          }
        },
        boost::asio::detached);
    for (;;) ::pause();  // until SIGKILL
  }

  // Drain: wait until nothing is left, then stop cleanly.
  for (;;) {
    auto s = rt.block_on(client.stats(queue));
    const auto p = processor.stats();
    if (s && s->active == 0 && s->in_flight == 0 && s->scheduled == 0 && p.in_flight == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling a queue, not a test
  }
  rt.block_on(processor.stop(std::chrono::seconds(10)));
  report("DRAINED");
  return 0;
}
