// Shared set-up for the SQS integration suites: one fauxqs per test process, a provider
// pointed at it, and a way to run awaitables to completion from a test body.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdlib>
#include <memory>
#include <qrt/sqs.hpp>
#include <random>

#include "../../unit/support/run.hpp"
#include "fauxqs_server.hpp"

namespace qrt::test {

class sqs_fixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Never let a credential lookup leave the machine (no IMDS at 169.254.169.254 here).
    ::setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    server_ = std::make_unique<fauxqs_server>();
  }
  static void TearDownTestSuite() { server_.reset(); }

  void SetUp() override { provider_ = make(); }
  void TearDown() override {
    if (provider_) run(provider_->close());
  }

  static sqs::options default_options() {
    sqs::options o;
    o.endpoint = server_->endpoint();
    o.region = "us-east-1";
    o.access_key_id = "test";
    o.secret_access_key = "test";
    o.request_timeout = std::chrono::seconds(5);
    o.connect_timeout = std::chrono::seconds(2);
    o.retry_base_delay = std::chrono::milliseconds(20);
    return o;
  }

  provider_ptr make(sqs::options o = default_options()) {
    auto p = sqs::make_provider(o, io_.get_executor());
    EXPECT_TRUE(p) << p.error().to_string();
    return p ? *p : nullptr;
  }

  template <class T>
  T run(boost::asio::awaitable<T> op) {
    return qrt::test::run(io_, std::move(op));
  }

  /// A fresh queue name per test ("<prefix>-<random>[.fifo]").
  static queue_name unique_queue(std::string_view prefix, bool fifo = false) {
    static std::mt19937_64 rng{std::random_device{}()};
    return queue_name::from(std::string(prefix) + "-" + std::to_string(rng() % 1'000'000'000) +
                            (fifo ? ".fifo" : ""));
  }

  queue_name create(std::string_view prefix, queue_options qo = {}, bool fifo = false) {
    auto q = unique_queue(prefix, fifo);
    auto r = run(provider_->create_queue(q, qo));
    EXPECT_TRUE(r) << r.error().to_string();
    return q;
  }

  static inline std::unique_ptr<fauxqs_server> server_;
  boost::asio::io_context io_;
  provider_ptr provider_;
};

inline message text(std::string body) {
  message m;
  m.body = std::move(body);
  return m;
}

}  // namespace qrt::test
