// Every configuration key the generic AMQP 1.0 provider accepts, each shown acting against the
// RabbitMQ node of this binary (what the broker holds, per rabbitmqctl), a loopback TCP proxy in
// front of it, or a local listener. The table at the end must name every key of
// qrt::amqp::known_keys() (the list reject_unknown() uses), so a key added to the provider
// without a row here fails this test.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <future>
#include <optional>
#include <qrt/amqp.hpp>
#include <qrt/processor.hpp>
#include <qrt/runtime.hpp>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "faults/tcp_proxy.hpp"
#include "rabbitmq_server.hpp"
#include "unit/support/config_keys.hpp"
#include "unit/support/run.hpp"
#include "unit/support/runtime_key.hpp"
#include "unit/support/session_keys.hpp"
#include "unit/support/wait.hpp"

namespace {

using namespace std::chrono_literals;
using qrt::config;
using qrt::errc;
using qrt::queue_name;
using qrt::test::broker;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

using qrt::test::io_thread;

std::string fresh_name() {
  static std::atomic<int> n{0};
  return "qrt-keys-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
}

/// The broker of this binary as RabbitMQ, with the test user.
config rabbit_config(const config& extra = {}) {
  config c{
      {"provider", "amqp"}, {"broker", "rabbitmq"}, {"port", std::to_string(broker->amqp_port())},
      {"user", "guest"},    {"password", "guest"},  {"connect_timeout", "3s"}};
  c.merge(extra);
  return c;
}

/// `column` of `queue` in `rabbitmqctl list_queues` (of `vhost`); -1 when the queue is absent.
long broker_column(const std::string& queue, const std::string& column,
                   const std::string& vhost = "/") {
  std::istringstream in(
      broker->ctl({"list_queues", "-p", vhost, "-q", "--no-table-headers", "name", column}));
  std::string name;
  long value = -1;
  while (in >> name >> value) {
    if (name == queue) return value;
  }
  return -1;
}

/// broker_column polled until `done` holds for it or 15 s passed; the last reading.
long broker_count_until(const std::string& queue, const std::string& column,
                        const std::function<bool(long)>& done) {
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  long now = broker_column(queue, column);
  while (!done(now) && std::chrono::steady_clock::now() < deadline)
    now = broker_column(queue, column);
  return now;
}

/// A handler's wait that is its work (not a test's synchronisation): a timer on its executor.
qrt::awaitable<void> work_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

class AmqpConfigKey;
struct key_row {
  std::string_view key;
  void (AmqpConfigKey::*shows_effect)();
};
void PrintTo(const key_row& row, std::ostream* os) {
  *os << row.key;
}

class AmqpConfigKey : public ::testing::TestWithParam<key_row> {
 public:
  void SetUp() override { ASSERT_NE(broker, nullptr); }

  qrt::result<qrt::provider_ptr> try_make(const config& cfg) {
    auto o = qrt::amqp::options_from_config(cfg);
    if (!o) return o.error();
    return qrt::amqp::make_provider(*o, io_.executor());
  }
  qrt::provider_ptr make(const config& cfg) {
    auto p = try_make(cfg);
    if (!p) throw std::runtime_error(p.error().to_string());
    made_.push_back(*p);
    return *p;
  }
  void TearDown() override {
    for (auto& p : made_) io_.run(p->close());
  }
  /// A new queue on the broker (declared through the RabbitMQ preset).
  queue_name new_queue() {
    auto q = queue_name::from(fresh_name());
    auto r = io_.run(admin()->create_queue(q, {}));
    if (!r) throw std::runtime_error(r.error().to_string());
    return q;
  }
  qrt::provider_ptr admin() {
    if (!admin_) admin_ = make(rabbit_config());
    return admin_;
  }
  /// The error of a one-message send, if any.
  std::optional<qrt::error> send(qrt::provider& p, const queue_name& q, std::string body) {
    std::vector<qrt::message> one(1);
    one[0].body = std::move(body);
    auto r = io_.run(p.send(q, std::move(one), 10s));
    if (!r) return r.error();
    if (!r->at(0)) return r->at(0).error();
    return std::nullopt;
  }
  void send_ok(qrt::provider& p, const queue_name& q, int n = 1, std::size_t bytes = 8) {
    for (int i = 0; i < n; ++i) {
      auto e = send(p, q, std::string(bytes, 'x'));
      ASSERT_FALSE(e) << e->to_string();
    }
  }
  qrt::result<std::vector<qrt::received_message>> receive(qrt::provider& p, const queue_name& q,
                                                          std::size_t n,
                                                          std::chrono::milliseconds wait) {
    return io_.run(p.receive(q, n, wait));
  }
  qrt::result<void> settle(qrt::provider& p, qrt::settlement s) {
    std::vector<qrt::settlement> one;
    one.push_back(std::move(s));
    return io_.run(p.settle(std::move(one))).at(0);
  }
  /// A send and a receive through `p` work end to end on a new queue.
  void works(qrt::provider& p) {
    const auto q = new_queue();
    auto e = send(p, q, "through");
    ASSERT_FALSE(e) << e->to_string();
    auto got = receive(p, q, 1, 5s);
    ASSERT_TRUE(got) << got.error().to_string();
    ASSERT_EQ(got->size(), 1u);
    EXPECT_EQ((*got)[0].body, "through");
  }
  /// The error of a receive through `p` (which must fail).
  qrt::error fails(qrt::provider& p) {
    auto got = receive(p, queue_name::from("qrt-keys-anything"), 1, 1s);
    EXPECT_FALSE(got) << "worked";
    return got ? qrt::error{} : got.error();
  }

