// Fault scenarios on the amqp provider against a real RabbitMQ 3.10 node (booted once for this
// binary), with the ledger (ledger.hpp) and a qrt::processor at concurrency 16 while a producer
// sends continuously:
//  - the broker drops every connection twice (RabbitMQ 3.10 does not list AMQP 1.0 connections,
//    so stopping and starting its application is how to drop them; new connections are refused
//    while it is stopped);
//  - the network stalls (a TCP proxy stops forwarding, closing nothing), then resumes.
// The queues are durable: RabbitMQ keeps what it acknowledged, so nothing may be lost.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <cmath>
#include <future>
#include <iostream>
#include <qrt/amqp.hpp>
#include <thread>

#include "ledger.hpp"
#include "rabbitmq_server.hpp"
#include "tcp_proxy.hpp"
#include "workload.hpp"

namespace qrt::faults {
namespace {

using namespace std::chrono_literals;
using test::broker;

const auto* const environment =
    ::testing::AddGlobalTestEnvironment(new test::rabbitmq_environment);  // gtest owns it

provider_ptr amqp_provider(runtime& rt, int port) {
  auto o = amqp::options::for_rabbitmq();
  o.port = static_cast<std::uint16_t>(port);
  o.user = "guest";
  o.password = "guest";
  o.connect_timeout = 2s;
  return amqp::make_provider(o, rt.executor()).value();
}

TEST(FaultAmqp, BrokerDropsEveryConnectionTwiceMidRun) {
  ledger book;
  std::vector<double> recovery;
  std::vector<std::chrono::steady_clock::time_point> drops;
  // [stop_app called, start_app returned] of each drop: the broker's outage as the test saw it.
  std::vector<
      std::pair<std::chrono::steady_clock::time_point, std::chrono::steady_clock::time_point>>
      outages;
  bool confirmed_settlement = true;
  const auto before = process_resources::baseline();
  {
    runtime rt(runtime_configuration{.worker_threads = 4});
    auto provider = amqp_provider(rt, broker->amqp_port());
    confirmed_settlement = provider->caps().confirmed_settlement;
    workload w(rt, provider, fresh_queue("fault-drop"), book);
    for (int drop = 1; drop <= 2; ++drop) {
      ASSERT_TRUE(book.wait_handler_calls(book.handler_calls() + 200, 60s));
      drops.push_back(std::chrono::steady_clock::now());
      broker->ctl({"stop_app"});
      broker->ctl({"start_app"});
      outages.emplace_back(drops.back(), std::chrono::steady_clock::now());
      book.mark_recovery_start();
      ASSERT_TRUE(book.wait_handler_calls(book.handler_calls() + 1, 60s));
      ASSERT_TRUE(book.wait_handler_calls(book.handler_calls() + 100, 60s));
      recovery.push_back(book.recovery_ms());
    }
    w.finish(30s);
    EXPECT_TRUE(w.drained()) << book.summary("drop (so far)");
    std::cout << "processor: completed=" << w.stats().completed
              << " settle_failures=" << w.stats().settle_failures
              << " locks_lost=" << w.stats().locks_lost << "\n";
  }
  const auto after = process_resources::settled_to(before);
  std::cout << "resources before " << before.to_string() << ", after " << after.to_string() << "\n";
  EXPECT_EQ(after.threads, before.threads);
  EXPECT_EQ(after.fds, before.fds);

  const auto c = book.counts();
  const double worst = *std::max_element(recovery.begin(), recovery.end());
  std::cout << book.summary("rabbitmq connections dropped x2", worst)
            << " recovery_ms_each=" << static_cast<long>(recovery[0]) << ","
            << static_cast<long>(recovery[1]) << "\n";
  // Where each resurrected message's complete stood against the drops: RabbitMQ 3.10 refuses
  // rcv-settle-mode second, so the provider settles first (docs/amqp.md) and reports a complete
  // done when it settles it, without the broker confirming it.
  for (const auto& r : book.resurrections()) {
    double nearest = 1e12;
    for (const auto& d : drops) {
      const double ms = std::chrono::duration<double, std::milli>(d - r.completed_at).count();
      if (std::abs(ms) < std::abs(nearest)) nearest = ms;
    }
    // `nearest` is the drop's start minus the complete's acknowledgement.
    std::cout << "resurrected " << r.id << ": its complete was acknowledged "
              << static_cast<long>(std::abs(nearest)) << " ms "
              << (nearest >= 0 ? "before" : "after") << " a drop began\n";
  }
  for (double ms : recovery) EXPECT_GE(ms, 0) << "no message handled after the broker came back";
  if (confirmed_settlement) {
    EXPECT_EQ(c.resurrected, 0u) << "a complete was acknowledged, yet the message came back";
  } else {
    // The provider settles first (docs/contract.md, C12): a complete the broker never got
    // because it was stopping brings the message back, at least once. That may happen only
    // to a complete sent during an outage; one sent while the broker ran must hold.
    std::cout << "unconfirmed completes delivered again: " << c.resurrected << "\n";
    for (const auto& r : book.resurrections()) {
      const bool in_an_outage =
          std::any_of(outages.begin(), outages.end(), [&](const auto& outage) {
            return r.completed_at >= outage.first && r.completed_at <= outage.second;
          });
      EXPECT_TRUE(in_an_outage) << r.id
                                << " came back after a complete sent while the broker was up";
    }
  }
  EXPECT_EQ(c.lost, 0u) << "acknowledged sends never handled";
}

// The stall is 4 s, within the 60 s idle timeout: the connection survives it and the broker
// keeps running, so even a complete nothing confirms arrives and nothing may come back.
TEST(FaultAmqp, NetworkStallThenResumeLosesNothingAndMakesNoFalseCompletes) {
  network_stall_scenario(
      static_cast<unsigned short>(broker->amqp_port()), "rabbitmq network stall 4s", 4s,
      [](runtime& rt, tcp_proxy& proxy) { return amqp_provider(rt, proxy.port()); });
}

// However many calls run at once, the provider speaks over one AMQP connection: a burst of 1000
// concurrent sends opens one socket, counted at a TCP proxy in front of the broker.
// RabbitMQ has no throttled answer to AMQP 1.0 calls: the fault-injecting decorator answers.
TEST(FaultAmqp, ThrottlingStormOnHalfOfAllCallsLosesNothingAndCountsTheRetries) {
  throttling_storm_scenario("amqp",
                            [](runtime& rt) { return amqp_provider(rt, broker->amqp_port()); });
}

TEST(FaultAmqp, SlowConsumerAndTenTimesFasterProducerLoseNothing) {
  slow_consumer_scenario("amqp",
                         [](runtime& rt) { return amqp_provider(rt, broker->amqp_port()); });
}

TEST(FaultAmqp, SequentialCallsReuseOneConnection) {
  sequential_calls_reuse_one_connection(
      static_cast<unsigned short>(broker->amqp_port()),
      [](runtime& rt, tcp_proxy& proxy) { return amqp_provider(rt, proxy.port()); });
}

TEST(FaultAmqp, ABurstOfAThousandConcurrentSendsOpensOneConnection) {
  tcp_proxy proxy(static_cast<unsigned short>(broker->amqp_port()));
  runtime rt(runtime_configuration{.worker_threads = 4});
  auto p = amqp_provider(rt, proxy.port());
  const auto q = fresh_queue("burst");
  auto created = rt.block_on(p->create_queue(q, {}));
  ASSERT_TRUE(created) << created.error().to_string();
  std::vector<std::future<result<std::vector<send_outcome>>>> sends;
  for (int i = 0; i < 1000; ++i) {
    std::vector<message> one{message{.body = "b" + std::to_string(i)}};
    sends.push_back(boost::asio::co_spawn(rt.executor(), p->send(q, std::move(one), 60s),
                                          boost::asio::use_future));
  }
  std::size_t sent = 0;
  std::string first_failure;  // what the first failed send said, so a failure explains itself
  for (auto& f : sends) {
    auto r = f.get();
    if (r && (*r)[0]) {
      ++sent;
    } else if (first_failure.empty()) {
      first_failure = r ? (*r)[0].error().to_string() : r.error().to_string();
    }
  }
  EXPECT_EQ(sent, 1000u) << "first failure: " << first_failure;
  EXPECT_EQ(proxy.accepted(), 1u) << "connections opened for the burst";
  rt.block_on(p->close());
}

}  // namespace
}  // namespace qrt::faults
