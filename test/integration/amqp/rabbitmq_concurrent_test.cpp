// The amqp provider's reconnect while calls are in flight on several io threads, against a real
// RabbitMQ 3.10 (booted once for this binary). The broker stops and starts again while
// producers and consumers run; each call must end (success or a clear error, never a hang or a
// crash), the provider must reconnect for the calls after, and nothing that was sent may be
// lost. Runs under TSan too (label concurrent).
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <qrt/amqp.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "rabbitmq_server.hpp"
#include "unit/support/wait.hpp"

namespace {

using namespace std::chrono_literals;
using qrt::test::broker;

const auto* const environment =
    ::testing::AddGlobalTestEnvironment(new qrt::test::rabbitmq_environment);  // gtest owns it

qrt::amqp::options rabbit() {
  auto o = qrt::amqp::options::for_rabbitmq();
  o.port = static_cast<std::uint16_t>(broker->amqp_port());
  o.user = "guest";
  o.password = "guest";
  o.prefetch = 10;
  o.connect_timeout = 2s;
  return o;
}

/// What the producers sent and the consumers got, shared by every coroutine.
struct ledger {
  std::mutex mutex;
  std::set<std::string> sent;           // sends that reported success
  std::map<std::string, int> received;  // body -> deliveries
  std::vector<std::string> unexpected;  // errors that are not a dropped connection
  std::atomic<int> failed_calls{0};     // calls that failed because the connection died
  void error(const qrt::error& e, const char* what) {
    if (e.is_transient() || e.code == qrt::errc::receipt_expired) {
      failed_calls.fetch_add(1);
      return;
    }
    std::lock_guard lock(mutex);
    unexpected.push_back(std::string(what) + ": " + e.to_string());
  }
};

TEST(AmqpRabbitmqConcurrent, BrokerDropsConnectionsWhileCallsRunOnSeveralThreads) {
  constexpr int producers = 4;
  constexpr int per_producer = 150;
  constexpr int consumers = 2;

  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  auto made = qrt::amqp::make_provider(rabbit(), io.get_executor());
  ASSERT_TRUE(made) << made.error().to_string();
  auto provider = *made;
  const auto q = qrt::queue_name::from("qrt-reconnect-" + std::to_string(::getpid()));

  ledger book;
  qrt::test::counter progress;  // successful sends
  std::atomic<bool> producing_done{false};

  // Producers send one message at a time; a send that failed is sent again (it may have
  // arrived after all: at-least-once), until it is confirmed.
  auto produce = [&](int p) -> qrt::awaitable<void> {
    for (int i = 0; i < per_producer; ++i) {
      const std::string body = std::to_string(p) + ":" + std::to_string(i);
      // Bounded by time, not attempts: while the broker is stopped every attempt fails fast.
      const auto give_up = std::chrono::steady_clock::now() + 90s;
      while (std::chrono::steady_clock::now() < give_up) {
        std::vector<qrt::message> one(1);
        one[0].body = body;
        auto r = co_await provider->send(q, std::move(one), 10s);
        if (r && r->at(0)) {
          {
            std::lock_guard lock(book.mutex);
            book.sent.insert(body);
          }
          progress.add();
          break;
        }
        book.error(r ? r->at(0).error() : r.error(), "send");
      }
    }
  };
  auto consume = [&]() -> qrt::awaitable<void> {
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto got = co_await provider->receive(q, 10, 500ms);
      if (!got) {
        book.error(got.error(), "receive");
        continue;
      }
      if (got->empty() && producing_done.load()) {
        std::lock_guard lock(book.mutex);
        bool all = true;
        for (const auto& b : book.sent) all = all && book.received.count(b) > 0;
        if (all) co_return;
      }
      std::vector<qrt::settlement> acks;
      {
        std::lock_guard lock(book.mutex);
        for (const auto& m : *got) {
          ++book.received[m.body];
          acks.push_back(qrt::settlement::complete(m.receipt));
        }
      }
      auto settled = co_await provider->settle(std::move(acks));
      for (auto& r : settled) {
        if (!r) book.error(r.error(), "complete");
      }
    }
  };

  // Everything the coroutines touch is declared above: a failed ASSERT below returns early, and
  // the io threads must be stopped and joined before any of it is destroyed (and so the failure
  // is reported instead of std::terminate on a joinable thread).
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back([&io] { io.run(); });
  struct stop_and_join {
    boost::asio::io_context& io;
    std::vector<std::thread>& threads;
    ~stop_and_join() {
      io.stop();
      for (auto& t : threads) {
        if (t.joinable()) t.join();
      }
    }
  } joiner{io, threads};

  auto created = boost::asio::co_spawn(io, provider->create_queue(q, {}), boost::asio::use_future);
  ASSERT_EQ(created.wait_for(60s), std::future_status::ready);
  const auto queue_made = created.get();
  ASSERT_TRUE(queue_made) << queue_made.error().to_string();

  std::vector<std::future<void>> running;
  for (int c = 0; c < consumers; ++c) {
    running.push_back(boost::asio::co_spawn(io, consume(), boost::asio::use_future));
  }
  std::vector<std::future<void>> sending;
  for (int p = 0; p < producers; ++p) {
    sending.push_back(boost::asio::co_spawn(io, produce(p), boost::asio::use_future));
  }

  // Once a third of the messages went out, the broker closes every client connection while
  // the producers and consumers are still calling.
  constexpr long total = producers * per_producer;
  ASSERT_TRUE(progress.wait_for_at_least(total / 3, 60s)) << "the producers made no progress";
  const long before_drop = progress.value();
  // RabbitMQ 3.10 does not list AMQP 1.0 connections, so close_all_connections cannot reach
  // them: stopping the broker's application closes every connection (and refuses new ones
  // until it starts again), which is the harder case.
  broker->ctl({"stop_app"});
  broker->ctl({"start_app"});

  for (auto& f : sending) {
    ASSERT_EQ(f.wait_for(120s), std::future_status::ready) << "a producer hung";
    f.get();
  }
  producing_done = true;
  for (auto& f : running) {
    ASSERT_EQ(f.wait_for(150s), std::future_status::ready) << "a consumer hung";
    f.get();
  }

  auto closed = boost::asio::co_spawn(io, provider->close(), boost::asio::use_future);
  ASSERT_EQ(closed.wait_for(60s), std::future_status::ready);
  guard.reset();
  for (auto& t : threads) t.join();

  std::lock_guard lock(book.mutex);
  EXPECT_TRUE(book.unexpected.empty())
      << book.unexpected.size() << " unexpected errors; first: " << book.unexpected.front();
  EXPECT_EQ(static_cast<long>(book.sent.size()), total) << "sends that never succeeded";
  EXPECT_GT(progress.value(), before_drop) << "nothing was sent after the connections dropped";
  EXPECT_GT(book.failed_calls.load(), 0)
      << "no call saw the connection drop: the test did not exercise a reconnect";
  for (const auto& b : book.sent) EXPECT_GT(book.received.count(b), 0u) << "lost: " << b;
  for (const auto& [body, n] : book.received) {
    EXPECT_TRUE(book.sent.count(body)) << "received a message nobody sent: " << body;
  }
}

}  // namespace
