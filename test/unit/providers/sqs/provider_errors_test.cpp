// The provider's error paths against a local HTTP server that plays a misbehaving SQS:
// throttling (retried with back-off, then reported as throttled), server faults, garbage
// answers, auth failures and a refused connection. Each must become a clear qrt::error.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <mutex>
#include <optional>
#include <qrt/sqs.hpp>
#include <thread>

#include "../../support/run.hpp"
#include "codec.hpp"
#include "local_http_server.hpp"

using namespace qrt;
using namespace std::chrono_literals;
using qrt::test::canned_response;
using qrt::test::local_http_server;
using qrt::test::seen_request;

namespace {

class SqsProviderErrors : public ::testing::Test {
 protected:
  provider_ptr make(const std::string& endpoint, int retries = 2,
                    milliseconds base_delay = milliseconds(1)) {
    sqs::options o;
    o.endpoint = endpoint;
    o.region = "us-east-1";
    o.access_key_id = "AKIDEXAMPLE";
    o.secret_access_key = "do-not-print-this-secret";
    o.max_retries = retries;
    o.retry_base_delay = base_delay;
    o.request_timeout = 2s;
    o.connect_timeout = 1s;
    return sqs::make_provider(o, io_.get_executor()).value();
  }
  template <class T>
  T run(boost::asio::awaitable<T> op) {
    return qrt::test::run(io_, std::move(op));
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
  // The server answers from what it was sent: the first batch fails the entry whose body is
  // "b" (a server fault, worth retrying); later batches succeed for every entry they carry. A
  // retry that resent the entries already stored would duplicate them on real SQS.
  std::vector<std::vector<std::string>> batches;  // the bodies each SendMessageBatch carried
  std::mutex m;
  local_http_server server([&](const seen_request& r) {
    if (target_of(r) == "AmazonSQS.GetQueueUrl") return queue_url;
    if (target_of(r) != "AmazonSQS.SendMessageBatch") return canned_response{400, "{}"};
    std::lock_guard lock(m);
    const bool first = batches.empty();
    auto& bodies = batches.emplace_back();
    boost::json::array successful, failed;
    const auto request = boost::json::parse(r.body);
    for (const auto& entry : request.at("Entries").as_array()) {
      const auto id = entry.at("Id").as_string();
      const auto body = std::string(entry.at("MessageBody").as_string());
      bodies.push_back(body);
      if (first && body == "b") {
        failed.push_back(boost::json::object{
            {"Id", id}, {"Code", "InternalError"}, {"Message", "oops"}, {"SenderFault", false}});
      } else {
        successful.push_back(boost::json::object{{"Id", id}, {"MessageId", "id-" + body}});
      }
    }
    return canned_response{
        200, boost::json::serialize(boost::json::object{{"Successful", std::move(successful)},
                                                        {"Failed", std::move(failed)}})};
  });
  auto p = make(server.url(), 2);
  std::vector<message> msgs(3);
  msgs[0].body = "a";
  msgs[1].body = "b";
  msgs[2].body = "c";
  auto r = run(p->send(queue_name::from("q"), msgs, 2s));
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ(r->at(0).value(), "id-a");
  EXPECT_EQ(r->at(1).value(), "id-b");
  EXPECT_EQ(r->at(2).value(), "id-c");
  ASSERT_EQ(batches.size(), 2u) << "one batch, then one retry";
  EXPECT_EQ(batches[0], (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(batches[1], std::vector<std::string>{"b"}) << "the retry carries only the failed entry";
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
  // A read changes nothing: an answer it cannot read is the peer's fault, said as such.
  auto r = run(p->receive(queue_name::from("q"), 1, 0ms));
  ASSERT_FALSE(r) << "garbage was read as an answer";
  EXPECT_EQ(r.error().code, errc::protocol_error) << r.error().to_string();
  EXPECT_NE(r.error().message.find("not a JSON object"), std::string::npos) << r.error().message;
}

// A send SQS answered with success but whose answer cannot be read (garbage), or whose batch
// answer says nothing of one of its entries, may have stored the message: nothing confirms it
// either way. Each such message fails with unconfirmed (transient, may have taken effect), as
// when the answer is lost, naming the call and keeping why the answer could not be read; the
// send does not fail as a whole, which would have the client's retry layer send it again.
// It was protocol_error, which reads as a malformed answer and says nothing of the outcome.
TEST_F(SqsProviderErrors, ASendAnsweredWithSuccessUnreadablyOrSilentlyIsUnconfirmed) {
  std::atomic<int> mode{0};
  local_http_server server([&](const seen_request& r) {
    if (target_of(r) == "AmazonSQS.GetQueueUrl") return queue_url;
    if (mode == 2) {
      return canned_response{200, R"({"Successful":[{"Id":"0","MessageId":"a"}],"Failed":[]})"};
    }
    return canned_response{200, "<html>definitely not SQS</html>"};
  });
  auto p = make(server.url(), 0);
  struct case_t {
    int mode;
    std::size_t messages;
    std::string action;
    std::string why;  // what the message says of the answer
  };
  std::vector<case_t> cases;
  cases.push_back({0, 1, "SendMessage:", "not a JSON object"});
  cases.push_back({1, 2, "SendMessageBatch:", "not a JSON object"});
  cases.push_back({2, 2, "SendMessageBatch:", "reported nothing for batch entry 1"});
  for (const auto& c : cases) {
    SCOPED_TRACE(c.action + " " + c.why);
    mode = c.mode;
    std::vector<message> msgs(c.messages);
    for (auto& m : msgs) m.body = "x";
    auto r = run(p->send(queue_name::from("q"), msgs, 2s));
    ASSERT_TRUE(r) << "failed as a whole, which reads as nothing stored: " << r.error().to_string();
    ASSERT_EQ(r->size(), c.messages);
    // With an entry left out, the other one was reported stored and is.
    const std::size_t first_unknown = c.mode == 2 ? 1 : 0;
    if (c.mode == 2) {
      EXPECT_TRUE(r->at(0)) << r->at(0).error().to_string();
    }
    for (std::size_t i = first_unknown; i < c.messages; ++i) {
      ASSERT_FALSE(r->at(i)) << "a send whose answer could not be read was reported stored";
      const error& e = r->at(i).error();
      EXPECT_EQ(e.code, errc::unconfirmed) << e.to_string();
      EXPECT_TRUE(e.is_transient()) << e.to_string();
      EXPECT_TRUE(e.message.starts_with(c.action)) << e.message;
      EXPECT_NE(e.message.find(c.why), std::string::npos) << e.message;
      EXPECT_NE(e.message.find("may have stored the message"), std::string::npos) << e.message;
    }
  }
}

// A server that answers a long poll at once with nothing (an emulator or a proxy that ignores
// WaitTimeSeconds) is not polled in a tight loop through the receive's wait: 63,500 calls in
// two seconds before; now a pause after each such answer, longer each time.
TEST_F(SqsProviderErrors, AServerThatDoesNotLongPollIsNotAskedAgainAtOnce) {
  std::atomic<int> receives{0};
  local_http_server server([&](const seen_request& r) {
    if (target_of(r) == "AmazonSQS.GetQueueUrl") return queue_url;
    if (target_of(r) == "AmazonSQS.GetQueueAttributes")
      return canned_response{200, R"({"Attributes":{"VisibilityTimeout":"30"}})"};
    ++receives;
    return canned_response{200, "{}"};
  });
  auto p = make(server.url(), 0);
  auto r = run(p->receive(queue_name::from("q"), 1, 2s));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(r->empty());
  EXPECT_LE(receives.load(), 20) << "the receive polled a server that answers at once in a loop";
  EXPECT_GE(receives.load(), 2) << "the receive stopped asking before its wait was over";
}

// A send's timeout bounds its retries too: with back-off longer than the timeout left, the
// provider does not wait for another attempt (a throttled send took 900 s through retries that
// each waited a minute), and says why it stopped.
TEST_F(SqsProviderErrors, ASendsRetriesStopWhereItsTimeoutEnds) {
  std::atomic<int> sends{0};
  local_http_server server([&](const seen_request& r) {
    if (target_of(r) == "AmazonSQS.GetQueueUrl") return queue_url;
    ++sends;
    return canned_response{
        400, R"({"__type":"com.amazonaws.sqs#ThrottlingException","message":"Rate exceeded"})"};
  });
  auto p = make(server.url(), 3, 10s);
  message m;
  m.body = "x";
  auto r = run(p->send(queue_name::from("q"), {m}, 1s));
  ASSERT_FALSE(r && r->at(0)) << "a throttled send succeeded";
  const error e = r ? r->at(0).error() : r.error();
  EXPECT_EQ(e.code, errc::throttled) << e.to_string();
  EXPECT_NE(e.message.find("no time left"), std::string::npos) << e.to_string();
  EXPECT_EQ(sends.load(), 1) << "a retry was waited for past the send's timeout";
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

namespace {

// A ReceiveMessage entry with SQS's MD5 of its body (or a wrong one).
std::string received_entry(const std::string& id, const std::string& body, bool corrupt = false) {
  const std::string md5 = corrupt ? std::string(32, '0') : sqs::detail::md5_of_body(body);
  return R"({"MessageId":")" + id + R"(","ReceiptHandle":"rh-)" + id + R"(","Body":")" + body +
         R"(","MD5OfBody":")" + md5 + R"(","Attributes":{"ApproximateReceiveCount":"1"}})";
}

const canned_response visibility{200, R"({"Attributes":{"VisibilityTimeout":"30"}})"};

}  // namespace

// A message whose bytes were corrupted in transit is released for another try; the messages
// SQS handed out with it (before and after it in the answer) are returned, not left locked.
TEST_F(SqsProviderErrors, ACorruptMessageIsReleasedAndTheOthersAreReturned) {
  std::mutex mutex;
  std::vector<std::string> released;
  local_http_server server([&](const seen_request& r) {
    const auto target = target_of(r);
    if (target == "AmazonSQS.GetQueueUrl") return queue_url;
    if (target == "AmazonSQS.GetQueueAttributes") return visibility;
    if (target == "AmazonSQS.ReceiveMessage") {
      return canned_response{200, R"({"Messages":[)" + received_entry("bad", "b", true) + "," +
                                      received_entry("good1", "g1") + "," +
                                      received_entry("good2", "g2") + "]}"};
    }
    if (target == "AmazonSQS.ChangeMessageVisibility") {
      std::lock_guard lock(mutex);
      released.push_back(r.body);
      return canned_response{200, "{}"};
    }
    return canned_response{400, R"({"__type":"InvalidAction"})"};
  });
  std::vector<std::string> warnings;
  sqs::options o;
  o.endpoint = server.url();
  o.region = "us-east-1";
  o.access_key_id = "AKIDEXAMPLE";
  o.secret_access_key = "do-not-print-this-secret";
  o.max_retries = 0;
  o.warn = [&](const std::string& line) { warnings.push_back(line); };
  auto p = sqs::make_provider(o, io_.get_executor()).value();

  auto r = run(p->receive(queue_name::from("q"), 10, 0ms));
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].body, "g1");
  EXPECT_EQ((*r)[1].body, "g2");
  ASSERT_EQ(released.size(), 1u);
  const auto release = boost::json::parse(released[0]).as_object();
  EXPECT_EQ(release.at("ReceiptHandle"), "rh-bad");
  EXPECT_EQ(release.at("VisibilityTimeout"), 0);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("released message bad"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("1 message refused"), std::string::npos) << warnings[0];
}

// A server that puts one delivery twice in an answer (SQS does not) gets it handed out once:
// two receipts for one lock would settle it twice. A send it reports stored without an id is
// that message's failure, never a success with an empty id.
TEST_F(SqsProviderErrors, ADeliveryTwiceInOneAnswerIsHandedOutOnceAndAnEmptyIdIsNoSuccess) {
  local_http_server server([&](const seen_request& r) {
    const auto target = target_of(r);
    if (target == "AmazonSQS.GetQueueUrl") return queue_url;
    if (target == "AmazonSQS.GetQueueAttributes") return visibility;
    if (target == "AmazonSQS.ReceiveMessage") {
      return canned_response{200, R"({"Messages":[)" + received_entry("twice", "t") + "," +
                                      received_entry("once", "o") + "," +
                                      received_entry("twice", "t") + "]}"};
    }
    if (target == "AmazonSQS.SendMessage") return canned_response{200, R"({"MessageId":""})"};
    return canned_response{400, R"({"__type":"InvalidAction"})"};
  });
  auto p = make(server.url(), 0);
  auto r = run(p->receive(queue_name::from("q"), 10, 0ms));
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].id, "twice");
  EXPECT_EQ((*r)[1].id, "once");

  message m;
  m.body = "x";
  auto sent = run(p->send(queue_name::from("q"), {m}, 2s));
  ASSERT_TRUE(sent) << sent.error().to_string();
  ASSERT_FALSE(sent->at(0)) << "a send answered with an empty id reported success";
  EXPECT_EQ(sent->at(0).error().code, errc::protocol_error);
}

