// Every configuration key the Service Bus provider accepts, each shown acting against the
// project's Service Bus test peer (test/servers/servicebus): what the peer holds locked, what it
// accepts on $cbs, what a processor built from the same configuration does, and, for TLS, a
// TLS terminator in front of the peer. The table at the end must name every key of
// qrt::servicebus::known_keys() (the list reject_unknown() uses), so a key added to the provider
// without a row here fails this test.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <mutex>
#include <qrt/processor.hpp>
#include <qrt/runtime.hpp>
#include <qrt/servicebus.hpp>
#include <qrt/sync_client.hpp>
#include <random>
#include <set>
#include <thread>

#include "local_http_server.hpp"
#include "peer_process.hpp"
#include "unit/support/config_keys.hpp"
#include "unit/support/runtime_key.hpp"
#include "unit/support/session_keys.hpp"
#include "unit/support/wait.hpp"

namespace {

using namespace std::chrono_literals;
using qrt::config;
using qrt::errc;
using qrt::queue_name;
using qrt::test::eventually;
using qrt::test::scratch_dir;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr const char* identity_id = "7d1e3c2b-0000-1111-2222-333344445555";
constexpr const char* identity_token = "jwt-config-keys.e30.sig";

// One peer for this suite: SAS key "y" (signatures checked), the managed-identity token above,
// and SAS tokens refused when they live longer than 90 minutes (token_lifetime).
std::unique_ptr<qrt::test::servicebus_peer> keys_peer;

std::atomic<int> queue_counter{0};
queue_name fresh_keys_queue(const std::string& what) {
  return queue_name::from("sbkeys-" + what + "-" + std::to_string(::getpid()) + "-" +
                          std::to_string(++queue_counter));
}

qrt::provider_registry servicebus_registry() {
  qrt::provider_registry r;
  qrt::servicebus::register_provider(r);
  return r;
}

/// The suite's peer with admin access and short timeouts, plus `extra`.
config peer_config(const config& extra = {}) {
  config c{{"provider", "servicebus"},
           {"connection_string", keys_peer->connection_string()},
           {"operation_timeout", "3s"},
           {"test_peer_admin", "true"}};
  c.merge(extra);
  return c;
}

qrt::result<qrt::sync::queue_client> try_open(const config& cfg) {
  return qrt::sync::queue_client::open(
      cfg, servicebus_registry(), qrt::client_options{.send_timeout = 10s, .retry = std::nullopt});
}

qrt::sync::queue_client open(const config& cfg) {
  auto c = try_open(cfg);
  if (!c) throw qrt::exception(c.error());
  return std::move(*c);
}

queue_name make_queue(qrt::sync::queue_client& c, const std::string& what,
                      qrt::queue_options o = {}) {
  auto q = fresh_keys_queue(what);
  if (auto r = c.create_queue(q, o); !r) throw qrt::exception(r.error());
  return q;
}

void send_n(qrt::sync::queue_client& c, const queue_name& q, int n, std::size_t bytes = 10) {
  for (int i = 0; i < n; ++i) {
    qrt::message m;
    m.body = std::string(bytes, 'x');
    auto r = c.send(q, m);
    if (!r) throw qrt::exception(r.error());
  }
}

std::int64_t locked(qrt::sync::queue_client& c, const queue_name& q) {
  auto s = c.stats(q);
  if (!s) throw qrt::exception(s.error());
  return s->in_flight;
}

/// After one receive of one message, how many the peer holds locked for this client (the one
/// received plus what the receiver link prefetched), once that number settled or reached `at
/// least`.
std::int64_t locked_after_one_receive(qrt::sync::queue_client& c, const queue_name& q,
                                      std::int64_t at_least) {
  auto got = c.receive(q, 1, 10s);
  if (!got || got->size() != 1) throw std::runtime_error("no message to receive");
  (void)eventually([&] { return locked(c, q) >= at_least; }, 3s);
  return locked(c, q);
}

/// TLS on 127.0.0.1 with a self-signed certificate (made with the openssl command), forwarding
/// the decrypted bytes to a plain TCP port: the peer, reached over TLS.
class tls_terminator {
 public:
  explicit tls_terminator(unsigned short target)
      : target_(target),
        ctx_(asio::ssl::context::tls_server),
        acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    const auto cert = dir_ / "cert.pem";
    const auto key = dir_ / "key.pem";
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
        "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout '" +
        key.string() + "' -out '" + cert.string() + "' 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl could not make a cert");
    ctx_.use_certificate_chain_file(cert.string());
    ctx_.use_private_key_file(key.string(), asio::ssl::context::pem);
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~tls_terminator() {
    io_.stop();
    thread_.join();
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  int handshakes() const { return handshakes_; }

 private:
  using tls_stream = asio::ssl::stream<tcp::socket>;

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      asio::co_spawn(io_, serve(std::make_shared<tls_stream>(std::move(socket), ctx_)),
                     asio::detached);
    }
  }
  asio::awaitable<void> serve(std::shared_ptr<tls_stream> tls) {
    auto [hec] = co_await tls->async_handshake(asio::ssl::stream_base::server,
                                               asio::as_tuple(asio::use_awaitable));
    if (hec) co_return;  // the client refused the certificate
    ++handshakes_;
    auto plain = std::make_shared<tcp::socket>(io_);
    auto [cec] = co_await plain->async_connect({asio::ip::make_address("127.0.0.1"), target_},
                                               asio::as_tuple(asio::use_awaitable));
    if (cec) co_return;
    asio::co_spawn(io_, pump(tls, plain, tls, plain), asio::detached);
    co_await pump(plain, tls, tls, plain);
  }
  template <class From, class To>
  asio::awaitable<void> pump(std::shared_ptr<From> from, std::shared_ptr<To> to,
                             std::shared_ptr<tls_stream> tls, std::shared_ptr<tcp::socket> plain) {
    char buf[16384];
    for (;;) {
      auto [ec, n] =
          co_await from->async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (ec) break;
      auto [wec, written] = co_await asio::async_write(*to, asio::buffer(buf, n),
                                                       asio::as_tuple(asio::use_awaitable));
      (void)written;
      if (wec) break;
    }
    boost::system::error_code ignored;
    tls->lowest_layer().close(ignored);
    plain->close(ignored);
  }

  unsigned short target_;
  scratch_dir dir_;
  asio::io_context io_;
  asio::ssl::context ctx_;
  tcp::acceptor acceptor_;
  std::atomic<int> handshakes_{0};
  std::thread thread_;
};

