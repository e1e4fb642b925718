// The blocking facade (qrt::sync::queue_client) against a scripted provider: what a call made
// from the facade's own thread, where its callbacks run, does.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <future>
#include <latch>
#include <memory>
#include <optional>
#include <qrt/sync_client.hpp>
#include <thread>

#include "../support/forwarding_provider.hpp"
#include "../support/recording_provider.hpp"

using namespace std::chrono_literals;

namespace {

const auto facade_queue = qrt::queue_name::from("facade_queue");

// How many times any stats_fails_once was closed.
std::atomic<int> provider_closes{0};

// Its first stats call fails transiently, so the client's retry layer retries it (and tells
// client_options::on_retry); the rest is the recording provider's.
class stats_fails_once final : public qrt::test::forwarding_provider {
 public:
  stats_fails_once() : forwarding_provider(std::make_shared<qrt::test::recording_provider>()) {}
  qrt::awaitable<qrt::result<qrt::queue_stats>> stats(const qrt::queue_name&) override {
    if (calls_++ == 0) co_return qrt::fail(qrt::errc::connection_failed, "dropped");
    co_return qrt::queue_stats{};
  }
  qrt::awaitable<void> close() override {
    ++provider_closes;
    return forwarding_provider::close();
  }

 private:
  std::atomic<int> calls_{0};
};

// A blocking client over stats_fails_once whose retry layer retries at once and calls
// `on_retry` from the facade's thread.
qrt::sync::queue_client open_retrying(qrt::retry_observer on_retry) {
  qrt::provider_registry registry;
  registry.add(
      "scripted",
      [](const qrt::config&, boost::asio::any_io_executor) -> qrt::result<qrt::provider_ptr> {
        return std::make_shared<stats_fails_once>();
      });
  auto retry = qrt::retry_policy::fixed_interval(1ms);
  retry.jitter = 0;
  return qrt::sync::queue_client::open(qrt::config{{"provider", "scripted"}}, registry,
                                       {.retry = retry, .on_retry = std::move(on_retry)})
      .value();
}

// client_options::on_retry runs on the facade's thread: a blocking call from there would wait
// for an operation only that thread can run, while it waits in the call. Such a call fails at
// once, saying why, and the call being retried carries on.
TEST(SyncClient, ACallFromItsOwnThreadFailsInsteadOfWaitingForItself) {
  qrt::sync::queue_client* self = nullptr;
  std::optional<qrt::result<qrt::message_id>> sent_from_callback;
  std::optional<std::vector<qrt::result<void>>> settled_from_callback;
  auto client = open_retrying([&](std::string_view, const qrt::queue_name*, const qrt::error&) {
    sent_from_callback = self->send(facade_queue, qrt::message{.body = "inner"});
    settled_from_callback = self->settle({qrt::settlement::complete(qrt::receipt_handle{})});
  });
  self = &client;

  auto stats = client.stats(facade_queue);
  ASSERT_TRUE(stats) << stats.error().to_string();
  ASSERT_TRUE(sent_from_callback.has_value());
  ASSERT_FALSE(*sent_from_callback);
  EXPECT_EQ(sent_from_callback->error().code, qrt::errc::invalid_argument);
  EXPECT_NE(sent_from_callback->error().message.find("own thread"), std::string::npos)
      << sent_from_callback->error().message;
  ASSERT_TRUE(settled_from_callback.has_value());
  ASSERT_EQ(settled_from_callback->size(), 1u);
  ASSERT_FALSE(settled_from_callback->front());
  EXPECT_EQ(settled_from_callback->front().error().code, qrt::errc::invalid_argument);
}

// close() from there cannot wait for the provider to close either: it returns, and the
// provider closes once the callback is done.
TEST(SyncClient, CloseFromItsOwnThreadReturns) {
  qrt::sync::queue_client* self = nullptr;
  bool closed_in_callback = false;
  auto client = open_retrying([&](std::string_view, const qrt::queue_name*, const qrt::error&) {
    self->close();
    closed_in_callback = true;
  });
  self = &client;
  (void)client.stats(facade_queue);
  EXPECT_TRUE(closed_in_callback);
  client.close();  // already closed: returns at once
}

// close() from two threads at once: both return and the provider is closed once (under TSan,
// the facade's own record of being closed is not a data race).
TEST(SyncClient, CloseFromTwoThreadsAtOnceClosesOnce) {
  auto client = open_retrying({});
  const int closes_before = provider_closes;
  std::latch start(2);
  auto close_when_both_ready = [&] {
    start.arrive_and_wait();
    client.close();
  };
  std::thread other(close_when_both_ready);
  close_when_both_ready();
  other.join();
  EXPECT_EQ(provider_closes - closes_before, 1);
}

// Tells when it is closed and when it is destroyed (the promise is shared: it is set on the
// facade's thread while the test may already be returning).
class tells_when_gone final : public qrt::test::forwarding_provider {
 public:
  tells_when_gone(std::shared_ptr<std::promise<void>> gone,
                  std::shared_ptr<std::atomic<bool>> closed)
      : forwarding_provider(std::make_shared<qrt::test::recording_provider>()),
        gone_(std::move(gone)),
        closed_(std::move(closed)) {}
  ~tells_when_gone() override { gone_->set_value(); }
  qrt::awaitable<void> close() override {
    *closed_ = true;
    return forwarding_provider::close();
  }

 private:
  std::shared_ptr<std::promise<void>> gone_;
  std::shared_ptr<std::atomic<bool>> closed_;
};

// The last owner of the facade may let go of it on the facade's own thread (in a handler or
// callback there): it cannot wait for that thread to end from inside it. It returns; the
// provider is closed and destroyed, and the thread ends, once the handler is done.
TEST(SyncClient, DestroyedOnItsOwnThreadClosesAndLetsItsThreadEnd) {
  auto gone = std::make_shared<std::promise<void>>();
  auto provider_gone = gone->get_future();
  auto closed = std::make_shared<std::atomic<bool>>(false);
  boost::asio::any_io_executor facade_thread;
  qrt::provider_registry registry;
  registry.add(
      "scripted",
      [&](const qrt::config&, boost::asio::any_io_executor ex) -> qrt::result<qrt::provider_ptr> {
        facade_thread = ex;
        return std::make_shared<tells_when_gone>(gone, closed);
      });
  auto client = std::make_unique<qrt::sync::queue_client>(
      qrt::sync::queue_client::open(qrt::config{{"provider", "scripted"}}, registry,
                                    {.retry = std::nullopt})
          .value());

  // The handler waits until post() has returned here: post() still touches the io_context
  // after queueing the handler, and the handler's reset destroys that io_context.
  std::promise<void> posted;
  auto destroyed = std::make_shared<std::promise<void>>();
  auto returned = destroyed->get_future();
  boost::asio::post(facade_thread, [&client, destroyed, after_post = posted.get_future().share()] {
    after_post.wait();
    client.reset();
    destroyed->set_value();
  });
  posted.set_value();
  returned.get();
  provider_gone.get();
  EXPECT_TRUE(*closed);
}

}  // namespace