// With nothing readable the receive fails (so a caller backs off) rather than answering empty
// and being asked again at once for the same released message.
TEST_F(SqsProviderErrors, OnlyACorruptMessageFailsTheReceiveAfterReleasingIt) {
  std::atomic<int> receives{0}, releases{0};
  local_http_server server([&](const seen_request& r) {
    const auto target = target_of(r);
    if (target == "AmazonSQS.GetQueueUrl") return queue_url;
    if (target == "AmazonSQS.GetQueueAttributes") return visibility;
    if (target == "AmazonSQS.ReceiveMessage") {
      ++receives;
      return canned_response{200, R"({"Messages":[)" + received_entry("bad", "b", true) + "]}"};
    }
    ++releases;
    return canned_response{200, "{}"};
  });
  auto p = make(server.url(), 0);
  auto r = run(p->receive(queue_name::from("q"), 10, 5s));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::protocol_error);
  EXPECT_EQ(receives, 1) << "no second poll that would fetch the released message again";
  EXPECT_EQ(releases, 1);
}

// Credentials over plain HTTP to another machine, or TLS without verification, are reported
// once, naming the endpoint's host and never a secret.
TEST_F(SqsProviderErrors, RiskyTransportIsReportedOnceWithoutSecrets) {
  auto warnings_for = [&](const std::string& endpoint, bool verify_tls) {
    std::vector<std::string> warnings;
    sqs::options o;
    o.endpoint = endpoint;
    o.region = "us-east-1";
    o.access_key_id = "AKIDEXAMPLE";
    o.secret_access_key = "do-not-print-this-secret";
    o.session_token = "session-token-secret";
    o.verify_tls = verify_tls;
    o.warn = [&](const std::string& line) { warnings.push_back(line); };
    auto p = sqs::make_provider(o, io_.get_executor());
    EXPECT_TRUE(p) << p.error().to_string();
    return warnings;
  };
  auto plain = warnings_for("http://sqs.example.invalid:9324", true);
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_NE(plain[0].find("http://sqs.example.invalid:9324"), std::string::npos) << plain[0];
  auto unverified = warnings_for("https://sqs.example.invalid", false);
  ASSERT_EQ(unverified.size(), 1u);
  EXPECT_NE(unverified[0].find("sqs.example.invalid"), std::string::npos) << unverified[0];
  EXPECT_NE(unverified[0].find("verification is off"), std::string::npos) << unverified[0];
  EXPECT_TRUE(warnings_for("https://sqs.example.invalid", true).empty());
  for (const auto& line : {plain[0], unverified[0]}) {
    EXPECT_EQ(line.find("do-not-print-this-secret"), std::string::npos);
    EXPECT_EQ(line.find("session-token-secret"), std::string::npos);
    EXPECT_EQ(line.find("AKIDEXAMPLE"), std::string::npos);
  }
}

