// Fault scenarios on the Service Bus provider against the test peer, with the ledger
// (ledger.hpp) and a qrt::processor at concurrency 16 while a producer sends continuously:
//  - the peer is SIGKILLed and restarted on the same port, twice;
//  - the network stalls (a TCP proxy stops forwarding, closing nothing) for longer than the
//    lock duration, then resumes.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <future>
#include <iostream>
#include <optional>
#include <qrt/servicebus.hpp>
#include <thread>

#include "ledger.hpp"
#include "peer_process.hpp"
#include "tcp_proxy.hpp"
#include "workload.hpp"

namespace qrt::faults {
namespace {

using namespace std::chrono_literals;

// From configuration: test_peer_admin (queue management on the peer) is not a field of the
// public servicebus::options, only the registered provider reads it.
provider_ptr servicebus_provider(runtime& rt, std::uint16_t port) {
  provider_registry registry;
  servicebus::register_provider(registry);
  return registry
      .make(config{{"provider", "servicebus"},
                   {"connection_string",
                    "Endpoint=sb://127.0.0.1:" + std::to_string(port) +
                        "/;SharedAccessKeyName=x;SharedAccessKey=y;UseDevelopmentEmulator=true"},
                   {"operation_timeout", "3s"},
                   {"test_peer_admin", "true"}},
            rt.executor())
      .value();
}

TEST(FaultServiceBus, PeerKilledAndRestartedTwiceMidRun) {
  // The peer keeps its queues in memory only: a kill takes every message it held with it. The
  // ledger counts only what the restarted peer kept: what was acknowledged before a kill and not
  // yet handled is counted as lost_by_server, not lost. Everything acknowledged by a restarted
  // peer must be handled, and nothing may be handled again after its complete was acknowledged.
  ledger book;
  std::vector<double> recovery;
  std::optional<test::servicebus_peer> peer;
  peer.emplace();
  const auto port = peer->port();
  const auto before = process_resources::baseline();
  {
    runtime rt(runtime_configuration{.worker_threads = 4});
    workload w(rt, servicebus_provider(rt, port), fresh_queue("fault-kill"), book);
    for (int kill = 1; kill <= 2; ++kill) {
      ASSERT_TRUE(book.wait_handler_calls(book.handler_calls() + 200, 60s));
      ::kill(peer->pid(), SIGKILL);
      peer.reset();  // reaps it: from here no acknowledgement can come from the old peer
      book.server_forgot_unhandled();
      peer.emplace(std::vector<std::string>{"--port", std::to_string(port)});
      book.mark_recovery_start();
      ASSERT_TRUE(book.wait_handler_calls(book.handler_calls() + 1, 60s));
      ASSERT_TRUE(book.wait_handler_calls(book.handler_calls() + 100, 60s));
      recovery.push_back(book.recovery_ms());
    }
    w.finish(30s);
    EXPECT_TRUE(w.drained()) << book.summary("kill (so far)");
    std::cout << "processor: completed=" << w.stats().completed
              << " settle_failures=" << w.stats().settle_failures
              << " locks_lost=" << w.stats().locks_lost << "\n";
  }
  const auto after = process_resources::settled_to(before);
  peer.reset();
  std::cout << "resources before " << before.to_string() << ", after " << after.to_string() << "\n";
  EXPECT_EQ(after.threads, before.threads);
  EXPECT_EQ(after.fds, before.fds);

  const auto c = book.counts();
  const double worst = *std::max_element(recovery.begin(), recovery.end());
  std::cout << book.summary("servicebus peer SIGKILL x2", worst)
            << " recovery_ms_each=" << static_cast<long>(recovery[0]) << ","
            << static_cast<long>(recovery[1]) << "\n";
  for (double ms : recovery) EXPECT_GE(ms, 0) << "no message handled after a restart";
  EXPECT_EQ(c.resurrected, 0u) << "a complete was acknowledged, yet the message came back";
  EXPECT_EQ(c.lost, 0u) << "sends a restarted peer acknowledged were never handled";
}

// The stall is 4 s, longer than the queue's 2 s lock duration: every lock held when it began
// runs out in it.
TEST(FaultServiceBus, NetworkStallLongerThanTheLockDurationMakesNoFalseCompletes) {
  test::servicebus_peer peer;
  network_stall_scenario(
      peer.port(), "servicebus network stall 4s > lock 2s", 4s,
      [](runtime& rt, tcp_proxy& proxy) { return servicebus_provider(rt, proxy.port()); }, 2s);
}

// However many calls run at once, the provider speaks over one AMQP connection: a burst of 1000
// concurrent sends opens one socket, counted at a TCP proxy in front of the peer.
// The peer does not answer server-busy: the fault-injecting decorator answers for it.
TEST(FaultServiceBus, ThrottlingStormOnHalfOfAllCallsLosesNothingAndCountsTheRetries) {
  test::servicebus_peer peer;
  throttling_storm_scenario("servicebus",
                            [&peer](runtime& rt) { return servicebus_provider(rt, peer.port()); });
}

TEST(FaultServiceBus, SlowConsumerAndTenTimesFasterProducerLoseNothing) {
  test::servicebus_peer peer;
  slow_consumer_scenario("servicebus",
                         [&peer](runtime& rt) { return servicebus_provider(rt, peer.port()); });
}

TEST(FaultServiceBus, SequentialCallsReuseOneConnection) {
  test::servicebus_peer peer;
  sequential_calls_reuse_one_connection(peer.port(), [](runtime& rt, tcp_proxy& proxy) {
    return servicebus_provider(rt, proxy.port());
  });
}

TEST(FaultServiceBus, ABurstOfAThousandConcurrentSendsOpensOneConnection) {
  test::servicebus_peer peer;
  tcp_proxy proxy(peer.port());
  runtime rt(runtime_configuration{.worker_threads = 4});
  auto p = servicebus_provider(rt, proxy.port());
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
  for (auto& f : sends) {
    auto r = f.get();
    if (r && (*r)[0]) ++sent;
  }
  EXPECT_EQ(sent, 1000u);
  EXPECT_EQ(proxy.accepted(), 1u) << "connections opened for the burst";
  rt.block_on(p->close());
}

}  // namespace
}  // namespace qrt::faults
