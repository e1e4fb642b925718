// Every configuration key the SQS provider accepts, each shown acting: on the emulator (fauxqs),
// at a loopback TCP proxy in front of it (connections counted, answers held back), at a local
// HTTP server playing SQS (the requests the provider sends, as sent), or at a local TLS server.
// The table at the end must name every key of qrt::sqs::known_keys() (the list reject_unknown()
// uses), so a key added to the provider without a row here fails this test.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <qrt/processor.hpp>
#include <qrt/runtime.hpp>
#include <qrt/sqs.hpp>
#include <set>
#include <thread>

#include "faults/tcp_proxy.hpp"
#include "sigv4.hpp"
#include "sqs_fixture.hpp"
#include "unit/providers/sqs/local_http_server.hpp"
#include "unit/support/config_keys.hpp"
#include "unit/support/runtime_key.hpp"
#include "unit/support/session_keys.hpp"
#include "unit/support/wait.hpp"

using namespace qrt;
using namespace std::chrono_literals;
using qrt::test::canned_response;
using qrt::test::eventually;
using qrt::test::scratch_dir;
using qrt::test::seen_request;

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

std::string action_of(const seen_request& r) {
  auto it = r.headers.find("x-amz-target");
  if (it == r.headers.end()) return "";
  const auto dot = it->second.find('.');
  return dot == std::string::npos ? it->second : it->second.substr(dot + 1);
}

boost::json::object body_of(const seen_request& r) {
  return boost::json::parse(r.body).as_object();
}

/// A local HTTP server playing SQS: it records every request and answers each action with the
/// least that the provider accepts (queues exist, receives are empty), unless `custom` answers.
class fake_sqs {
 public:
  using custom_answer = std::function<std::optional<canned_response>(const seen_request&)>;
  explicit fake_sqs(custom_answer custom = {})
      : custom_(std::move(custom)), server_([this](const seen_request& r) { return answer(r); }) {}

  std::string url() const { return server_.url(); }
  /// The requests of one action ("ReceiveMessage"), in the order they came.
  std::vector<seen_request> requests(std::string_view action) const {
    std::lock_guard lock(mutex_);
    std::vector<seen_request> out;
    for (const auto& r : seen_)
      if (action_of(r) == action) out.push_back(r);
    return out;
  }
  std::size_t count(std::string_view action) const { return requests(action).size(); }

 private:
  canned_response answer(const seen_request& r) {
    {
      std::lock_guard lock(mutex_);
      seen_.push_back(r);
    }
    if (custom_)
      if (auto c = custom_(r)) return *c;
    const auto action = action_of(r);
    if (action == "GetQueueUrl") {
      const std::string name(body_of(r).at("QueueName").as_string());
      return {200, R"({"QueueUrl":"http://127.0.0.1/000000000000/)" + name + "\"}"};
    }
    if (action == "GetQueueAttributes")
      return {200, R"({"Attributes":{"VisibilityTimeout":"30"}})"};
    if (action == "SendMessage") return {200, R"({"MessageId":"m1"})"};
    if (action == "ReceiveMessage") return {200, R"({"Messages":[]})"};
    return {200, "{}"};
  }

  custom_answer custom_;
  mutable std::mutex mutex_;
  std::vector<seen_request> seen_;
  qrt::test::local_http_server server_;
};

/// "20261203T104500Z" as a time point.
std::chrono::system_clock::time_point parse_amz_date(const std::string& text) {
  std::tm tm{};
  tm.tm_year = std::stoi(text.substr(0, 4)) - 1900;
  tm.tm_mon = std::stoi(text.substr(4, 2)) - 1;
  tm.tm_mday = std::stoi(text.substr(6, 2));
  tm.tm_hour = std::stoi(text.substr(9, 2));
  tm.tm_min = std::stoi(text.substr(11, 2));
  tm.tm_sec = std::stoi(text.substr(13, 2));
  return std::chrono::system_clock::from_time_t(::timegm(&tm));
}

/// The Authorization header SigV4 gives `seen` with `secret` (same headers, body and time).
std::string authorization_with(const seen_request& seen, const std::string& key_id,
                               const std::string& secret, const std::string& region) {
  const auto& auth = seen.headers.at("authorization");
  const auto from = auth.find("SignedHeaders=") + 14;
  const auto names = auth.substr(from, auth.find(',', from) - from);
  sqs::detail::signable_request req;
  req.method = seen.method;
  req.path = seen.target;
  req.body = seen.body;
  std::size_t start = 0;
  while (start <= names.size()) {
    const auto semi = names.find(';', start);
    const auto name = names.substr(start, semi == std::string::npos ? semi : semi - start);
    if (name != "x-amz-date" && name != "x-amz-security-token")
      req.headers.emplace_back(name, seen.headers.at(name));
    if (semi == std::string::npos) break;
    start = semi + 1;
  }
  const auto signed_headers = sqs::detail::sigv4_sign(
      req, {key_id, secret, ""}, {region, "sqs"}, parse_amz_date(seen.headers.at("x-amz-date")));
  for (const auto& [name, value] : signed_headers)
    if (name == "Authorization") return value;
  return "";
}

/// An HTTPS server on 127.0.0.1 with a self-signed certificate for IP 127.0.0.1 (made with the
/// openssl command): it counts completed TLS handshakes and answers every request like fake_sqs.
class tls_sqs_server {
 public:
  tls_sqs_server() : ctx_(asio::ssl::context::tls_server), acceptor_(io_, {loopback(), 0}) {
    const auto cert = dir_ / "cert.pem";
    const auto key = dir_ / "key.pem";
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
        "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout '" +
        key.string() + "' -out '" + cert.string() + "' 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl could not make a cert");
    ctx_.use_certificate_chain_file(cert.string());
    ctx_.use_private_key_file(key.string(), asio::ssl::context::pem);
    cert_ = cert.string();
    thread_ = std::thread([this] { run(); });
  }
  ~tls_sqs_server() {
    stopping_ = true;
    boost::system::error_code ec;
    tcp::socket s(io_);
    s.connect(acceptor_.local_endpoint(), ec);
    s.close(ec);
    thread_.join();
  }
  std::string url() const {
    return "https://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }
  const std::string& cert_file() const { return cert_; }
  int handshakes() const { return handshakes_; }

 private:
  static asio::ip::address loopback() { return asio::ip::make_address("127.0.0.1"); }
  void run() {
    while (!stopping_) {
      tcp::socket socket(io_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stopping_) return;
      asio::ssl::stream<tcp::socket> tls(std::move(socket), ctx_);
      tls.handshake(asio::ssl::stream_base::server, ec);
      if (ec) continue;  // the client refused our certificate
      ++handshakes_;
      asio::streambuf buf;
      asio::read_until(tls, buf, "\r\n\r\n", ec);
      if (ec) continue;
      std::string head(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()));
      std::string answer = R"({"MessageId":"m1"})";
      if (head.find("GetQueueUrl") != std::string::npos)
        answer = R"({"QueueUrl":"http://127.0.0.1/000000000000/q"})";
      // The body is small and came with the headers or right after; it is not needed.
      const std::string out =
          "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(answer.size()) +
          "\r\nConnection: close\r\n\r\n" + answer;
      asio::write(tls, asio::buffer(out), ec);
      tls.shutdown(ec);
    }
  }