// On loopback only a session token makes plain HTTP worth a warning, given at its first use.
TEST_F(SqsProviderErrors, ASessionTokenOverPlainHttpIsReportedOnceAtFirstUse) {
  local_http_server server([&](const seen_request& r) {
    if (target_of(r) == "AmazonSQS.GetQueueUrl") return queue_url;
    return canned_response{200, R"({"MessageId":"m1"})"};
  });
  for (const bool with_token : {false, true}) {
    std::vector<std::string> warnings;
    sqs::options o;
    o.endpoint = server.url();
    o.region = "us-east-1";
    o.access_key_id = "AKIDEXAMPLE";
    o.secret_access_key = "do-not-print-this-secret";
    if (with_token) o.session_token = "session-token-secret";
    o.warn = [&](const std::string& line) { warnings.push_back(line); };
    auto p = sqs::make_provider(o, io_.get_executor()).value();
    EXPECT_TRUE(warnings.empty()) << "loopback without a token is a test rig";
    message m;
    m.body = "x";
    ASSERT_TRUE(run(p->send(queue_name::from("q"), {m}, 2s)));
    ASSERT_TRUE(run(p->send(queue_name::from("q"), {m}, 2s)));
    if (!with_token) {
      EXPECT_TRUE(warnings.empty());
      continue;
    }
    ASSERT_EQ(warnings.size(), 1u) << "once per provider, not per call";
    EXPECT_NE(warnings[0].find("127.0.0.1"), std::string::npos) << warnings[0];
    EXPECT_NE(warnings[0].find("session token"), std::string::npos) << warnings[0];
    EXPECT_EQ(warnings[0].find("session-token-secret"), std::string::npos);
  }
}

TEST_F(SqsProviderErrors, AnEndpointWithUserInfoIsRefusedWithoutEchoingIt) {
  for (const std::string endpoint :
       {"http://user:SECRETPW@127.0.0.1:9324", "https://user:SECRET/PW@sqs.example.invalid",
        "ftp://user:SECRETPW@host"}) {
    sqs::options o;
    o.endpoint = endpoint;
    o.region = "us-east-1";
    auto p = sqs::make_provider(o, io_.get_executor());
    ASSERT_FALSE(p) << endpoint;
    EXPECT_EQ(p.error().code, errc::configuration_error);
    EXPECT_EQ(p.error().to_string().find("SECRET"), std::string::npos) << p.error().to_string();
    EXPECT_NE(p.error().to_string().find("***@"), std::string::npos) << p.error().to_string();
  }
}

