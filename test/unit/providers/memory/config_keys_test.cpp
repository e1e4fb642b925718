// Every configuration key the embedded provider accepts, each shown acting on behaviour: the
// project promises that an accepted key acts or is refused naming it, never silently ignored.
// The table below must name every key of qrt::memory::known_keys() (the list reject_unknown()
// uses), so a key added to the provider without a row here fails this test.
#include "../../support/config_keys.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <qrt/memory.hpp>
#include <qrt/processor.hpp>
#include <qrt/qrt.hpp>
#include <qrt/runtime.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "../../support/messages.hpp"
#include "../../support/runtime_key.hpp"
#include "../../support/session_keys.hpp"
#include "../../support/wait.hpp"
#include "providers/memory/memory_provider.hpp"

using namespace std::chrono_literals;
using qrt::config;
using qrt::errc;
using qrt::message;
using qrt::queue_name;
using qrt::sync::queue_client;
using qrt::test::eventually;
using qrt::test::scratch_dir;
using qrt::test::text;

namespace {

const queue_name q = queue_name::from("q");

qrt::result<queue_client> try_open(config cfg, qrt::client_options co = {}) {
  cfg.set("provider", "memory");
  co.retry = std::nullopt;
  return queue_client::open(cfg, qrt::builtin_providers(), co);
}

queue_client open(config cfg, qrt::client_options co = {}) {
  auto c = try_open(std::move(cfg), co);
  EXPECT_TRUE(c) << c.error().to_string();
  return std::move(c).value();
}

/// A client whose sends give up after `timeout` (a full queue makes sends wait until then).
queue_client open_with_send_timeout(config cfg, std::chrono::milliseconds timeout) {
  qrt::client_options co;
  co.send_timeout = timeout;
  return open(std::move(cfg), co);
}

std::uint64_t syncs_of(queue_client& c) {
  auto n = qrt::memory::detail::persistence_syncs(*c.async_client().underlying());
  EXPECT_TRUE(n.has_value()) << "the provider has no persistence log";
  return n.value_or(0);
}

// ---- one check per key ----

void provider_key() {
  // provider=memory picks this provider (try_open sets it); another name picks another.
  auto c = open({{"queues", "q"}});
  EXPECT_EQ(c.async_client().provider_name(), "memory");
  auto other =
      queue_client::open(config{{"provider", "no-such-provider"}}, qrt::builtin_providers());
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, errc::configuration_error);
}

