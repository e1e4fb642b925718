#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <qrt/client.hpp>
#include <random>

#include "../support/forwarding_provider.hpp"
#include "../support/recording_provider.hpp"
#include "../support/run.hpp"

using qrt::capabilities;
using qrt::errc;
using qrt::message;

namespace {
std::vector<message> sized(std::initializer_list<std::size_t> sizes) {
  std::vector<message> out;
  for (auto s : sizes) out.push_back(message{.body = std::string(s, 'x')});
  return out;
}
}  // namespace

TEST(BatchPlan, SplitsByCountKeepingOrder) {  // contract C3: batches within the provider's limits
  capabilities caps{
      .max_batch_messages = 10, .max_batch_bytes = 262'144, .max_message_bytes = 262'144};
  std::vector<message> msgs(25, message{.body = "x"});
  auto plan = qrt::plan_batches(msgs, caps);
  ASSERT_EQ(plan.batches.size(), 3u);
  EXPECT_EQ(plan.batches[0].size(), 10u);
  EXPECT_EQ(plan.batches[2].size(), 5u);
  EXPECT_EQ(plan.batches[1].front(), 10u);
  EXPECT_TRUE(plan.oversized.empty());
}

TEST(BatchPlan, SplitsByBytesAndReportsOversized) {
  capabilities caps{.max_batch_messages = 10, .max_batch_bytes = 100, .max_message_bytes = 80};
  auto plan = qrt::plan_batches(sized({60, 30, 20, 90, 50}), caps);
  // 60+30 = 90 fits; +20 would be 110 -> new batch; 90 is oversized; 20+50 fits.
  ASSERT_EQ(plan.batches.size(), 2u);
  EXPECT_EQ(plan.batches[0], (std::vector<std::size_t>{0, 1}));
  EXPECT_EQ(plan.batches[1], (std::vector<std::size_t>{2, 4}));
  EXPECT_EQ(plan.oversized, (std::vector<std::size_t>{3}));
}

// The send path skips planning when everything fits one batch: that shortcut must agree with
// the plan on every input, or a batch over the limits would reach the provider whole.
TEST(BatchPlan, FitsOneBatchAgreesWithThePlan) {
  std::mt19937 random(20261204);  // fixed: a failure names an input that can be run again
  std::uniform_int_distribution<std::size_t> count(0, 12), size(0, 120), limit(0, 4);
  const std::size_t limits[] = {0, 1, 3, 100, 250};  // 0: no limit
  for (int round = 0; round < 20'000; ++round) {
    capabilities caps{.max_batch_messages = limits[limit(random)],
                      .max_batch_bytes = limits[limit(random)],
                      .max_message_bytes = limits[limit(random)]};
    std::vector<message> msgs(count(random));
    for (auto& m : msgs) m.body.assign(size(random), 'x');
    if (msgs.empty()) continue;  // no batch at all: the send path returns before asking
    const auto plan = qrt::plan_batches(msgs, caps);
    const bool one = plan.batches.size() == 1 && plan.oversized.empty();
    ASSERT_EQ(qrt::fits_one_batch(msgs, caps), one)
        << "round " << round << ": " << msgs.size() << " messages, limits "
        << caps.max_batch_messages << "/" << caps.max_batch_bytes << "/" << caps.max_message_bytes;
  }
}

namespace {
/// Small limits (messages over 100 bytes refused, batches of 2), and the first `failing` send
/// calls fail as a whole with a transient error, as a dropped connection does before anything
/// is sent.
class failing_first_sends final : public qrt::test::forwarding_provider {
 public:
  explicit failing_first_sends(int failing)
      : forwarding_provider(std::make_shared<qrt::test::recording_provider>()), failing_(failing) {
    caps_ = inner_->caps();
    caps_.max_batch_messages = 2;
    caps_.max_message_bytes = 100;
  }
  const capabilities& caps() const noexcept override { return caps_; }
  qrt::awaitable<qrt::result<std::vector<qrt::send_outcome>>> send(
      const qrt::queue_name& q, std::vector<message> messages, qrt::milliseconds timeout) override {
    if (failing_ > 0) {
      --failing_;
      co_return qrt::fail(errc::connection_failed, "connection reset before the batch went out");
    }
    co_return co_await inner_->send(q, std::move(messages), timeout);
  }
  std::vector<std::vector<std::string>> calls() const {
    return static_cast<const qrt::test::recording_provider&>(*inner_).calls();
  }

 private:
  capabilities caps_;
  int failing_;
};
}  // namespace

// A message over the provider's size limit can never be sent. When the first chunk of the rest
// failed as a whole, the call failed as a whole with that chunk's (transient) error: the
// oversized message never got its message_too_large, and a caller retrying the call (as
// qrt::send_batcher does) resent it with the others, and at the end of its retries reported it
// as transient. Now the call reports per message: the permanent refusal stays visible.
TEST(ClientSendBatch, AnOversizedMessageKeepsItsRefusalWhenTheFirstChunkFailsAsAWhole) {
  boost::asio::io_context io;
  auto provider = std::make_shared<failing_first_sends>(1);
  qrt::queue_client client(provider, {.retry = std::nullopt});
  std::vector<message> msgs;
  for (const std::size_t size : {1u, 200u, 1u, 1u})
    msgs.push_back({.body = std::string(size, 'x')});
  auto sent = qrt::test::run(io, client.send_batch(qrt::queue_name::from("q"), std::move(msgs)));
  ASSERT_TRUE(sent) << "failed as a whole, hiding the oversized message's refusal: "
                    << sent.error().to_string();
  ASSERT_EQ(sent->size(), 4u);
  ASSERT_FALSE((*sent)[1]);
  EXPECT_EQ((*sent)[1].error().code, errc::message_too_large) << (*sent)[1].error().to_string();
  EXPECT_FALSE((*sent)[1].error().is_transient());
  for (std::size_t i : {0u, 2u, 3u}) {
    ASSERT_FALSE((*sent)[i]) << i << " was reported sent though its chunk failed";
    EXPECT_EQ((*sent)[i].error().code, errc::connection_failed) << i;
  }
  EXPECT_TRUE(provider->calls().empty()) << "nothing after the failed first chunk went out";
}

// Without an oversized message a first chunk's failure is still the call's, as one error: a
// missing queue, say, reads as one error rather than one per message.
TEST(ClientSendBatch, AFirstChunkFailingAsAWholeFailsTheCallWhenNothingIsOversized) {
  boost::asio::io_context io;
  auto provider = std::make_shared<failing_first_sends>(1);
  qrt::queue_client client(provider, {.retry = std::nullopt});
  std::vector<message> msgs(3, message{.body = "x"});
  auto sent = qrt::test::run(io, client.send_batch(qrt::queue_name::from("q"), std::move(msgs)));
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code, errc::connection_failed) << sent.error().to_string();
}