  // ---- one check per key ----

  void provider_key() {
    qrt::provider_registry registry;
    qrt::amqp::register_provider(registry);
    auto p = registry.make(rabbit_config(), io_.executor());
    ASSERT_TRUE(p) << p.error().to_string();
    made_.push_back(*p);
    EXPECT_EQ((*p)->name(), "amqp");
    works(**p);
  }

  void broker_key() {
    // rabbitmq: addresses, declaring and queue checks RabbitMQ 3.x needs; generic (the default)
    // declares nothing.
    auto rabbitmq = make(rabbit_config());
    works(*rabbitmq);  // create_queue declares through "/queue/", messages go to "/amq/queue/"
    auto generic = make(rabbit_config({{"broker", "generic"}}));
    auto declared = io_.run(generic->create_queue(queue_name::from(fresh_name()), {}));
    ASSERT_FALSE(declared);
    EXPECT_EQ(declared.error().code, errc::unsupported) << declared.error().to_string();
    EXPECT_FALSE(try_make(rabbit_config({{"broker", "artemis"}})));
  }

  void endpoint_key() {
    // The URL overrides host and port (here a port nothing listens on), as options::url does.
    auto p = make(rabbit_config(
        {{"port", "1"}, {"endpoint", "amqp://127.0.0.1:" + std::to_string(broker->amqp_port())}}));
    works(*p);
    auto wrong = make(rabbit_config({{"endpoint", "amqp://127.0.0.1:1"}}));
    EXPECT_EQ(fails(*wrong).code, errc::connection_failed);
  }

  void host_key() {
    // The node listens on 127.0.0.1 only: another loopback address finds nobody.
    works(*make(rabbit_config({{"host", "127.0.0.1"}})));
    auto other = make(rabbit_config({{"host", "127.0.0.2"}}));
    const auto e = fails(*other);
    EXPECT_EQ(e.code, errc::connection_failed) << e.to_string();
    EXPECT_NE(e.message.find("127.0.0.2"), std::string::npos) << e.to_string();
  }

  void port_key() {
    works(*make(rabbit_config()));
    auto closed = make(rabbit_config({{"port", "1"}}));
    const auto e = fails(*closed);
    EXPECT_EQ(e.code, errc::connection_failed) << e.to_string();
    EXPECT_NE(e.message.find(":1"), std::string::npos) << e.to_string();
  }

  config over_tls(const config& extra = {}) {
    config c = rabbit_config(
        {{"tls", "true"}, {"host", "localhost"}, {"port", std::to_string(broker->amqps_port())}});
    c.merge(extra);
    return c;
  }

  void tls_key() {
    // amqps with the node's CA works; plain AMQP to the TLS port does not.
    works(*make(over_tls({{"tls_ca_file", broker->ca_file()}})));
    auto plain = make(over_tls({{"tls", "false"}}));
    EXPECT_EQ(fails(*plain).code, errc::connection_failed);
  }

