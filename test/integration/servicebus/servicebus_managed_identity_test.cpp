// Managed identity end to end: qrt asks a fake Azure Instance Metadata Service (IMDS cannot run
// off Azure; the fake is an in-process HTTP server on 127.0.0.1 that checks what IMDS checks)
// for an Azure AD token and puts it on $cbs of the real Service Bus test peer, which accepts
// only the JWTs it is told to (and refuses the others with 401, as the service does).
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <qrt/servicebus.hpp>
#include <qrt/sync_client.hpp>
#include <thread>

#include "local_http_server.hpp"
#include "managed_identity_source.hpp"
#include "peer_process.hpp"

namespace {

using namespace std::chrono_literals;
using qrt::errc;
using qrt::queue_name;
using std::chrono::system_clock;

constexpr const char* servicebus_resource_encoded = "https%3A%2F%2Fservicebus.azure.net%2F";
constexpr const char* assigned_id = "6a0f5b2c-1111-2222-3333-444455556666";
constexpr const char* short_lived_id = "0b6e2f4d-aaaa-bbbb-cccc-ddddeeeeffff";
// What the peer accepts: the fake hands these out.
constexpr const char* long_token = "jwt-long-lived.eyJhdWQiOiJzZXJ2aWNlYnVzIn0.sig";
constexpr const char* short_tokens[] = {"jwt-short-1.e30.sig", "jwt-short-2.e30.sig",
                                        "jwt-short-3.e30.sig"};
constexpr const char* unaccepted_token = "jwt-the-peer-does-not-know.e30.sig";
constexpr const char* unaccepted_id = "99999999-9999-9999-9999-999999999999";

/// A fake IMDS: answers like the real one for the identities it knows, 400 "Identity not found"
/// for the others, and records whatever a real IMDS would refuse.
class fake_imds {
 public:
  fake_imds() : server_([this](const qrt::test::seen_request& r) { return answer(r); }) {}

  std::string url() const { return server_.url() + "/metadata/identity/oauth2/token"; }
  /// Every request, answered with a token or not.
  int requests() const { return server_.requests(); }
  int fetches(const std::string& client_id) {
    std::lock_guard lock(mutex_);
    return fetches_[client_id];
  }
  /// When the last short-lived token was issued and when it expires (epoch seconds).
  std::pair<system_clock::time_point, system_clock::time_point> last_short_token() {
    std::lock_guard lock(mutex_);
    return {short_issued_, short_expires_};
  }
  std::vector<std::string> violations() {
    std::lock_guard lock(mutex_);
    return violations_;
  }