void preset_key() {
  // testing: 100 messages per call (channel_buffer_size) and 1,000 per queue.
  auto c = open({{"preset", "testing"}, {"queues", "q"}});
  std::vector<message> batch;
  for (int i = 0; i < 150; ++i) batch.push_back(text("m"));
  for (auto& outcome : c.send_batch(q, batch).value()) ASSERT_TRUE(outcome);
  EXPECT_EQ(c.receive(q, 1'000, 0ms).value().size(), 100u);
  // high_throughput: the runtime built from the same configuration runs one thread per
  // hardware thread, and a processor takes the high-throughput concurrency.
  const config high{{"provider", "memory"}, {"preset", "high_throughput"}};
  EXPECT_EQ(qrt::runtime_configuration::from_config(high).value().worker_threads,
            std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_EQ(qrt::processor_options::from_config(high).value().max_concurrent_calls, 32u);
  // low_resource: the provider keeps its defaults (testing would move 100 messages per call),
  // and the runtime from the same configuration is the low-resource one.
  const config low{{"provider", "memory"}, {"preset", "low_resource"}};
  ASSERT_TRUE(qrt::memory::options_from_config(low));
  EXPECT_EQ(qrt::memory::options_from_config(low).value().channel_buffer_size,
            qrt::memory::options{}.channel_buffer_size);
  auto low_runtime = qrt::runtime_configuration::from_config(low);
  ASSERT_TRUE(low_runtime) << low_runtime.error().to_string();
  EXPECT_EQ(low_runtime->worker_threads, 2u);
  EXPECT_EQ(low_runtime->thread_stack_size, std::size_t{1} << 20);
  // Anything else is refused, naming the key and the value.
  auto bad = try_open({{"preset", "fastest"}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("preset"), std::string::npos);
  EXPECT_NE(bad.error().message.find("'fastest'"), std::string::npos);
}

void max_queue_size_key() {
  auto c = open_with_send_timeout({{"max_queue_size", "2"}, {"queues", "q"}}, 100ms);
  ASSERT_TRUE(c.send(q, text("1")));
  ASSERT_TRUE(c.send(q, text("2")));
  auto third = c.send(q, text("3"));
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code, errc::queue_full);
  EXPECT_NE(third.error().message.find("max_queue_size"), std::string::npos)
      << third.error().message;
}

void max_dead_letter_queue_size_key() {
  auto c = open({{"max_dead_letter_queue_size", "1"}, {"queues", "q"}});
  ASSERT_TRUE(c.send(q, text("1")));
  ASSERT_TRUE(c.send(q, text("2")));
  auto got = c.receive(q, 2, 0ms).value();
  ASSERT_EQ(got.size(), 2u);
  ASSERT_TRUE(c.dead_letter(got[0].receipt, "r"));
  auto second = c.dead_letter(got[1].receipt, "r");
  ASSERT_FALSE(second) << "a one-message dead-letter queue took a second message";
  EXPECT_EQ(second.error().code, errc::queue_full);
}

/// Keys of the persistence log are refused without it, naming the key (they would do nothing).
void refused_without_persistence(const char* key, const char* value) {
  auto r = try_open({{key, value}});
  ASSERT_FALSE(r) << key << " was taken without enable_persistence";
  EXPECT_EQ(r.error().code, errc::configuration_error);
  EXPECT_NE(r.error().message.find(key), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("enable_persistence"), std::string::npos) << r.error().message;
}

void enable_persistence_key() {
#ifdef QRT_WITH_PERSISTENCE
  scratch_dir dir;
  {
    auto c = open({{"enable_persistence", "true"}, {"persistence_path", dir.str()}});
    ASSERT_TRUE(c.create_queue(q));
    ASSERT_TRUE(c.send(q, text("kept")));
  }
  auto reopened = open({{"enable_persistence", "true"}, {"persistence_path", dir.str()}});
  auto got = reopened.receive(q, 1, 0ms);
  ASSERT_TRUE(got) << got.error().to_string();
  ASSERT_EQ(got->size(), 1u) << "the message did not survive a reopen";
  EXPECT_EQ((*got)[0].body, "kept");
  // Without it, a new provider starts empty.
  auto volatile_client = open({{"queues", "q"}});
  EXPECT_TRUE(volatile_client.receive(q, 1, 0ms).value().empty());
#else
  auto r = try_open({{"enable_persistence", "true"}, {"persistence_path", "/tmp/x"}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("enable_persistence"), std::string::npos);
#endif
}

void persistence_path_key() {
  refused_without_persistence("persistence_path", "/tmp/x");
  // The log lives in that directory; it is required with enable_persistence.
#ifdef QRT_WITH_PERSISTENCE
  scratch_dir dir;
  const auto where = dir.path() / "nested";
  auto c = open({{"enable_persistence", "true"}, {"persistence_path", where.string()}});
  ASSERT_TRUE(c.create_queue(q));
  ASSERT_TRUE(c.send(q, text("x")));
  EXPECT_TRUE(std::filesystem::is_directory(where));
  EXPECT_FALSE(std::filesystem::is_empty(where)) << "no log written under persistence_path";
#endif
  auto missing = try_open({{"enable_persistence", "true"}});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("persistence_path"), std::string::npos);
}

void persistence_open_timeout_key() {
  refused_without_persistence("persistence_open_timeout", "1s");
#ifdef QRT_WITH_PERSISTENCE
  scratch_dir dir;
  auto holder = open({{"enable_persistence", "true"}, {"persistence_path", dir.str()}});
  // Without it a second opener fails at once; with it, it waits that long first.
  auto at_once = try_open({{"enable_persistence", "true"}, {"persistence_path", dir.str()}});
  ASSERT_FALSE(at_once);
  EXPECT_EQ(at_once.error().message.find("waited"), std::string::npos) << at_once.error().message;
  auto waited = try_open({{"enable_persistence", "true"},
                          {"persistence_path", dir.str()},
                          {"persistence_open_timeout", "40ms"}});
  ASSERT_FALSE(waited);
  EXPECT_NE(waited.error().message.find("waited 40 ms"), std::string::npos)
      << waited.error().message;
#endif
}

void durability_key() {
  refused_without_persistence("durability", "always");
#ifdef QRT_WITH_PERSISTENCE
  // always: a send returns once its record is synced to disk.
  {
    scratch_dir dir;
    auto c = open({{"enable_persistence", "true"},
                   {"persistence_path", dir.str()},
                   {"durability", "always"}});
    ASSERT_TRUE(c.create_queue(q));
    const auto before = syncs_of(c);
    ASSERT_TRUE(c.send(q, text("x")));
    EXPECT_GT(syncs_of(c), before) << "durability=always returned before a sync";
  }
  // none: the log is written but never synced.
  {
    scratch_dir dir;
    auto c = open(
        {{"enable_persistence", "true"}, {"persistence_path", dir.str()}, {"durability", "none"}});
    ASSERT_TRUE(c.create_queue(q));
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(c.send(q, text("x")));
    EXPECT_EQ(syncs_of(c), 0u) << "durability=none synced";
  }
  auto bad = try_open({{"durability", "sometimes"}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("durability"), std::string::npos);
#endif
}

void sync_interval_key() {
  refused_without_persistence("sync_interval", "20ms");
#ifdef QRT_WITH_PERSISTENCE
  {
    // Only durability=interval has a sync period.
    scratch_dir dir;
    auto r = try_open(
        {{"enable_persistence", "true"}, {"persistence_path", dir.str()}, {"sync_interval", "1s"}});
    ASSERT_FALSE(r) << "sync_interval taken with durability=always";
    EXPECT_NE(r.error().message.find("sync_interval"), std::string::npos);
  }
  // durability=interval syncs what was written every sync_interval: a short one syncs soon
  // after a send, a long one not within a window far longer than the short one.
  {
    scratch_dir dir;
    auto c = open({{"enable_persistence", "true"},
                   {"persistence_path", dir.str()},
                   {"durability", "interval"},
                   {"sync_interval", "20ms"}});
    ASSERT_TRUE(c.create_queue(q));
    ASSERT_TRUE(c.send(q, text("x")));
    EXPECT_TRUE(eventually([&] { return syncs_of(c) > 0; })) << "no sync after sync_interval";
  }
  {
    scratch_dir dir;
    auto c = open({{"enable_persistence", "true"},
                   {"persistence_path", dir.str()},
                   {"durability", "interval"},
                   {"sync_interval", "1h"}});
    ASSERT_TRUE(c.create_queue(q));
    ASSERT_TRUE(c.send(q, text("x")));
    EXPECT_FALSE(eventually([&] { return syncs_of(c) > 0; }, 300ms))
        << "synced long before a sync_interval of an hour";
  }
#endif
}

void max_disk_bytes_key() {
  refused_without_persistence("max_disk_bytes", "1000");
#ifdef QRT_WITH_PERSISTENCE
  scratch_dir dir;
  auto c = open_with_send_timeout({{"enable_persistence", "true"},
                                   {"persistence_path", dir.str()},
                                   {"max_disk_bytes", "20000"}},
                                  100ms);
  ASSERT_TRUE(c.create_queue(q));
  qrt::result<qrt::message_id> r = qrt::message_id{};
  int sent = 0;
  while (sent < 1'000 && (r = c.send(q, text(std::string(1'000, 'x'))))) ++sent;
  ASSERT_FALSE(r) << "20 kB of disk took 1 MB of messages";
  EXPECT_EQ(r.error().code, errc::queue_full);
  EXPECT_NE(r.error().message.find("disk limit"), std::string::npos) << r.error().message;

  // A limit the empty log already reaches could never take a message: refused at open.
  scratch_dir tiny;
  auto refused = try_open(
      {{"enable_persistence", "true"}, {"persistence_path", tiny.str()}, {"max_disk_bytes", "8"}});
  ASSERT_FALSE(refused) << "a log of 8 bytes was accepted";
  EXPECT_EQ(refused.error().code, errc::configuration_error);
  EXPECT_NE(refused.error().message.find("max_disk_bytes"), std::string::npos)
      << refused.error().message;
#endif
}