/// A fake Azure Instance Metadata Service: a token for `identity_id` only, and a record of the
/// client ids asked for.
class fake_imds {
 public:
  fake_imds() : server_([this](const qrt::test::seen_request& r) { return answer(r); }) {}
  std::string url() const { return server_.url() + "/metadata/identity/oauth2/token"; }
  std::vector<std::string> targets() {
    std::lock_guard lock(mutex_);
    return targets_;
  }

 private:
  qrt::test::canned_response answer(const qrt::test::seen_request& r) {
    std::lock_guard lock(mutex_);
    targets_.push_back(r.target);
    if (r.target.find(std::string("client_id=") + identity_id) == std::string::npos)
      return {400, R"({"error":"invalid_request","error_description":"Identity not found"})"};
    const auto expires = std::chrono::duration_cast<std::chrono::seconds>(
                             (std::chrono::system_clock::now() + 1h).time_since_epoch())
                             .count();
    return {200, R"({"access_token":")" + std::string(identity_token) +
                     R"(","expires_in":"3600","expires_on":")" + std::to_string(expires) +
                     R"(","resource":"https://servicebus.azure.net/","token_type":"Bearer"})"};
  }

  std::mutex mutex_;
  std::vector<std::string> targets_;
  qrt::test::local_http_server server_;  // last: stops before the state it uses goes away
};

/// A processor on `client` built from `cfg` by processor_options::from_config, running `handler`
/// on its own runtime until stopped.
struct running_processor {
  running_processor(qrt::sync::queue_client& client, const queue_name& q, const config& cfg,
                    qrt::message_handler handler)
      : rt({.worker_threads = 4}),
        p(client.async_client(), q, std::move(handler),
          qrt::processor_options::from_config(cfg).value()) {
    p.start(rt.executor());
  }
  ~running_processor() { stop(); }
  void stop() {
    if (!stopped) rt.block_on(p.stop(10s));
    stopped = true;
  }
  qrt::runtime rt;
  qrt::processor p;
  bool stopped = false;
};

