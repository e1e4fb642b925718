// Fault scenarios on the embedded provider, in process, with the ledger (ledger.hpp):
//  - a throttling storm: half of all calls answered "throttled" by the fault-injecting
//    decorator; everything gets through, and the retries show in queue_runtime_retries_total;
//  - a slow consumer under a 10x faster producer, with the provider's byte budget
//    (max_memory_bytes): sends wait and then fail with queue_full, the accounted bytes never
//    exceed the budget, and every acknowledged send is handled.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <future>
#include <iostream>
#include <qrt/fault_injection.hpp>
#include <qrt/memory.hpp>
#include <qrt/metrics.hpp>
#include <qrt/processor.hpp>
#include <qrt/qrt.hpp>
#include <qrt/runtime.hpp>

#include "ledger.hpp"
#include "providers/memory/memory_provider.hpp"
#include "workload.hpp"

namespace qrt::faults {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

const auto queue = queue_name::from("ledger");

awaitable<void> pause_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

TEST(FaultMemory, ThrottlingStormOnHalfOfAllCallsLosesNothingAndCountsTheRetries) {
  throttling_storm_scenario("memory", [](runtime& rt) {
    return memory::make_provider(memory::options{}, rt.executor()).value();
  });
}

TEST(FaultMemory, SlowConsumerAndTenTimesFasterProducerStayWithinTheByteBudget) {
  const auto before = process_resources::baseline();
  ledger book;
  std::atomic<std::size_t> refused_full = 0, refused_other = 0;
  double offered_seconds = 0;
  memory::detail::byte_usage usage;
  constexpr std::size_t body_bytes = 1024;
  memory::options mo;
  // 64 messages' worth (each counts qrt's bookkeeping too), queue and DLQ together.
  mo.max_memory_bytes = 64 * (body_bytes + memory::stored_message_overhead_bytes);
  {
    runtime rt(runtime_configuration{.worker_threads = 4});
    auto memory = memory::make_provider(mo, rt.executor()).value();
    // Bodies are the id padded with dots to body_bytes: the ledger counts the id.
    auto id_of = [](const std::string& body) { return body.substr(0, body.find('.')); };
    auto recorded =
        record_completions(memory, [&](const std::string& body, const std::string& message_id) {
          book.completed(id_of(body), message_id);
        });
    queue_client client(recorded);
    queue_options qo;
    qo.max_delivery_count = 0;
    ASSERT_TRUE(rt.block_on(client.create_queue(queue, qo)));

    // The handler takes 20 ms: 16 at a time make 800 messages/s at most.
    processor_options po;
    po.max_concurrent_calls = 16;
    po.receive_wait = 200ms;
    processor proc(
        client, queue,
        [&](const received_message& m) -> awaitable<result<void>> {
          book.handled(id_of(m.body), m.id);
          co_await pause_for(20ms);
          co_return result<void>{};
        },
        po);
    proc.start(rt.executor());

    // The producer offers a batch of 8 messages every millisecond (8000/s, 10x what the
    // handlers take) for 3 seconds, without waiting for earlier batches: a send that meets the
    // budget waits at most 5 ms for room, then its messages fail with queue_full.
    auto send_batch = [&](int first) -> awaitable<void> {
      std::vector<message> batch;
      std::vector<std::string> ids;
      for (int k = 0; k < 8; ++k) {
        ids.push_back("m" + std::to_string(first + k));
        batch.push_back(message{.body = ids.back()});
        batch.back().body.resize(body_bytes, '.');
        book.sent();
      }
      auto outcomes = co_await recorded->send(queue, std::move(batch), 5ms);
      if (!outcomes) {
        refused_other += ids.size();
        co_return;
      }
      for (std::size_t k = 0; k < outcomes->size(); ++k) {
        if ((*outcomes)[k]) {
          book.acknowledged(ids[k]);
        } else if ((*outcomes)[k].error().code == errc::queue_full) {
          EXPECT_NE((*outcomes)[k].error().message.find("max_memory_bytes"), std::string::npos)
              << (*outcomes)[k].error().message;
          ++refused_full;
        } else {
          ++refused_other;
        }
      }
    };
    offered_seconds = offer_batches(rt, send_batch, 1000us, 3s);
    EXPECT_TRUE(book.wait_all_completed(60s)) << book.summary("slow consumer (so far)");
    rt.block_on(proc.stop(10s));
    usage = memory::detail::memory_byte_usage(*memory);
    rt.block_on(client.close());
  }
  const auto c = book.counts();
  std::cout << book.summary("memory slow consumer, producer 10x")
            << " offered_per_s=" << static_cast<long>(c.sent / offered_seconds)
            << " acknowledged_per_s=" << static_cast<long>(c.acknowledged / offered_seconds)
            << " refused_queue_full=" << refused_full.load()
            << " budget_bytes=" << mo.max_memory_bytes << " peak_accounted_bytes=" << usage.peak
            << "\n";
  EXPECT_GT(refused_full.load(), 0u) << "the producer should have met the budget";
  EXPECT_EQ(refused_other.load(), 0u);
  EXPECT_GT(c.acknowledged, 0u);
  EXPECT_EQ(c.lost, 0u);
  EXPECT_EQ(c.resurrected, 0u);
  EXPECT_EQ(c.duplicated, 0u) << "nothing failed, so nothing should come twice";
  EXPECT_LE(usage.peak, mo.max_memory_bytes);
  EXPECT_EQ(usage.used, 0u);
  const auto after = process_resources::settled_to(before);
  EXPECT_EQ(after.threads, before.threads);
  EXPECT_EQ(after.fds, before.fds);
}

}  // namespace
}  // namespace qrt::faults