void worker_threads_key() {
  // The provider itself runs on its caller's executor and only checks the key; it sizes the
  // runtime built from the same configuration.
  const config cfg{{"provider", "memory"}, {"worker_threads", "3"}};
  ASSERT_TRUE(qrt::memory::options_from_config(cfg));
  qrt::test::expect_a_runtime_of_three_threads_from(cfg);
  auto refused = try_open({{"worker_threads", "0"}});
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("worker_threads"), std::string::npos)
      << refused.error().message;
}

// The provider only checks a session processor's keys; the session processor's options built
// from the same configuration carry them.
void expect_session_key(std::string_view key) {
  qrt::test::expect_a_session_processor_key(
      key,
      [](std::string_view k, std::string_view v) {
        return config{{"provider", "memory"}, {std::string(k), std::string(v)}};
      },
      [](const config& cfg) -> qrt::result<void> {
        auto o = qrt::memory::options_from_config(cfg);
        if (!o) return o.error();
        return {};
      });
}

void max_concurrent_sessions_key() {
  expect_session_key("max_concurrent_sessions");
}

void session_idle_timeout_key() {
  expect_session_key("session_idle_timeout");
}

void max_session_hold_key() {
  expect_session_key("max_session_hold");
}

void thread_stack_size_key() {
  // Only checked by the provider, like worker_threads; the runtime's threads get the stack.
  const std::size_t size = qrt::test::a_stack_size_above_the_default();
  const config cfg{{"provider", "memory"}, {"thread_stack_size", std::to_string(size)}};
  ASSERT_TRUE(qrt::memory::options_from_config(cfg));
  qrt::test::expect_a_runtime_with_stacks_of(cfg, size);
  auto refused = try_open({{"thread_stack_size", "1024"}});
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("thread_stack_size"), std::string::npos)
      << refused.error().message;
}