/// A handler's wait that is its work (not a test's synchronisation): a timer on its executor.
qrt::awaitable<void> work_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

struct key_row {
  std::string_view key;
  void (*shows_effect)();
};
void PrintTo(const key_row& row, std::ostream* os) {
  *os << row.key;
}

// ---- one check per key ----

void provider_key() {
  auto c = open(peer_config());
  EXPECT_EQ(c.async_client().provider_name(), "servicebus");
}

void preset_key() {
  // high_throughput: the receiver prefetches 50 and a processor runs 32 handlers;
  // low_latency: prefetch 1 and 4 handlers.
  auto high = open(peer_config({{"preset", "high_throughput"}}));
  const auto q = make_queue(high, "preset");
  send_n(high, q, 60);
  EXPECT_GE(locked_after_one_receive(high, q, 50), 50) << "no prefetch of 50";
  EXPECT_EQ(qrt::processor_options::from_config(peer_config({{"preset", "high_throughput"}}))
                .value()
                .max_concurrent_calls,
            32u);
  auto low = open(peer_config({{"preset", "low_latency"}}));
  const auto q2 = make_queue(low, "preset-low");
  send_n(low, q2, 10);
  EXPECT_LE(locked_after_one_receive(low, q2, 2), 2) << "prefetched more than 1";
  auto bad = try_open(peer_config({{"preset", "fastest"}}));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("preset"), std::string::npos);
}

void connection_string_key() {
  // Its endpoint is where the client goes, its key signs the tokens.
  auto good = open(peer_config());
  const auto q = make_queue(good, "cs");
  send_n(good, q, 1);
  auto wrong_key = open(peer_config({{"connection_string", keys_peer->connection_string("z")}}));
  auto refused = wrong_key.send(q, qrt::message{.body = "x"});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::permission) << refused.error().to_string();
  EXPECT_EQ(refused.error().message.find("SharedAccessKey=z"), std::string::npos);
  asio::io_context io;
  tcp::acceptor closed_soon(io, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = closed_soon.local_endpoint().port();
  closed_soon.close();
  auto elsewhere =
      open(peer_config({{"connection_string", "Endpoint=sb://127.0.0.1:" + std::to_string(port) +
                                                  "/;SharedAccessKeyName=x;SharedAccessKey=y;"
                                                  "UseDevelopmentEmulator=true"}}));
  auto unreachable = elsewhere.send(q, qrt::message{.body = "x"});
  ASSERT_FALSE(unreachable);
  EXPECT_EQ(unreachable.error().code, errc::connection_failed) << unreachable.error().to_string();
  auto missing = try_open(config{{"provider", "servicebus"}});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("connection_string"), std::string::npos);
}

std::string endpoint_only() {
  return "Endpoint=sb://127.0.0.1:" + std::to_string(keys_peer->port()) +
         "/;UseDevelopmentEmulator=true";
}

void auth_key() {
  // managed_identity: tokens come from the identity endpoint (the peer accepts that JWT), and
  // the connection string needs no key; sas (the default) needs the key and asks no endpoint.
  fake_imds imds;
  auto mi = open(peer_config({{"auth", "managed_identity"},
                              {"connection_string", endpoint_only()},
                              {"managed_identity_endpoint", imds.url()},
                              {"managed_identity_client_id", identity_id}}));
  const auto q = make_queue(mi, "auth");
  send_n(mi, q, 1);
  EXPECT_FALSE(imds.targets().empty()) << "no token asked of the identity endpoint";
  auto sas = try_open(peer_config({{"connection_string", endpoint_only()}}));
  ASSERT_FALSE(sas) << "auth=sas took a connection string without a key";
  auto bad = try_open(peer_config({{"auth", "password"}}));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("auth"), std::string::npos);
}