TEST_F(SqsProviderErrors, AnUnreadableCaFileIsAConfigurationErrorNotAThrow) {
  sqs::options o;
  o.endpoint = "https://sqs.example.invalid";
  o.region = "us-east-1";
  o.ca_file = "/nonexistent/qrt-test-ca.pem";
  auto p = sqs::make_provider(o, io_.get_executor());
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, errc::configuration_error);
  EXPECT_NE(p.error().message.find("ca_file"), std::string::npos) << p.error().message;
  EXPECT_NE(p.error().message.find("/nonexistent/qrt-test-ca.pem"), std::string::npos);
}

// ---- topics: SNS's Query protocol on the same error paths ----

namespace {

std::string sns_action(const seen_request& r) {
  if (!r.body.starts_with("Action=")) return {};
  return r.body.substr(7, r.body.find('&') - 7);
}

const canned_response created_topic{
    200,
    "<CreateTopicResponse><CreateTopicResult><TopicArn>arn:aws:sns:us-east-1:000000000000:t"
    "</TopicArn></CreateTopicResult></CreateTopicResponse>"};

std::string sns_error(std::string_view code, std::string_view message) {
  return "<ErrorResponse><Error><Type>Sender</Type><Code>" + std::string(code) +
         "</Code><Message>" + std::string(message) + "</Message></Error></ErrorResponse>";
}

/// Messages with these bodies, each with the id "<body>-id" (what publish reports for it).
std::vector<message> texts(std::initializer_list<const char*> bodies) {
  std::vector<message> out;
  for (auto b : bodies) {
    message m;
    m.body = b;
    m.id = std::string(b) + "-id";
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace

TEST_F(SqsProviderErrors, SnsRequestsAreSignedFormPostsAndThrottlingIsRetried) {
  std::mutex mutex;
  std::vector<seen_request> seen;
  int publishes = 0;
  local_http_server server([&](const seen_request& r) {
    std::lock_guard lock(mutex);
    seen.push_back(r);
    if (sns_action(r) == "CreateTopic") return created_topic;
    if (sns_action(r) == "Publish" && ++publishes == 1) {
      return canned_response{400, sns_error("Throttling", "Rate exceeded")};
    }
    return canned_response{
        200,
        "<PublishResponse><PublishResult><MessageId>m1</MessageId></PublishResult>"
        "</PublishResponse>"};
  });
  auto p = make(server.url());
  ASSERT_TRUE(run(p->create_topic(topic_name::from("t"))));
  auto r = run(p->publish(topic_name::from("t"), texts({"x"}), 2s));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->at(0).value(), "x-id") << "the id the copies carry, not SNS's MessageId";
  std::lock_guard lock(mutex);
  ASSERT_EQ(seen.size(), 3u);
  for (const auto& s : seen) {
    EXPECT_EQ(s.method, "POST");
    EXPECT_EQ(s.target, "/");
    EXPECT_EQ(s.headers.at("content-type"), "application/x-www-form-urlencoded");
    EXPECT_EQ(s.headers.count("x-amz-target"), 0u);
    EXPECT_NE(s.headers.at("authorization").find("/us-east-1/sns/aws4_request"), std::string::npos);
    EXPECT_EQ(s.headers.at("authorization").find("do-not-print-this-secret"), std::string::npos);
  }
  EXPECT_EQ(seen[1].body, seen[2].body) << "the retry sends the same request";
  EXPECT_EQ(seen[2].body,
            "Action=Publish&Version=2010-03-31&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A000000000000"
            "%3At&Message=x&MessageAttributes.entry.1.Name=qrt.message_id"
            "&MessageAttributes.entry.1.Value.DataType=String"
            "&MessageAttributes.entry.1.Value.StringValue=x-id");
}

TEST_F(SqsProviderErrors, SnsBatchEntriesFailedByTheServerAreRetriedAloneSenderFaultsReported) {
  std::mutex mutex;
  std::vector<std::string> bodies;
  local_http_server server([&](const seen_request& r) {
    std::lock_guard lock(mutex);
    if (sns_action(r) == "CreateTopic") return created_topic;
    bodies.push_back(r.body);
    if (sns_action(r) == "PublishBatch" && bodies.size() == 1) {
      return canned_response{
          200,
          "<PublishBatchResponse><PublishBatchResult><Successful><member><Id>0</Id><MessageId>a"
          "</MessageId></member></Successful><Failed><member><Id>1</Id><Code>InternalError</Code>"
          "<Message>oops</Message><SenderFault>false</SenderFault></member><member><Id>2</Id>"
          "<Code>InvalidParameter</Code><Message>bad</Message><SenderFault>true</SenderFault>"
          "</member></Failed></PublishBatchResult></PublishBatchResponse>"};
    }
    return canned_response{
        200,
        "<PublishBatchResponse><PublishBatchResult><Successful><member><Id>1</Id><MessageId>b"
        "</MessageId></member></Successful></PublishBatchResult></PublishBatchResponse>"};
  });
  auto p = make(server.url());
  ASSERT_TRUE(run(p->create_topic(topic_name::from("t"))));
  auto r = run(p->publish(topic_name::from("t"), texts({"one", "two", "three"}), 2s));
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ(r->at(0).value(), "one-id");
  EXPECT_EQ(r->at(1).value(), "two-id");
  ASSERT_FALSE(r->at(2));
  EXPECT_EQ(r->at(2).error().code, errc::invalid_argument);
  std::lock_guard lock(mutex);
  ASSERT_EQ(bodies.size(), 2u);
  EXPECT_NE(bodies[1].find("Message=two"), std::string::npos);
  EXPECT_EQ(bodies[1].find("Message=one"), std::string::npos) << "only the failed entry again";
  EXPECT_EQ(bodies[1].find("Message=three"), std::string::npos);
}

TEST_F(SqsProviderErrors, SnsGarbageAuthFailuresAndMissingTopicsAreClearErrors) {
  std::atomic<int> calls{0};
  std::atomic<int> mode{0};
  local_http_server server([&](const seen_request& r) {
    ++calls;
    if (sns_action(r) == "CreateTopic") {
      switch (mode.load()) {
        case 0:
          return canned_response{200, "<CreateTopicResponse><CreateTopicResult>"};
        case 1:
          return canned_response{403, sns_error("AuthorizationError", "not allowed")};
        default:
          return created_topic;
      }
    }
    if (sns_action(r) == "ListTopics") {
      return canned_response{200,
                             "<ListTopicsResponse><ListTopicsResult><Topics><member><TopicArn>"
                             "arn:aws:sns:us-east-1:000000000000:other</TopicArn></member>"
                             "</Topics></ListTopicsResult></ListTopicsResponse>"};
    }
    return canned_response{404, sns_error("NotFound", "Topic does not exist")};
  });
  auto p = make(server.url());
  auto garbage = run(p->create_topic(topic_name::from("t")));
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code, errc::protocol_error);
  EXPECT_NE(garbage.error().message.find("not closed"), std::string::npos)
      << garbage.error().message;

  mode = 1;
  calls = 0;
  auto denied = run(p->create_topic(topic_name::from("t")));
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, errc::permission);
  EXPECT_EQ(calls.load(), 1) << "a refusal is not retried";
  EXPECT_EQ(denied.error().message.find("do-not-print-this-secret"), std::string::npos);