 private:
  qrt::test::canned_response answer(const qrt::test::seen_request& r) {
    std::lock_guard lock(mutex_);
    const std::string path = "/metadata/identity/oauth2/token?";
    const auto metadata = r.headers.find("metadata");
    if (metadata == r.headers.end() || metadata->second != "true") {
      violations_.push_back("no 'Metadata: true' header on " + r.target);
      return {
          400,
          R"({"error":"invalid_request","error_description":"Required metadata header not specified"})"};
    }
    if (r.method != "GET" || r.target.rfind(path, 0) != 0) {
      violations_.push_back("unexpected request " + r.method + " " + r.target);
      return {404, "{}"};
    }
    const auto params = query(r.target.substr(path.size()));
    if (params.count("api-version") == 0 || params.at("api-version") != "2018-02-01" ||
        params.count("resource") == 0 || params.at("resource") != servicebus_resource_encoded) {
      violations_.push_back("bad api-version or resource in " + r.target);
      return {400, R"({"error":"invalid_resource","error_description":"bad resource"})"};
    }
    const std::string client_id = params.count("client_id") ? params.at("client_id") : "";
    const auto now = system_clock::now();
    const auto epoch = [](system_clock::time_point t) {
      return std::to_string(
          std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count());
    };
    auto token_answer = [&](const std::string& token, system_clock::time_point expires) {
      ++fetches_[client_id];
      return qrt::test::canned_response{
          200, R"({"access_token":")" + token + R"(","client_id":")" + client_id +
                   R"(","expires_in":"60","expires_on":")" + epoch(expires) +
                   R"(","not_before":")" + epoch(now) +
                   R"(","resource":"https://servicebus.azure.net/","token_type":"Bearer"})"};
    };
    if (client_id == assigned_id) return token_answer(long_token, now + 1h);
    if (client_id == unaccepted_id) return token_answer(unaccepted_token, now + 1h);
    if (client_id == short_lived_id) {
      // Whole seconds on the wire: this token lives between 9 and 10 seconds, so that the 80%
      // mark and the expiry are far enough apart for a loaded machine to land between them.
      const auto n = std::min<std::size_t>(static_cast<std::size_t>(fetches_[client_id]), 2);
      short_issued_ = now;
      short_expires_ = std::chrono::time_point_cast<std::chrono::seconds>(now) + 10s;
      return token_answer(short_tokens[n], short_expires_);
    }
    return {400, R"({"error":"invalid_request","error_description":"Identity not found"})"};
  }

  static std::map<std::string, std::string> query(const std::string& q) {
    std::map<std::string, std::string> out;
    std::size_t start = 0;
    while (start <= q.size()) {
      auto end = q.find('&', start);
      if (end == std::string::npos) end = q.size();
      const auto kv = q.substr(start, end - start);
      const auto eq = kv.find('=');
      if (eq != std::string::npos) out[kv.substr(0, eq)] = kv.substr(eq + 1);
      start = end + 1;
    }
    return out;
  }

  std::mutex mutex_;
  std::map<std::string, int> fetches_;
  std::vector<std::string> violations_;
  system_clock::time_point short_issued_{}, short_expires_{};
  qrt::test::local_http_server server_;  // last: stops before the state it uses goes away
};

std::unique_ptr<qrt::test::servicebus_peer> peer;
std::unique_ptr<fake_imds> imds;

class IdentityEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    std::string accepted = long_token;
    for (const char* t : short_tokens) accepted += std::string(",") + t;
    peer = std::make_unique<qrt::test::servicebus_peer>(
        std::vector<std::string>{"--sas-key-name", "x", "--sas-key", "y", "--jwt", accepted});
    imds = std::make_unique<fake_imds>();
  }
  void TearDown() override {
    peer.reset();
    imds.reset();
  }
};
const auto* const environment = ::testing::AddGlobalTestEnvironment(new IdentityEnvironment);

// No client retries: each call reaches the token source exactly once.
qrt::sync::queue_client open_identity_client(const std::string& client_id,
                                             const std::string& endpoint) {
  qrt::provider_registry registry;
  qrt::servicebus::register_provider(registry);
  // No key in the connection string: the token comes from the managed identity.
  auto c = qrt::sync::queue_client::open(
      {{"provider", "servicebus"},
       {"connection_string", "Endpoint=sb://127.0.0.1:" + std::to_string(peer->port()) +
                                 "/;UseDevelopmentEmulator=true"},
       {"auth", "managed_identity"},
       {"managed_identity_client_id", client_id},
       {"managed_identity_endpoint", endpoint},
       {"operation_timeout", "3s"},
       {"test_peer_admin", "true"}},
      registry, qrt::client_options{.send_timeout = 3s, .retry = std::nullopt});
  if (!c) throw qrt::exception(c.error());
  return std::move(*c);
}

std::atomic<int> counter{0};
queue_name fresh(const std::string& what) {
  return queue_name::from("mi-" + what + "-" + std::to_string(getpid()) + "-" +
                          std::to_string(++counter));
}

qrt::message text(std::string body) {
  qrt::message m;
  m.body = std::move(body);
  return m;
}