void managed_identity_client_id_key() {
  // The identity asked for: the fake knows only identity_id; without it (system-assigned) it
  // refuses and the send fails on permission.
  fake_imds imds;
  auto with_id = open(peer_config({{"auth", "managed_identity"},
                                   {"connection_string", endpoint_only()},
                                   {"managed_identity_endpoint", imds.url()},
                                   {"managed_identity_client_id", identity_id}}));
  const auto q = make_queue(with_id, "mi-id");
  send_n(with_id, q, 1);
  ASSERT_FALSE(imds.targets().empty());
  EXPECT_NE(imds.targets().front().find(std::string("client_id=") + identity_id), std::string::npos)
      << imds.targets().front();
  fake_imds imds2;
  auto system_assigned = open(peer_config({{"auth", "managed_identity"},
                                           {"connection_string", endpoint_only()},
                                           {"managed_identity_endpoint", imds2.url()}}));
  auto refused = system_assigned.send(q, qrt::message{.body = "x"});
  ASSERT_FALSE(refused);
  ASSERT_FALSE(imds2.targets().empty());
  EXPECT_EQ(imds2.targets().front().find("client_id="), std::string::npos);
  auto without_mi = try_open(peer_config({{"managed_identity_client_id", identity_id}}));
  ASSERT_FALSE(without_mi);
  EXPECT_NE(without_mi.error().message.find("managed_identity_client_id"), std::string::npos);
}

void managed_identity_endpoint_key() {
  // Tokens are asked of that endpoint, with the IMDS protocol.
  fake_imds imds;
  auto c = open(peer_config({{"auth", "managed_identity"},
                             {"connection_string", endpoint_only()},
                             {"managed_identity_endpoint", imds.url()},
                             {"managed_identity_client_id", identity_id}}));
  const auto q = make_queue(c, "mi-endpoint");
  send_n(c, q, 1);
  ASSERT_FALSE(imds.targets().empty());
  EXPECT_EQ(imds.targets().front().rfind("/metadata/identity/oauth2/token?", 0), 0u);
  auto bad = try_open(peer_config({{"auth", "managed_identity"},
                                   {"connection_string", endpoint_only()},
                                   {"managed_identity_endpoint", "not a url"}}));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("managed_identity_endpoint"), std::string::npos);
}

void transport_type_key() {
  // amqp (the default) is what every other check here uses; amqp_websockets is not built and is
  // refused, naming the key.
  auto amqp = open(peer_config({{"transport_type", "amqp"}}));
  const auto q = make_queue(amqp, "transport");
  send_n(amqp, q, 1);
  auto ws = try_open(peer_config({{"transport_type", "amqp_websockets"}}));
  ASSERT_FALSE(ws);
  EXPECT_EQ(ws.error().code, errc::configuration_error);
  EXPECT_NE(ws.error().message.find("transport_type"), std::string::npos);
}

void worker_threads_key() {
  // The provider runs on its caller's executor and only checks the key; it sizes the runtime
  // built from the same configuration.
  const auto cfg = peer_config({{"worker_threads", "3"}});
  auto c = open(cfg);
  qrt::test::expect_a_runtime_of_three_threads_from(cfg);
}