  // Not in the listing: topic_not_found without publishing; then, with the account's ARN
  // prefix known, SNS's own NotFound.
  auto missing = run(p->publish(topic_name::from("t"), texts({"x"}), 2s));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::topic_not_found);
  EXPECT_NE(missing.error().message.find("'t'"), std::string::npos) << missing.error().message;
  auto gone = run(p->publish(topic_name::from("u"), texts({"x"}), 2s));
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, errc::topic_not_found);
  EXPECT_EQ(gone.error().provider_code, "NotFound");
}

// A FIFO message's id is its MessageDeduplicationId, which SQS takes only as 1-128 printable
// ASCII characters without spaces. An id with other bytes went out as it was: bytes that are
// not UTF-8 made the whole batch's request invalid JSON, which SQS refuses as a whole, so
// one careless id failed every message of the send. It is refused on its own instead.
TEST_F(SqsProviderErrors, AFifoIdSqsCannotTakeFailsOnlyItsOwnMessage) {
  std::vector<std::string> sent_ids;
  std::mutex m;
  local_http_server server([&](const seen_request& r) {
    if (target_of(r) == "AmazonSQS.GetQueueUrl") {
      return canned_response{200, R"({"QueueUrl":"http://127.0.0.1/000000000000/q.fifo"})"};
    }
    boost::system::error_code ec;
    const auto request = boost::json::parse(r.body, ec);
    if (ec) {
      return canned_response{
          400, R"({"__type":"com.amazon.coral.service#SerializationException","message":"bad"})"};
    }
    boost::json::array successful;
    std::lock_guard lock(m);
    for (const auto& entry : request.at("Entries").as_array()) {
      sent_ids.emplace_back(entry.at("MessageDeduplicationId").as_string());
      successful.push_back(
          boost::json::object{{"Id", entry.at("Id")}, {"MessageId", "sqs-" + sent_ids.back()}});
    }
    return canned_response{
        200, boost::json::serialize(boost::json::object{{"Successful", std::move(successful)}})};
  });
  auto p = make(server.url(), 0);
  std::vector<message> msgs(4);
  for (auto& msg : msgs) msg.body = "x";
  msgs[0].id = "order-1";
  msgs[1].id = "order-\xff";
  msgs[2].id = "order 3";
  msgs[3].id = "order-4";
  auto r = run(p->send(queue_name::from("q.fifo"), msgs, 2s));
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_TRUE(r->at(0)) << r->at(0).error().to_string();
  EXPECT_TRUE(r->at(3)) << r->at(3).error().to_string();
  for (std::size_t i : {1u, 2u}) {
    ASSERT_FALSE(r->at(i)) << i;
    EXPECT_EQ(r->at(i).error().code, errc::invalid_argument) << r->at(i).error().to_string();
  }
  EXPECT_EQ(sent_ids, (std::vector<std::string>{"order-1", "order-4"}));
}

// A message id or a batch entry's error message is the server's text: printed as it came, one
// with a line break or a terminal escape forged lines in the log that `warn` writes to, and a
// long one made every line about it as long. Warnings and errors show it cut short, with such
// characters replaced.
TEST_F(SqsProviderErrors, AServersMessageIdCannotForgeOrFloodTheLog) {
  const std::string hostile_id = "bad\\nqrt: all fine\\u001b[2J" + std::string(10'000, 'x');
  local_http_server server([&](const seen_request& r) {
    const auto target = target_of(r);
    if (target == "AmazonSQS.GetQueueUrl") return queue_url;
    if (target == "AmazonSQS.GetQueueAttributes") return visibility;
    if (target == "AmazonSQS.ReceiveMessage") {
      return canned_response{200,
                             R"({"Messages":[)" + received_entry(hostile_id, "b", true) + "]}"};
    }
    if (target == "AmazonSQS.SendMessageBatch") {
      return canned_response{200, R"({"Failed":[{"Id":"0","Code":"InvalidParameterValue",)"
                                  R"("SenderFault":true,"Message":")" +
                                      hostile_id + R"("}]})"};
    }
    return canned_response{200, "{}"};
  });
  std::vector<std::string> warnings;
  sqs::options o;
  o.endpoint = server.url();
  o.region = "us-east-1";
  o.access_key_id = "AKIDEXAMPLE";
  o.secret_access_key = "do-not-print-this-secret";
  o.max_retries = 0;
  o.warn = [&](const std::string& line) { warnings.push_back(line); };
  auto p = sqs::make_provider(o, io_.get_executor()).value();
  auto r = run(p->receive(queue_name::from("q"), 10, 0ms));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::protocol_error);
  ASSERT_EQ(warnings.size(), 1u);
  std::vector<message> two(2);
  two[0].body = "x";
  two[1].body = "y";
  auto sent = run(p->send(queue_name::from("q"), two, 2s));
  ASSERT_TRUE(sent) << sent.error().to_string();
  ASSERT_FALSE(sent->at(0));
  for (const std::string& text : {warnings[0], r.error().message, sent->at(0).error().message}) {
    EXPECT_NE(text.find("bad"), std::string::npos) << text;
    EXPECT_EQ(text.find('\n'), std::string::npos) << text;
    EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
    EXPECT_LT(text.size(), 1'000u);
  }
}

