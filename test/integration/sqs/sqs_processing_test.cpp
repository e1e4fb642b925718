// qrt::processor on an SQS FIFO queue (fauxqs): keys sharded over message groups
// (session_id::for_shard) are processed in parallel across groups and in order within each
// key, while handlers fail and their messages come back. fauxqs hands out one message per group
// per receive, so here the emulator alone keeps a group in order; SQS hands out up to ten of a
// group at once, and that case (order_by_session holding the later ones back, and sending them
// back behind a failure) is Processor.OrderBySessionKeepsEachSessionInOrderAndRunsSessions-
// Concurrently on the embedded provider, which hands out a session's messages together.
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <map>
#include <mutex>
#include <qrt/processor.hpp>
#include <qrt/runtime.hpp>
#include <set>

#include "../../unit/support/wait.hpp"
#include "sqs_fixture.hpp"

using namespace qrt;
using namespace std::chrono_literals;

class SqsProcessing : public qrt::test::sqs_fixture {};

TEST_F(SqsProcessing, KeysShardedOverFifoGroupsRunInParallelAndEachKeyInOrder) {
  constexpr int keys = 12, per_key = 6;
  constexpr std::uint32_t shards = 4;
  auto q = create("sharded", {.lock_duration = 30s}, true);
  std::vector<message> batch;
  std::set<std::string> groups;
  for (int i = 0; i < per_key; ++i) {
    for (int k = 0; k < keys; ++k) {
      const auto key = "customer-" + std::to_string(k);
      message m;
      m.body = key + "/" + std::to_string(i);
      m.session = session_id::for_shard(key, shards);
      groups.insert(m.session->str());
      batch.push_back(std::move(m));
    }
  }
  ASSERT_GE(groups.size(), 2u) << "the keys must land on more than one group";
  ASSERT_TRUE(run(provider_->send(q, batch, 10s)));

  qrt::runtime rt({.worker_threads = 4});
  auto sqs_provider = sqs::make_provider(default_options(), rt.executor());
  ASSERT_TRUE(sqs_provider) << sqs_provider.error().to_string();
  queue_client client(*sqs_provider);

  std::mutex m;
  std::condition_variable two_entered;
  std::set<std::string> entered;                 // groups seen in a handler
  std::map<std::string, int> running;            // per group, handlers running now
  int most_running_in_one_group = 0;             // must stay 1
  std::map<std::string, std::vector<int>> done;  // per key, in completion order
  std::set<std::string> failed_once;
  qrt::test::counter completed;
  processor_options options{.max_concurrent_calls = 8, .prefetch_count = 10};
  options.receive_wait = 1s;
  options.order_by_session = true;
  options.on_processed = [&](const processed_message& p) {
    if (p.outcome == processing_outcome::completed) completed.add();
  };
  processor p(
      client, q,
      [&](const received_message& msg) -> awaitable<result<void>> {
        const auto group = msg.session->str();
        const auto slash = msg.body.find('/');
        const auto key = msg.body.substr(0, slash);
        const int index = std::stoi(msg.body.substr(slash + 1));
        {
          std::unique_lock lock(m);
          most_running_in_one_group = std::max(most_running_in_one_group, ++running[group]);
          // Hold the first handlers until two groups are in a handler at once: proof that
          // groups are processed in parallel.
          entered.insert(group);
          two_entered.notify_all();
          two_entered.wait_for(lock, 10s, [&] { return entered.size() >= 2; });
        }
        boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 1ms);
        co_await t.async_wait(boost::asio::use_awaitable);
        std::lock_guard lock(m);
        --running[group];
        if (index == 2 && failed_once.insert(msg.body).second) {
          co_return fail(errc::timeout, "injected handler failure");
        }
        done[key].push_back(index);
        co_return result<void>{};
      },
      options);
  p.start(rt.executor());
  ASSERT_TRUE(completed.wait_for_at_least(keys * per_key, 60s));
  rt.block_on(p.stop(5s));
  rt.block_on(client.close());

  std::lock_guard lock(m);
  EXPECT_GE(entered.size(), 2u);
  EXPECT_EQ(most_running_in_one_group, 1);
  std::vector<int> in_order(per_key);
  for (int i = 0; i < per_key; ++i) in_order[i] = i;
  for (int k = 0; k < keys; ++k) EXPECT_EQ(done["customer-" + std::to_string(k)], in_order) << k;
  EXPECT_EQ(p.stats().abandoned, static_cast<std::uint64_t>(keys)) << "each key's 2 failed once";
  EXPECT_GE(p.stats().max_in_flight, 2u);
  auto left = run(provider_->stats(q));
  ASSERT_TRUE(left) << left.error().to_string();
  EXPECT_EQ(left->active, 0);
  EXPECT_EQ(left->in_flight, 0);
  EXPECT_LE(left->dead_lettered, 0) << "nothing was dead-lettered (-1: not reported)";
}
