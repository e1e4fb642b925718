// The provider conformance suite on SQS, twice: on standard queues and on FIFO queues (every
// queue name gets ".fifo"). Against fauxqs started for this process; with QRT_SQS_LIVE=1 (and
// the usual AWS environment: keys or profile, AWS_REGION) against real SQS instead.
#include <cstdlib>
#include <map>
#include <qrt/sqs.hpp>

#include "conformance/suite.hpp"
#include "fauxqs_server.hpp"

namespace {

using namespace std::chrono_literals;
using namespace qrt;

bool live() {
  const char* v = std::getenv("QRT_SQS_LIVE");
  return v != nullptr && std::string_view(v) == "1";
}

// One emulator for the whole binary, started before the first test and stopped after the last.
std::unique_ptr<qrt::test::fauxqs_server> emulator;
class emulator_environment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (live()) return;
    ::setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    emulator = std::make_unique<qrt::test::fauxqs_server>();
  }
  void TearDown() override { emulator.reset(); }
};
[[maybe_unused]] auto* const registered =
    ::testing::AddGlobalTestEnvironment(new emulator_environment);

sqs::options options() {
  if (live()) {
    auto o = sqs::options::for_cost_optimization();  // region and keys from the environment
    o.wait_time_seconds = 5s;
    return o;
  }
  sqs::options o;
  o.endpoint = emulator->endpoint();
  o.region = "us-east-1";
  o.access_key_id = "test";
  o.secret_access_key = "test";
  o.request_timeout = 10s;
  o.retry_base_delay = 20ms;
  return o;
}

/// Runs every test on FIFO queues: appends ".fifo" to each queue name on the way in. Only the
/// names change; every call goes to the SQS provider unchanged. Topics are hidden (the topic
/// calls keep the provider interface's unsupported defaults): a subscription's name has no
/// ".fifo" form, and the FIFO run is about queues.
class fifo_names final : public provider {
 public:
  explicit fifo_names(provider_ptr inner) : inner_(std::move(inner)), caps_(inner_->caps()) {
    caps_.topics = false;
    caps_.subscription_filters = false;
    caps_.durable_subscriptions = false;
    caps_.subscription_sessions = false;
  }
  std::string_view name() const noexcept override { return inner_->name(); }
  const capabilities& caps() const noexcept override { return caps_; }
  awaitable<result<void>> create_queue(const queue_name& q, const queue_options& o) override {
    co_return co_await inner_->create_queue(fifo(q), o);
  }
  awaitable<result<void>> delete_queue(const queue_name& q) override {
    co_return co_await inner_->delete_queue(fifo(q));
  }
  awaitable<result<queue_stats>> stats(const queue_name& q) override {
    co_return co_await inner_->stats(fifo(q));
  }
  awaitable<result<std::vector<send_outcome>>> send(const queue_name& q, std::vector<message> m,
                                                    milliseconds timeout) override {
    co_return co_await inner_->send(fifo(q), std::move(m), timeout);
  }
  awaitable<result<std::vector<received_message>>> receive(const queue_name& q, std::size_t max,
                                                           milliseconds wait) override {
    co_return co_await inner_->receive(fifo(q), max, wait);
  }
  awaitable<result<std::vector<received_message>>> peek(const queue_name& q, std::size_t max,
                                                        std::int64_t from) override {
    co_return co_await inner_->peek(fifo(q), max, from);
  }
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> s) override {
    co_return co_await inner_->settle(std::move(s));
  }
  awaitable<result<time_point>> renew_lock(const receipt_handle& r) override {
    co_return co_await inner_->renew_lock(r);
  }
  awaitable<result<std::shared_ptr<session_receiver>>> accept_session(const queue_name& q,
                                                                      std::optional<session_id> s,
                                                                      milliseconds wait) override {
    co_return co_await inner_->accept_session(fifo(q), std::move(s), wait);
  }
  awaitable<void> close() override { co_await inner_->close(); }

 private:
  static queue_name fifo(const queue_name& q) {
    if (q.is_fifo()) return q;
    auto f = queue_name::from(q.str() + ".fifo");
    return q.is_dead_letter() ? f.dead_letter() : f;
  }
  provider_ptr inner_;
  capabilities caps_;
};

/// What the FIFO run cannot check, and why. Only the first reason is the emulator's: against
/// real SQS (QRT_SQS_LIVE=1) those tests run.
std::map<std::string, std::string> fifo_deviations() {
  std::map<std::string, std::string> skips;
  if (!live()) {
    const std::string one_per_group =
        "fauxqs hands out one message of a FIFO group per receive (SQS: up to 10) and holds the "
        "group while it is in flight; this test sends to one group and receives several messages "
        "before settling any";
    for (const char* test :
         {"RoundTrip_DeliveryMetadata", "Receive_MaxMessagesHonoured",
          "Complete_TwiceFailsWithInvalidReceipt", "Provider_SendRejectsOversizeMessagePerMessage",
          "SendBatch_OverByteLimitIsSplitAndDelivered",
          "SendBatch_OneOversizeMessageFailsAloneOthersAreSent"}) {
      skips[test] = one_per_group;
    }
  }
  skips["Scheduled_InvisibleUntilItsTime"] =
      "SQS FIFO queues have no per-message delay (DelaySeconds is per queue)";
  return skips;
}

conformance::target sqs_target(bool fifo) {
  return {
      .name = fifo ? "sqs_fifo" : "sqs_standard",
      .make_provider = [fifo](boost::asio::any_io_executor ex) -> result<provider_ptr> {
        auto p = sqs::make_provider(options(), std::move(ex));
        if (!p || !fifo) return p;
        return provider_ptr(std::make_shared<fifo_names>(*p));
      },
      // SQS visibility timeouts, long polls and delays are whole seconds.
      .short_lock = 2s,
      .empty_wait = 1s,
      .schedule_delay = 2s,
      .event_timeout = 15s,
      .operation_timeout = 60s,
      .clock_tolerance = 1'500ms,
      .session_queue_suffix = ".fifo",
      // Standard queues neither keep send order nor number messages; FIFO queues do both.
      .ordered_queues = fifo,
      // fauxqs serves ~5k messages/s to one client: keep the concurrent test to seconds.
      .concurrent_messages_per_producer = 250,
      .concurrent_timeout = 120s,
      .io_threads = 2,
      .known_deviations = fifo ? fifo_deviations() : std::map<std::string, std::string>{},
  };
}

}  // namespace

QRT_INSTANTIATE_CONFORMANCE(sqs, sqs_target(false), sqs_target(true));
