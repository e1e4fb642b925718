// Per-key order with keys in parallel: each account's events are handled in the order they were
// sent, while different accounts are handled at the same time. Every event carries the session
// its account hashes to (session_id::for_shard), and a processor with order_by_session runs one
// message per session at a time and sessions concurrently. A failed event goes back to the
// queue with the later events of its session, so none of them overtakes it. The same program
// keeps order on an SQS FIFO queue, where a session is a message group.
#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <qrt/memory.hpp>
#include <qrt/processor.hpp>
#include <qrt/runtime.hpp>

using namespace std::chrono_literals;

int main() {
  constexpr int accounts = 12;
  constexpr int events_per_account = 20;
  constexpr std::uint32_t shards = 4;

  qrt::runtime rt(qrt::runtime_configuration::for_low_resource());  // 2 worker threads
  auto provider =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(provider);
  const auto events = qrt::queue_name::from("account-events");
  rt.block_on(client.create_queue(events, {.lock_duration = 10s})).value();
  for (int n = 0; n < events_per_account; ++n) {
    std::vector<qrt::message> batch;
    for (int a = 0; a < accounts; ++a) {
      const std::string account = "account-" + std::to_string(a);
      qrt::message event{.body = std::to_string(n)};
      event.attributes["account"] = account;
      event.session = qrt::session_id::for_shard(account, shards);
      batch.push_back(std::move(event));
    }
    for (auto& outcome : rt.block_on(client.send_batch(events, std::move(batch))).value()) {
      outcome.value();
    }
  }

  std::mutex mutex;
  std::map<std::string, int> next_expected;  // per account: the event that must come next
  int out_of_order = 0;
  std::atomic<int> handled{0};
  std::promise<void> all_handled;
  auto options = qrt::processor_options::for_high_throughput();
  options.max_concurrent_calls = 8;
  options.order_by_session = true;
  options.receive_wait = 100ms;
  qrt::processor processor(
      client, events,
      [&](const qrt::received_message& m) -> qrt::awaitable<qrt::result<void>> {
        const std::string& account = m.attributes.at("account");
        const int n = std::stoi(m.body);
        {
          std::lock_guard lock(mutex);
          if (n != next_expected[account]) ++out_of_order;
        }
        // The ledger is briefly unavailable for one event: it fails on its first delivery.
        if (account == "account-3" && n == 5 && m.delivery_count == 1) {
          co_return qrt::fail(qrt::errc::timeout, "ledger did not answer");
        }
        // Work that takes a moment, so that handlers of different sessions overlap.
        boost::asio::steady_timer work(co_await boost::asio::this_coro::executor, 1ms);
        co_await work.async_wait(boost::asio::use_awaitable);
        {
          std::lock_guard lock(mutex);
          next_expected[account] = n + 1;
        }
        if (++handled == accounts * events_per_account) all_handled.set_value();
        co_return qrt::result<void>{};
      },
      options);
  processor.start(rt.executor());

  if (all_handled.get_future().wait_for(60s) != std::future_status::ready) {
    std::cerr << "timed out with " << handled << " events handled\n";
    return 1;
  }
  (void)rt.block_on(processor.stop(5s));
  const auto stats = processor.stats();
  std::cout << handled << " events of " << accounts << " accounts over " << shards
            << " sessions: " << out_of_order << " out of order, at most " << stats.max_in_flight
            << " handlers at once, " << stats.abandoned << " failed and retried, "
            << stats.released_unstarted << " later events held back with it\n";
  return out_of_order == 0 && stats.max_in_flight > 1 && stats.abandoned == 1 ? 0 : 1;
}
