// The emulator dies mid-run (SIGKILL) and comes back on the same port with its state: the
// client reports connection_failed while it is down, then recovers on its own, and every
// message sent after recovery is received.
#include <filesystem>
#include <set>

#include "sqs_fixture.hpp"

using namespace qrt;
using namespace std::chrono_literals;
using qrt::test::text;

class SqsRecovery : public ::testing::Test {
 protected:
  template <class T>
  T run(boost::asio::awaitable<T> op) {
    return qrt::test::run(io_, std::move(op));
  }
  boost::asio::io_context io_;
};

TEST_F(SqsRecovery, ClientRecoversAfterTheEmulatorIsKilledAndRestarted) {
  ::setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
  const auto dir =
      std::filesystem::temp_directory_path() / ("qrt-fauxqs-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    qrt::test::fauxqs_server server(dir.string());
    sqs::options o;
    o.endpoint = server.endpoint();
    o.region = "us-east-1";
    o.access_key_id = "test";
    o.secret_access_key = "test";
    o.request_timeout = 3s;
    o.connect_timeout = 1s;
    o.max_retries = 1;
    o.retry_base_delay = 20ms;
    auto p = sqs::make_provider(o, io_.get_executor()).value();
    const auto q = queue_name::from("recovery");
    ASSERT_TRUE(run(p->create_queue(q, {})));
    // Warm the pool: these connections die with the server.
    for (int i = 0; i < 3; ++i)
      ASSERT_TRUE(run(p->send(q, {text("before-" + std::to_string(i))}, 3s)));

    const auto up = p->connections();
    EXPECT_GE(up.connections_opened, 1u);
    EXPECT_EQ(up.connection_failures, 0u);
    EXPECT_GT(up.bytes_sent, 0u);
    EXPECT_GT(up.bytes_received, 0u);

    const auto killed_at = std::chrono::steady_clock::now();
    server.kill_hard();
    auto down = run(p->send(q, {text("while-down")}, 3s));
    ASSERT_FALSE(down);
    EXPECT_EQ(down.error().code, errc::connection_failed) << down.error().to_string();
    EXPECT_TRUE(down.error().is_transient());

    server.restart();
    std::set<std::string> sent_after;
    for (int i = 0; i < 10; ++i) {
      auto r = run(p->send(q, {text("after-" + std::to_string(i))}, 3s));
      ASSERT_TRUE(r) << r.error().to_string();
      ASSERT_TRUE(r->at(0)) << r->at(0).error().to_string();
      sent_after.insert("after-" + std::to_string(i));
    }
    std::set<std::string> received_after;
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (received_after.size() < sent_after.size() &&
           std::chrono::steady_clock::now() < deadline) {
      auto got = run(p->receive(q, 10, 1s));
      ASSERT_TRUE(got) << got.error().to_string();
      std::vector<settlement> done;
      for (auto& m : *got) {
        if (m.body.rfind("after-", 0) == 0) received_after.insert(m.body);
        done.push_back(settlement::complete(m.receipt));
      }
      for (auto& r : run(p->settle(std::move(done)))) EXPECT_TRUE(r);
    }
    EXPECT_EQ(received_after, sent_after);
    // One outage, one recovery: measured from the first failed call to the first connection
    // established after the restart.
    const auto back = p->connections();
    EXPECT_GE(back.connection_failures, 1u);
    EXPECT_GT(back.connections_opened, up.connections_opened);
    EXPECT_EQ(back.recoveries, 1u);
    EXPECT_GT(back.recovery_time_total.count(), 0);
    EXPECT_LE(back.recovery_time_total, std::chrono::steady_clock::now() - killed_at);
    EXPECT_GT(back.bytes_sent, up.bytes_sent);
    run(p->close());
  }
  std::filesystem::remove_all(dir);
}
