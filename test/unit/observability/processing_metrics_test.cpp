// Processors feed the runtime's metrics through their on_processed hook
// (qrt::metrics::record_processing), and a circuit breaker through on_state_change
// (qrt::metrics::record_breaker): a deployed processor shows its outcomes, handler durations,
// failures, its messages' time since they were enqueued and how long it held its sessions
// without the benchmark harness.
#include <gtest/gtest.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>
#include <qrt/circuit_breaker.hpp>
#include <qrt/memory.hpp>
#include <qrt/metrics.hpp>
#include <qrt/processor.hpp>
#include <qrt/runtime.hpp>
#include <qrt/session_processor.hpp>
#include <string>

#include "../support/forwarding_provider.hpp"
#include "../support/wait.hpp"

namespace {

using namespace std::chrono_literals;
using namespace qrt::metrics;
using qrt::errc;

// The value of one exposed series (`name{labels}`), read from the exposition the way a scraper
// reads it; empty when the registry does not expose it.
std::optional<double> exposed(const std::string& text, const std::string& series) {
  const std::string prefix = series + " ";
  for (std::size_t at = 0; at < text.size();) {
    const auto end = text.find('\n', at);
    const auto line = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (line.starts_with(prefix)) return std::stod(line.substr(prefix.size()));
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return std::nullopt;
}

TEST(ProcessingMetrics, AProcessorRecordsEachMessageByOutcomeWithItsHandlerTimeAndFailure) {
  qrt::runtime rt{{.worker_threads = 2}};
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(memory);
  const auto q = qrt::queue_name::from("orders");
  ASSERT_TRUE(rt.block_on(client.create_queue(q)));
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = i < 7 ? "ok" : "bad"})));
  }

  registry reg;
  runtime_metrics m(reg);
  qrt::processor_options po;
  po.max_concurrent_calls = 2;
  po.receive_wait = 50ms;
  po.on_processed = record_processing(m, "memory");
  qrt::test::counter settled;
  // The observer is the processor's: count after it ran by wrapping it.
  po.on_processed = [inner = po.on_processed, &settled](const qrt::processed_message& p) {
    inner(p);
    settled.add();
  };
  qrt::processor p(
      client, q,
      [](const qrt::received_message& msg) -> qrt::awaitable<qrt::result<void>> {
        if (msg.body == "bad") {
          auto e = qrt::fail(errc::invalid_argument, "cannot parse the order");
          e.kind = qrt::error_kind::permanent;  // dead-lettered at once
          co_return e;
        }
        co_return qrt::result<void>{};
      },
      po);
  p.start(rt.executor());
  ASSERT_TRUE(settled.wait_for_at_least(10));
  rt.block_on(p.stop(5s));

  EXPECT_EQ(m.messages_processed.with({"orders", "memory", "completed"}).value(), 7u);
  EXPECT_EQ(m.messages_processed.with({"orders", "memory", "dead_lettered"}).value(), 3u);
  EXPECT_EQ(m.messages_processed.with({"orders", "memory", "abandoned"}).value(), 0u);
  EXPECT_EQ(m.errors.with({"orders", "memory", "process", "invalid_argument"}).value(), 3u);
  EXPECT_EQ(m.processing_duration.with({"orders", "memory"}).read().count, 10u);
  const auto text = reg.expose();
  EXPECT_NE(text.find("queue_runtime_messages_processed_total{queue=\"orders\",provider=\"memory\","
                      "outcome=\"completed\"} 7"),
            std::string::npos)
      << text;
}

// End-to-end latency: each settled message is observed once, from its enqueued time, which is
// before its handler started, so the latencies add up to at least the handlers' durations.
TEST(ProcessingMetrics, AProcessorRecordsEachMessagesTimeSinceItWasEnqueued) {
  qrt::runtime rt{{.worker_threads = 2}};
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(memory);
  const auto q = qrt::queue_name::from("orders");
  ASSERT_TRUE(rt.block_on(client.create_queue(q)));
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = i < 4 ? "ok" : "bad"})));
  }
  registry reg;
  runtime_metrics m(reg);
  qrt::test::counter settled;
  qrt::processor_options po;
  po.max_concurrent_calls = 2;
  po.receive_wait = 50ms;
  po.on_processed = [inner = record_processing(m, "memory"),
                     &settled](const qrt::processed_message& p) {
    inner(p);
    settled.add();
  };
  qrt::processor p(
      client, q,
      [](const qrt::received_message& msg) -> qrt::awaitable<qrt::result<void>> {
        if (msg.body == "bad") {
          auto e = qrt::fail(errc::invalid_argument, "cannot parse the order");
          e.kind = qrt::error_kind::permanent;
          co_return e;
        }
        co_return qrt::result<void>{};
      },
      po);
  p.start(rt.executor());
  ASSERT_TRUE(settled.wait_for_at_least(6));
  rt.block_on(p.stop(5s));

  const auto text = reg.expose();
  const std::string labels = "{queue=\"orders\",provider=\"memory\"}";
  const auto count = exposed(text, "queue_runtime_message_latency_seconds_count" + labels);
  const auto sum = exposed(text, "queue_runtime_message_latency_seconds_sum" + labels);
  const auto handler_sum = exposed(text, "queue_runtime_processing_duration_seconds_sum" + labels);
  ASSERT_TRUE(count && sum && handler_sum) << "no message latency exposed:\n" << text;
  EXPECT_EQ(*count, 6.0) << "one observation per processed message, failed ones included";
  EXPECT_GE(*sum, *handler_sum) << "a message's latency includes its handler's time";
}