  void tls_verify_key() {
    // The node's certificate is from a CA the system does not trust: verified (the default), the
    // connection fails; not verified, it works.
    auto verified = make(over_tls());
    EXPECT_EQ(fails(*verified).code, errc::connection_failed);
    works(*make(over_tls({{"tls_verify", "false"}})));
    // Without TLS there is nothing to verify: refused, naming the key.
    auto plain = try_make(rabbit_config({{"tls_verify", "false"}}));
    ASSERT_FALSE(plain);
    EXPECT_NE(plain.error().message.find("tls_verify"), std::string::npos);
  }

  void tls_ca_file_key() {
    works(*make(over_tls({{"tls_ca_file", broker->ca_file()}})));
    auto missing = make(over_tls({{"tls_ca_file", "/nonexistent/qrt-keys-ca.pem"}}));
    const auto e = fails(*missing);
    EXPECT_EQ(e.code, errc::configuration_error) << e.to_string();
    EXPECT_NE(e.message.find("/nonexistent/qrt-keys-ca.pem"), std::string::npos) << e.to_string();
    auto plain = try_make(rabbit_config({{"tls_ca_file", broker->ca_file()}}));
    ASSERT_FALSE(plain) << "a CA file taken for a connection without TLS";
    EXPECT_NE(plain.error().message.find("tls_ca_file"), std::string::npos);
  }

  void user_key() {
    // SASL PLAIN as that user: a user the node does not know is refused.
    works(*make(rabbit_config()));
    auto stranger = make(rabbit_config({{"user", "nobody-here"}, {"connect_timeout", "15s"}}));
    EXPECT_EQ(fails(*stranger).code, errc::permission);
  }

  void password_key() {
    auto wrong =
        make(rabbit_config({{"password", "not-the-password"}, {"connect_timeout", "15s"}}));
    const auto e = fails(*wrong);
    EXPECT_EQ(e.code, errc::permission) << e.to_string();
    EXPECT_EQ(e.message.find("not-the-password"), std::string::npos) << "the password leaked";
  }

  void sasl_mechanisms_key() {
    // ANONYMOUS instead of PLAIN: the (wrong) password is never offered, and the node lets the
    // anonymous user in.
    auto anonymous = make(rabbit_config({{"password", "not-the-password"},
                                         {"sasl_mechanisms", "ANONYMOUS"},
                                         {"connect_timeout", "15s"}}));
    works(*anonymous);
  }

  void virtual_host_key() {
    // "vhost:NAME" on RabbitMQ: the queue and its message live in that virtual host.
    broker->ctl({"add_vhost", "qrt-keys"});
    broker->ctl({"set_permissions", "-p", "qrt-keys", "guest", ".*", ".*", ".*"});
    auto p = make(rabbit_config({{"virtual_host", "vhost:qrt-keys"}}));
    const auto q = queue_name::from(fresh_name());
    auto created = io_.run(p->create_queue(q, {}));
    ASSERT_TRUE(created) << created.error().to_string();
    send_ok(*p, q);
    EXPECT_EQ(broker_column(q.str(), "messages", "qrt-keys"), 1);
    EXPECT_EQ(broker_column(q.str(), "messages", "/"), -1) << "the queue is in the default vhost";
  }

  void prefetch_key() {
    // After a receive of one, the link holds that many locked (unacknowledged on the broker).
    for (auto [prefetch, held] : {std::pair<const char*, long>{"3", 3}, {"0", 1}}) {
      const auto q = new_queue();
      send_ok(*admin(), q, 10);
      auto p = make(rabbit_config({{"prefetch", prefetch}}));
      auto got = receive(*p, q, 1, 5s);
      ASSERT_TRUE(got && got->size() == 1u);
      EXPECT_EQ(
          broker_count_until(q.str(), "messages_unacknowledged", [&](long n) { return n >= held; }),
          held)
          << "prefetch " << prefetch;
    }
  }

