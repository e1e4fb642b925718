// qrt's provider conformance suite on the Service Bus provider, against the test peer (started
// once for the binary), or against a real namespace when QRT_SERVICEBUS_CONNECTION_STRING is
// set (live mode: queues named by QRT_SERVICEBUS_QUEUE and QRT_SERVICEBUS_SESSION_QUEUE must
// exist; tests needing other queue settings skip).
#include <cstdlib>
#include <memory>
#include <qrt/servicebus.hpp>

#include "conformance/suite.hpp"
#include "peer_process.hpp"

namespace {

using namespace std::chrono_literals;

std::unique_ptr<qrt::test::servicebus_peer> peer;

const char* live_connection_string() {
  const char* cs = std::getenv("QRT_SERVICEBUS_CONNECTION_STRING");
  return cs && *cs ? cs : nullptr;
}

class PeerEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!live_connection_string()) {
      // Only queues the suite creates exist: a missing queue is amqp:not-found, as on Azure.
      peer = std::make_unique<qrt::test::servicebus_peer>(
          std::vector<std::string>{"--require-created"});
    }
  }
  void TearDown() override { peer.reset(); }
};
const auto* const environment = ::testing::AddGlobalTestEnvironment(new PeerEnvironment);

// From configuration: test_peer_admin (queue management on the peer) is not a field of the
// public servicebus::options, only the registered provider reads it.
qrt::config provider_config() {
  qrt::config c{{"provider", "servicebus"},
                // Closing a provider waits for the AMQP core's pending timers: keep them short.
                {"operation_timeout", "5s"}};
  if (const char* live = live_connection_string()) {
    c.set("connection_string", live);
  } else {
    c.set("connection_string", peer->connection_string());
    c.set("test_peer_admin", "true");
  }
  return c;
}

// A live queue stands in only for tests that want a queue with qrt's default settings (lock
// duration, delivery count, TTL); the others skip.
std::optional<qrt::queue_name> live_queue(const qrt::queue_options& wanted) {
  const qrt::queue_options defaults;
  if (wanted.lock_duration != defaults.lock_duration ||
      wanted.max_delivery_count != defaults.max_delivery_count ||
      wanted.default_time_to_live != defaults.default_time_to_live) {
    return std::nullopt;
  }
  const char* name = std::getenv(wanted.requires_session ? "QRT_SERVICEBUS_SESSION_QUEUE"
                                                         : "QRT_SERVICEBUS_QUEUE");
  if (!name || !*name) return std::nullopt;
  return qrt::queue_name::from(name);
}

qrt::conformance::target servicebus_target() {
  qrt::conformance::target t{
      .name = "servicebus",
      .make_provider =
          [](boost::asio::any_io_executor ex) {
            qrt::provider_registry registry;
            qrt::servicebus::register_provider(registry);
            return registry.make(provider_config(), std::move(ex));
          },
      .short_lock = 1'500ms,
      .empty_wait = 500ms,
      .schedule_delay = 1'000ms,
      .event_timeout = 10s,
      .operation_timeout = 60s,
      .clock_tolerance = 1'000ms,
      .concurrent_messages_per_producer = 500,
      .concurrent_timeout = 120s,
  };
  if (live_connection_string()) {
    t.create_queues = false;
    t.create_topics = false;  // a namespace's entities are made beforehand, not over AMQP
    t.fixed_queue = live_queue;
  }
  return t;
}

}  // namespace

QRT_INSTANTIATE_CONFORMANCE(servicebus, servicebus_target());