// The delete that ends a dead-letter move answered only after the message's lock ran out: SQS
// may have handed the message to another consumer by then, and answers a delete with the old
// receipt handle with success without deleting. As with a complete, that is no move qrt can
// vouch for: the copy is in the dead-letter queue, and the original may be delivered again.
TEST_F(SqsProviderErrors, ADeadLetterWhoseDeleteIsAnsweredAfterTheLockRanOutIsNotReportedDone) {
  std::mutex mutex;
  std::optional<time_point> lock_ends;
  std::atomic<int> copies{0};
  local_http_server server([&](const seen_request& r) {
    const auto target = target_of(r);
    if (target == "AmazonSQS.GetQueueUrl") return queue_url;
    if (target == "AmazonSQS.ReceiveMessage") {
      return canned_response{200, R"({"Messages":[)" + received_entry("m1", "body") + "]}"};
    }
    if (target == "AmazonSQS.SendMessage") {
      ++copies;
      return canned_response{200, R"({"MessageId":"copy"})"};
    }
    if (target == "AmazonSQS.DeleteMessageBatch") {
      std::optional<time_point> until;
      {
        std::lock_guard lock(mutex);
        until = lock_ends;
      }
      // The fault: the answer is held up until the lock has run out.
      if (until) std::this_thread::sleep_until(*until + 10ms);
      return canned_response{200, R"({"Successful":[{"Id":"0"}]})"};
    }
    return canned_response{400, R"({"__type":"InvalidAction"})"};
  });
  sqs::options o;
  o.endpoint = server.url();
  o.region = "us-east-1";
  o.access_key_id = "AKIDEXAMPLE";
  o.secret_access_key = "do-not-print-this-secret";
  o.max_retries = 0;
  o.visibility_timeout = std::chrono::seconds(1);
  auto p = sqs::make_provider(o, io_.get_executor()).value();
  auto got = run(p->receive(queue_name::from("q"), 1, 0ms));
  ASSERT_TRUE(got && got->size() == 1u);
  {
    std::lock_guard lock(mutex);
    lock_ends = got->front().locked_until;
  }
  std::vector<settlement> move;
  move.push_back(settlement::dead_letter(got->front().receipt, "Poison", "held-up delete"));
  auto r = run(p->settle(std::move(move)));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(copies, 1);
  ASSERT_FALSE(r[0]) << "a move whose delete was answered after the lock ran out was reported done";
  EXPECT_EQ(r[0].error().code, errc::receipt_expired) << r[0].error().to_string();
}

// A visibility timeout of 0 locks nothing: SQS hands the message out and shows it to everyone
// again at once, so qrt's lock on it has run out before the answer is read and the message is
// passed over. Every receive then answered "nothing" however many messages were waiting, and a
// receive of more than one asked again at once, round after round, until its wait was over.
// Set in the options it is refused; a queue's own 0 fails the receive, saying so.
TEST_F(SqsProviderErrors, AZeroVisibilityTimeoutIsAnErrorNotAnEmptyQueue) {
  boost::asio::io_context io;
  sqs::options o;
  o.endpoint = "http://127.0.0.1:9";
  o.region = "us-east-1";
  o.visibility_timeout = std::chrono::seconds(0);
  auto refused = sqs::make_provider(o, io.get_executor());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::configuration_error);
  EXPECT_NE(refused.error().message.find("visibility_timeout"), std::string::npos)
      << refused.error().message;
  config cfg{{"provider", "sqs"}, {"visibility_timeout", "0s"}};
  EXPECT_FALSE(sqs::options_from_config(cfg)) << "a configuration gives no lock either";

  std::atomic<int> receives{0};
  local_http_server server([&](const seen_request& r) {
    const auto target = target_of(r);
    if (target == "AmazonSQS.GetQueueUrl") return queue_url;
    if (target == "AmazonSQS.GetQueueAttributes") {
      return canned_response{200, R"({"Attributes":{"VisibilityTimeout":"0"}})"};
    }
    if (target == "AmazonSQS.ReceiveMessage") {
      ++receives;
      return canned_response{200, R"({"Messages":[)" + received_entry("m1", "waiting") + "]}"};
    }
    return canned_response{400, R"({"__type":"InvalidAction"})"};
  });
  auto p = make(server.url(), 0);
  auto r = run(p->receive(queue_name::from("q"), 1, 0ms));
  ASSERT_FALSE(r) << "a waiting message was reported as an empty queue (" << receives
                  << " receives)";
  EXPECT_EQ(r.error().code, errc::invalid_argument) << r.error().to_string();
  EXPECT_NE(r.error().message.find("VisibilityTimeout"), std::string::npos) << r.error().message;
  EXPECT_EQ(receives, 0) << "nothing is received that could not be handed out";

  // Nor does create_queue make such a queue, or cut a lock longer than SQS's 12 hours.
  const int before = server.requests();
  for (const auto lock : {milliseconds(0), milliseconds(std::chrono::hours(13))}) {
    auto made = run(p->create_queue(queue_name::from("q2"), queue_options{.lock_duration = lock}));
    ASSERT_FALSE(made) << lock.count();
    EXPECT_EQ(made.error().code, errc::invalid_argument) << made.error().to_string();
  }
  EXPECT_EQ(server.requests(), before) << "nothing was created";
}