  void preset_key() {
    // The link's credit follows the preset (high_throughput 50, low_latency 1): after a receive
    // of one, that many are unacknowledged on the broker. The RabbitMQ options stay in force
    // (the queue is reached at all), and an explicit prefetch wins.
    for (auto [preset, prefetch, held] :
         {std::tuple<const char*, const char*, long>{"high_throughput", nullptr, 50},
          {"low_latency", nullptr, 1},
          {"high_throughput", "3", 3}}) {
      SCOPED_TRACE(std::string("preset ") + preset + (prefetch ? ", prefetch 3" : ""));
      const auto q = new_queue();
      send_ok(*admin(), q, 60);
      auto cfg = prefetch ? rabbit_config({{"preset", preset}, {"prefetch", prefetch}})
                          : rabbit_config({{"preset", preset}});
      auto p = make(cfg);
      auto got = receive(*p, q, 1, 5s);
      ASSERT_TRUE(got && got->size() == 1u);
      EXPECT_EQ(
          broker_count_until(q.str(), "messages_unacknowledged", [&](long n) { return n >= held; }),
          held);
    }
    auto unknown = qrt::amqp::options_from_config(rabbit_config({{"preset", "fastest"}}));
    ASSERT_FALSE(unknown);
    EXPECT_NE(unknown.error().message.find("preset"), std::string::npos);
  }

  void worker_threads_key() {
    // The provider runs on its caller's executor and only checks the key; it sizes the runtime
    // built from the same configuration.
    const auto cfg = rabbit_config({{"worker_threads", "3"}});
    (void)make(cfg);
    qrt::test::expect_a_runtime_of_three_threads_from(cfg);
  }

  // The provider only checks a session processor's keys; the session processor's options built
  // from the same configuration carry them.
  void expect_session_key(std::string_view key) {
    qrt::test::expect_a_session_processor_key(
        key,
        [](std::string_view k, std::string_view v) {
          return rabbit_config({{std::string(k), std::string(v)}});
        },
        [](const config& cfg) -> qrt::result<void> {
          auto o = qrt::amqp::options_from_config(cfg);
          if (!o) return o.error();
          return {};
        });
  }
  void max_concurrent_sessions_key() { expect_session_key("max_concurrent_sessions"); }
  void session_idle_timeout_key() { expect_session_key("session_idle_timeout"); }
  void max_session_hold_key() { expect_session_key("max_session_hold"); }

  void thread_stack_size_key() {
    // Only checked by the provider, like worker_threads; the runtime's threads get the stack.
    const std::size_t size = qrt::test::a_stack_size_above_the_default();
    const auto cfg = rabbit_config({{"thread_stack_size", std::to_string(size)}});
    (void)make(cfg);
    qrt::test::expect_a_runtime_with_stacks_of(cfg, size);
    auto refused = qrt::amqp::options_from_config(rabbit_config({{"thread_stack_size", "1024"}}));
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().message.find("thread_stack_size"), std::string::npos);
  }

