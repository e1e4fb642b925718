// Behaviour of the harness (counts, validation, report files), never its speed.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <qrt/bench/extra_runs.hpp>
#include <qrt/bench/harness.hpp>
#include <qrt/bench/report.hpp>
#include <qrt/fault_injection.hpp>
#include <qrt/memory.hpp>
#include <qrt/qrt.hpp>
#include <sstream>

#include "../support/forwarding_provider.hpp"

namespace qrt::bench {
namespace {

TEST(BenchBody, CarriesItsSendTimeAndHasTheRequestedSize) {
  const auto t = std::chrono::steady_clock::now();
  const auto body = make_body(64, t);
  EXPECT_EQ(body.size(), 64u);
  EXPECT_EQ(read_send_time(body), t);
  EXPECT_FALSE(read_send_time("short"));
  EXPECT_FALSE(read_send_time("zzzzzzzzzzzzzzzzzzzz"));
}

TEST(Harness, EveryMessageSentIsReceivedAndCompletedOnTheEmbeddedProvider) {
  bench_options o;
  o.messages = 3'003;
  o.threads = 1;
  o.sample_interval = std::chrono::milliseconds(20);
  auto r = run_benchmark(o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->provider, "memory");
  EXPECT_EQ(r->messages_sent, 3'003u);
  EXPECT_EQ(r->messages_received, 3'003u);
  EXPECT_EQ(r->e2e.count, 3'003u);
  EXPECT_EQ(r->send_errors + r->receive_errors + r->complete_errors, 0u);
  EXPECT_EQ(r->duplicates, 0u);
  EXPECT_GT(r->e2e_throughput, 0);
  EXPECT_LE(r->e2e.p50_us, r->e2e.p99_us);
  EXPECT_LE(r->e2e.p99_us, r->e2e.max_us);
  EXPECT_GT(r->peak_rss_bytes, 0u);
  // 301 sends, then at least 301 receives that brought messages and as many settlements.
  EXPECT_GE(r->provider_calls, 3u * 301);
  EXPECT_EQ(r->failed_calls, 0u);
  EXPECT_FALSE(r->connections_opened) << "the embedded provider has no connections to count";
}

TEST(Harness, RefusesInvalidOptionsNamingTheProblem) {
  bench_options o;
  o.message_size = 8;
  auto r = run_benchmark(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
  EXPECT_NE(r.error().message.find("message size"), std::string::npos);

  bench_options none;
  none.consumers = 0;
  EXPECT_FALSE(run_benchmark(none));

  bench_options unknown;
  unknown.provider_config = config{{"provider", "carrier-pigeon"}};
  auto u = run_benchmark(unknown);
  ASSERT_FALSE(u);
  EXPECT_NE(u.error().message.find("carrier-pigeon"), std::string::npos);
}

// `--queue` may name a queue that already holds messages (a user's on a broker, one in a
// persisted store): the run received and completed them along with its own, and they were gone.
// It now refuses to start, saying how many the queue holds, and the messages stay where they
// were; emptied, the same queue runs.
TEST(Harness, ARunRefusesAQueueThatAlreadyHoldsMessagesAndLeavesThemThere) {
  const auto store =
      std::filesystem::temp_directory_path() / ("qrt_bench_store_" + std::to_string(::getpid()));
  std::filesystem::remove_all(store);
  const config persisted{{"provider", "memory"},
                         {"enable_persistence", "true"},
                         {"persistence_path", store.string()},
                         {"durability", "none"},
                         {"queues", "users-queue"}};
  const auto q = queue_name::from("users-queue");
  {
    auto user = sync::queue_client::open(persisted, builtin_providers());
    ASSERT_TRUE(user) << user.error().to_string();
    for (int i = 0; i < 40; ++i) {
      message m;
      // One of them stamped as a benchmark's would be: a run would have taken it as its own.
      m.body = i % 2 ? make_body(256, std::chrono::steady_clock::time_point{})
                     : "order " + std::to_string(i);
      ASSERT_TRUE(user->send(q, m));
    }
  }
  bench_options o;
  o.provider_config = persisted;
  o.queue = "users-queue";
  o.messages = 100;
  o.threads = 1;
  for (const bool create : {true, false}) {
    o.create_queue = create;
    auto r = run_benchmark(o);
    ASSERT_FALSE(r) << "the run started on a queue holding a user's messages";
    EXPECT_EQ(r.error().code, errc::invalid_argument) << r.error().to_string();
    EXPECT_NE(r.error().message.find("queue 'users-queue' already holds 40 messages (40 ready"),
              std::string::npos)
        << r.error().message;
    EXPECT_NE(r.error().message.find("--queue"), std::string::npos) << r.error().message;
  }
  {
    auto user = sync::queue_client::open(persisted, builtin_providers());
    ASSERT_TRUE(user) << user.error().to_string();
    auto depth = user->stats(q);
    ASSERT_TRUE(depth) << depth.error().to_string();
    EXPECT_EQ(depth->active, 40) << "the user's messages were taken off the queue";
    for (int taken = 0; taken < 40;) {
      auto got = user->receive(q, 40, std::chrono::milliseconds(100));
      ASSERT_TRUE(got) << got.error().to_string();
      ASSERT_FALSE(got->empty());
      for (const auto& m : *got) ASSERT_TRUE(user->complete(m.receipt));
      taken += static_cast<int>(got->size());
    }
  }
  o.create_queue = true;
  auto emptied = run_benchmark(o);
  ASSERT_TRUE(emptied) << emptied.error().to_string();
  EXPECT_EQ(emptied->messages_received, 100u);
  std::filesystem::remove_all(store);
}

// A provider that, like an AMQP 1.0 broker, tells neither how many messages a queue holds nor
// (without peek) which ones: everything else is the wrapped provider's.
class depth_unknown final : public provider {
 public:
  explicit depth_unknown(provider_ptr inner) : inner_(std::move(inner)), caps_(inner_->caps()) {
    caps_.peek = false;
  }
  std::string_view name() const noexcept override { return inner_->name(); }
  const capabilities& caps() const noexcept override { return caps_; }
  awaitable<result<void>> create_queue(const queue_name& q, const queue_options& o) override {
    return inner_->create_queue(q, o);
  }
  awaitable<result<void>> delete_queue(const queue_name& q) override {
    return inner_->delete_queue(q);
  }
  awaitable<result<queue_stats>> stats(const queue_name& q) override {
    auto there = co_await inner_->stats(q);
    if (!there) co_return there.error();
    co_return queue_stats{};  // every figure unknown
  }
  awaitable<result<std::vector<send_outcome>>> send(const queue_name& q, std::vector<message> m,
                                                    milliseconds timeout) override {
    return inner_->send(q, std::move(m), timeout);
  }
  awaitable<result<std::vector<received_message>>> receive(const queue_name& q, std::size_t max,
                                                           milliseconds wait) override {
    return inner_->receive(q, max, wait);
  }
  awaitable<result<std::vector<received_message>>> peek(const queue_name& q, std::size_t max,
                                                        std::int64_t from) override {
    return inner_->peek(q, max, from);
  }
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> s) override {
    return inner_->settle(std::move(s));
  }
  awaitable<result<time_point>> renew_lock(const receipt_handle& r) override {
    return inner_->renew_lock(r);
  }
  awaitable<result<std::shared_ptr<session_receiver>>> accept_session(
      const queue_name& q, std::optional<session_id> session, milliseconds wait) override {
    return inner_->accept_session(q, std::move(session), wait);
  }
  awaitable<void> close() override { return inner_->close(); }

 private:
  provider_ptr inner_;
  capabilities caps_;
};

// A provider over connections, as a network one: its first call opens one, and every fourth
// send opens another (as a pool that lets connections go). The third send refuses its first
// message (the call fails for one of its messages); everything else is the wrapped provider's.
class connecting final : public provider {
 public:
  explicit connecting(provider_ptr inner) : inner_(std::move(inner)) {}
  std::string_view name() const noexcept override { return inner_->name(); }
  const capabilities& caps() const noexcept override { return inner_->caps(); }
  connection_stats connections() const noexcept override {
    connection_stats c;
    c.connections_opened = opened_.load();
    return c;
  }
  awaitable<result<void>> create_queue(const queue_name& q, const queue_options& o) override {
    connect();
    return inner_->create_queue(q, o);
  }
  awaitable<result<void>> delete_queue(const queue_name& q) override {
    connect();
    return inner_->delete_queue(q);
  }
  awaitable<result<queue_stats>> stats(const queue_name& q) override {
    connect();
    return inner_->stats(q);
  }
  awaitable<result<std::vector<send_outcome>>> send(const queue_name& q, std::vector<message> m,
                                                    milliseconds timeout) override {
    connect();
    const auto n = ++sends_;
    if (n % 4 == 0) ++opened_;
    if (n != 3 || m.empty()) co_return co_await inner_->send(q, std::move(m), timeout);
    m.erase(m.begin());
    auto rest = co_await inner_->send(q, std::move(m), timeout);
    if (!rest) co_return rest.error();
    std::vector<send_outcome> out;
    out.push_back(fail(errc::message_too_large, "refused by the test"));
    for (auto& o : *rest) out.push_back(std::move(o));
    co_return out;
  }
  awaitable<result<std::vector<received_message>>> receive(const queue_name& q, std::size_t max,
                                                           milliseconds wait) override {
    connect();
    return inner_->receive(q, max, wait);
  }
  awaitable<result<std::vector<received_message>>> peek(const queue_name& q, std::size_t max,
                                                        std::int64_t from) override {
    connect();
    return inner_->peek(q, max, from);
  }
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> s) override {
    connect();
    return inner_->settle(std::move(s));
  }
  awaitable<result<time_point>> renew_lock(const receipt_handle& r) override {
    return inner_->renew_lock(r);
  }
  awaitable<result<std::shared_ptr<session_receiver>>> accept_session(
      const queue_name& q, std::optional<session_id> session, milliseconds wait) override {
    return inner_->accept_session(q, std::move(session), wait);
  }
  awaitable<void> close() override { return inner_->close(); }

 private:
  void connect() {
    std::uint64_t none = 0;
    opened_.compare_exchange_strong(none, 1);
  }
  provider_ptr inner_;
  std::atomic<std::uint64_t> opened_{0}, sends_{0};
};

// The figures the availability and connection pool targets are checked against: the run's own
// calls, those that failed, and the connections opened while it ran (the one the queue's setup
// opened before it is not the run's).
TEST(Harness, ARunCountsItsCallsTheFailedOnesAndTheConnectionsItOpened) {
  bench_options o;
  o.messages = 100;
  o.send_batch = o.receive_batch = 10;
  o.threads = 1;
  o.decorate = [](provider_ptr p) -> provider_ptr {
    return std::make_shared<connecting>(std::move(p));
  };
  auto r = run_benchmark(o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->messages_sent, 99u);
  EXPECT_EQ(r->send_errors, 1u);
  EXPECT_EQ(r->messages_received, 99u);
  EXPECT_EQ(r->failed_calls, 1u) << "the send that refused one of its messages";
  // 10 sends, then at least 10 receives that brought messages and as many settlements.
  EXPECT_GE(r->provider_calls, 30u);
  ASSERT_TRUE(r->connections_opened);
  EXPECT_EQ(*r->connections_opened, 2u) << "the 4th and 8th sends; not the setup's";
}

// A provider over one connection that meters it as a network provider does: every call's bodies
// (and 100 bytes of framing per send) count as bytes sent or received, the queue's setup included.
// The setup also sees an outage of 5 s; the 5th send of the run sees one of 40 ms.
class metered final : public test::forwarding_provider {
 public:
  using forwarding_provider::forwarding_provider;
  connection_stats connections() const noexcept override {
    std::lock_guard lock(mutex_);
    return stats_;
  }
  awaitable<result<void>> create_queue(const queue_name& q, const queue_options& o) override {
    setup();
    return forwarding_provider::create_queue(q, o);
  }
  awaitable<result<queue_stats>> stats(const queue_name& q) override {
    setup();
    return forwarding_provider::stats(q);
  }
  awaitable<result<std::vector<send_outcome>>> send(const queue_name& q, std::vector<message> m,
                                                    milliseconds timeout) override {
    {
      std::lock_guard lock(mutex_);
      stats_.bytes_sent += 100;
      for (const auto& one : m) stats_.bytes_sent += one.body.size();
      if (++sends_ == 5) {
        ++stats_.connection_failures;
        ++stats_.recoveries;
        stats_.recovery_time_total += milliseconds(40);
      }
    }
    return forwarding_provider::send(q, std::move(m), timeout);
  }
  awaitable<result<std::vector<received_message>>> receive(const queue_name& q, std::size_t max,
                                                           milliseconds wait) override {
    auto got = co_await forwarding_provider::receive(q, max, wait);
    if (got) {
      std::lock_guard lock(mutex_);
      for (const auto& one : *got) stats_.bytes_received += one.body.size();
    }
    co_return got;
  }

 private:
  void setup() {
    std::lock_guard lock(mutex_);
    stats_.bytes_sent += 1000;
    stats_.bytes_received += 1000;
    if (stats_.connections_opened > 0) return;
    stats_.connections_opened = 1;
    ++stats_.connection_failures;
    ++stats_.recoveries;
    stats_.recovery_time_total += std::chrono::seconds(5);
  }
  mutable std::mutex mutex_;
  connection_stats stats_;
  std::uint64_t sends_ = 0;
};

// The network figures are the run's own (what the setup moved and its outage are not), the rates
// over the run's wall time, and a provider without connections shows none rather than zeros.
TEST(Harness, ARunReportsTheBytesAndConnectionFailuresOfItsOwnCalls) {
  bench_options o;
  o.messages = 100;
  o.message_size = 64;
  o.send_batch = o.receive_batch = 10;
  o.threads = 1;
  o.decorate = [](provider_ptr p) -> provider_ptr {
    return std::make_shared<metered>(std::move(p));
  };
  auto r = run_benchmark(o);
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->messages_received, 100u);
  ASSERT_TRUE(r->network);
  const auto& n = *r->network;
  EXPECT_EQ(n.bytes_sent, 100u * 64 + 10 * 100) << "bodies and framing of the 10 sends";
  EXPECT_EQ(n.bytes_received, 100u * 64);
  EXPECT_DOUBLE_EQ(n.bytes_sent_per_s, static_cast<double>(n.bytes_sent) / r->wall_s);
  EXPECT_DOUBLE_EQ(n.bytes_received_per_s, static_cast<double>(n.bytes_received) / r->wall_s);
  EXPECT_DOUBLE_EQ(n.bytes_per_message, (100.0 * 64 + 1000 + 100.0 * 64) / 100);
  EXPECT_EQ(n.connection_failures, 1u) << "the 5th send's, not the setup's";
  EXPECT_EQ(n.recoveries, 1u);
  ASSERT_TRUE(n.mean_recovery_s);
  EXPECT_NEAR(*n.mean_recovery_s, 0.040, 1e-9);

  bench_options embedded;
  embedded.messages = 100;
  embedded.threads = 1;
  auto e = run_benchmark(embedded);
  ASSERT_TRUE(e) << e.error().to_string();
  EXPECT_FALSE(e->network) << "the embedded provider has no network to measure";
}

TEST(Harness, NetworkFiguresCountOnlyWhatGrewAndNeedARecoveryForItsMeanTime) {
  connection_stats before, after;
  EXPECT_FALSE(network_between(before, after, 1.0, 10)) << "never connected: no network";
  before.connections_opened = after.connections_opened = 1;
  before.bytes_sent = 500;
  after.bytes_sent = 400;  // a provider whose counter went back: nothing grew
  after.bytes_received = 2000;
  const auto n = network_between(before, after, 2.0, 0);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->bytes_sent, 0u);
  EXPECT_DOUBLE_EQ(n->bytes_received_per_s, 1000.0);
  EXPECT_DOUBLE_EQ(n->bytes_per_message, 0.0) << "no message moved";
  EXPECT_FALSE(n->mean_recovery_s) << "no recovery in the run";
}

// A run that makes sends fail on purpose keeps the messages it offered: a batch whose send failed
// goes again. Without resend_failed they are counted lost, as a run measuring errors wants.
TEST(Harness, FailedSendsAreSentAgainWhenTheRunKeepsWhatItOffered) {
  for (const bool resend : {true, false}) {
    bench_options o;
    o.messages = 100;
    o.send_batch = o.receive_batch = 10;
    o.threads = 1;
    o.retry.reset();  // the failures reach the producer
    o.resend_failed = resend;
    o.decorate = [](provider_ptr p) -> provider_ptr {
      auto faults = make_fault_injecting_provider(std::move(p));
      faults->fail_next(fault_ops::send, 3, fail(errc::connection_failed, "down for the test"));
      return faults;
    };
    auto r = run_benchmark(o);
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(r->failed_calls, 3u) << "resend " << resend;
    if (resend) {
      EXPECT_EQ(r->messages_sent, 100u);
      EXPECT_EQ(r->messages_received, 100u);
      EXPECT_EQ(r->send_errors, 0u);
    } else {
      EXPECT_EQ(r->messages_sent, 70u);
      EXPECT_EQ(r->send_errors, 30u);
    }
  }
}

// The outage run: the provider refuses every call for a while in the middle of a paced run; the
// run sees it end, and every message offered still arrives once. (What it measures is timing, for
// the release build's assertions; here only that each figure is there.)
TEST(Harness, TheOutageRunDeliversEveryMessageOnceAndMeasuresTheRecovery) {
  outage_options oo;
  oo.base.rate = 1000;
  oo.base.threads = 2;
  oo.outage = std::chrono::milliseconds(300);
  oo.lead = std::chrono::milliseconds(300);
  oo.tail = std::chrono::milliseconds(1500);
  oo.retry = retry_policy::exponential_backoff(std::chrono::milliseconds(20),
                                               std::chrono::milliseconds(200), 2.0);
  oo.retry.max_attempts = 1000;
  auto r = run_outage(oo);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(r->every_message_once()) << "sent " << r->sent << ", completed " << r->completed
                                       << ", redelivered " << r->redeliveries;
  EXPECT_GT(r->sent, 0u);
  EXPECT_GT(r->refused_calls, 0u) << "the outage refused the calls made during it";
  EXPECT_GT(r->late, 0u) << "the messages due during the outage arrived after it";
  EXPECT_DOUBLE_EQ(r->end_s - r->start_s, 0.3);
  EXPECT_TRUE(r->first_completion_s);
  EXPECT_TRUE(r->recovery_s);
  EXPECT_DOUBLE_EQ(r->offered_rate, 1000);
  EXPECT_EQ(r->max_retry_delay, std::chrono::milliseconds(200));
}

TEST(Harness, TheOutageRunRefusesWhatCouldNotShowARecovery) {
  outage_options oo;
  auto no_rate = run_outage(oo);
  ASSERT_FALSE(no_rate);
  EXPECT_NE(no_rate.error().message.find("rate"), std::string::npos);
  oo.base.rate = 100;
  oo.tail = std::chrono::milliseconds(1500);  // the default retry waits up to 1 s
  auto short_tail = validate_outage(oo);
  ASSERT_FALSE(short_tail);
  EXPECT_NE(short_tail.error().message.find("max_delay"), std::string::npos);
  oo.tail = std::chrono::milliseconds(4000);
  oo.outage = std::chrono::milliseconds(0);
  EXPECT_FALSE(validate_outage(oo));
  oo.outage = std::chrono::milliseconds(100);
  oo.recovered_share = 1.5;
  EXPECT_FALSE(validate_outage(oo));
  oo.recovered_share = 0.9;
  EXPECT_TRUE(validate_outage(oo));
}

// Recovered means a whole bucket after the outage completing at the rate; a bucket that began
// during the outage, or the last one cut short, does not count.
TEST(Harness, TheTimeBackToARateIsReadFromWholeBucketsAfterTheOutage) {
  std::vector<sample> series;
  const auto bucket = [&](double end, double rate, double dt = 0.1) {
    sample s;
    s.t_s = end;
    s.dt_s = dt;
    s.receive_rate = rate;
    series.push_back(s);
  };
  bucket(1.0, 1000);  // before the outage, at the rate
  bucket(1.1, 0);
  bucket(1.2, 2000);  // began during the outage (it ended at 1.15)
  bucket(1.3, 500);
  bucket(1.4, 950);
  bucket(1.45, 2000, 0.05);  // cut short
  const auto back = time_back_to_rate(series, 1.15, 0.1, 900);
  ASSERT_TRUE(back);
  EXPECT_NEAR(*back, 0.25, 1e-9);
  EXPECT_FALSE(time_back_to_rate(series, 1.15, 0.1, 1000)) << "only a cut bucket got there";
}

// Where the provider cannot tell that a queue holds messages (an earlier, interrupted run's, say),
// the run starts: those messages are taken off and completed, but they are not this run's.
// Counted, they ended the run early (received >= sent), and their send times, from another
// process, made end-to-end latencies of hours.
TEST(Harness, MessagesTheRunDidNotSendAreNotCountedAsItsOwn) {
  const auto store =
      std::filesystem::temp_directory_path() / ("qrt_bench_earlier_" + std::to_string(::getpid()));
  std::filesystem::remove_all(store);
  const config persisted{{"provider", "memory"},
                         {"enable_persistence", "true"},
                         {"persistence_path", store.string()},
                         {"durability", "none"},
                         {"queues", "qrt-bench"}};
  {
    auto earlier = sync::queue_client::open(persisted, builtin_providers());
    ASSERT_TRUE(earlier) << earlier.error().to_string();
    const auto q = queue_name::from("qrt-bench");
    for (int i = 0; i < 40; ++i) {
      message m;
      // As an earlier process stamps them: a steady-clock time this one never had, or none.
      m.body =
          i % 2 ? make_body(256, std::chrono::steady_clock::time_point{}) : std::string(256, 'x');
      ASSERT_TRUE(earlier->send(q, m));
    }
  }
  bench_options o;
  o.provider_config = persisted;
  o.decorate = [](provider_ptr p) -> provider_ptr {
    return std::make_shared<depth_unknown>(std::move(p));
  };
  o.messages = 100;
  o.threads = 1;
  auto r = run_benchmark(o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->messages_sent, 100u);
  EXPECT_EQ(r->messages_received, 100u) << "an earlier run's messages counted as this run's";
  EXPECT_EQ(r->e2e.count, 100u);
  EXPECT_LT(r->e2e.max_us, 60e6) << "an earlier run's send time made an end-to-end latency";
  std::filesystem::remove_all(store);
}

// `--queue` may name a queue that was there before the run (a user's on a broker, one in a
// persisted store): the runs deleted the queue they used at their end whatever it was, and with
// it whatever the user kept there. Only a queue a run made is deleted; one it found is kept.
TEST(Harness, OnlyAQueueTheRunMadeIsDeletedAtItsEnd) {
  const auto store =
      std::filesystem::temp_directory_path() / ("qrt_bench_kept_" + std::to_string(::getpid()));
  std::filesystem::remove_all(store);
  const config persisted{{"provider", "memory"},
                         {"enable_persistence", "true"},
                         {"persistence_path", store.string()},
                         {"durability", "none"}};
  auto exists = [&](const char* name) {
    auto c = sync::queue_client::open(persisted, builtin_providers());
    if (!c) return c.error().to_string();
    auto s = c->stats(queue_name::from(name));
    return s ? std::string("exists") : s.error().to_string();
  };
  {
    auto c = sync::queue_client::open(persisted, builtin_providers());
    ASSERT_TRUE(c) << c.error().to_string();
    ASSERT_TRUE(c->create_queue(queue_name::from("users-queue")));
  }
  bench_options o;
  o.provider_config = persisted;
  o.messages = 50;
  o.threads = 1;
  o.queue = "users-queue";
  auto r = run_benchmark(o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(exists("users-queue"), "exists") << "the main run deleted a queue it did not make";
  auto overhead = run_overhead(o, 20, std::chrono::microseconds(0));
  ASSERT_TRUE(overhead) << overhead.error().to_string();
  EXPECT_EQ(exists("users-queue"), "exists") << "the overhead run deleted a queue it did not make";

  // A queue the run made is gone again afterwards, as before.
  o.queue = "made-by-the-run";
  auto made = run_benchmark(o);
  ASSERT_TRUE(made) << made.error().to_string();
  EXPECT_NE(exists("made-by-the-run").find("queue_not_found"), std::string::npos)
      << exists("made-by-the-run");
  std::filesystem::remove_all(store);
}

// The memory budget run stops at the embedded provider's byte budget, refused by name, and
// loses nothing: every stored message is drained. (Resident memory is the benchmark's figure,
// not asserted here.)
// A run whose every message is refused has no figures worth printing: it fails, naming why,
// instead of reporting a benchmark of nothing.
TEST(Harness, ARunInWhichNoMessageGetsThroughFailsNamingTheFirstError) {
  bench_options o;
  o.messages = 20;
  o.threads = 1;
  o.message_size = 2'048;
  o.provider_config = config{{"provider", "memory"}, {"max_message_bytes", "1024"}};
  auto r = run_benchmark(o);
  ASSERT_FALSE(r) << "a benchmark of refused messages reported figures";
  EXPECT_EQ(r.error().code, errc::message_too_large) << r.error().to_string();
  EXPECT_NE(r.error().message.find("no message got through"), std::string::npos)
      << r.error().to_string();

  bench_options huge;
  huge.message_size = std::size_t{1} << 40;
  auto h = run_benchmark(huge);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code, errc::invalid_argument);
  EXPECT_NE(h.error().message.find("at most 64 MiB"), std::string::npos) << h.error().to_string();
}

TEST(Harness, TheMemoryBudgetRunFillsToTheBudgetAndDrainsEverything) {
  bench_options o;
  o.threads = 1;
  o.message_size = 1024;
  auto r = run_memory_budget(o, 1 << 20);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_GT(r->accepted, 0u);
  EXPECT_LE(r->accepted * o.message_size, std::uint64_t{1} << 20) << "stored past the budget";
  EXPECT_GE(r->refused, 1000u);
  EXPECT_NE(r->refusal.find("max_memory_bytes"), std::string::npos) << r->refusal;
  EXPECT_EQ(r->drained, r->accepted);
  EXPECT_GT(r->full_rss_bytes, 0u);

  bench_options elsewhere;
  elsewhere.provider_config = config{{"provider", "sqs"}};
  auto refused = run_memory_budget(elsewhere, 1 << 20);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::unsupported);
}

// A budget smaller than one message (as the embedded provider counts it: the body and its
// bookkeeping) was taken, and the run then failed on its first send, after the main run, with
// nothing measured. It is refused naming both figures; a budget of exactly one message runs.
TEST(Harness, TheMemoryBudgetRunRefusesABudgetThatCannotHoldOneMessage) {
  bench_options o;
  o.threads = 1;
  o.message_size = 1024;
  const std::uint64_t one_message = 1024 + qrt::memory::stored_message_overhead_bytes;
  for (const std::uint64_t budget : {std::uint64_t{1}, std::uint64_t{1024}, one_message - 1}) {
    auto r = run_memory_budget(o, budget);
    ASSERT_FALSE(r) << "a budget of " << budget << " bytes ran";
    EXPECT_EQ(r.error().code, errc::invalid_argument) << r.error().to_string();
    EXPECT_NE(r.error().message.find("--memory-budget " + std::to_string(budget) + " bytes"),
              std::string::npos)
        << r.error().message;
    EXPECT_NE(r.error().message.find("--size 1024 bytes"), std::string::npos) << r.error().message;
  }
  auto exactly_one = run_memory_budget(o, one_message);
  ASSERT_TRUE(exactly_one) << exactly_one.error().to_string();
  EXPECT_EQ(exactly_one->accepted, 1u);
  EXPECT_EQ(exactly_one->drained, 1u);
}

// The scaling run's ceiling is receive_batch / (2 x injected latency) per consumer: without a
// latency it is infinite (and the prefill it sizes an undefined conversion), and with a round
// trip that does not fit in the window no round completes anything. Both are refused by name
// before anything runs, not reported as a chart of zeros and NaN.
TEST(Harness, TheScalingRunRefusesALatencyItCannotMeasure) {
  scaling_options so;
  so.base.threads = 1;
  so.max_consumers = 2;
  so.window = std::chrono::milliseconds(200);
  for (const auto latency : {std::chrono::milliseconds(0), std::chrono::milliseconds(-5),
                             std::chrono::milliseconds(100), std::chrono::milliseconds(5'000)}) {
    so.injected_latency = latency;
    auto r = run_scaling(so);
    ASSERT_FALSE(r) << "a scaling run with " << latency.count() << " ms of latency ran";
    EXPECT_EQ(r.error().code, errc::invalid_argument);
    EXPECT_NE(r.error().message.find("injected latency"), std::string::npos)
        << r.error().to_string();
  }
}

// The scaling run prefills one and a half windows of what its consumers could complete: with a
// large receive batch that came to billions of messages, refused only after the main run (by
// max_queue_size, a setting never given) or, on a broker, prefilled for hours. It is refused
// before anything runs, saying what made it so large.
TEST(Harness, TheScalingRunRefusesAPrefillItCannotHold) {
  scaling_options so;
  so.base.receive_batch = 1'000'000;
  auto v = validate_scaling(so);
  ASSERT_FALSE(v) << "a scaling run prefilling billions of messages was accepted";
  EXPECT_EQ(v.error().code, errc::invalid_argument);
  EXPECT_NE(v.error().message.find("would prefill"), std::string::npos) << v.error().to_string();
  EXPECT_NE(v.error().message.find("receive batch"), std::string::npos) << v.error().to_string();
  // Large messages are held to the bytes a memory budget run may fill.
  scaling_options large;
  large.base.message_size = 64 << 20;
  large.base.receive_batch = 100;
  EXPECT_FALSE(validate_scaling(large));
  EXPECT_TRUE(validate_scaling(scaling_options{}));
}

// The overhead run holds its whole prefill at once: --overhead-messages times the message size
// was not bounded (2^29 messages of 64 MiB), so the run went on building bodies until memory ran
// out. It is refused before anything is built, as the scaling run's prefill is.
TEST(Harness, TheOverheadRunRefusesAPrefillItCannotHold) {
  bench_options o;
  o.message_size = std::size_t{64} << 20;
  o.threads = 1;
  // No such provider: a run that got as far as building one fails otherwise, before any body.
  o.provider_config = config{{"provider", "carrier-pigeon"}};
  auto r = run_overhead(o, 200, std::chrono::microseconds(0));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument) << r.error().to_string();
  EXPECT_NE(r.error().message.find("would prefill"), std::string::npos) << r.error().to_string();
  EXPECT_NE(r.error().message.find("8 GiB"), std::string::npos) << r.error().to_string();
}

// A max_queue_size given for the embedded provider below what the scaling or overhead run holds
// on its queue at once (its prefill) was taken, and the prefill then waited out the client's
// send timeout (30 s) for room nobody frees, after the main run. It is refused before anything
// is sent, naming the setting, its value and what the run needs; enough room runs.
TEST(Harness, AMaxQueueSizeBelowThePrefillIsRefusedUpFront) {
  scaling_options so;
  so.base.threads = 1;
  so.base.provider_config = config{{"provider", "memory"}, {"max_queue_size", "5"}};
  so.max_consumers = 2;
  so.injected_latency = std::chrono::milliseconds(10);
  so.window = std::chrono::milliseconds(200);
  // 1.5 windows of 2 x 10 / (2 x 10 ms) messages/s, and 100 more: 400.
  auto v = validate_scaling(so);
  ASSERT_FALSE(v) << "a scaling run prefilling 400 messages into a queue of 5 was accepted";
  EXPECT_EQ(v.error().code, errc::invalid_argument);
  EXPECT_NE(v.error().message.find("max_queue_size 5"), std::string::npos) << v.error().message;
  EXPECT_NE(v.error().message.find("400 messages"), std::string::npos) << v.error().message;
  auto run = run_scaling(so);
  ASSERT_FALSE(run) << "a scaling run prefilling 400 messages into a queue of 5 ran";
  EXPECT_EQ(run.error().code, errc::invalid_argument) << run.error().to_string();
  so.base.provider_config.set("max_queue_size", "400");
  EXPECT_TRUE(validate_scaling(so));

  bench_options o;
  o.threads = 1;
  o.provider_config = config{{"provider", "memory"}, {"max_queue_size", "5"}};
  auto r = run_overhead(o, 2000, std::chrono::microseconds(0));
  ASSERT_FALSE(r) << "an overhead run prefilling 2000 messages into a queue of 5 ran";
  EXPECT_EQ(r.error().code, errc::invalid_argument) << r.error().to_string();
  EXPECT_NE(r.error().message.find("max_queue_size 5"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("2000 messages"), std::string::npos) << r.error().message;
  o.provider_config.set("max_queue_size", "2000");
  EXPECT_TRUE(validate_overhead(o, 2000));
}

// A persisted store holding `queue`, made by the user before any run; `own_max_size` bounds it
// (0: the provider's bound).
struct users_store {
  std::filesystem::path dir;
  config cfg;
  queue_name queue = queue_name::from("users-queue");

  users_store(const char* name, std::size_t own_max_size)
      : dir(std::filesystem::temp_directory_path() /
            (std::string(name) + "_" + std::to_string(::getpid()))),
        cfg{{"provider", "memory"},
            {"enable_persistence", "true"},
            {"persistence_path", dir.string()},
            {"durability", "none"}} {
    std::filesystem::remove_all(dir);
    auto c = sync::queue_client::open(cfg, builtin_providers());
    EXPECT_TRUE(c) << c.error().to_string();
    queue_options own;
    own.max_size = own_max_size;
    if (c) {
      EXPECT_TRUE(c->create_queue(queue, own));
    }
  }
  ~users_store() { std::filesystem::remove_all(dir); }

  // "active/in flight", or the error.
  std::string held() const {
    auto c = sync::queue_client::open(cfg, builtin_providers());
    if (!c) return c.error().to_string();
    auto s = c->stats(queue);
    if (!s) return s.error().to_string();
    return std::to_string(s->active) + "/" + std::to_string(s->in_flight);
  }
};

bench_options run_on_users_queue(const users_store& store) {
  bench_options o;
  o.threads = 1;
  o.provider_config = store.cfg;
  o.queue = store.queue.str();
  return o;
}

scaling_options small_scaling_run(const users_store& store) {
  scaling_options so;
  so.base = run_on_users_queue(store);
  so.max_consumers = 2;
  so.injected_latency = std::chrono::milliseconds(10);
  so.window = std::chrono::milliseconds(200);
  return so;
}

// The scaling run prefills 1.5 windows of what its consumers could complete, so each round ends
// with messages left: on a queue the run made they went with the queue, but on an existing one
// (`--queue`, a user's) they stayed there after the run. What the run sent is taken back.
TEST(Harness, TheScalingRunLeavesNothingItSentOnAnExistingQueue) {
  users_store store("qrt_bench_scaling_kept", 0);
  auto r = run_scaling(small_scaling_run(store));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->size(), 2u);
  EXPECT_EQ(store.held(), "0/0") << "the scaling run left its prefill on the user's queue";
}

// A queue whose own bound (max_size, known only once the run meets the queue) is below the
// prefill: the prefill waited out the send timeout, failed, and left what it had stored on the
// user's queue. It fails at once, naming the bound and what the run needs, and takes back what
// it sent.
TEST(Harness, APrefillTheQueueCannotHoldFailsAtOnceAndLeavesNothingBehind) {
  users_store store("qrt_bench_scaling_small", 50);
  auto r = run_scaling(small_scaling_run(store));
  ASSERT_FALSE(r) << "a scaling run prefilling 250 messages into a queue of 50 succeeded";
  EXPECT_EQ(r.error().code, errc::queue_full) << r.error().to_string();
  EXPECT_NE(r.error().message.find("250 messages"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("max_size"), std::string::npos) << r.error().message;
  EXPECT_EQ(store.held(), "0/0") << "the failed scaling run left its prefill on the user's queue";

  auto overhead = run_overhead(run_on_users_queue(store), 80, std::chrono::microseconds(0));
  ASSERT_FALSE(overhead) << "an overhead run prefilling 80 messages into a queue of 50 succeeded";
  EXPECT_EQ(overhead.error().code, errc::queue_full) << overhead.error().to_string();
  EXPECT_NE(overhead.error().message.find("80 messages"), std::string::npos)
      << overhead.error().message;
  EXPECT_EQ(store.held(), "0/0") << "the failed overhead run left its prefill on the user's queue";
}

// The scaling and overhead runs received and completed what their queue held: on an existing
// queue holding a user's messages they completed them with their own. They refuse such a queue,
// as the main run does, and the messages stay.
TEST(Harness, TheScalingAndOverheadRunsRefuseAQueueThatAlreadyHoldsMessages) {
  users_store store("qrt_bench_scaling_users", 0);
  {
    auto user = sync::queue_client::open(store.cfg, builtin_providers());
    ASSERT_TRUE(user) << user.error().to_string();
    for (int i = 0; i < 3; ++i) {
      message m;
      m.body = "order " + std::to_string(i);
      ASSERT_TRUE(user->send(store.queue, m));
    }
  }
  auto r = run_scaling(small_scaling_run(store));
  ASSERT_FALSE(r) << "the scaling run ran on a queue holding a user's messages";
  EXPECT_EQ(r.error().code, errc::invalid_argument) << r.error().to_string();
  EXPECT_NE(r.error().message.find("already holds 3 messages"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(store.held(), "3/0") << "the user's messages were taken off the queue";

  auto overhead = run_overhead(run_on_users_queue(store), 20, std::chrono::microseconds(0));
  ASSERT_FALSE(overhead) << "the overhead run ran on a queue holding a user's messages";
  EXPECT_NE(overhead.error().message.find("already holds 3 messages"), std::string::npos)
      << overhead.error().message;
  EXPECT_EQ(store.held(), "3/0") << "the user's messages were taken off the queue";
}

// An extra run that fails after the main run (here the overhead run, whose every send the
// provider refuses) keeps the main run's figures, however long that run took: the extra runs
// after it are skipped and its error is returned naming it, for the caller to report after
// writing the table and report of what was measured.
TEST(Harness, AnExtraRunThatFailsKeepsTheMainRunsFiguresAndSkipsTheRest) {
  bench_options o;
  o.messages = 200;
  o.threads = 1;
  auto main_run = run_benchmark(o);
  ASSERT_TRUE(main_run) << main_run.error().to_string();
  report rep;
  rep.run = *main_run;

  auto refusing = o;
  refusing.decorate = [](provider_ptr p) {
    return make_fault_injecting_provider(std::move(p),
                                         {.transient_error_rate = 1, .error_ops = fault_ops::send});
  };
  extra_runs extras;
  extras.overhead_handler_cost = std::chrono::microseconds(1);
  extras.overhead_messages = 10;
  extras.memory_budget = 1 << 20;
  auto failed = run_extra_runs(rep, refusing, extras);
  ASSERT_TRUE(failed) << "an overhead run whose sends all fail succeeded";
  EXPECT_EQ(failed->code, errc::connection_failed) << failed->to_string();
  EXPECT_NE(failed->message.find("the overhead run failed"), std::string::npos) << failed->message;
  EXPECT_NE(failed->message.find("kept"), std::string::npos) << failed->message;

  EXPECT_EQ(rep.run.messages_sent, 200u) << "the main run's figures were thrown away";
  EXPECT_EQ(rep.run.messages_received, 200u) << "the main run's figures were thrown away";
  EXPECT_EQ(rep.run.e2e.count, main_run->e2e.count);
  EXPECT_EQ(rep.run.e2e_throughput, main_run->e2e_throughput);
  EXPECT_FALSE(rep.overhead) << "the failed overhead run left figures in the report";
  EXPECT_FALSE(rep.memory_budget) << "the memory budget run ran after the overhead run failed";
  EXPECT_NE(format_table(rep).find("end-to-end"), std::string::npos) << format_table(rep);
}

TEST(Report, WritesJsonWithTheDocumentedFieldsAndASelfContainedChart) {
  report rep;
  rep.run.provider = "memory";
  rep.run.messages_sent = rep.run.messages_received = 100;
  rep.run.message_size = 256;
  rep.run.e2e_throughput = 1000;
  rep.run.series = {{0.25, 400, 390, 12, 40}, {0.5, 410, 420, 11, 35}};
  rep.baseline = baseline_result{};
  rep.baseline->throughput = 4000;
  EXPECT_DOUBLE_EQ(rep.baseline_ratio(), 0.25);

  const auto dir =
      std::filesystem::temp_directory_path() / ("qrt_report_" + std::to_string(::getpid()));
  ASSERT_TRUE(write_report_dir(rep, dir.string()));
  std::stringstream json, html;
  json << std::ifstream(dir / "report.json").rdbuf();
  html << std::ifstream(dir / "chart.html").rdbuf();
  for (const char* key :
       {"\"provider\":\"memory\"", "\"messages\":100", "\"message_size\":256",
        "\"send_msgs_per_s\"", "\"receive_msgs_per_s\"", "\"end_to_end_msgs_per_s\"",
        "\"e2e_latency_us\"", "\"p50\"", "\"p95\"", "\"p99\"", "\"max\"",
        "\"cpu_seconds_per_message\"", "\"peak_rss_bytes\"",
        "\"name\":\"moodycamel::ConcurrentQueue\"", "\"msgs_per_s\":4E3", "\"ratio\":2.5E-1"}) {
    EXPECT_NE(json.str().find(key), std::string::npos) << key << " in " << json.str();
  }
  EXPECT_NE(html.str().find("<svg"), std::string::npos);
  EXPECT_EQ(html.str().find("<script src"), std::string::npos) << "no external resources";
  EXPECT_EQ(html.str().find("http://"), html.str().find("http://www.w3.org/2000/svg"));
  std::filesystem::remove_all(dir);
}

// The order check of a session run: per session and producer, a first delivery numbered below
// one already delivered is a violation; other producers and sessions keep their own order, and
// a redelivery (a lost session's batch handed out again) may repeat earlier numbers.
TEST(SessionOrder, AMessageReceivedBeforeAnEarlierOneOfItsProducerAndSessionIsAViolation) {
  session_order order(3, 2);
  EXPECT_TRUE(order.observe(1, 0, 0, false));
  EXPECT_TRUE(order.observe(1, 0, 1, false));
  EXPECT_TRUE(order.observe(1, 0, 3, false)) << "a gap (a send that failed) is no violation";
  EXPECT_TRUE(order.observe(1, 1, 0, false)) << "another producer keeps its own order";
  EXPECT_TRUE(order.observe(0, 0, 0, false)) << "another session keeps its own order";
  EXPECT_EQ(order.violations(), 0u);
  EXPECT_FALSE(order.first_violation());

  EXPECT_FALSE(order.observe(2, 1, 5, false) && order.observe(2, 1, 4, false))
      << "5 then 4 in session 2";
  EXPECT_FALSE(order.observe(1, 0, 2, false)) << "2 after 3 in session 1";
  EXPECT_EQ(order.violations(), 2u);
  ASSERT_TRUE(order.first_violation());
  EXPECT_EQ(*order.first_violation(), 2u);

  EXPECT_TRUE(order.observe(1, 0, 1, true)) << "a redelivery of the batch in hand";
  EXPECT_TRUE(order.observe(1, 0, 4, false));
  EXPECT_EQ(order.violations(), 2u);
}

// A provider that forwards every call to the one it wraps; tests override what they change.
class forwarding : public provider {
 public:
  explicit forwarding(provider_ptr inner) : inner_(std::move(inner)) {}
  std::string_view name() const noexcept override { return inner_->name(); }
  const capabilities& caps() const noexcept override { return inner_->caps(); }
  awaitable<result<void>> create_queue(const queue_name& q, const queue_options& o) override {
    ++*calls;
    return inner_->create_queue(q, o);
  }
  awaitable<result<void>> delete_queue(const queue_name& q) override {
    ++*calls;
    return inner_->delete_queue(q);
  }
  awaitable<result<queue_stats>> stats(const queue_name& q) override {
    ++*calls;
    return inner_->stats(q);
  }
  awaitable<result<std::vector<send_outcome>>> send(const queue_name& q, std::vector<message> m,
                                                    milliseconds timeout) override {
    ++*calls;
    return inner_->send(q, std::move(m), timeout);
  }
  awaitable<result<std::vector<received_message>>> receive(const queue_name& q, std::size_t max,
                                                           milliseconds wait) override {
    ++*calls;
    return inner_->receive(q, max, wait);
  }
  awaitable<result<std::vector<received_message>>> peek(const queue_name& q, std::size_t max,
                                                        std::int64_t from) override {
    ++*calls;
    return inner_->peek(q, max, from);
  }
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> s) override {
    ++*calls;
    return inner_->settle(std::move(s));
  }
  awaitable<result<time_point>> renew_lock(const receipt_handle& r) override {
    ++*calls;
    return inner_->renew_lock(r);
  }
  awaitable<result<std::shared_ptr<session_receiver>>> accept_session(
      const queue_name& q, std::optional<session_id> session, milliseconds wait) override {
    ++*calls;
    return inner_->accept_session(q, std::move(session), wait);
  }
  awaitable<void> close() override { return inner_->close(); }

  /// Every call but close; shared, since the provider must not outlive the run's executor.
  std::shared_ptr<std::atomic<int>> calls = std::make_shared<std::atomic<int>>(0);

 protected:
  provider_ptr inner_;
};

TEST(Harness, ASessionRunCountsEveryMessageOnceInOrderAndTimesEachAccept) {
  bench_options o;
  o.messages = 2'000;
  o.producers = 2;
  o.consumers = 3;
  o.sessions = 8;
  o.threads = 2;
  auto r = run_benchmark(o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->sessions, 8u);
  EXPECT_EQ(r->messages_sent, 2'000u);
  EXPECT_EQ(r->messages_received, 2'000u);
  EXPECT_EQ(r->e2e.count, 2'000u) << "each message handled once";
  EXPECT_EQ(r->send_errors + r->receive_errors + r->complete_errors, 0u);
  EXPECT_EQ(r->duplicates, 0u);
  EXPECT_EQ(r->order_violations, 0u);
  // Every session with messages was taken at least once, and every accept call was timed (those
  // that found nothing too).
  EXPECT_GE(r->sessions_accepted, 8u);
  EXPECT_GE(r->accept_call.count, r->sessions_accepted);
  EXPECT_GT(r->accept_call.p99_us, 0);
  EXPECT_LE(r->accept_call.p50_us, r->accept_call.p99_us);
  EXPECT_DOUBLE_EQ(r->mean_messages_per_session,
                   2'000.0 / static_cast<double>(r->sessions_accepted));
  // Sends, accepts, receives, settlements and releases are all the run's calls.
  EXPECT_GE(r->provider_calls, 200u + r->accept_call.count + 2 * r->sessions_accepted);
  EXPECT_EQ(r->failed_calls, 0u);
}

TEST(Harness, ASessionRunRefusesAProviderWithoutSessionsBeforeItTouchesTheQueue) {
  class without_sessions final : public forwarding {
   public:
    explicit without_sessions(provider_ptr p) : forwarding(std::move(p)), caps_(inner_->caps()) {
      caps_.sessions = session_support::none;
    }
    const capabilities& caps() const noexcept override { return caps_; }

   private:
    capabilities caps_;
  };
  std::shared_ptr<std::atomic<int>> calls;
  bench_options o;
  o.messages = 100;
  o.threads = 1;
  o.sessions = 4;
  o.decorate = [&](provider_ptr p) -> provider_ptr {
    auto decorated = std::make_shared<without_sessions>(std::move(p));
    calls = decorated->calls;
    return decorated;
  };
  auto r = run_benchmark(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsupported);
  EXPECT_NE(r.error().message.find("provider 'memory' has none"), std::string::npos)
      << r.error().message;
  ASSERT_TRUE(calls);
  EXPECT_EQ(calls->load(), 0) << "the run touched the queue before refusing";
}

// An existing queue made without requires_session refuses accept_session: the run says so
// before sending anything, rather than failing at the first accept with its messages sent.
TEST(Harness, ASessionRunRefusesAnExistingQueueWithoutSessionsBeforeSending) {
  bench_options o;
  o.provider_config = config{{"provider", "memory"}, {"queues", "qrt-bench"}};
  o.messages = 100;
  o.threads = 1;
  o.sessions = 4;
  auto r = run_benchmark(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
  EXPECT_NE(r.error().message.find("queue 'qrt-bench' cannot be read by session"),
            std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("requires_session"), std::string::npos) << r.error().message;
}

TEST(Harness, ASessionRunRefusesWhatItCannotHold) {
  bench_options o;
  o.sessions = 2;
  o.message_size = session_body_bytes - 1;
  auto r = run_benchmark(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
  EXPECT_NE(r.error().message.find("at least 40 bytes with sessions"), std::string::npos)
      << r.error().message;

  // A sequence number per session and producer: 100,000 x 1,024 of them would be 800 MB.
  bench_options many;
  many.sessions = 100'000;
  many.producers = 1'024;
  auto m = run_benchmark(many);
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("sessions x producers must be at most 16777216"),
            std::string::npos)
      << m.error().message;
  many.sessions = 100'001;
  many.producers = 1;
  auto too_many = run_benchmark(many);
  ASSERT_FALSE(too_many);
  EXPECT_NE(too_many.error().message.find("sessions must be at most 100000"), std::string::npos)
      << too_many.error().message;
}

// With a session hold shorter than one batch's handling, every session is released after its
// first batch (the consumers take turns instead of reading a session until it is idle), and
// every message is still handled once, in order.
TEST(Harness, ASessionHoldReleasesEachSessionAfterTheBatchInHand) {
  bench_options o;
  o.messages = 200;
  o.consumers = 1;
  o.sessions = 2;
  o.threads = 1;
  o.receive_batch = 10;
  o.handler_cost = std::chrono::microseconds{200};  // a batch of 10 takes >= 2 ms of CPU
  o.session_hold = milliseconds{1};
  auto r = run_benchmark(o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->messages_received, 200u);
  EXPECT_EQ(r->duplicates, 0u);
  EXPECT_EQ(r->order_violations, 0u);
  // No hold outlasts one batch: at least one accept per batch of 10.
  EXPECT_GE(r->sessions_accepted, 20u);
  EXPECT_LE(r->mean_messages_per_session, 10.0);

  bench_options negative;
  negative.sessions = 2;
  negative.session_hold = milliseconds{-1};
  auto refused = run_benchmark(negative);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::invalid_argument);
  EXPECT_NE(refused.error().message.find("session hold"), std::string::npos)
      << refused.error().message;
}

// A session receiver that hands out each batch back to front: what a provider that broke the
// order of a session would deliver.
class reversing_session final : public test::forwarding_session {
 public:
  using forwarding_session::forwarding_session;
  awaitable<result<std::vector<received_message>>> receive(std::size_t max,
                                                           milliseconds wait) override {
    auto r = co_await forwarding_session::receive(max, wait);
    if (r) std::reverse(r->begin(), r->end());
    co_return r;
  }
};

TEST(Harness, ASessionRunWhoseProviderBreaksTheOrderFailsNamingTheSession) {
  class reordering final : public forwarding {
   public:
    using forwarding::forwarding;
    awaitable<result<std::shared_ptr<session_receiver>>> accept_session(
        const queue_name& q, std::optional<session_id> session, milliseconds wait) override {
      auto r = co_await inner_->accept_session(q, std::move(session), wait);
      if (!r) co_return r.error();
      co_return std::shared_ptr<session_receiver>(
          std::make_shared<reversing_session>(std::move(*r)));
    }
  };
  bench_options o;
  // One producer sends batches of 10 spread over 2 sessions, 5 messages to each at a time: the
  // consumer's receives of up to 10 find several messages of a session at once.
  o.messages = 200;
  o.sessions = 2;
  o.threads = 1;
  o.send_batch = o.receive_batch = 10;
  o.decorate = [](provider_ptr p) -> provider_ptr {
    return std::make_shared<reordering>(std::move(p));
  };
  auto r = run_benchmark(o);
  ASSERT_FALSE(r) << "a run whose sessions came out of order passed";
  EXPECT_EQ(r.error().code, errc::provider_error);
  EXPECT_NE(r.error().message.find("out of order"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("in session 'bench-"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace qrt::bench