// A receive whose answers are full but leave nothing to hand out (each message dead-lettered as
// undecodable, or its lock run out on the way) asked again at once, without end: the check
// against its wait was reached only after an answer with fewer messages than asked for. A server
// answering every call with one such message kept a receive with no wait at all going forever.
TEST_F(SqsProviderErrors, AReceiveWhoseAnswersLeaveNothingToHandOutEndsWithItsWait) {
  std::atomic<int> receives{0};
  local_http_server server([&](const seen_request& r) {
    const auto target = target_of(r);
    if (target == "AmazonSQS.GetQueueUrl") return queue_url;
    if (target == "AmazonSQS.GetQueueAttributes") return visibility;
    if (target == "AmazonSQS.ReceiveMessage") {
      // Bounded so that the test ends even where the receive does not.
      if (++receives > 50) return canned_response{200, "{}"};
      const std::string md5 =
          sqs::detail::md5_of_attributes({{"qrt.body_encoding", {"String", "rot13"}}});
      return canned_response{
          200, R"({"Messages":[{"MessageId":"u","ReceiptHandle":"rh-u","Body":"x",)"
               R"("MD5OfBody":")" +
                   sqs::detail::md5_of_body("x") + R"(","MD5OfMessageAttributes":")" + md5 +
                   R"(","MessageAttributes":{"qrt.body_encoding":{"DataType":"String",)"
                   R"("StringValue":"rot13"}}}]})"};
    }
    if (target == "AmazonSQS.SendMessage") return canned_response{200, R"({"MessageId":"c"})"};
    if (target == "AmazonSQS.DeleteMessageBatch") {
      return canned_response{200, R"({"Successful":[{"Id":"0"}]})"};
    }
    return canned_response{400, R"({"__type":"InvalidAction"})"};
  });
  sqs::options o;
  o.endpoint = server.url();
  o.region = "us-east-1";
  o.access_key_id = "AKIDEXAMPLE";
  o.secret_access_key = "do-not-print-this-secret";
  o.max_retries = 0;
  o.warn = [](const std::string&) {};
  auto p = sqs::make_provider(o, io_.get_executor()).value();
  auto r = run(p->receive(queue_name::from("q"), 1, 0ms));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(receives, 1) << "a receive without a wait asked again";
}

// A call that changes state and whose whole request reached the service, then lost its answer
// (the connection closed unanswered), may have taken effect: each message of SendMessage and
// of SendMessageBatch fails as unconfirmed (maybe stored; sent again, maybe stored twice),
// keeping the transport's words, never as a plain connection failure that reads as not sent.
TEST_F(SqsProviderErrors, ASendWhoseAnswerIsLostAfterTheWholeRequestWentOutIsUnconfirmed) {
  local_http_server server([&](const seen_request& r) {
    if (target_of(r) == "AmazonSQS.GetQueueUrl") return queue_url;
    return canned_response{.hang_up = true};
  });
  auto p = make(server.url(), 0);
  for (const std::size_t n : {std::size_t{1}, std::size_t{2}}) {
    SCOPED_TRACE(n == 1 ? "SendMessage" : "SendMessageBatch");
    std::vector<message> msgs(n);
    for (auto& m : msgs) m.body = "x";
    auto r = run(p->send(queue_name::from("q"), msgs, 2s));
    ASSERT_TRUE(r) << "failed as a whole, which reads as nothing stored: " << r.error().to_string();
    ASSERT_EQ(r->size(), n);
    for (const auto& one : *r) {
      ASSERT_FALSE(one) << "a send whose answer was lost was reported stored";
      const error& e = one.error();
      EXPECT_EQ(e.code, errc::unconfirmed) << e.to_string();
      EXPECT_TRUE(e.is_transient()) << e.to_string();
      EXPECT_NE(e.message.find("connection to " + server.url()), std::string::npos)
          << "the transport's words were lost: " << e.to_string();
      EXPECT_NE(e.message.find("may or may not"), std::string::npos) << e.to_string();
    }
  }
}

// The provider retries a delete whose answer was lost. When that first attempt deleted the
// message, the retry finds the receipt gone (ReceiptHandleIsInvalid): that refusal is what an
// applied attempt leaves behind, so the complete is unconfirmed, not invalid_receipt, which
// reads as "not settled" (a processor would count a message it completed as one it failed to).
TEST_F(SqsProviderErrors, ADeleteRetriedAfterItsAnswerWasLostThatFindsTheReceiptGoneIsUnconfirmed) {
  std::atomic<int> deletes{0};
  local_http_server server([&](const seen_request& r) {
    const auto target = target_of(r);
    if (target == "AmazonSQS.GetQueueUrl") return queue_url;
    if (target == "AmazonSQS.GetQueueAttributes") return visibility;
    if (target == "AmazonSQS.ReceiveMessage") {
      return canned_response{200, R"({"Messages":[)" + received_entry("m1", "body") + "]}"};
    }
    if (target == "AmazonSQS.DeleteMessageBatch") {
      if (++deletes == 1) return canned_response{.hang_up = true};
      return canned_response{
          200, R"({"Successful":[],"Failed":[{"Id":"0","Code":"ReceiptHandleIsInvalid",)"
               R"("Message":"The input receipt handle is invalid.","SenderFault":true}]})"};
    }
    return canned_response{400, R"({"__type":"InvalidAction"})"};
  });
  auto p = make(server.url(), 2);
  auto got = run(p->receive(queue_name::from("q"), 1, 0ms));
  ASSERT_TRUE(got && got->size() == 1u);
  std::vector<settlement> complete;
  complete.push_back(settlement::complete(got->front().receipt));
  auto r = run(p->settle(std::move(complete)));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(deletes, 2) << "the delete whose answer was lost was not retried";
  ASSERT_FALSE(r[0]) << "a delete whose outcome is unknown was reported done";
  EXPECT_EQ(r[0].error().code, errc::unconfirmed) << r[0].error().to_string();
  EXPECT_NE(r[0].error().message.find("receipt handle is invalid"), std::string::npos)
      << "what the retry found is not said: " << r[0].error().to_string();
}

