// The provider's error paths against a local HTTP server that plays a misbehaving SQS:
// throttling (retried with back-off, then reported as throttled), server faults, garbage
// answers, auth failures and a refused connection. Each must become a clear qrt::error.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <qrt/sqs.hpp>

#include "local_http_server.hpp"

using namespace qrt;
using namespace std::chrono_literals;
using qrt::test::canned_response;
using qrt::test::local_http_server;
using qrt::test::seen_request;

namespace {

class SqsProviderErrors : public ::testing::Test {
 protected:
  provider_ptr make(const std::string& endpoint, int retries = 2) {
    sqs::options o;
    o.endpoint = endpoint;
    o.region = "us-east-1";
    o.access_key_id = "AKIDEXAMPLE";
    o.secret_access_key = "do-not-print-this-secret";
    o.max_retries = retries;
    o.retry_base_delay = 1ms;
    o.request_timeout = 2s;
    o.connect_timeout = 1s;
    return sqs::make_provider(o, io_.get_executor()).value();
  }
  template <class T>
  T run(boost::asio::awaitable<T> op) {
    auto f = boost::asio::co_spawn(io_, std::move(op), boost::asio::use_future);
    io_.restart();
    io_.run();
    return f.get();
  }
  boost::asio::io_context io_;
};

std::string target_of(const seen_request& r) {
  auto it = r.headers.find("x-amz-target");
  return it == r.headers.end() ? "" : it->second;
}

const canned_response queue_url{200, R"({"QueueUrl":"http://127.0.0.1/000000000000/q"})"};

}  // namespace

TEST_F(SqsProviderErrors, RequestsAreSignedJsonPostsToTheRoot) {
  seen_request last;
  local_http_server server([&](const seen_request& r) {
    last = r;
    if (target_of(r) == "AmazonSQS.GetQueueUrl") return queue_url;
    return canned_response{200, R"({"MessageId":"m1"})"};
  });
  auto p = make(server.url());
  message m;
  m.body = "x";
  auto r = run(p->send(queue_name::from("q"), {m}, 2s));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->at(0).value(), "m1");
  EXPECT_EQ(last.method, "POST");
  EXPECT_EQ(last.target, "/") << "never the queue URL's path";
  EXPECT_EQ(target_of(last), "AmazonSQS.SendMessage");
  EXPECT_EQ(last.headers.at("content-type"), "application/x-amz-json-1.0");
  EXPECT_NE(last.headers.at("authorization").find("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            std::string::npos);
  EXPECT_NE(last.headers.at("authorization").find("/us-east-1/sqs/aws4_request"),
            std::string::npos);
  EXPECT_EQ(last.headers.at("authorization").find("do-not-print-this-secret"), std::string::npos);
}

TEST_F(SqsProviderErrors, ThrottlingIsRetriedWithBackoffThenSucceeds) {
  std::atomic<int> sends{0};
  local_http_server server([&](const seen_request& r) {
    if (target_of(r) == "AmazonSQS.GetQueueUrl") return queue_url;
    if (++sends <= 2) {
      return canned_response{
          400, R"({"__type":"com.amazonaws.sqs#ThrottlingException","message":"Rate exceeded"})"};
    }
    return canned_response{200, R"({"MessageId":"m-after-throttle"})"};
  });
  auto p = make(server.url(), 3);
  message m;
  m.body = "x";
  auto r = run(p->send(queue_name::from("q"), {m}, 2s));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->at(0).value(), "m-after-throttle");
  EXPECT_EQ(sends, 3);
}

TEST_F(SqsProviderErrors, PersistentThrottlingIsReportedAsThrottled) {
  std::atomic<int> calls{0};
  local_http_server server([&](const seen_request& r) {
    if (target_of(r) == "AmazonSQS.GetQueueUrl") return queue_url;
    ++calls;
    return canned_response{503, ""};
  });
  auto p = make(server.url(), 2);
  auto r = run(p->receive(queue_name::from("q"), 1, 0ms));
  // The queue's visibility is read first: that call is the one throttled.
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::throttled);
  EXPECT_EQ(r.error().kind, error_kind::throttled);
  EXPECT_EQ(calls, 3) << "one call plus max_retries";
}

TEST_F(SqsProviderErrors, OnlyFailedBatchEntriesAreRetried) {
  std::vector<std::string> batch_bodies;
  std::mutex m;
  local_http_server server([&](const seen_request& r) {
    if (target_of(r) == "AmazonSQS.GetQueueUrl") return queue_url;
    std::lock_guard lock(m);
    batch_bodies.push_back(target_of(r));
    if (batch_bodies.size() == 1) {
      return canned_response{
          200, R"({"Successful":[{"Id":"0","MessageId":"a"},{"Id":"2","MessageId":"c"}],
        "Failed":[{"Id":"1","Code":"InternalError","Message":"oops","SenderFault":false}]})"};
    }
    return canned_response{200, R"({"Successful":[{"Id":"1","MessageId":"b"}]})"};
  });
  auto p = make(server.url(), 2);
  std::vector<message> msgs(3);
  msgs[0].body = "a";
  msgs[1].body = "b";
  msgs[2].body = "c";
  auto r = run(p->send(queue_name::from("q"), msgs, 2s));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->at(0).value(), "a");
  EXPECT_EQ(r->at(1).value(), "b");
  EXPECT_EQ(r->at(2).value(), "c");
  ASSERT_EQ(batch_bodies.size(), 2u);
  EXPECT_EQ(batch_bodies[1], "AmazonSQS.SendMessageBatch");
}