// A provider that stamps each message with the enqueued time its body names: none, far ahead
// of our clock (a broker whose clock runs ahead), or saturated at either end of the clock
// (what decoders make of an absurd timestamp).
class enqueued_times_as_named final : public qrt::test::forwarding_provider {
 public:
  using forwarding_provider::forwarding_provider;
  qrt::awaitable<qrt::result<std::vector<qrt::received_message>>> receive(
      const qrt::queue_name& q, std::size_t max, qrt::milliseconds wait) override {
    auto got = co_await forwarding_provider::receive(q, max, wait);
    if (got) {
      for (auto& m : *got) {
        if (m.body == "none") m.enqueued_time = qrt::time_point{};
        if (m.body == "before-the-clock") m.enqueued_time = qrt::time_point::min();
        if (m.body == "ahead") m.enqueued_time = qrt::clock::now() + std::chrono::hours{1};
        if (m.body == "end-of-the-clock") m.enqueued_time = qrt::time_point::max();
      }
    }
    co_return got;
  }
};

// Without an enqueued time there is no latency to observe; an enqueued time later than our
// clock is observed as zero, never as a negative or wrapped-around value.
TEST(ProcessingMetrics, AMissingOrFutureEnqueuedTimeIsNeverObservedAsGarbage) {
  qrt::runtime rt{{.worker_threads = 2}};
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(std::make_shared<enqueued_times_as_named>(memory));
  const auto q = qrt::queue_name::from("skewed");
  ASSERT_TRUE(rt.block_on(client.create_queue(q)));
  for (const char* body : {"none", "before-the-clock", "ahead", "end-of-the-clock"}) {
    ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = body})));
  }
  registry reg;
  runtime_metrics m(reg);
  qrt::test::counter settled;
  qrt::processor_options po;
  po.receive_wait = 50ms;
  po.on_processed = [inner = record_processing(m, "memory"),
                     &settled](const qrt::processed_message& p) {
    inner(p);
    settled.add();
  };
  qrt::processor p(
      client, q,
      [](const qrt::received_message&) -> qrt::awaitable<qrt::result<void>> {
        co_return qrt::result<void>{};
      },
      po);
  p.start(rt.executor());
  ASSERT_TRUE(settled.wait_for_at_least(4));
  rt.block_on(p.stop(5s));

  EXPECT_EQ(m.messages_processed.with({"skewed", "memory", "completed"}).value(), 4u);
  const auto text = reg.expose();
  const std::string labels = "{queue=\"skewed\",provider=\"memory\"}";
  const auto count = exposed(text, "queue_runtime_message_latency_seconds_count" + labels);
  const auto sum = exposed(text, "queue_runtime_message_latency_seconds_sum" + labels);
  ASSERT_TRUE(count && sum) << "no message latency exposed:\n" << text;
  EXPECT_EQ(*count, 2.0) << "only the two messages with an enqueued time are observed";
  EXPECT_EQ(*sum, 0.0) << "enqueued times ahead of our clock count as no wait";
}

TEST(ProcessingMetrics, ASessionProcessorRecordsEachMessageByOutcome) {
  qrt::runtime rt{{.worker_threads = 2}};
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(memory);
  const auto q = qrt::queue_name::from("carts");
  ASSERT_TRUE(rt.block_on(client.create_queue(q, {.requires_session = true})));
  for (int i = 0; i < 4; ++i) {
    qrt::message msg{.body = "item"};
    msg.session = qrt::session_id::from("cart-" + std::to_string(i % 2));
    ASSERT_TRUE(rt.block_on(client.send(q, std::move(msg))));
  }
  registry reg;
  runtime_metrics m(reg);
  qrt::test::counter settled;
  qrt::session_processor_options so;
  so.accept_wait = 50ms;
  so.on_processed = [inner = record_processing(m, "memory"),
                     &settled](const qrt::processed_message& p) {
    inner(p);
    settled.add();
  };
  qrt::session_processor p(
      client, q,
      [](const qrt::received_message&) -> qrt::awaitable<qrt::result<void>> {
        co_return qrt::result<void>{};
      },
      so);
  p.start(rt.executor());
  ASSERT_TRUE(settled.wait_for_at_least(4));
  rt.block_on(p.stop(5s));
  EXPECT_EQ(m.messages_processed.with({"carts", "memory", "completed"}).value(), 4u);
  EXPECT_EQ(m.processing_duration.with({"carts", "memory"}).read().count, 4u);
  const auto text = reg.expose();
  const std::string labels = "{queue=\"carts\",provider=\"memory\"}";
  const auto count = exposed(text, "queue_runtime_message_latency_seconds_count" + labels);
  const auto sum = exposed(text, "queue_runtime_message_latency_seconds_sum" + labels);
  const auto handler_sum = exposed(text, "queue_runtime_processing_duration_seconds_sum" + labels);
  ASSERT_TRUE(count && sum && handler_sum) << "no message latency exposed:\n" << text;
  EXPECT_EQ(*count, 4.0);
  EXPECT_GE(*sum, *handler_sum) << "a message's latency includes its handler's time";
}