TEST(ServiceBusManagedIdentity, SendReceiveCompleteWithTheImdsToken) {
  auto client = open_identity_client(assigned_id, imds->url());
  const auto q = fresh("e2e");
  ASSERT_TRUE(client.create_queue(q));
  const auto before = imds->fetches(assigned_id);
  auto sent = client.send(q, text("hello from a managed identity"));
  ASSERT_TRUE(sent) << sent.error().to_string();
  std::vector<qrt::received_message> got;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (got.empty() && std::chrono::steady_clock::now() < deadline) {
    auto r = client.receive(q, 1, 2s);
    ASSERT_TRUE(r) << r.error().to_string();
    got = std::move(*r);
  }
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, "hello from a managed identity");
  auto done = client.complete(got[0].receipt);
  ASSERT_TRUE(done) << done.error().to_string();
  auto stats = client.stats(q);
  ASSERT_TRUE(stats) << stats.error().to_string();
  EXPECT_EQ(stats->active, 0);
  EXPECT_EQ(stats->in_flight, 0);
  // One Azure AD token served the send link, the receive link and $management audiences.
  EXPECT_EQ(imds->fetches(assigned_id) - before, 1);
  EXPECT_TRUE(imds->violations().empty()) << imds->violations().front();
}

TEST(ServiceBusManagedIdentity, IdentityTheEndpointRefusesIsAPermissionErrorNamingIt) {
  auto client = open_identity_client("00000000-dead-beef-0000-000000000000", imds->url());
  auto sent = client.send(fresh("refused"), text("never sent"));
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code, errc::permission) << sent.error().to_string();
  EXPECT_NE(sent.error().message.find("00000000-dead-beef-0000-000000000000"), std::string::npos)
      << sent.error().message;
  EXPECT_NE(sent.error().message.find("Identity not found"), std::string::npos)
      << sent.error().message;
  EXPECT_EQ(sent.error().message.find("jwt-"), std::string::npos) << sent.error().message;
}

TEST(ServiceBusManagedIdentity, TokenThePeerDoesNotAcceptIsRefusedWithoutShowingIt) {
  auto client = open_identity_client(unaccepted_id, imds->url());
  auto sent = client.send(fresh("unaccepted"), text("never sent"));
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code, errc::permission) << sent.error().to_string();
  EXPECT_EQ(sent.error().message.find(unaccepted_token), std::string::npos) << sent.error().message;
  EXPECT_EQ(imds->fetches(unaccepted_id), 1);
}

TEST(ServiceBusManagedIdentity, UnreachableEndpointIsConnectionFailedNamingIt) {
  // A port that was just free: nothing listens there, the connect is refused.
  std::string url;
  {
    qrt::test::local_http_server closed([](const qrt::test::seen_request&) {
      return qrt::test::canned_response{500, ""};
    });
    url = closed.url() + "/metadata/identity/oauth2/token";
  }
  auto client = open_identity_client(assigned_id, url);
  auto sent = client.send(fresh("unreachable"), text("never sent"));
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code, errc::connection_failed) << sent.error().to_string();
  EXPECT_NE(sent.error().message.find("managed identity endpoint"), std::string::npos)
      << sent.error().message;
  EXPECT_NE(sent.error().message.find(url.substr(0, url.find("/metadata"))), std::string::npos)
      << sent.error().message;
}