// The provider only checks a session processor's keys; the session processor's options built
// from the same configuration carry them.
void expect_session_key(std::string_view key) {
  qrt::test::expect_a_session_processor_key(
      key,
      [](std::string_view k, std::string_view v) {
        return peer_config({{std::string(k), std::string(v)}});
      },
      [](const config& cfg) -> qrt::result<void> {
        // Through the registry, as every other row: the peer's test keys are the registry's.
        auto c = try_open(cfg);
        if (!c) return c.error();
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
  const auto cfg = peer_config({{"thread_stack_size", std::to_string(size)}});
  auto c = open(cfg);
  qrt::test::expect_a_runtime_with_stacks_of(cfg, size);
  auto refused = try_open(peer_config({{"thread_stack_size", "1024"}}));
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("thread_stack_size"), std::string::npos);
}

void max_concurrent_calls_key() {
  // A processor built from the config runs at most that many handlers at once.
  const auto cfg = peer_config({{"max_concurrent_calls", "2"}});
  auto c = open(cfg);
  const auto q = make_queue(c, "calls");
  send_n(c, q, 6);
  qrt::test::counter started;
  std::atomic<bool> release{false};
  running_processor rp(c, q, cfg,
                       [&](const qrt::received_message&) -> qrt::awaitable<qrt::result<void>> {
                         started.add();
                         while (!release) co_await work_for(10ms);
                         co_return qrt::result<void>{};
                       });
  ASSERT_TRUE(started.wait_for_at_least(2, 20s));
  EXPECT_FALSE(started.wait_for_at_least(3, 500ms)) << "a third handler ran beside two";
  release = true;
  EXPECT_TRUE(eventually([&] { return rp.p.stats().completed >= 6; }));
  EXPECT_EQ(rp.p.stats().max_in_flight, 2u);
}

void prefetch_count_key() {
  // The receiver link holds that many more locked than asked for; without it, none.
  auto c = open(peer_config({{"prefetch_count", "5"}}));
  const auto q = make_queue(c, "prefetch");
  send_n(c, q, 20);
  EXPECT_GE(locked_after_one_receive(c, q, 6), 5);
  EXPECT_LE(locked(c, q), 6);
  auto none = open(peer_config());
  const auto q2 = make_queue(none, "prefetch-none");
  send_n(none, q2, 20);
  EXPECT_EQ(locked_after_one_receive(none, q2, 2), 1);
}

void max_auto_lock_renewal_duration_key() {
  // A handler that runs 2.5 s on a 1 s lock: a processor from the config renews the lock while
  // it runs (and completes the message) for up to that long; with 200 ms it never renews (the
  // first renewal is due at half the lock) and the completion finds the lock gone.
  for (auto [renewal, completes] : {std::pair<const char*, bool>{"1m", true}, {"200ms", false}}) {
    const auto cfg = peer_config({{"max_auto_lock_renewal_duration", renewal}});
    auto c = open(cfg);
    qrt::queue_options o;
    o.lock_duration = 1s;
    const auto q = make_queue(c, "renewal", o);
    send_n(c, q, 1);
    qrt::test::counter finished;
    running_processor rp(c, q, cfg,
                         [&](const qrt::received_message&) -> qrt::awaitable<qrt::result<void>> {
                           co_await work_for(2500ms);
                           finished.add();
                           co_return qrt::result<void>{};
                         });
    ASSERT_TRUE(finished.wait_for_at_least(1, 20s)) << renewal;
    ASSERT_TRUE(eventually([&] {
      const auto s = rp.p.stats();
      return s.completed + s.settle_failures + s.abandoned + s.locks_lost >= 1;
    }));
    rp.stop();
    const auto s = rp.p.stats();
    if (completes) {
      EXPECT_GE(s.lock_renewals, 1u);
      EXPECT_EQ(s.completed, 1u);
    } else {
      EXPECT_EQ(s.lock_renewals, 0u);
      EXPECT_EQ(s.completed, 0u) << "completed although the lock ran out unrenewed";
    }
  }
}

void token_lifetime_key() {
  // The SAS tokens' expiry: this suite's peer refuses tokens living longer than 90 minutes, so
  // the default (1 h) passes and 2 h is refused.
  auto c = open(peer_config());
  const auto q = make_queue(c, "token");
  send_n(c, q, 1);
  auto long_lived = open(peer_config({{"token_lifetime", "2h"}}));
  auto refused = long_lived.send(q, qrt::message{.body = "x"});
  ASSERT_FALSE(refused) << "a 2 h token was taken by a peer that allows 90 min";
  EXPECT_EQ(refused.error().code, errc::permission) << refused.error().to_string();
  auto short_lived = open(peer_config({{"token_lifetime", "5m"}}));
  EXPECT_TRUE(short_lived.send(q, qrt::message{.body = "x"}));
  EXPECT_FALSE(try_open(peer_config({{"token_lifetime", "30s"}})));
}

void operation_timeout_key() {
  // A peer that takes the TCP connection and never answers the AMQP handshake: the call fails
  // after operation_timeout, long before the default minute.
  asio::io_context io;
  tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
  auto c =
      open(peer_config({{"operation_timeout", "300ms"},
                        {"connection_string", "Endpoint=sb://127.0.0.1:" +
                                                  std::to_string(silent.local_endpoint().port()) +
                                                  "/;SharedAccessKeyName=x;SharedAccessKey=y;"
                                                  "UseDevelopmentEmulator=true"}}));
  auto sent = std::async(std::launch::async,
                         [&] { return c.send(queue_name::from("q"), qrt::message{.body = "x"}); });
  ASSERT_EQ(sent.wait_for(30s), std::future_status::ready) << "still waiting for the peer";
  auto r = sent.get();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().code == errc::timeout || r.error().code == errc::connection_failed)
      << r.error().to_string();
}