  void max_concurrent_calls_key() {
    // A processor built from the config runs at most that many handlers at once.
    const auto cfg = rabbit_config({{"max_concurrent_calls", "2"}});
    const auto q = new_queue();
    send_ok(*admin(), q, 6);
    qrt::queue_client client(make(cfg));
    qrt::test::counter started;
    std::atomic<bool> release{false};
    qrt::runtime rt({.worker_threads = 4});
    qrt::processor proc(
        client, q,
        [&](const qrt::received_message&) -> qrt::awaitable<qrt::result<void>> {
          started.add();
          while (!release) co_await work_for(10ms);
          co_return qrt::result<void>{};
        },
        qrt::processor_options::from_config(cfg).value());
    proc.start(rt.executor());
    ASSERT_TRUE(started.wait_for_at_least(2, 20s));
    EXPECT_FALSE(started.wait_for_at_least(3, 500ms)) << "a third handler ran beside two";
    release = true;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (proc.stats().completed < 6 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(10ms);  // polling interval of a condition
    rt.block_on(proc.stop(10s));
    EXPECT_EQ(proc.stats().completed, 6u);
    EXPECT_EQ(proc.stats().max_in_flight, 2u);
  }

  void prefetch_count_key() {
    // With its one handler busy, a processor holds 1 + prefetch_count messages received, which
    // the broker counts unacknowledged. Link credit (prefetch) is set apart: 0 leaves the
    // processor's receives the only reason the broker hands messages out; 5 has the link take
    // 5 while the processor still takes only the one it handles.
    struct case_row {
      const char* link_prefetch;
      const char* prefetch_count;
      long unacknowledged;
      std::uint64_t received;
    };
    const case_row cases[] = {{"0", "3", 4, 4}, {"0", "0", 1, 1}, {"5", "0", 5, 1}};
    for (const auto& c : cases) {
      SCOPED_TRACE(std::string("prefetch ") + c.link_prefetch + ", prefetch_count " +
                   c.prefetch_count);
      const auto cfg = rabbit_config({{"prefetch", c.link_prefetch},
                                      {"max_concurrent_calls", "1"},
                                      {"prefetch_count", c.prefetch_count}});
      const auto q = new_queue();
      send_ok(*admin(), q, 10);
      qrt::queue_client client(make(cfg));
      qrt::test::counter started;
      std::atomic<bool> release{false};
      qrt::runtime rt({.worker_threads = 2});
      qrt::processor proc(
          client, q,
          [&](const qrt::received_message&) -> qrt::awaitable<qrt::result<void>> {
            started.add();
            while (!release) co_await work_for(10ms);
            co_return qrt::result<void>{};
          },
          qrt::processor_options::from_config(cfg).value());
      proc.start(rt.executor());
      ASSERT_TRUE(started.wait_for_at_least(1, 20s));
      EXPECT_EQ(broker_count_until(q.str(), "messages_unacknowledged",
                                   [&](long n) { return n >= c.unacknowledged; }),
                c.unacknowledged);
      EXPECT_TRUE(qrt::test::eventually([&] { return proc.stats().received >= c.received; }));
      EXPECT_EQ(proc.stats().received, c.received);
      release = true;
      EXPECT_TRUE(qrt::test::eventually([&] { return proc.stats().completed == 10; }));
      rt.block_on(proc.stop(10s));
      EXPECT_EQ(proc.stats().completed, 10u);
    }
  }

  void max_auto_lock_renewal_duration_key() {
    // An AMQP lock is the link's: it holds until the message is settled, with nothing to renew.
    // A processor told to renew for only 100 ms keeps a handler's message for as long as the
    // handler runs (here past a second consumer's 1 s receive), and completes it.
    const auto cfg = rabbit_config({{"max_auto_lock_renewal_duration", "100ms"}});
    const auto options = qrt::processor_options::from_config(cfg).value();
    EXPECT_EQ(options.max_auto_lock_renewal_duration, 100ms);
    const auto q = new_queue();
    send_ok(*admin(), q);
    qrt::queue_client client(make(cfg));
    qrt::test::counter started;
    std::atomic<bool> release{false};
    qrt::runtime rt({.worker_threads = 2});
    qrt::processor proc(
        client, q,
        [&](const qrt::received_message&) -> qrt::awaitable<qrt::result<void>> {
          started.add();
          while (!release) co_await work_for(10ms);
          co_return qrt::result<void>{};
        },
        options);
    proc.start(rt.executor());
    ASSERT_TRUE(started.wait_for_at_least(1, 20s));
    auto other = make(rabbit_config());
    auto stolen = receive(*other, q, 1, 1s);
    ASSERT_TRUE(stolen) << stolen.error().to_string();
    EXPECT_TRUE(stolen->empty()) << "a running handler's message went to another consumer";
    release = true;
    EXPECT_TRUE(qrt::test::eventually([&] {
      const auto s = proc.stats();
      return s.completed + s.settle_failures >= 1;
    }));
    rt.block_on(proc.stop(10s));
    EXPECT_EQ(proc.stats().completed, 1u);
    EXPECT_EQ(proc.stats().settle_failures, 0u);
    EXPECT_EQ(proc.stats().lock_renewals, 0u);
    EXPECT_EQ(broker_count_until(q.str(), "messages", [](long n) { return n == 0; }), 0);
  }

  void address_prefix_key() {
    // Link address = address_prefix + queue name: "x" with prefix "/amq/queue/<q>-" is the
    // broker queue "<q>-x".
    const auto target = new_queue();
    auto p = make(rabbit_config({{"address_prefix", "/amq/queue/" + target.str().substr(0, 9)}}));
    const auto logical = queue_name::from(target.str().substr(9));
    send_ok(*p, logical);
    EXPECT_EQ(broker_column(target.str(), "messages"), 1);
  }

  void declare_prefix_key() {
    // Where create_queue attaches to have the broker declare the queue: a generic broker with
    // RabbitMQ's "/queue/" declares it; without one, create_queue is unsupported.
    auto p = make(rabbit_config(
        {{"broker", "generic"}, {"address_prefix", "/amq/queue/"}, {"declare_prefix", "/queue/"}}));
    const auto q = queue_name::from(fresh_name());
    auto created = io_.run(p->create_queue(q, {}));
    ASSERT_TRUE(created) << created.error().to_string();
    EXPECT_EQ(broker_column(q.str(), "messages"), 0) << "the broker has no such queue";
  }

  void topic_prefix_key() {
    // Topics are published to prefix + topic and subscriptions attach there: RabbitMQ's
    // "/topic/" reaches a subscription; with the key empty there are no topics.
    auto p = make(rabbit_config({{"topic_prefix", "/topic/"}}));
    ASSERT_TRUE(p->caps().topics);
    const auto topic = qrt::topic_name::from(fresh_name());
    const auto sub = queue_name::subscription(topic, "s").value();
    ASSERT_TRUE(io_.run(p->create_subscription(sub, {})));
    std::vector<qrt::message> one(1);
    one[0].body = "routed";
    auto published = io_.run(p->publish(topic, std::move(one), 5s));
    ASSERT_TRUE(published && published->at(0));
    auto got = io_.run(p->receive(sub, 1, 5s));
    ASSERT_TRUE(got && got->size() == 1u);
    EXPECT_EQ(got->at(0).body, "routed");
    auto none = make(rabbit_config({{"topic_prefix", ""}}));
    EXPECT_FALSE(none->caps().topics);
    auto refused = io_.run(none->create_topic(topic));
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, qrt::errc::unsupported);
  }