// The visibility changes (abandon: ChangeMessageVisibilityBatch; a lock renewal:
// ChangeMessageVisibility) change state too: with their answers lost they are unconfirmed.
TEST_F(SqsProviderErrors, AnAbandonOrARenewalWhoseAnswerIsLostIsUnconfirmed) {
  local_http_server server([&](const seen_request& r) {
    const auto target = target_of(r);
    if (target == "AmazonSQS.GetQueueUrl") return queue_url;
    if (target == "AmazonSQS.GetQueueAttributes") return visibility;
    if (target == "AmazonSQS.ReceiveMessage") {
      return canned_response{200, R"({"Messages":[)" + received_entry("m1", "a") + "," +
                                      received_entry("m2", "b") + "]}"};
    }
    return canned_response{.hang_up = true};
  });
  auto p = make(server.url(), 0);
  auto got = run(p->receive(queue_name::from("q"), 2, 0ms));
  ASSERT_TRUE(got && got->size() == 2u);
  auto renewed = run(p->renew_lock(got->at(0).receipt));
  ASSERT_FALSE(renewed) << "a renewal whose answer was lost was reported done";
  EXPECT_EQ(renewed.error().code, errc::unconfirmed) << renewed.error().to_string();
  std::vector<settlement> abandon;
  abandon.push_back(settlement::abandon(got->at(1).receipt));
  auto r = run(p->settle(std::move(abandon)));
  ASSERT_EQ(r.size(), 1u);
  ASSERT_FALSE(r[0]) << "an abandon whose answer was lost was reported done";
  EXPECT_EQ(r[0].error().code, errc::unconfirmed) << r[0].error().to_string();
}

// Publish and PublishBatch change state too: SNS answering with success but unreadably (or
// leaving an entry out of a batch answer) may have published, so those messages are unconfirmed.
TEST_F(SqsProviderErrors, APublishAnsweredWithSuccessUnreadablyOrSilentlyIsUnconfirmed) {
  local_http_server server([&](const seen_request& r) {
    if (sns_action(r) == "CreateTopic") return created_topic;
    if (sns_action(r) == "PublishBatch") {
      return canned_response{
          200,
          "<PublishBatchResponse><PublishBatchResult><Successful><member><Id>0</Id><MessageId>a"
          "</MessageId></member></Successful></PublishBatchResult></PublishBatchResponse>"};
    }
    return canned_response{200, "<PublishResponse><PublishResult>"};
  });
  auto p = make(server.url(), 0);
  ASSERT_TRUE(run(p->create_topic(topic_name::from("t"))));
  auto one = run(p->publish(topic_name::from("t"), texts({"x"}), 2s));
  ASSERT_TRUE(one) << one.error().to_string();
  ASSERT_EQ(one->size(), 1u);
  ASSERT_FALSE(one->at(0)) << "a publish whose answer could not be read was reported done";
  EXPECT_EQ(one->at(0).error().code, errc::unconfirmed) << one->at(0).error().to_string();
  EXPECT_TRUE(one->at(0).error().message.starts_with("Publish:")) << one->at(0).error().message;

  auto two = run(p->publish(topic_name::from("t"), texts({"y", "z"}), 2s));
  ASSERT_TRUE(two) << two.error().to_string();
  ASSERT_EQ(two->size(), 2u);
  EXPECT_TRUE(two->at(0));
  ASSERT_FALSE(two->at(1)) << "an entry the answer left out was reported published";
  EXPECT_EQ(two->at(1).error().code, errc::unconfirmed) << two->at(1).error().to_string();
  EXPECT_NE(two->at(1).error().message.find("reported nothing for batch entry 1"),
            std::string::npos)
      << two->at(1).error().message;
}

// A complete, an abandon and the delete of a dead-letter move that SQS answered with success
// but unreadably, or whose batch answer leaves the entry out, may have been applied: each is
// unconfirmed. The dead-letter move's silent answer was read as done, and the others as
// protocol_error; the processor counts an unconfirmed settlement as failed and the message,
// if the settlement was not applied, comes back (at least once).
TEST_F(SqsProviderErrors, ASettlementAnsweredWithSuccessUnreadablyOrSilentlyIsUnconfirmed) {
  std::atomic<bool> garbage{true};
  std::atomic<int> copies{0};
  local_http_server server([&](const seen_request& r) {
    const auto target = target_of(r);
    if (target == "AmazonSQS.GetQueueUrl") return queue_url;
    if (target == "AmazonSQS.GetQueueAttributes") return visibility;
    if (target == "AmazonSQS.ReceiveMessage") {
      return canned_response{200, R"({"Messages":[)" + received_entry("m1", "a") + "," +
                                      received_entry("m2", "b") + "," + received_entry("m3", "c") +
                                      "]}"};
    }
    if (target == "AmazonSQS.SendMessage") {
      ++copies;
      return canned_response{200, R"({"MessageId":"copy"})"};
    }
    if (garbage) return canned_response{200, "<html>definitely not SQS</html>"};
    return canned_response{200, R"({"Successful":[],"Failed":[]})"};
  });
  auto p = make(server.url(), 0);
  for (const bool unreadable : {true, false}) {
    SCOPED_TRACE(unreadable ? "an unreadable answer" : "an answer without the entry");
    garbage = unreadable;
    auto got = run(p->receive(queue_name::from("q"), 3, 0ms));
    ASSERT_TRUE(got && got->size() == 3u);
    std::vector<settlement> s;
    s.push_back(settlement::complete(got->at(0).receipt));
    s.push_back(settlement::abandon(got->at(1).receipt));
    s.push_back(settlement::dead_letter(got->at(2).receipt, "Poison", "unreadable delete"));
    auto r = run(p->settle(std::move(s)));
    ASSERT_EQ(r.size(), 3u);
    const char* actions[] = {
        "DeleteMessageBatch:", "ChangeMessageVisibilityBatch:", "DeleteMessageBatch:"};
    for (std::size_t i = 0; i < 3; ++i) {
      SCOPED_TRACE(i);
      ASSERT_FALSE(r[i]) << "a settlement whose answer did not confirm it was reported done";
      EXPECT_EQ(r[i].error().code, errc::unconfirmed) << r[i].error().to_string();
      EXPECT_TRUE(r[i].error().message.starts_with(actions[i])) << r[i].error().message;
      EXPECT_NE(r[i].error().message.find(unreadable ? "not a JSON object"
                                                     : "reported nothing for batch entry"),
                std::string::npos)
          << r[i].error().message;
    }
  }
  EXPECT_EQ(copies, 2) << "each dead-letter move sent its copy";
}