// A processor over the provider built from `cfg`, its options from the same config.
struct config_processor {
  explicit config_processor(const config& cfg, qrt::message_handler handler)
      : client(qrt::builtin_providers().make(cfg, rt.executor()).value(),
               qrt::client_options{.retry = std::nullopt}),
        p(client, q, std::move(handler), qrt::processor_options::from_config(cfg).value()) {}
  qrt::runtime rt{{.worker_threads = 4}};
  qrt::queue_client client;
  qrt::processor p;
  void send(int n) {
    for (int i = 0; i < n; ++i) EXPECT_TRUE(rt.block_on(client.send(q, text("m"))));
  }
  std::int64_t locked() { return rt.block_on(client.stats(q)).value().in_flight; }
  ~config_processor() { rt.block_on(p.stop(5s)); }
};

qrt::awaitable<void> pause_for(std::chrono::milliseconds d) {
  boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, d);
  co_await t.async_wait(boost::asio::use_awaitable);
}

void max_concurrent_calls_key() {
  // A processor from the config runs at most that many handlers at once.
  std::atomic<bool> release{false};
  qrt::test::counter started;
  config_processor cp(
      config{{"provider", "memory"}, {"queues", "q"}, {"max_concurrent_calls", "2"}},
      [&](const qrt::received_message&) -> qrt::awaitable<qrt::result<void>> {
        started.add();
        while (!release) co_await pause_for(5ms);
        co_return qrt::result<void>{};
      });
  cp.send(6);
  cp.p.start(cp.rt.executor());
  ASSERT_TRUE(started.wait_for_at_least(2));
  EXPECT_FALSE(started.wait_for_at_least(3, 300ms)) << "a third handler ran beside two";
  release = true;
  EXPECT_TRUE(eventually([&] { return cp.p.stats().completed == 6; }));
  EXPECT_EQ(cp.p.stats().max_in_flight, 2u);
}

void prefetch_count_key() {
  // With one handler busy, the processor holds prefetch_count more messages locked: 1 + 3.
  for (auto [prefetch, held] : {std::pair{"3", 4}, {"0", 1}}) {
    std::atomic<bool> release{false};
    qrt::test::counter started;
    config_processor cp(config{{"provider", "memory"},
                               {"queues", "q"},
                               {"max_concurrent_calls", "1"},
                               {"prefetch_count", prefetch}},
                        [&](const qrt::received_message&) -> qrt::awaitable<qrt::result<void>> {
                          started.add();
                          while (!release) co_await pause_for(5ms);
                          co_return qrt::result<void>{};
                        });
    cp.send(10);
    cp.p.start(cp.rt.executor());
    ASSERT_TRUE(started.wait_for_at_least(1));
    EXPECT_TRUE(eventually([&] { return cp.locked() == held; })) << prefetch;
    EXPECT_FALSE(eventually([&] { return cp.locked() > held; }, 300ms)) << prefetch;
    release = true;
    EXPECT_TRUE(eventually([&] { return cp.p.stats().completed == 10; }));
  }
}