TEST(ServiceBusManagedIdentity, TokenIsReusedThenFetchedAgainAfterEightyPercentOfItsLife) {
  auto client = open_identity_client(short_lived_id, imds->url());
  const auto q1 = fresh("refresh-a");
  const auto q2 = fresh("refresh-b");
  ASSERT_TRUE(client.create_queue(q1));
  ASSERT_TRUE(client.create_queue(q2));
  auto first = client.send(q1, text("1"));
  ASSERT_TRUE(first) << first.error().to_string();
  ASSERT_EQ(imds->fetches(short_lived_id), 1);
  const auto [issued, expires] = imds->last_short_token();
  const auto life = expires - issued;
  // Another audience while the token is young: the cached token is put, IMDS is not asked.
  auto second = client.send(q2, text("2"));
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_EQ(imds->fetches(short_lived_id), 1);

  // Waiting for an instant of the token's life is waiting for the event under test itself.
  // At 60% of its life the token is still reused: no refresh long before the 80% mark.
  std::this_thread::sleep_until(issued + life * 6 / 10);
  auto third = client.send(q2, text("3"));
  ASSERT_TRUE(third) << third.error().to_string();
  EXPECT_EQ(imds->fetches(short_lived_id), 1) << "the token was replaced before 80% of its life";

  // The provider replaces the token at 80% of the life it saw; it started its call before the
  // fake issued the token, so its mark is no later than this one. The token is still valid
  // for a good while then: a fetch now is the 80% rule, not a refresh on expiry.
  std::this_thread::sleep_until(issued + life * 8 / 10 + 200ms);
  auto fourth = client.send(q1, text("4"));
  ASSERT_TRUE(fourth) << fourth.error().to_string();
  EXPECT_EQ(imds->fetches(short_lived_id), 2) << "the token was not replaced at 80% of its life";
  EXPECT_LT(system_clock::now(), expires - 1s)
      << "this machine was too slow to tell the 80% rule from a refresh on expiry";

  std::vector<std::string> bodies;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (bodies.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    auto r = client.receive(q1, 2, 1s);
    ASSERT_TRUE(r) << r.error().to_string();
    for (auto& m : *r) {
      bodies.push_back(m.body);
      ASSERT_TRUE(client.complete(m.receipt));
    }
  }
  EXPECT_EQ(bodies, (std::vector<std::string>{"1", "4"}));
  EXPECT_TRUE(imds->violations().empty()) << imds->violations().front();
}

// Straight at the token source: callers that arrive while a fetch runs share it. One thread
// runs them all, so every caller has asked before any answer can be read.
std::vector<qrt::result<qrt::servicebus::access_token>> concurrent_tokens(
    qrt::servicebus::detail::managed_identity_source& source, int callers) {
  boost::asio::io_context io;
  std::vector<qrt::result<qrt::servicebus::access_token>> got(
      static_cast<std::size_t>(callers), qrt::fail(errc::provider_error, "never answered"));
  for (std::size_t i = 0; i < got.size(); ++i) {
    boost::asio::co_spawn(
        io,
        [&source, &got, i]() -> boost::asio::awaitable<void> { got[i] = co_await source.token(); },
        boost::asio::detached);
  }
  io.run_for(10s);  // returns as soon as every caller has its answer
  return got;
}

TEST(ServiceBusManagedIdentity, ConcurrentCallersShareOneFetch) {
  namespace sb = qrt::servicebus::detail;
  sb::managed_identity_source source({sb::identity_protocol::imds, imds->url(), {}}, assigned_id,
                                     3s);
  const auto before = imds->requests();
  for (const auto& r : concurrent_tokens(source, 8)) {
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(r->token, long_token);
    EXPECT_EQ(r->type, "jwt");
  }
  EXPECT_EQ(imds->requests() - before, 1);
  // Later callers get the cached token.
  for (const auto& r : concurrent_tokens(source, 3)) ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(imds->requests() - before, 1);
  EXPECT_EQ(source.fetches(), 1u);

  // A refusal is shared the same way, and is not cached: the next caller asks again.
  sb::managed_identity_source refused({sb::identity_protocol::imds, imds->url(), {}},
                                      "00000000-0000-0000-0000-00000000beef", 3s);
  const auto refused_before = imds->requests();
  for (const auto& r : concurrent_tokens(refused, 4)) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::permission) << r.error().to_string();
  }
  EXPECT_EQ(imds->requests() - refused_before, 1);
  EXPECT_FALSE(concurrent_tokens(refused, 1)[0]);
  EXPECT_EQ(imds->requests() - refused_before, 2);
}

}  // namespace