TEST_F(SqsProviderErrors, SenderFaultsInABatchAreReportedPerMessage) {
  local_http_server server([&](const seen_request& r) {
    if (target_of(r) == "AmazonSQS.GetQueueUrl") return queue_url;
    return canned_response{200, R"({"Successful":[{"Id":"0","MessageId":"a"}],
      "Failed":[{"Id":"1","Code":"InvalidParameterValue","Message":"bad","SenderFault":true}]})"};
  });
  auto p = make(server.url(), 2);
  std::vector<message> msgs(2);
  msgs[0].body = "a";
  msgs[1].body = "b";
  auto r = run(p->send(queue_name::from("q"), msgs, 2s));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->at(0));
  ASSERT_FALSE(r->at(1));
  EXPECT_EQ(r->at(1).error().code, errc::invalid_argument);
  EXPECT_EQ(server.requests(), 2) << "a sender fault is not retried";
}

TEST_F(SqsProviderErrors, GarbageAnswersAreProtocolErrors) {
  local_http_server server([&](const seen_request& r) {
    if (target_of(r) == "AmazonSQS.GetQueueUrl") return queue_url;
    return canned_response{200, "<html>definitely not SQS</html>"};
  });
  auto p = make(server.url(), 0);
  message m;
  m.body = "x";
  auto r = run(p->send(queue_name::from("q"), {m}, 2s));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::protocol_error);
}

TEST_F(SqsProviderErrors, AccessDeniedIsPermissionAndNotRetried) {
  local_http_server server([&](const seen_request&) {
    return canned_response{
        400,
        R"({"__type":"com.amazonaws.sqs#AccessDenied","message":"Access to the resource is denied."})"};
  });
  auto p = make(server.url(), 3);
  auto r = run(p->stats(queue_name::from("q")));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::permission);
  EXPECT_EQ(server.requests(), 1);
  EXPECT_EQ(r.error().to_string().find("do-not-print-this-secret"), std::string::npos);
}

TEST_F(SqsProviderErrors, RefusedConnectionIsConnectionFailed) {
  std::string url;
  {
    local_http_server gone([](const seen_request&) { return canned_response{}; });
    url = gone.url();
  }  // nothing listens on that port any more
  auto p = make(url, 1);
  auto r = run(p->create_queue(queue_name::from("q"), {}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::connection_failed);
  EXPECT_TRUE(r.error().is_transient());
}