  void abandon_outcome_key() {
    // released (RabbitMQ's preset): the message comes back, its failed delivery not counted,
    // and the capabilities say an abandon does not count a delivery.
    const auto q = new_queue();
    send_ok(*admin(), q);
    auto released = make(rabbit_config({{"abandon_outcome", "released"}}));
    EXPECT_FALSE(released->caps().abandon);
    auto first = receive(*released, q, 1, 5s);
    ASSERT_TRUE(first && first->size() == 1u);
    ASSERT_TRUE(settle(*released, qrt::settlement::abandon((*first)[0].receipt)));
    auto again = receive(*released, q, 1, 5s);
    ASSERT_TRUE(again && again->size() == 1u) << "a released message did not come back";
    EXPECT_EQ((*again)[0].delivery_count, 1u);
    ASSERT_TRUE(settle(*released, qrt::settlement::complete((*again)[0].receipt)));

    // modified: an abandon that counts a failed delivery, which the capabilities report. RabbitMQ
    // 3.10 answers that outcome by ending the link's session, so with broker=rabbitmq it is
    // refused, naming the key; a generic broker takes it.
    auto refused = try_make(rabbit_config({{"abandon_outcome", "modified"}}));
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().message.find("abandon_outcome"), std::string::npos);
    auto generic = make(rabbit_config({{"broker", "generic"}, {"abandon_outcome", "modified"}}));
    EXPECT_TRUE(generic->caps().abandon);
    EXPECT_FALSE(try_make(rabbit_config({{"abandon_outcome", "forgotten"}})));
  }

  void verify_queue_exists_key() {
    // RabbitMQ's "/amq/queue/" accepts and drops messages for a missing queue: with the check
    // (RabbitMQ's preset) the send fails with queue_not_found; without it, it "succeeds".
    const auto missing = queue_name::from(fresh_name());
    auto checked = make(rabbit_config());
    auto e = send(*checked, missing, "x");
    ASSERT_TRUE(e) << "a send to a missing queue succeeded";
    EXPECT_EQ(e->code, errc::queue_not_found) << e->to_string();
    auto unchecked = make(rabbit_config({{"verify_queue_exists", "false"}}));
    EXPECT_FALSE(send(*unchecked, missing, "x")) << "refused without the check";
  }

  void max_message_bytes_key() {
    const auto q = new_queue();
    auto p = make(rabbit_config({{"max_message_bytes", "2048"}}));
    send_ok(*p, q, 1, 1'000);
    auto e = send(*p, q, std::string(4'000, 'x'));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code, errc::message_too_large) << e->to_string();
  }

  void max_prefetch_bytes_key() {
    // prefetch 100 of 1,000-byte messages, each credit counted at 1 KiB + 64 KiB: a budget of
    // one credit and 3,000 bytes holds a few unacknowledged, where without it the link takes
    // all 60.
    const auto bounded_q = new_queue();
    send_ok(*admin(), bounded_q, 60, 1'000);
    auto bounded =
        make(rabbit_config({{"prefetch", "100"},
                            {"max_message_bytes", "1024"},
                            {"max_prefetch_bytes", std::to_string(1024 + 65536 + 3000)}}));
    auto got = receive(*bounded, bounded_q, 1, 5s);
    ASSERT_TRUE(got && got->size() == 1u);
    EXPECT_LE(broker_count_until(bounded_q.str(), "messages_unacknowledged",
                                 [](long n) { return n >= 50; }),
              6)
        << "the byte budget did not hold";
    const auto open_q = new_queue();
    send_ok(*admin(), open_q, 60, 1'000);
    auto unbounded = make(rabbit_config({{"prefetch", "100"}, {"max_message_bytes", "1024"}}));
    got = receive(*unbounded, open_q, 1, 5s);
    ASSERT_TRUE(got && got->size() == 1u);
    EXPECT_GE(
        broker_count_until(open_q.str(), "messages_unacknowledged", [](long n) { return n >= 50; }),
        50);
  }

  void max_links_key() {
    // Receivers are never closed for room: with one link, a second receiver is refused naming
    // the cap.
    const auto a = new_queue();
    const auto b = new_queue();
    auto p = make(rabbit_config({{"max_links", "1"}}));
    auto first = receive(*p, a, 1, 200ms);
    ASSERT_TRUE(first) << first.error().to_string();
    auto second = receive(*p, b, 1, 200ms);
    ASSERT_FALSE(second) << "two receivers in one link";
    EXPECT_NE(second.error().message.find("max_links"), std::string::npos)
        << second.error().to_string();
    auto wide = make(rabbit_config());
    EXPECT_TRUE(receive(*wide, a, 1, 200ms));
    EXPECT_TRUE(receive(*wide, b, 1, 200ms));
  }

  void connect_timeout_key() {
    // A listener that takes the TCP connection and never answers the AMQP header: the attempt
    // ends after connect_timeout (the receive's own wait is two minutes).
    asio::io_context io;
    tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
    auto p = make(rabbit_config(
        {{"port", std::to_string(silent.local_endpoint().port())}, {"connect_timeout", "300ms"}}));
    const auto q = queue_name::from("q");  // outlives the call, which runs on another thread
    auto f = io_.start(p->receive(q, 1, 120s));
    ASSERT_EQ(f.wait_for(30s), std::future_status::ready) << "still connecting";
    auto r = f.get();
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().code == errc::timeout || r.error().code == errc::connection_failed)
        << r.error().to_string();
  }

  void idle_timeout_key() {
    // Nothing comes through a stalled proxy, not even heartbeats: with a 1 s idle timeout the
    // client gives the connection up, failing a receive that would otherwise wait 60 s.
    const auto q = new_queue();
    qrt::faults::tcp_proxy proxy(static_cast<unsigned short>(broker->amqp_port()));
    auto p = make(rabbit_config({{"port", std::to_string(proxy.port())}, {"idle_timeout", "1s"}}));
    auto warm = receive(*p, q, 1, 100ms);
    ASSERT_TRUE(warm) << warm.error().to_string();
    proxy.stall();
    auto f = io_.start(p->receive(q, 1, 60s));
    ASSERT_EQ(f.wait_for(30s), std::future_status::ready) << "the dead connection was not noticed";
    auto r = f.get();
    ASSERT_FALSE(r) << "a receive on a connection that timed out returned normally";
    EXPECT_EQ(r.error().code, errc::connection_failed) << r.error().to_string();
    proxy.resume();
  }

  void reconnect_max_delay_key() {
    // Reconnect attempts back off from 100 ms, doubling up to reconnect_max_delay: capped at
    // 100 ms, 15 failed attempts (each failing one receive) fit well within 20 s; with the
    // default cap of 5 s they would take about 50 s.
    asio::io_context io;
    tcp::acceptor closed(io, {asio::ip::make_address("127.0.0.1"), 0});
    const auto port = closed.local_endpoint().port();
    closed.close();
    auto p =
        make(rabbit_config({{"port", std::to_string(port)}, {"reconnect_max_delay", "100ms"}}));
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    int failed = 0;
    while (failed < 15 && std::chrono::steady_clock::now() < deadline) {
      auto r = receive(*p, queue_name::from("q"), 1, 30s);
      ASSERT_FALSE(r);
      ++failed;
    }
    EXPECT_EQ(failed, 15) << "attempts spaced further apart than reconnect_max_delay";
  }

 private:
  io_thread io_;
  qrt::provider_ptr admin_;
  std::vector<qrt::provider_ptr> made_;
};

const key_row rows[] = {
    {"provider", &AmqpConfigKey::provider_key},
    {"broker", &AmqpConfigKey::broker_key},
    {"preset", &AmqpConfigKey::preset_key},
    {"endpoint", &AmqpConfigKey::endpoint_key},
    {"host", &AmqpConfigKey::host_key},
    {"port", &AmqpConfigKey::port_key},
    {"tls", &AmqpConfigKey::tls_key},
    {"tls_verify", &AmqpConfigKey::tls_verify_key},
    {"tls_ca_file", &AmqpConfigKey::tls_ca_file_key},
    {"user", &AmqpConfigKey::user_key},
    {"password", &AmqpConfigKey::password_key},
    {"sasl_mechanisms", &AmqpConfigKey::sasl_mechanisms_key},
    {"virtual_host", &AmqpConfigKey::virtual_host_key},
    {"prefetch", &AmqpConfigKey::prefetch_key},
    {"max_concurrent_calls", &AmqpConfigKey::max_concurrent_calls_key},
    {"prefetch_count", &AmqpConfigKey::prefetch_count_key},
    {"max_auto_lock_renewal_duration", &AmqpConfigKey::max_auto_lock_renewal_duration_key},
    {"worker_threads", &AmqpConfigKey::worker_threads_key},
    {"thread_stack_size", &AmqpConfigKey::thread_stack_size_key},
    {"max_concurrent_sessions", &AmqpConfigKey::max_concurrent_sessions_key},
    {"session_idle_timeout", &AmqpConfigKey::session_idle_timeout_key},
    {"max_session_hold", &AmqpConfigKey::max_session_hold_key},
    {"address_prefix", &AmqpConfigKey::address_prefix_key},
    {"declare_prefix", &AmqpConfigKey::declare_prefix_key},
    {"topic_prefix", &AmqpConfigKey::topic_prefix_key},
    {"abandon_outcome", &AmqpConfigKey::abandon_outcome_key},
    {"verify_queue_exists", &AmqpConfigKey::verify_queue_exists_key},
    {"max_message_bytes", &AmqpConfigKey::max_message_bytes_key},
    {"max_prefetch_bytes", &AmqpConfigKey::max_prefetch_bytes_key},
    {"max_links", &AmqpConfigKey::max_links_key},
    {"connect_timeout", &AmqpConfigKey::connect_timeout_key},
    {"idle_timeout", &AmqpConfigKey::idle_timeout_key},
    {"reconnect_max_delay", &AmqpConfigKey::reconnect_max_delay_key},
};

}  // namespace

TEST(AmqpConfigKeys, TheTableNamesExactlyTheKeysTheProviderAccepts) {
  qrt::test::expect_a_row_for_exactly(qrt::amqp::known_keys(), rows);
  qrt::test::expect_documented(qrt::amqp::known_keys(), "docs/amqp.md");
  auto typo = qrt::amqp::options_from_config(config{{"prefech", "5"}});
  ASSERT_FALSE(typo);
  EXPECT_NE(typo.error().message.find("prefech"), std::string::npos);
}

TEST_P(AmqpConfigKey, ActsOnBehaviour) {
  (this->*GetParam().shows_effect)();
}

INSTANTIATE_TEST_SUITE_P(EveryKey, AmqpConfigKey, ::testing::ValuesIn(rows),
                         [](const ::testing::TestParamInfo<key_row>& info) {
                           return std::string(info.param.key);
                         });