// Sessions: each accept counted as held (and its wait timed), each lock renewal counted, and
// every session let go again by the time the processor has stopped, with how long it was held:
// a session's handlers run one after another while it is held, so the held times add up to at
// least the handlers' durations.
TEST(ProcessingMetrics, ASessionProcessorRecordsItsSessionsAndTheirRenewals) {
  qrt::runtime rt{{.worker_threads = 2}};
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(memory);
  const auto q = qrt::queue_name::from("carts");
  ASSERT_TRUE(
      rt.block_on(client.create_queue(q, {.lock_duration = 300ms, .requires_session = true})));
  for (const char* session : {"cart-a", "cart-b"}) {
    qrt::message msg{.body = session};
    msg.session = qrt::session_id::from(session);
    ASSERT_TRUE(rt.block_on(client.send(q, std::move(msg))));
  }
  registry reg;
  runtime_metrics m(reg);
  qrt::test::counter handled;
  qrt::session_processor_options so;
  so.max_concurrent_sessions = 2;
  so.accept_wait = 50ms;
  so.session_idle_timeout = 50ms;
  so.on_session = record_sessions(m, "memory");
  so.on_processed = record_processing(m, "memory");
  qrt::session_processor p(
      client, q,
      [&handled](const qrt::received_message& msg) -> qrt::awaitable<qrt::result<void>> {
        if (msg.body == "cart-a") {  // outlasts the 300 ms session lock: it must be renewed
          boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 900ms);
          co_await t.async_wait(boost::asio::use_awaitable);
        }
        handled.add();
        co_return qrt::result<void>{};
      },
      so);
  p.start(rt.executor());
  ASSERT_TRUE(handled.wait_for_at_least(2));
  rt.block_on(p.stop(5s));
  EXPECT_GE(m.session_acquisition.with({"carts", "memory"}).read().count, 2u);
  EXPECT_GE(m.session_lock_renewals.with({"carts", "memory"}).value(), 1u);
  EXPECT_EQ(m.active_sessions.with({"carts", "memory"}).value(), 0)
      << "a session was counted as held after the processor stopped";
  const auto text = reg.expose();
  const std::string labels = "{queue=\"carts\",provider=\"memory\"}";
  const auto count = exposed(text, "queue_runtime_session_duration_seconds_count" + labels);
  const auto sum = exposed(text, "queue_runtime_session_duration_seconds_sum" + labels);
  const auto handler_sum = exposed(text, "queue_runtime_processing_duration_seconds_sum" + labels);
  ASSERT_TRUE(count && sum && handler_sum) << "no session duration exposed:\n" << text;
  EXPECT_EQ(*count,
            static_cast<double>(m.session_acquisition.with({"carts", "memory"}).read().count))
      << "one held time per session released, and every accepted session was released";
  EXPECT_GE(*sum, *handler_sum) << "a session is held while its handlers run";
}

TEST(ProcessingMetrics, ABreakerRecordsItsTransitionsAndState) {
  registry reg;
  runtime_metrics m(reg);
  auto now = std::chrono::steady_clock::time_point{};
  qrt::circuit_breaker_options bo;
  bo.failure_threshold = 2;
  bo.open_duration = 1s;
  bo.on_state_change = record_breaker(m, "sqs");
  bo.now = [&now] { return now; };
  qrt::circuit_breaker breaker(bo);
  for (int i = 0; i < 2; ++i) {  // two failures in a row open it
    ASSERT_TRUE(breaker.allow());
    breaker.record_failure();
  }
  EXPECT_EQ(m.breaker_state.with({"sqs"}).value(), 2);
  now += 2s;
  EXPECT_TRUE(breaker.allow());  // half-open: a probe may pass
  EXPECT_EQ(m.breaker_state.with({"sqs"}).value(), 1);
  breaker.record_success();  // closes
  EXPECT_EQ(m.breaker_state.with({"sqs"}).value(), 0);
  EXPECT_EQ(m.breaker_transitions.with({"sqs", "open"}).value(), 1u);
  EXPECT_EQ(m.breaker_transitions.with({"sqs", "half_open"}).value(), 1u);
  EXPECT_EQ(m.breaker_transitions.with({"sqs", "closed"}).value(), 1u);
}

}  // namespace