void max_message_bytes_key() {
  auto c = open(peer_config({{"max_message_bytes", "2048"}}));
  const auto q = make_queue(c, "size");
  send_n(c, q, 1, 1'000);
  auto big = c.send(q, qrt::message{.body = std::string(4'000, 'x')});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, errc::message_too_large) << big.error().to_string();
}

void max_prefetch_bytes_key() {
  // prefetch_count 100 of 1,000-byte messages, each credit counted at max_message_bytes (1 KiB)
  // + 64 KiB: a budget of one credit and 3,000 bytes holds the link to a few messages (what is
  // buffered counts by its size), where without it the link takes all 60.
  const std::string one_credit_and_a_bit = std::to_string(1024 + 65536 + 3000);
  auto bounded = open(peer_config({{"prefetch_count", "100"},
                                   {"max_message_bytes", "1024"},
                                   {"max_prefetch_bytes", one_credit_and_a_bit}}));
  const auto q = make_queue(bounded, "prefetch-bytes");
  send_n(bounded, q, 60, 1'000);
  EXPECT_LE(locked_after_one_receive(bounded, q, 50), 6) << "the byte budget did not hold";
  auto unbounded = open(peer_config({{"prefetch_count", "100"}, {"max_message_bytes", "1024"}}));
  const auto q2 = make_queue(unbounded, "prefetch-bytes-none");
  send_n(unbounded, q2, 60, 1'000);
  EXPECT_GE(locked_after_one_receive(unbounded, q2, 50), 50);
}

void max_links_key() {
  // Idle senders and request/response pairs are closed to make room, receivers never: in two
  // links, one receiver and the $cbs pair it needs to authorise take turns, and a second receiver
  // finds no room, failing with an error naming the cap.
  auto wide = open(peer_config());
  const auto a = make_queue(wide, "links-a");
  const auto b = make_queue(wide, "links-b");
  send_n(wide, a, 1);
  send_n(wide, b, 1);
  auto c = open(peer_config({{"max_links", "2"}}));
  auto first = c.receive(a, 1, 5s);
  ASSERT_TRUE(first) << first.error().to_string();
  auto second = c.receive(b, 1, 5s);
  ASSERT_FALSE(second) << "two receivers and $cbs held in two links";
  EXPECT_NE(second.error().message.find("max_links"), std::string::npos)
      << second.error().to_string();
  // With the default cap both work.
  EXPECT_TRUE(wide.receive(a, 1, 5s));
  EXPECT_TRUE(wide.receive(b, 1, 5s));
}

void tls_verify_key() {
  // The peer behind TLS with a self-signed certificate: verified (the default) the connection
  // fails; with tls_verify=false it works.
  tls_terminator tls(keys_peer->port());
  const auto over_tls = "Endpoint=sb://127.0.0.1:" + std::to_string(tls.port()) +
                        "/;SharedAccessKeyName=x;SharedAccessKey=y";
  auto setup = open(peer_config());
  const auto q = make_queue(setup, "tls");
  auto verified = open(peer_config({{"connection_string", over_tls}}));
  auto refused = verified.send(q, qrt::message{.body = "x"});
  ASSERT_FALSE(refused) << "a self-signed certificate was accepted";
  EXPECT_EQ(refused.error().code, errc::connection_failed) << refused.error().to_string();
  auto unverified = open(peer_config({{"connection_string", over_tls}, {"tls_verify", "false"}}));
  auto sent = unverified.send(q, qrt::message{.body = "x"});
  EXPECT_TRUE(sent) << sent.error().to_string();
  EXPECT_GE(tls.handshakes(), 1);
  // A development-emulator connection has no TLS to verify: refused, naming the key.
  auto plain = try_open(peer_config({{"tls_verify", "false"}}));
  ASSERT_FALSE(plain);
  EXPECT_NE(plain.error().message.find("tls_verify"), std::string::npos);
}

void test_peer_admin_key() {
  // Queue management goes through the peer's admin node only with it.
  auto admin = open(peer_config());
  EXPECT_TRUE(admin.caps().queue_management);
  (void)make_queue(admin, "admin");
  auto plain = open(peer_config({{"test_peer_admin", "false"}}));
  EXPECT_FALSE(plain.caps().queue_management);
  auto refused = plain.create_queue(fresh_keys_queue("admin-refused"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::unsupported) << refused.error().to_string();
  // The public options do not carry it: reading it into them is refused rather than dropped.
  auto into_options = qrt::servicebus::options_from_config(peer_config());
  ASSERT_FALSE(into_options);
  EXPECT_EQ(into_options.error().code, errc::configuration_error);
  EXPECT_NE(into_options.error().message.find("test_peer_admin"), std::string::npos);
  EXPECT_TRUE(qrt::servicebus::options_from_config(peer_config({{"test_peer_admin", "false"}})));
}

const key_row rows[] = {
    {"provider", provider_key},
    {"preset", preset_key},
    {"connection_string", connection_string_key},
    {"auth", auth_key},
    {"managed_identity_client_id", managed_identity_client_id_key},
    {"managed_identity_endpoint", managed_identity_endpoint_key},
    {"transport_type", transport_type_key},
    {"max_concurrent_calls", max_concurrent_calls_key},
    {"prefetch_count", prefetch_count_key},
    {"max_auto_lock_renewal_duration", max_auto_lock_renewal_duration_key},
    {"worker_threads", worker_threads_key},
    {"thread_stack_size", thread_stack_size_key},
    {"max_concurrent_sessions", max_concurrent_sessions_key},
    {"session_idle_timeout", session_idle_timeout_key},
    {"max_session_hold", max_session_hold_key},
    {"token_lifetime", token_lifetime_key},
    {"operation_timeout", operation_timeout_key},
    {"max_message_bytes", max_message_bytes_key},
    {"max_prefetch_bytes", max_prefetch_bytes_key},
    {"max_links", max_links_key},
    {"tls_verify", tls_verify_key},
    {"test_peer_admin", test_peer_admin_key},
};

class ServiceBusConfigKey : public ::testing::TestWithParam<key_row> {
 protected:
  static void SetUpTestSuite() {
    keys_peer = std::make_unique<qrt::test::servicebus_peer>(std::vector<std::string>{
        "--sas-key-name", "x", "--sas-key", "y", "--jwt", identity_token, "--max-token-lifetime-ms",
        std::to_string(90 * 60 * 1000), "--quiet"});
  }
  static void TearDownTestSuite() { keys_peer.reset(); }
};

}  // namespace

TEST(ServiceBusConfigKeys, TheTableNamesExactlyTheKeysTheProviderAccepts) {
  qrt::test::expect_a_row_for_exactly(qrt::servicebus::known_keys(), rows);
  qrt::test::expect_documented(qrt::servicebus::known_keys(), "docs/servicebus.md");
  auto typo = qrt::servicebus::options_from_config(
      config{{"connection_string", "Endpoint=sb://h/;SharedAccessKeyName=x;SharedAccessKey=y"},
             {"prefetch_cont", "5"}});
  ASSERT_FALSE(typo);
  EXPECT_NE(typo.error().message.find("prefetch_cont"), std::string::npos);
}

TEST_P(ServiceBusConfigKey, ActsOnBehaviour) {
  GetParam().shows_effect();
}

INSTANTIATE_TEST_SUITE_P(EveryKey, ServiceBusConfigKey, ::testing::ValuesIn(rows),
                         [](const ::testing::TestParamInfo<key_row>& info) {
                           return std::string(info.param.key);
                         });