void max_auto_lock_renewal_duration_key() {
  // A handler that runs 1.5 s on a 500 ms lock: renewed while it runs (and completed) for up
  // to 1 min; with 100 ms it is never renewed and the completion finds the lock gone.
  for (auto [renewal, completes] : {std::pair{"1m", true}, {"100ms", false}}) {
    qrt::test::counter finished;
    config_processor cp(config{{"provider", "memory"},
                               {"queues", "q"},
                               {"lock_duration", "500ms"},
                               {"max_auto_lock_renewal_duration", renewal}},
                        [&](const qrt::received_message&) -> qrt::awaitable<qrt::result<void>> {
                          co_await pause_for(1500ms);
                          finished.add();
                          co_return qrt::result<void>{};
                        });
    cp.send(1);
    cp.p.start(cp.rt.executor());
    ASSERT_TRUE(finished.wait_for_at_least(1)) << renewal;
    ASSERT_TRUE(eventually([&] {
      const auto s = cp.p.stats();
      return s.completed + s.settle_failures >= 1;
    }));
    EXPECT_EQ(cp.p.stats().completed, completes ? 1u : 0u) << renewal;
    EXPECT_EQ(cp.p.stats().lock_renewals > 0, completes) << renewal;
  }
}

void channel_buffer_size_key() {
  // The most messages one call moves: receive hands out at most that many, and the client
  // splits a larger send into batches of that size.
  auto c = open({{"channel_buffer_size", "3"}, {"queues", "q"}});
  EXPECT_EQ(c.caps().max_batch_messages, 3u);
  std::vector<message> batch;
  for (int i = 0; i < 7; ++i) batch.push_back(text("m"));
  for (auto& outcome : c.send_batch(q, batch).value()) ASSERT_TRUE(outcome);
  EXPECT_EQ(c.receive(q, 10, 0ms).value().size(), 3u);
  EXPECT_EQ(c.receive(q, 10, 0ms).value().size(), 3u);
  EXPECT_EQ(c.receive(q, 10, 0ms).value().size(), 1u);
}

void receive_spin_us_key() {
  // A receive that finds its queue empty keeps looking for receive_spin_us before it parks,
  // each look a continuation queued on the thread that runs it; 0 parks at once. On an
  // io_context of the test's own that shows without a clock: while the receive spins there is
  // always a handler ready to run, once it has parked there is none.
  constexpr int rounds = 200;  // handlers run one at a time; far fewer than a 1 s spin allows
  for (const auto& [spin_us, spins] : {std::pair{"0", false}, std::pair{"1000000", true}}) {
    SCOPED_TRACE(std::string("receive_spin_us=") + spin_us);
    auto c = open({{"receive_spin_us", spin_us}, {"queues", "q"}});
    auto& provider = *c.async_client().underlying();
    boost::asio::io_context io;
    std::optional<qrt::result<std::vector<qrt::received_message>>> got;
    boost::asio::co_spawn(
        io, [&]() -> qrt::awaitable<void> { got = co_await provider.receive(q, 1, 600s); },
        boost::asio::detached);
    int ran = 0;
    while (ran < rounds && io.poll_one() > 0) ++ran;
    ASSERT_FALSE(got) << "the receive returned from an empty queue";
    if (spins) {
      EXPECT_EQ(ran, rounds) << "the receive parked instead of spinning";
    } else {
      EXPECT_LT(ran, rounds) << "the receive kept looking instead of parking";
    }
    // Spinning or parked, the receive takes what another thread sends.
    ASSERT_TRUE(c.send(q, text("after the wait began")));
    io.restart();
    while (!got && io.run_one_for(30s) > 0) {
    }
    ASSERT_TRUE(got && *got) << "the receive missed the message";
    ASSERT_EQ((*got)->size(), 1u);
    EXPECT_EQ((**got)[0].body, "after the wait began");
  }
}

