// The send batcher. Partial failures come from a recording fake (a real provider cannot be
// made to fail chosen entries of one call); the end-to-end case uses the embedded provider.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <qrt/memory.hpp>
#include <qrt/runtime.hpp>
#include <qrt/send_batcher.hpp>

#include "../support/recording_provider.hpp"

using namespace std::chrono_literals;
using qrt::errc;
using strings = std::vector<std::string>;

namespace {

const auto q = qrt::queue_name::from("out");

qrt::message body(std::string b) {
  return qrt::message{.body = std::move(b)};
}

struct fixture {
  qrt::runtime rt{{.worker_threads = 1}};
  std::shared_ptr<qrt::test::recording_provider> fake;
  qrt::send_batcher batcher;

  fixture(qrt::send_batcher_options o, qrt::test::recording_provider::script s = {})
      : fake(std::make_shared<qrt::test::recording_provider>(std::move(s))),
        batcher(qrt::queue_client(fake, {.retry = std::nullopt}), rt.executor(), std::move(o)) {}

  // Starts a send for each of `bodies` (in order: the runtime has one thread), optionally
  // flushes, then waits for every result from the test thread.
  std::vector<qrt::result<qrt::message_id>> send_all(strings bodies, bool then_flush = false) {
    std::vector<std::future<qrt::result<qrt::message_id>>> pending;
    for (auto& b : bodies) {
      pending.push_back(
          boost::asio::co_spawn(rt.executor(), batcher.send(q, body(b)), boost::asio::use_future));
    }
    if (then_flush) rt.block_on(batcher.flush());
    std::vector<qrt::result<qrt::message_id>> out;
    for (auto& p : pending) out.push_back(p.get());
    return out;
  }
};

}  // namespace

TEST(SendBatcher, FlushesWhenMaxCountIsReached) {
  fixture f({.max_batch_messages = 3, .max_delay = 1h});
  auto r = f.send_all({"a", "b", "c"});
  for (auto& x : r) EXPECT_TRUE(x);
  EXPECT_EQ(f.fake->calls(), (std::vector<strings>{{"a", "b", "c"}}));
  EXPECT_EQ(f.batcher.stats().flushes_by_count, 1u);
}

TEST(SendBatcher, FlushesBeforeMaxBytesWouldBeExceeded) {
  fixture f({.max_batch_messages = 10, .max_batch_bytes = 100, .max_delay = 1h});
  const std::string forty(40, 'x');
  auto r = f.send_all({forty + "1", forty + "2", forty + "3"}, /*then_flush=*/true);
  for (auto& x : r) EXPECT_TRUE(x);
  auto calls = f.fake->calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].size(), 2u) << "41 + 41 fits in 100, a third would not";
  EXPECT_EQ(calls[1], (strings{forty + "3"}));
  EXPECT_EQ(f.batcher.stats().flushes_by_bytes, 1u);
  EXPECT_EQ(f.batcher.stats().flushes_explicit, 1u);
}

TEST(SendBatcher, FlushesAfterMaxDelay) {
  fixture f({.max_batch_messages = 10, .max_delay = 20ms});
  auto r = f.send_all({"lonely"});
  ASSERT_TRUE(r[0]);
  EXPECT_EQ(*r[0], "id-lonely-call0");
  EXPECT_EQ(f.batcher.stats().flushes_by_delay, 1u);
}

// Contract C4: a partial batch failure is handled per message. Only the entries that failed
// transiently are sent again; a permanent failure is reported for its message alone.
TEST(SendBatcher, ResendsOnlyTheFailedEntriesOfAPartialFailure) {
  std::vector<qrt::milliseconds> delays;
  auto script = [](std::size_t call, std::size_t,
                   const qrt::message& m) -> std::optional<qrt::error> {
    if (call == 0 && (m.body == "b" || m.body == "d")) {
      return qrt::fail(errc::connection_failed, "entry dropped");
    }
    if (m.body == "e") return qrt::fail(errc::message_too_large, "too big");
    return std::nullopt;
  };
  auto retry = qrt::retry_policy::fixed_interval(50ms);
  retry.jitter = 0;
  fixture f({.max_batch_messages = 5,
             .max_delay = 1h,
             .retry = retry,
             .sleeper = [&](qrt::milliseconds d) -> qrt::awaitable<void> {
               delays.push_back(d);
               co_return;
             }},
            script);
  auto r = f.send_all({"a", "b", "c", "d", "e"});
  EXPECT_EQ(f.fake->calls(), (std::vector<strings>{{"a", "b", "c", "d", "e"}, {"b", "d"}}));
  EXPECT_EQ(*r[0], "id-a-call0");
  EXPECT_EQ(*r[1], "id-b-call1");
  EXPECT_EQ(*r[2], "id-c-call0");
  EXPECT_EQ(*r[3], "id-d-call1");
  ASSERT_FALSE(r[4]);
  EXPECT_EQ(r[4].error().code, errc::message_too_large);
  EXPECT_EQ(delays, (std::vector<qrt::milliseconds>{50ms}));
  EXPECT_EQ(f.batcher.stats().resent_entries, 2u);
}

TEST(SendBatcher, SendsThroughTheEmbeddedProviderAndKeepsEveryMessage) {
  qrt::runtime rt{{.worker_threads = 2}};
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(memory);
  ASSERT_TRUE(rt.block_on(client.create_queue(q)));
  qrt::send_batcher batcher(client, rt.executor(), {.max_batch_messages = 10, .max_delay = 5ms});
  rt.block_on([&]() -> qrt::awaitable<void> {
    for (int i = 0; i < 25; ++i) {
      auto id = co_await batcher.send(q, body("m" + std::to_string(i)));
      EXPECT_TRUE(id);
    }
  }());
  auto got = rt.block_on(client.receive(q, 100, 0ms)).value();
  ASSERT_EQ(got.size(), 25u);
  for (int i = 0; i < 25; ++i) EXPECT_EQ(got[i].body, "m" + std::to_string(i));
}
