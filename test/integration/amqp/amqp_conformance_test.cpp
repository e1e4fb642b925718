// The conformance suite on the generic amqp provider against a real RabbitMQ 3.10
// (rabbitmq_amqp1_0), booted once for this binary. What RabbitMQ lacks is declared in the
// provider's capabilities and skipped by the suite, never faked:
//   - no sessions (group-id is carried, nothing locks a group), no peek, no scheduling,
//     no lock renewal (a lock lasts as long as the link), no native DLQ (rejects are dropped
//     without a policy), no max delivery count;
//   - topics are routing keys on amq.topic and subscriptions last as long as their link: no
//     filters, no sessions, nothing durable, and no topic is ever missing (docs/amqp.md);
//   - AMQP 1.0 cannot delete queues, so the suite gets a fresh queue per make_queue() from
//     `fixed_queue` (declared through the provider's own create_queue), left in the throwaway
//     broker.
#include <atomic>
#include <memory>
#include <qrt/amqp.hpp>

#include "conformance/suite.hpp"
#include "rabbitmq_server.hpp"

namespace {

using namespace std::chrono_literals;

using qrt::test::broker;

const auto* const environment =
    ::testing::AddGlobalTestEnvironment(new qrt::test::rabbitmq_environment);

qrt::amqp::options rabbit() {
  auto o = qrt::amqp::options::for_rabbitmq();
  o.port = static_cast<std::uint16_t>(broker->amqp_port());
  o.user = "guest";
  o.password = "guest";
  o.prefetch = 20;
  return o;
}

/// A new, empty queue on the broker for every call.
std::optional<qrt::queue_name> fresh_queue(const qrt::queue_options& options) {
  if (options.requires_session) return std::nullopt;  // no sessions on a generic broker
  static std::atomic<int> n{0};
  auto name =
      qrt::queue_name::from("qrt-conf-" + std::to_string(::getpid()) + "-" + std::to_string(++n));
  qrt::conformance::io_runner io(1, 30s);
  auto p = qrt::amqp::make_provider(rabbit(), io.executor());
  if (!p) throw std::runtime_error(p.error().to_string());
  auto created = io.run((*p)->create_queue(name, options));
  io.run((*p)->close());
  if (!created) throw std::runtime_error("create_queue: " + created.error().to_string());
  return name;
}

qrt::conformance::target amqp_target() {
  return {
      .name = "amqp_rabbitmq",
      .make_provider =
          [](boost::asio::any_io_executor ex) { return qrt::amqp::make_provider(rabbit(), ex); },
      .short_lock = 2s,
      .empty_wait = 300ms,
      .schedule_delay = 1s,
      .event_timeout = 10s,
      .operation_timeout = 60s,
      .clock_tolerance = 1s,
      .create_queues = false,
      .fixed_queue = fresh_queue,
      // RabbitMQ delivers a queue in order but numbers nothing.
      .ordered_queues = false,
      // A topic is a routing key on amq.topic: it needs no creating, and a publish nobody
      // subscribed to is accepted and dropped.
      .missing_topics_detected = false,
      .concurrent_messages_per_producer = 500,
      .concurrent_timeout = 60s,
  };
}

}  // namespace

QRT_INSTANTIATE_CONFORMANCE(amqp, amqp_target());