void max_message_bytes_key() {
  auto c = open({{"max_message_bytes", "100"}, {"queues", "q"}});
  ASSERT_TRUE(c.send(q, text(std::string(50, 'x'))));
  auto big = c.send(q, text(std::string(200, 'x')));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, errc::message_too_large);
}

void max_queue_bytes_key() {
  const auto one = 100 + qrt::memory::stored_message_overhead_bytes;
  auto c = open_with_send_timeout(
      {{"max_queue_bytes", std::to_string(2 * one - 1)}, {"queues", "a,b"}}, 100ms);
  ASSERT_TRUE(c.send(queue_name::from("a"), text(std::string(100, 'x'))));
  auto second = c.send(queue_name::from("a"), text(std::string(100, 'x')));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, errc::queue_full);
  EXPECT_NE(second.error().message.find("max_queue_bytes"), std::string::npos);
  // Per queue: another queue has its own bytes.
  EXPECT_TRUE(c.send(queue_name::from("b"), text(std::string(100, 'x'))));
}

void max_memory_bytes_key() {
  const auto one = 100 + qrt::memory::stored_message_overhead_bytes;
  auto c = open_with_send_timeout(
      {{"max_memory_bytes", std::to_string(2 * one - 1)}, {"queues", "a,b"}}, 100ms);
  ASSERT_TRUE(c.send(queue_name::from("a"), text(std::string(100, 'x'))));
  // Provider-wide: another queue shares the budget.
  auto second = c.send(queue_name::from("b"), text(std::string(100, 'x')));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, errc::queue_full);
  EXPECT_NE(second.error().message.find("max_memory_bytes"), std::string::npos);
}

void queues_key() {
  auto c = open({{"queues", "orders,billing"}});
  EXPECT_TRUE(c.send(queue_name::from("orders"), text("x")));
  EXPECT_TRUE(c.send(queue_name::from("billing"), text("x")));
  auto other = c.send(queue_name::from("shipping"), text("x"));
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, errc::queue_not_found);
}

void lock_duration_key() {
  // A received message that is not settled becomes receivable again when its lock runs out.
  auto c = open({{"lock_duration", "200ms"}, {"queues", "q"}});
  ASSERT_TRUE(c.send(q, text("x")));
  ASSERT_EQ(c.receive(q, 1, 0ms).value().size(), 1u);
  auto again = c.receive(q, 1, 10s).value();  // returns as soon as the lock expires
  ASSERT_EQ(again.size(), 1u) << "the lock did not expire";
  EXPECT_EQ(again[0].delivery_count, 2u);
  // The default (30 s) keeps it locked well past that.
  auto held = open({{"queues", "q"}});
  ASSERT_TRUE(held.send(q, text("x")));
  ASSERT_EQ(held.receive(q, 1, 0ms).value().size(), 1u);
  EXPECT_TRUE(held.receive(q, 1, 400ms).value().empty());
}

void max_delivery_count_key() {
  auto c = open({{"max_delivery_count", "2"}, {"queues", "q"}});
  ASSERT_TRUE(c.send(q, text("poison")));
  int deliveries = 0;
  for (;;) {
    auto got = c.receive(q, 1, 0ms).value();
    if (got.empty()) break;
    ++deliveries;
    ASSERT_LE(deliveries, 5) << "never dead-lettered";
    ASSERT_TRUE(c.abandon(got[0].receipt));
  }
  EXPECT_EQ(deliveries, 2);
  auto dlq = c.receive(q.dead_letter(), 1, 0ms).value();
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].body, "poison");
}

void default_time_to_live_key() {
  // A message sent without its own time to live expires after this one and, by default,
  // moves to the dead-letter queue. (Not received meanwhile: a locked message may finish.)
  auto c = open({{"default_time_to_live", "100ms"}, {"queues", "q"}});
  ASSERT_TRUE(c.send(q, text("short-lived")));
  ASSERT_TRUE(eventually([&] { return c.stats(q).value().expired >= 1; })) << "never expired";
  EXPECT_TRUE(c.receive(q, 1, 0ms).value().empty()) << "delivered after it expired";
  auto dlq = c.receive(q.dead_letter(), 1, 0ms).value();
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].body, "short-lived");
  // Without it, a message stays.
  auto keeps = open({{"queues", "q"}});
  ASSERT_TRUE(keeps.send(q, text("x")));
  EXPECT_FALSE(eventually([&] { return keeps.stats(q).value().expired >= 1; }, 300ms));
}