  scratch_dir dir_;
  std::string cert_;
  asio::io_context io_;
  asio::ssl::context ctx_;
  tcp::acceptor acceptor_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> handshakes_{0};
  std::thread thread_;
};

/// Sets environment variables for one test and restores them after.
class scoped_env {
 public:
  void set(const char* name, const std::optional<std::string>& value) {
    if (!saved_.count(name)) {
      const char* old = std::getenv(name);
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
    }
    if (value)
      ::setenv(name, value->c_str(), 1);
    else
      ::unsetenv(name);
  }
  ~scoped_env() {
    for (const auto& [name, value] : saved_) {
      if (value)
        ::setenv(name.c_str(), value->c_str(), 1);
      else
        ::unsetenv(name.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

class SqsConfigKey;
struct key_row {
  std::string_view key;
  void (SqsConfigKey::*shows_effect)();
};
void PrintTo(const key_row& row, std::ostream* os) {
  *os << row.key;
}

class SqsConfigKey : public qrt::test::sqs_fixture, public ::testing::WithParamInterface<key_row> {
 public:
  /// What reaches fauxqs: its endpoint and test keys.
  static config emulator() {
    return config{{"provider", "sqs"},           {"endpoint", server_->endpoint()},
                  {"region", "us-east-1"},       {"access_key_id", "test"},
                  {"secret_access_key", "test"}, {"request_timeout", "5s"},
                  {"connect_timeout", "2s"},     {"retry_base_delay", "20ms"}};
  }
  /// What reaches `url` with recognisable keys and no retries.
  static config at(const std::string& url) {
    return config{{"provider", "sqs"},
                  {"endpoint", url},
                  {"region", "us-east-1"},
                  {"access_key_id", "AKIDKEYS"},
                  {"secret_access_key", "s3cr3t"},
                  {"max_retries", "0"},
                  {"request_timeout", "3s"},
                  {"connect_timeout", "2s"}};
  }
  /// `base` with `extra` on top.
  static config with(config base, const config& extra) {
    base.merge(extra);
    return base;
  }
  provider_ptr from(const config& cfg) {
    auto o = sqs::options_from_config(cfg);
    EXPECT_TRUE(o) << o.error().to_string();
    if (!o) return nullptr;
    return make(*o);
  }

  /// Runs `op` on the fixture's io_context in another thread; nullopt if it did not finish
  /// within `limit` (a generous bound: the test fails then).
  template <class T>
  std::optional<T> within(asio::awaitable<T> op, std::chrono::seconds limit) {
    auto f = asio::co_spawn(io_, std::move(op), asio::use_future);
    io_.restart();
    std::thread runner([this] { io_.run(); });
    const bool done = f.wait_for(limit) == std::future_status::ready;
    if (!done) io_.stop();
    runner.join();
    if (!done) return std::nullopt;
    return f.get();
  }

  result<message_id> send_one(provider& p, const queue_name& q, message m) {
    std::vector<message> batch;
    batch.push_back(std::move(m));
    auto r = run(p.send(q, std::move(batch), 10s));
    if (!r) return r.error();
    return r->at(0);
  }
  std::vector<received_message> receive(provider& p, const queue_name& q, std::size_t n,
                                        milliseconds wait) {
    auto r = run(p.receive(q, n, wait));
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? *r : std::vector<received_message>{};
  }

  result<void> abandon(provider& p, const receipt_handle& receipt) {
    std::vector<settlement> one{settlement::abandon(receipt)};
    auto r = run(p.settle(std::move(one)));
    return r.at(0);
  }

  // A processor over an SQS provider built from `cfg`, its options from the same config.
  struct config_processor {
    config_processor(const config& cfg, const queue_name& q, message_handler handler)
        : client(sqs::make_provider(sqs::options_from_config(cfg).value(), rt.executor()).value(),
                 client_options{.retry = std::nullopt}),
          p(client, q, std::move(handler), processor_options::from_config(cfg).value()) {}
    ~config_processor() {
      rt.block_on(p.stop(10s));
      rt.block_on(client.close());
    }
    runtime rt{{.worker_threads = 4}};
    queue_client client;
    processor p;
  };

  static awaitable<void> pause_for(milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(asio::use_awaitable);
  }

  std::int64_t locked(const queue_name& q) {
    auto s = run(provider_->stats(q));
    EXPECT_TRUE(s) << s.error().to_string();
    return s ? s->in_flight : -1;
  }

  // ---- one check per key ----

  void worker_threads_key() {
    // The provider runs on its caller's executor and only checks the key; it sizes the runtime
    // built from the same configuration.
    const auto cfg = with(emulator(), {{"worker_threads", "3"}});
    ASSERT_TRUE(from(cfg));
    qrt::test::expect_a_runtime_of_three_threads_from(cfg);
  }

  // The provider only checks a session processor's keys; the session processor's options built
  // from the same configuration carry them.
  void expect_session_key(std::string_view key) {
    qrt::test::expect_a_session_processor_key(
        key,
        [&](std::string_view k, std::string_view v) {
          return with(emulator(), {{std::string(k), std::string(v)}});
        },
        [](const config& cfg) -> qrt::result<void> {
          auto o = sqs::options_from_config(cfg);
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
    const auto cfg = with(emulator(), {{"thread_stack_size", std::to_string(size)}});
    ASSERT_TRUE(from(cfg));
    qrt::test::expect_a_runtime_with_stacks_of(cfg, size);
    auto refused = sqs::options_from_config(with(emulator(), {{"thread_stack_size", "1024"}}));
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().message.find("thread_stack_size"), std::string::npos);
  }

  void max_concurrent_calls_key() {
    // A processor from the config runs at most that many handlers at once.
    const auto q = create("keys-calls");
    for (int i = 0; i < 6; ++i) ASSERT_TRUE(send_one(*provider_, q, qrt::test::text("m")));
    std::atomic<bool> release{false};
    qrt::test::counter started;
    config_processor cp(with(emulator(), {{"max_concurrent_calls", "2"}}), q,
                        [&](const received_message&) -> awaitable<result<void>> {
                          started.add();
                          while (!release) co_await pause_for(5ms);
                          co_return result<void>{};
                        });
    cp.p.start(cp.rt.executor());
    ASSERT_TRUE(started.wait_for_at_least(2, 20s));
    EXPECT_FALSE(started.wait_for_at_least(3, 500ms)) << "a third handler ran beside two";
    release = true;
    EXPECT_TRUE(eventually([&] { return cp.p.stats().completed == 6; }));
    EXPECT_EQ(cp.p.stats().max_in_flight, 2u);
  }

  void prefetch_count_key() {
    // With its one handler busy, the processor holds prefetch_count more messages received
    // (invisible to others): 1 + 3 on the emulator; with 0, only the one it handles.
    for (auto [prefetch, held] : {std::pair{"3", 4}, {"0", 1}}) {
      const auto q = create("keys-prefetch");
      for (int i = 0; i < 10; ++i) ASSERT_TRUE(send_one(*provider_, q, qrt::test::text("m")));
      std::atomic<bool> release{false};
      qrt::test::counter started;
      config_processor cp(
          with(emulator(), {{"max_concurrent_calls", "1"}, {"prefetch_count", prefetch}}), q,
          [&](const received_message&) -> awaitable<result<void>> {
            started.add();
            while (!release) co_await pause_for(5ms);
            co_return result<void>{};
          });
      cp.p.start(cp.rt.executor());
      ASSERT_TRUE(started.wait_for_at_least(1, 20s));
      EXPECT_TRUE(eventually([&] {
        return cp.p.stats().received == static_cast<std::uint64_t>(held);
      })) << prefetch;
      EXPECT_FALSE(eventually(
          [&] { return cp.p.stats().received > static_cast<std::uint64_t>(held); }, 500ms))
          << prefetch;
      EXPECT_EQ(locked(q), held) << prefetch;
      release = true;
      EXPECT_TRUE(eventually([&] { return cp.p.stats().completed == 10; }));
    }
  }

  void max_auto_lock_renewal_duration_key() {
    // A handler that runs 2.5 s on a 1 s visibility timeout: renewed while it runs (and
    // completed) for up to 1 min; with 200 ms it is never renewed (the first renewal is due
    // at half the lock) and the completion finds the lock gone.
    for (auto [renewal, completes] : {std::pair{"1m", true}, {"200ms", false}}) {
      const auto q = create("keys-renewal", {.lock_duration = 1s});
      ASSERT_TRUE(send_one(*provider_, q, qrt::test::text("m")));
      qrt::test::counter finished;
      config_processor cp(with(emulator(), {{"max_auto_lock_renewal_duration", renewal}}), q,
                          [&](const received_message&) -> awaitable<result<void>> {
                            co_await pause_for(2500ms);
                            finished.add();
                            co_return result<void>{};
                          });
      cp.p.start(cp.rt.executor());
      ASSERT_TRUE(finished.wait_for_at_least(1, 20s)) << renewal;
      ASSERT_TRUE(eventually([&] {
        const auto s = cp.p.stats();
        return s.completed + s.settle_failures >= 1;
      }));
      EXPECT_EQ(cp.p.stats().completed, completes ? 1u : 0u) << renewal;
      EXPECT_EQ(cp.p.stats().lock_renewals > 0, completes) << renewal;
    }
  }

  void provider_key() {
    provider_registry registry;
    sqs::register_provider(registry);
    auto p = registry.make(emulator(), io_.get_executor());
    ASSERT_TRUE(p) << p.error().to_string();
    EXPECT_EQ((*p)->name(), "sqs");
    const auto q = create("keys-provider");
    EXPECT_TRUE(send_one(**p, q, qrt::test::text("x")));
    run((*p)->close());
  }

  void preset_key() {
    // high_throughput: ten messages per call and a 5-minute visibility; cost_optimization: a
    // 30 s one; none: the queue's own (no VisibilityTimeout in the request).
    for (auto [preset, visibility] : {std::pair<std::string, int>{"high_throughput", 300},
                                      {"cost_optimization", 30},
                                      {"", -1}}) {
      fake_sqs fake;
      auto cfg = at(fake.url());
      if (!preset.empty()) cfg.set("preset", preset);
      auto p = from(cfg);
      receive(*p, queue_name::from("q"), 50, 0ms);
      auto rr = fake.requests("ReceiveMessage");
      ASSERT_FALSE(rr.empty()) << preset;
      auto body = body_of(rr[0]);
      if (visibility < 0) {
        EXPECT_FALSE(body.contains("VisibilityTimeout"));
      } else {
        EXPECT_EQ(body.at("VisibilityTimeout").as_int64(), visibility) << preset;
        EXPECT_EQ(body.at("MaxNumberOfMessages").as_int64(), 10) << preset;
      }
      run(p->close());
    }
    EXPECT_FALSE(sqs::options_from_config(config{{"preset", "cheapest"}}));
  }

  void region_key() {
    fake_sqs fake;
    auto p = from(with(at(fake.url()), {{"region", "eu-west-2"}}));
    ASSERT_TRUE(send_one(*p, queue_name::from("q"), qrt::test::text("x")));
    auto sends = fake.requests("SendMessage");
    ASSERT_EQ(sends.size(), 1u);
    EXPECT_NE(sends[0].headers.at("authorization").find("/eu-west-2/sqs/aws4_request"),
              std::string::npos)
        << "the signature's scope is not the configured region";
    run(p->close());
  }

  void endpoint_key() {
    // Requests go to the endpoint, with its host and port.
    fake_sqs fake;
    auto p = from(at(fake.url()));
    ASSERT_TRUE(send_one(*p, queue_name::from("q"), qrt::test::text("x")));
    auto sends = fake.requests("SendMessage");
    ASSERT_EQ(sends.size(), 1u);
    EXPECT_EQ("http://" + sends[0].headers.at("host"), fake.url());
    run(p->close());
    auto bad = sqs::options_from_config(config{{"endpoint", "ftp://x"}});
    if (bad) {
      auto made = sqs::make_provider(*bad, io_.get_executor());
      ASSERT_FALSE(made);
      EXPECT_NE(made.error().message.find("endpoint"), std::string::npos);
    }
  }

  void sns_endpoint_key() {
    // Topic calls go to sns_endpoint (SNS's Query protocol, signed for "sns"); queue calls stay
    // on endpoint.
    std::mutex mutex;
    std::vector<seen_request> seen;
    qrt::test::local_http_server fake_sns([&](const seen_request& r) {
      std::lock_guard lock(mutex);
      seen.push_back(r);
      return canned_response{200,
                             "<CreateTopicResponse><CreateTopicResult><TopicArn>"
                             "arn:aws:sns:us-east-1:000000000000:t</TopicArn></CreateTopicResult>"
                             "</CreateTopicResponse>"};
    });
    fake_sqs fake;
    auto p = from(with(at(fake.url()), {{"sns_endpoint", fake_sns.url()}}));
    ASSERT_TRUE(run(p->create_topic(topic_name::from("t"))));
    ASSERT_TRUE(send_one(*p, queue_name::from("q"), qrt::test::text("x")));
    {
      std::lock_guard lock(mutex);
      ASSERT_EQ(seen.size(), 1u);
      EXPECT_EQ(seen[0].body, "Action=CreateTopic&Version=2010-03-31&Name=t");
      EXPECT_EQ("http://" + seen[0].headers.at("host"), fake_sns.url());
      EXPECT_NE(seen[0].headers.at("authorization").find("/us-east-1/sns/aws4_request"),
                std::string::npos);
    }
    EXPECT_EQ(fake.count("SendMessage"), 1u);
    run(p->close());
    // Unset, topics go to endpoint (an emulator serves both).
    fake_sqs both([](const seen_request& r) -> std::optional<canned_response> {
      if (r.body.starts_with("Action=CreateTopic")) {
        return canned_response{200,
                               "<CreateTopicResponse><CreateTopicResult><TopicArn>arn:t"
                               "</TopicArn></CreateTopicResult></CreateTopicResponse>"};
      }
      return std::nullopt;
    });
    auto q = from(at(both.url()));
    ASSERT_TRUE(run(q->create_topic(topic_name::from("t"))));
    run(q->close());
  }

  void access_key_id_key() {
    fake_sqs fake;
    auto p = from(with(at(fake.url()), {{"access_key_id", "AKIDCONFIGURED"}}));
    ASSERT_TRUE(send_one(*p, queue_name::from("q"), qrt::test::text("x")));
    EXPECT_NE(fake.requests("SendMessage")
                  .at(0)
                  .headers.at("authorization")
                  .find("Credential=AKIDCONFIGURED/"),
              std::string::npos);
    run(p->close());
  }

  void secret_access_key_key() {
    // The signature is the one SigV4 gives with the configured secret, not with another; the
    // secret itself never travels.
    fake_sqs fake;
    auto p = from(with(at(fake.url()), {{"secret_access_key", "the-configured-secret"}}));
    ASSERT_TRUE(send_one(*p, queue_name::from("q"), qrt::test::text("x")));
    const auto sent = fake.requests("SendMessage").at(0);
    const auto& auth = sent.headers.at("authorization");
    EXPECT_EQ(auth, authorization_with(sent, "AKIDKEYS", "the-configured-secret", "us-east-1"));
    EXPECT_NE(auth, authorization_with(sent, "AKIDKEYS", "another-secret", "us-east-1"));
    EXPECT_EQ(auth.find("the-configured-secret"), std::string::npos);
    run(p->close());
  }

  void session_token_key() {
    fake_sqs fake;
    auto p = from(with(at(fake.url()), {{"session_token", "temporary-token"}}));
    ASSERT_TRUE(send_one(*p, queue_name::from("q"), qrt::test::text("x")));
    const auto sent = fake.requests("SendMessage").at(0);
    EXPECT_EQ(sent.headers.at("x-amz-security-token"), "temporary-token");
    EXPECT_NE(sent.headers.at("authorization").find("x-amz-security-token"), std::string::npos)
        << "the token is not signed";
    run(p->close());
    fake_sqs without;
    auto plain = from(at(without.url()));
    ASSERT_TRUE(send_one(*plain, queue_name::from("q"), qrt::test::text("x")));
    EXPECT_FALSE(without.requests("SendMessage").at(0).headers.count("x-amz-security-token"));
    run(plain->close());
  }

  void profile_key() {
    // Without explicit keys, the named profile of the shared credentials file signs.
    scratch_dir dir;
    const auto file = dir / "credentials";
    std::ofstream(file) << "[default]\naws_access_key_id = AKIDDEFAULT\n"
                           "aws_secret_access_key = default-secret\n"
                           "[keys-test]\naws_access_key_id = AKIDPROFILE\n"
                           "aws_secret_access_key = profile-secret\n";
    scoped_env env;
    env.set("AWS_SHARED_CREDENTIALS_FILE", file.string());
    env.set("AWS_CONFIG_FILE", (dir / "absent").string());
    for (const char* name : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                             "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                             "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"})
      env.set(name, std::nullopt);
    fake_sqs fake;
    auto cfg = config{{"endpoint", fake.url()}, {"region", "us-east-1"}, {"max_retries", "0"}};
    cfg.set("profile", "keys-test");
    auto p = from(cfg);
    ASSERT_TRUE(send_one(*p, queue_name::from("q"), qrt::test::text("x")));
    const auto sent = fake.requests("SendMessage").at(0);
    EXPECT_NE(sent.headers.at("authorization").find("Credential=AKIDPROFILE/"), std::string::npos)
        << sent.headers.at("authorization");
    EXPECT_EQ(sent.headers.at("authorization"),
              authorization_with(sent, "AKIDPROFILE", "profile-secret", "us-east-1"));
    run(p->close());
  }

  void verify_tls_key() {
    // Against a self-signed certificate: verified (the default), the TLS handshake fails;
    // not verified, the request goes through.
    tls_sqs_server tls;
    auto verified = from(with(at(tls.url()), {{"connect_timeout", "5s"}}));
    auto refused = send_one(*verified, queue_name::from("q"), qrt::test::text("x"));
    ASSERT_FALSE(refused) << "an unknown certificate was accepted";
    EXPECT_EQ(refused.error().code, errc::connection_failed);
    EXPECT_NE(refused.error().message.find("TLS handshake"), std::string::npos)
        << refused.error().message;
    run(verified->close());
    auto unverified = from(with(at(tls.url()), {{"verify_tls", "false"}}));
    auto sent = send_one(*unverified, queue_name::from("q"), qrt::test::text("x"));
    EXPECT_TRUE(sent) << sent.error().to_string();
    EXPECT_GE(tls.handshakes(), 1);
    run(unverified->close());
    // With a plain-HTTP endpoint there is nothing to verify: refused, naming the key.
    auto plain =
        sqs::options_from_config(with(at("http://127.0.0.1:9"), {{"verify_tls", "false"}}));
    ASSERT_FALSE(plain);
    EXPECT_NE(plain.error().message.find("verify_tls"), std::string::npos);
  }

  void ca_file_key() {
    // The CA file is trusted besides the system store: the self-signed certificate verifies.
    tls_sqs_server tls;
    auto p = from(with(at(tls.url()), {{"ca_file", tls.cert_file()}}));
    auto sent = send_one(*p, queue_name::from("q"), qrt::test::text("x"));
    EXPECT_TRUE(sent) << sent.error().to_string();
    run(p->close());
    // A file that does not exist is refused at start, naming the key and the file.
    auto o = sqs::options_from_config(
        with(at(tls.url()), {{"ca_file", "/nonexistent/qrt-keys-ca.pem"}}));
    ASSERT_TRUE(o);
    auto made = sqs::make_provider(*o, io_.get_executor());
    ASSERT_FALSE(made);
    EXPECT_EQ(made.error().code, errc::configuration_error);
    EXPECT_NE(made.error().message.find("ca_file"), std::string::npos);
    EXPECT_NE(made.error().message.find("/nonexistent/qrt-keys-ca.pem"), std::string::npos);
    auto plain =
        sqs::options_from_config(with(at("http://127.0.0.1:9"), {{"ca_file", tls.cert_file()}}));
    ASSERT_FALSE(plain) << "a CA file taken for a plain-HTTP endpoint";
    EXPECT_NE(plain.error().message.find("ca_file"), std::string::npos);
  }

  void max_number_of_messages_key() {
    fake_sqs fake;
    auto p = from(with(at(fake.url()), {{"max_number_of_messages", "3"}}));
    receive(*p, queue_name::from("q"), 10, 0ms);
    auto rr = fake.requests("ReceiveMessage");
    ASSERT_FALSE(rr.empty());
    EXPECT_EQ(body_of(rr[0]).at("MaxNumberOfMessages").as_int64(), 3);
    run(p->close());
  }

  void wait_time_key() {
    // The long poll per call is at most wait_time, even when the receive may wait longer.
    fake_sqs fake;
    auto p = from(with(at(fake.url()), {{"wait_time", "1s"}}));
    receive(*p, queue_name::from("q"), 1, 2s);
    auto rr = fake.requests("ReceiveMessage");
    ASSERT_FALSE(rr.empty());
    for (const auto& r : rr) EXPECT_LE(body_of(r).at("WaitTimeSeconds").as_int64(), 1);
    EXPECT_EQ(body_of(rr[0]).at("WaitTimeSeconds").as_int64(), 1);
    run(p->close());
    // Without it (20 s), the first poll waits as long as the receive.
    fake_sqs fake2;
    auto q = from(at(fake2.url()));
    receive(*q, queue_name::from("q"), 1, 2s);
    EXPECT_EQ(body_of(fake2.requests("ReceiveMessage").at(0)).at("WaitTimeSeconds").as_int64(), 2);
    run(q->close());
  }

  void visibility_timeout_key() {
    // On the emulator: a received message that is not settled comes back after 1 s.
    auto p = from(with(emulator(), {{"visibility_timeout", "1s"}}));
    const auto q = create("keys-visibility");
    ASSERT_TRUE(send_one(*p, q, qrt::test::text("x")));
    ASSERT_EQ(receive(*p, q, 1, 5s).size(), 1u);
    auto again = receive(*p, q, 1, 15s);  // returns once the message is visible again
    ASSERT_EQ(again.size(), 1u) << "the message did not come back after its visibility timeout";
    EXPECT_EQ(again[0].delivery_count, 2u);
    run(p->close());
    // The queue's own (30 s) keeps it hidden well past that.
    auto held = from(emulator());
    const auto q2 = create("keys-visibility-default");
    ASSERT_TRUE(send_one(*held, q2, qrt::test::text("x")));
    ASSERT_EQ(receive(*held, q2, 1, 5s).size(), 1u);
    EXPECT_TRUE(receive(*held, q2, 1, 2s).empty());
    run(held->close());
  }

  void receive_request_attempt_id_key() {
    for (bool on : {true, false}) {
      fake_sqs fake;
      auto cfg = at(fake.url());
      if (on) cfg.set("receive_request_attempt_id", "true");
      auto p = from(cfg);
      receive(*p, queue_name::from("q.fifo"), 1, 0ms);
      auto rr = fake.requests("ReceiveMessage");
      ASSERT_FALSE(rr.empty());
      EXPECT_EQ(body_of(rr[0]).contains("ReceiveRequestAttemptId"), on);
      run(p->close());
    }
  }

  void abandon_visibility_key() {
    // On the emulator: by default an abandoned message is receivable at once; with
    // abandon_visibility=30s it stays hidden.
    auto p = from(emulator());
    const auto q = create("keys-abandon");
    ASSERT_TRUE(send_one(*p, q, qrt::test::text("x")));
    auto got = receive(*p, q, 1, 5s);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(abandon(*p, got[0].receipt));
    ASSERT_EQ(receive(*p, q, 1, 5s).size(), 1u) << "an abandoned message did not come back";
    run(p->close());

    auto backoff = from(with(emulator(), {{"abandon_visibility", "30s"}}));
    const auto q2 = create("keys-abandon-later");
    ASSERT_TRUE(send_one(*backoff, q2, qrt::test::text("x")));
    got = receive(*backoff, q2, 1, 5s);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(abandon(*backoff, got[0].receipt));
    EXPECT_TRUE(receive(*backoff, q2, 1, 2s).empty())
        << "came back at once despite abandon_visibility=30s";
    run(backoff->close());
  }

  void default_message_group_key() {
    fake_sqs fake;
    auto p = from(with(at(fake.url()), {{"default_message_group", "orders-group"}}));
    ASSERT_TRUE(send_one(*p, queue_name::from("q.fifo"), qrt::test::text("x")));
    EXPECT_EQ(body_of(fake.requests("SendMessage").at(0)).at("MessageGroupId").as_string(),
              "orders-group");
    run(p->close());
  }

  void max_message_bytes_key() {
    auto p = from(with(emulator(), {{"max_message_bytes", "2048"}}));
    const auto q = create("keys-size");
    EXPECT_TRUE(send_one(*p, q, qrt::test::text(std::string(1'000, 'x'))));
    auto big = send_one(*p, q, qrt::test::text(std::string(3'000, 'x')));
    ASSERT_FALSE(big);
    EXPECT_EQ(big.error().code, errc::message_too_large);
    EXPECT_NE(big.error().message.find("2048"), std::string::npos) << big.error().message;
    run(p->close());
  }

  void max_idle_connections_key() {
    // Counted at a proxy: by default sequential calls reuse one connection; with no idle
    // connection kept, every call opens its own.
    for (auto [idle, few] : {std::pair<const char*, bool>{nullptr, true}, {"0", false}}) {
      qrt::faults::tcp_proxy proxy(server_->port());
      auto cfg = with(emulator(), {{"endpoint", proxy.endpoint()}});
      if (idle) cfg.set("max_idle_connections", idle);
      auto p = from(cfg);
      const auto q = create("keys-idle");
      for (int i = 0; i < 5; ++i) ASSERT_TRUE(send_one(*p, q, qrt::test::text("x")));
      if (few)
        EXPECT_LE(proxy.accepted(), 2u);
      else
        EXPECT_GE(proxy.accepted(), 5u) << "connections were kept although max_idle_connections=0";
      run(p->close());
    }
  }

  void max_connections_key() {
    // Two receives long-polling at once: two connections by default, one with
    // max_connections=1 (the second receive waits in line for the first's connection).
    for (auto [limit, expected] : {std::pair<const char*, std::size_t>{nullptr, 2}, {"1", 1}}) {
      qrt::faults::tcp_proxy proxy(server_->port());
      auto cfg = with(emulator(), {{"endpoint", proxy.endpoint()}});
      if (limit) cfg.set("max_connections", limit);
      auto p = from(cfg);
      const auto q = create("keys-conns");
      (void)receive(*p, q, 1, 0ms);  // resolves the queue; one connection, now idle
      ASSERT_EQ(proxy.accepted(), 1u);
      auto a = asio::co_spawn(io_, p->receive(q, 1, 1s), asio::use_future);
      auto b = asio::co_spawn(io_, p->receive(q, 1, 1s), asio::use_future);
      io_.restart();
      io_.run();
      EXPECT_TRUE(a.get());
      EXPECT_TRUE(b.get());
      EXPECT_EQ(proxy.accepted(), expected) << (limit ? limit : "default");
      run(p->close());
    }
  }

  void connect_timeout_key() {
    // A peer that accepts TCP but never answers the TLS handshake: connect_timeout ends the
    // wait long before request_timeout would.
    tcp::acceptor silent(io_, {asio::ip::make_address("127.0.0.1"), 0});
    const auto url = "https://127.0.0.1:" + std::to_string(silent.local_endpoint().port());
    auto p = from(with(at(url), {{"connect_timeout", "200ms"}, {"request_timeout", "120s"}}));
    auto r = within(p->send(queue_name::from("q"), {qrt::test::text("x")}, 120s), 30s);
    ASSERT_TRUE(r) << "still connecting long after connect_timeout";
    ASSERT_FALSE(*r);
    EXPECT_EQ(r->error().code, errc::connection_failed);
    EXPECT_NE(r->error().message.find("TLS handshake"), std::string::npos) << r->error().message;
    run(p->close());
  }

  void request_timeout_key() {
    // Answers held back at a proxy: the call fails after request_timeout. The whole request
    // went out, so the message may be stored: unconfirmed, with the timeout's words.
    qrt::faults::tcp_proxy proxy(server_->port());
    auto p = from(
        with(emulator(),
             {{"endpoint", proxy.endpoint()}, {"request_timeout", "300ms"}, {"max_retries", "0"}}));
    const auto q = create("keys-timeout");
    ASSERT_TRUE(send_one(*p, q, qrt::test::text("resolved")));
    proxy.stall_answers();
    auto r = within(p->send(q, {qrt::test::text("x")}, 120s), 30s);
    ASSERT_TRUE(r) << "no answer and no timeout";
    const error failure = !*r ? r->error() : (**r)[0] ? error{} : (**r)[0].error();
    EXPECT_EQ(failure.code, errc::unconfirmed) << failure.to_string();
    EXPECT_NE(failure.message.find("timeout: no answer from"), std::string::npos)
        << failure.to_string();
    proxy.resume();
    run(p->close());
  }

  void max_retries_key() {
    // A server failing every call: 1 + max_retries attempts, then the error.
    for (auto [retries, attempts] : {std::pair<const char*, std::size_t>{"0", 1}, {"2", 3}}) {
      fake_sqs fake([](const seen_request& r) -> std::optional<canned_response> {
        if (action_of(r) == "SendMessage")
          return canned_response{500, R"({"__type":"InternalError","message":"down"})"};
        return std::nullopt;
      });
      auto p = from(with(at(fake.url()), {{"max_retries", retries}, {"retry_base_delay", "1ms"}}));
      EXPECT_FALSE(send_one(*p, queue_name::from("q"), qrt::test::text("x")));
      EXPECT_EQ(fake.count("SendMessage"), attempts) << "max_retries=" << retries;
      run(p->close());
    }
  }

  void retry_base_delay_key() {
    // The first back-off (half to all of it, capped at 5 s): with a long one the retry does
    // not come within a second, though it does come.
    fake_sqs fake([](const seen_request& r) -> std::optional<canned_response> {
      if (action_of(r) == "SendMessage")
        return canned_response{500, R"({"__type":"InternalError","message":"down"})"};
      return std::nullopt;
    });
    auto p = from(with(at(fake.url()), {{"max_retries", "1"}, {"retry_base_delay", "1h"}}));
    const auto q = queue_name::from("q");  // outlives the call, which runs on `runner`
    auto f = asio::co_spawn(io_, p->send(q, {qrt::test::text("x")}, 120s), asio::use_future);
    io_.restart();
    std::thread runner([this] { io_.run(); });
    // A one-second window in which the retry must not come (polled, not slept through).
    const auto window_end = std::chrono::steady_clock::now() + 1s;
    while (std::chrono::steady_clock::now() < window_end && fake.count("SendMessage") < 2)
      std::this_thread::sleep_for(10ms);
    EXPECT_EQ(fake.count("SendMessage"), 1u) << "retried within a second of a 1h base delay";
    EXPECT_EQ(f.wait_for(30s), std::future_status::ready) << "the capped back-off never ended";
    runner.join();
    EXPECT_EQ(fake.count("SendMessage"), 2u);
    run(p->close());
  }
};

const key_row rows[] = {
    {"provider", &SqsConfigKey::provider_key},
    {"preset", &SqsConfigKey::preset_key},
    {"region", &SqsConfigKey::region_key},
    {"endpoint", &SqsConfigKey::endpoint_key},
    {"sns_endpoint", &SqsConfigKey::sns_endpoint_key},
    {"access_key_id", &SqsConfigKey::access_key_id_key},
    {"secret_access_key", &SqsConfigKey::secret_access_key_key},
    {"session_token", &SqsConfigKey::session_token_key},
    {"profile", &SqsConfigKey::profile_key},
    {"verify_tls", &SqsConfigKey::verify_tls_key},
    {"ca_file", &SqsConfigKey::ca_file_key},
    {"max_number_of_messages", &SqsConfigKey::max_number_of_messages_key},
    {"wait_time", &SqsConfigKey::wait_time_key},
    {"visibility_timeout", &SqsConfigKey::visibility_timeout_key},
    {"receive_request_attempt_id", &SqsConfigKey::receive_request_attempt_id_key},
    {"abandon_visibility", &SqsConfigKey::abandon_visibility_key},
    {"default_message_group", &SqsConfigKey::default_message_group_key},
    {"max_message_bytes", &SqsConfigKey::max_message_bytes_key},
    {"max_idle_connections", &SqsConfigKey::max_idle_connections_key},
    {"max_connections", &SqsConfigKey::max_connections_key},
    {"connect_timeout", &SqsConfigKey::connect_timeout_key},
    {"request_timeout", &SqsConfigKey::request_timeout_key},
    {"max_retries", &SqsConfigKey::max_retries_key},
    {"retry_base_delay", &SqsConfigKey::retry_base_delay_key},
    {"max_concurrent_calls", &SqsConfigKey::max_concurrent_calls_key},
    {"prefetch_count", &SqsConfigKey::prefetch_count_key},
    {"max_auto_lock_renewal_duration", &SqsConfigKey::max_auto_lock_renewal_duration_key},
    {"worker_threads", &SqsConfigKey::worker_threads_key},
    {"thread_stack_size", &SqsConfigKey::thread_stack_size_key},
    {"max_concurrent_sessions", &SqsConfigKey::max_concurrent_sessions_key},
    {"session_idle_timeout", &SqsConfigKey::session_idle_timeout_key},
    {"max_session_hold", &SqsConfigKey::max_session_hold_key},
};

}  // namespace

TEST(SqsConfigKeys, TheTableNamesExactlyTheKeysTheProviderAccepts) {
  qrt::test::expect_a_row_for_exactly(sqs::known_keys(), rows);
  qrt::test::expect_documented(sqs::known_keys(), "docs/sqs.md");
  auto typo = sqs::options_from_config(config{{"wait_tme", "1s"}});
  ASSERT_FALSE(typo);
  EXPECT_NE(typo.error().message.find("wait_tme"), std::string::npos);
}

TEST_P(SqsConfigKey, ActsOnBehaviour) {
  (this->*GetParam().shows_effect)();
}

INSTANTIATE_TEST_SUITE_P(EveryKey, SqsConfigKey, ::testing::ValuesIn(rows),
                         [](const ::testing::TestParamInfo<key_row>& info) {
                           return std::string(info.param.key);
                         });