void dead_letter_on_expiration_key() {
  // false: an expired message is dropped instead of dead-lettered.
  auto c = open(
      {{"default_time_to_live", "50ms"}, {"dead_letter_on_expiration", "false"}, {"queues", "q"}});
  ASSERT_TRUE(c.send(q, text("x")));
  ASSERT_TRUE(eventually([&] { return c.stats(q).value().expired >= 1; })) << "never expired";
  EXPECT_TRUE(c.receive(q.dead_letter(), 1, 0ms).value().empty())
      << "dead-lettered although dead_letter_on_expiration=false";
  EXPECT_TRUE(c.receive(q, 1, 0ms).value().empty());
}

void requires_session_key() {
  auto c = open({{"requires_session", "true"}, {"queues", "q"}});
  auto plain = c.send(q, text("x"));
  ASSERT_FALSE(plain) << "a session queue took a message without a session id";
  message m = text("y");
  m.session = qrt::session_id::from("s1");
  ASSERT_TRUE(c.send(q, m));
  EXPECT_FALSE(c.receive(q, 1, 0ms)) << "a session queue delivered outside a session";
  auto s = c.accept_session(q, std::nullopt, 1s);
  ASSERT_TRUE(s) << s.error().to_string();
  auto got = s->receive(1, 0ms).value();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, "y");
}

struct key_row {
  std::string_view key;
  void (*shows_effect)();
};

const key_row rows[] = {
    {"provider", provider_key},
    {"preset", preset_key},
    {"max_queue_size", max_queue_size_key},
    {"max_dead_letter_queue_size", max_dead_letter_queue_size_key},
    {"enable_persistence", enable_persistence_key},
    {"persistence_path", persistence_path_key},
    {"persistence_open_timeout", persistence_open_timeout_key},
    {"durability", durability_key},
    {"sync_interval", sync_interval_key},
    {"max_disk_bytes", max_disk_bytes_key},
    {"worker_threads", worker_threads_key},
    {"thread_stack_size", thread_stack_size_key},
    {"channel_buffer_size", channel_buffer_size_key},
    {"receive_spin_us", receive_spin_us_key},
    {"max_message_bytes", max_message_bytes_key},
    {"max_queue_bytes", max_queue_bytes_key},
    {"max_memory_bytes", max_memory_bytes_key},
    {"queues", queues_key},
    {"lock_duration", lock_duration_key},
    {"max_delivery_count", max_delivery_count_key},
    {"default_time_to_live", default_time_to_live_key},
    {"dead_letter_on_expiration", dead_letter_on_expiration_key},
    {"requires_session", requires_session_key},
    {"max_concurrent_calls", max_concurrent_calls_key},
    {"prefetch_count", prefetch_count_key},
    {"max_auto_lock_renewal_duration", max_auto_lock_renewal_duration_key},
    {"max_concurrent_sessions", max_concurrent_sessions_key},
    {"session_idle_timeout", session_idle_timeout_key},
    {"max_session_hold", max_session_hold_key},
};

void PrintTo(const key_row& row, std::ostream* os) {
  *os << row.key;
}

class MemoryConfigKey : public ::testing::TestWithParam<key_row> {};

}  // namespace

TEST(MemoryConfigKeys, TheTableNamesExactlyTheKeysTheProviderAccepts) {
  qrt::test::expect_a_row_for_exactly(qrt::memory::known_keys(), rows);
  qrt::test::expect_documented(qrt::memory::known_keys(), "docs/memory.md");
  // And the provider refuses what is not in its list, naming it.
  auto typo = try_open({{"max_queue_sise", "2"}});
  ASSERT_FALSE(typo);
  EXPECT_NE(typo.error().message.find("max_queue_sise"), std::string::npos);
}

TEST_P(MemoryConfigKey, ActsOnBehaviour) {
  GetParam().shows_effect();
}

INSTANTIATE_TEST_SUITE_P(EveryKey, MemoryConfigKey, ::testing::ValuesIn(rows),
                         [](const ::testing::TestParamInfo<key_row>& info) {
                           return std::string(info.param.key);
                         });
