// SigV4 against the published AWS test-suite vectors and against botocore's signer.
#include "sigv4.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "codec.hpp"
#include "sns_codec.hpp"

using namespace qrt::sqs::detail;

namespace {

const aws_credentials example_keys{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
const signing_scope example_scope{"us-east-1", "service"};

std::chrono::system_clock::time_point at(int y, unsigned mo, unsigned d, int h, int mi, int s) {
  using namespace std::chrono;
  return sys_days{year{y} / month{mo} / day{d}} + hours{h} + minutes{mi} + seconds{s};
}
const auto vector_time = at(2015, 8, 30, 12, 36, 0);

std::string authorization(const std::vector<std::pair<std::string, std::string>>& headers) {
  for (const auto& [k, v] : headers) {
    if (k == "Authorization") return v;
  }
  return {};
}

}  // namespace

TEST(SigV4, AmzDateIsUtcBasicFormat) {
  EXPECT_EQ(amz_date(vector_time), "20150830T123600Z");
}

TEST(SigV4, UriEncodeKeepsOnlyUnreserved) {
  EXPECT_EQ(uri_encode("a b/c~d_e.f-g", false), "a%20b%2Fc~d_e.f-g");
  EXPECT_EQ(uri_encode("/x y/", true), "/x%20y/");
  EXPECT_EQ(uri_encode("\xc3\xa9", false), "%C3%A9");
}

// The aws-sig-v4-test-suite cases (2015-08-30, AKIDEXAMPLE, us-east-1, service "service").
TEST(SigV4, PublishedVectorGetVanilla) {
  signable_request r{"GET", "/", {}, {{"Host", "example.amazonaws.com"}}, ""};
  const auto t = sigv4_explain(r, example_keys, example_scope, vector_time);
  EXPECT_EQ(t.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(t.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
  EXPECT_EQ(authorization(sigv4_sign(r, example_keys, example_scope, vector_time)),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

TEST(SigV4, PublishedVectorPostVanilla) {
  signable_request r{"POST", "/", {}, {{"Host", "example.amazonaws.com"}}, ""};
  EXPECT_EQ(sigv4_explain(r, example_keys, example_scope, vector_time).signature,
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

TEST(SigV4, PublishedVectorPostFormUrlencoded) {
  signable_request r{
      "POST",
      "/",
      {},
      {{"Content-Type", "application/x-www-form-urlencoded"}, {"Host", "example.amazonaws.com"}},
      "Param1=value1"};
  const auto headers = sigv4_sign(r, example_keys, example_scope, vector_time);
  EXPECT_EQ(authorization(headers),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, "
            "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
}

TEST(SigV4, PublishedVectorQueryOrderKeyCase) {
  signable_request r{"GET",
                     "/",
                     {{"Param2", "value2"}, {"Param1", "value1"}},
                     {{"Host", "example.amazonaws.com"}},
                     ""};
  EXPECT_EQ(sigv4_explain(r, example_keys, example_scope, vector_time).signature,
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

TEST(SigV4, SessionTokenIsSignedAndSent) {
  aws_credentials keys = example_keys;
  keys.session_token = "session-token-value";
  signable_request r{"POST", "/", {}, {{"Host", "example.amazonaws.com"}}, "{}"};
  const auto headers = sigv4_sign(r, keys, example_scope, vector_time);
  ASSERT_EQ(headers.size(), 3u);
  EXPECT_EQ(headers[1].first, "X-Amz-Security-Token");
  EXPECT_EQ(headers[1].second, "session-token-value");
  EXPECT_NE(authorization(headers).find("SignedHeaders=host;x-amz-date;x-amz-security-token"),
            std::string::npos);
  // The trace shows what was signed, never the secret key.
  const auto t = sigv4_explain(r, keys, example_scope, vector_time);
  EXPECT_EQ(t.canonical_request.find(keys.secret_access_key), std::string::npos);
}

// botocore (Debian python3-botocore) signs the same SQS-shaped requests; the headers must agree.
namespace {

std::string botocore_authorization(const signable_request& r, const aws_credentials& keys,
                                   const signing_scope& scope, const std::string& timestamp) {
  boost::json::array headers;
  std::string host;
  for (const auto& [k, v] : r.headers) {
    if (k == "Host") {
      host = v;
      continue;
    }
    headers.push_back(boost::json::array{boost::json::string(k), boost::json::string(v)});
  }
  std::string url = "https://" + host + r.path;
  for (std::size_t i = 0; i < r.query.size(); ++i) {
    url += (i ? "&" : "?") + uri_encode(r.query[i].first, false) + "=" +
           uri_encode(r.query[i].second, false);
  }
  boost::json::object spec{{"method", r.method},
                           {"url", url},
                           {"headers", headers},
                           {"body", r.body},
                           {"access_key", keys.access_key_id},
                           {"secret_key", keys.secret_access_key},
                           {"session_token", keys.session_token},
                           {"region", scope.region},
                           {"service", scope.service},
                           {"timestamp", timestamp}};
  const auto dir = std::filesystem::temp_directory_path();
  const auto in = dir / ("qrt-sigv4-" + std::to_string(::getpid()) + ".json");
  std::ofstream(in) << boost::json::serialize(spec);
  // Debian's interpreter, where python3-botocore is installed, ahead of any other python3.
  const std::string python =
      std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  const std::string cmd = python + " " QRT_BOTOCORE_SIGN_SCRIPT " < " + in.string();
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    EXPECT_EQ(::pclose(p), 0) << "botocore signer failed (is python3-botocore installed?)";
  }
  std::filesystem::remove(in);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

}  // namespace

TEST(SigV4, MatchesBotocoreForSqsJsonRequests) {
  const aws_credentials long_term{"AKIAIOSFODNN7EXAMPLE",
                                  "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
  aws_credentials temporary = long_term;
  temporary.session_token = "FQoGZXIvYXdzEXAMPLE//token+with/odd=chars";
  const auto when = at(2026, 11, 27, 10, 41, 37);
  const signing_scope sqs_scope{"eu-west-1", "sqs"};
  const std::vector<signable_request> requests{
      {"POST",
       "/",
       {},
       {{"Content-Type", "application/x-amz-json-1.0"},
        {"X-Amz-Target", "AmazonSQS.SendMessage"},
        {"Host", "sqs.eu-west-1.amazonaws.com"}},
       R"({"QueueUrl":"https://sqs.eu-west-1.amazonaws.com/123456789012/orders","MessageBody":"h\u00e9llo \u2603"})"},
      {"POST",
       "/",
       {},
       {{"Content-Type", "application/x-amz-json-1.0"},
        {"X-Amz-Target", "AmazonSQS.ReceiveMessage"},
        {"Host", "127.0.0.1:4566"}},
       R"({"QueueUrl":"q","MaxNumberOfMessages":10,"WaitTimeSeconds":20})"},
      {"GET",
       "/",
       {{"Action", "ListQueues"}, {"QueueNamePrefix", "a b&c"}},
       {{"Host", "sqs.eu-west-1.amazonaws.com"}},
       ""},
  };
  for (const auto& keys : {long_term, temporary}) {
    for (const auto& r : requests) {
      const auto ours = authorization(sigv4_sign(r, keys, sqs_scope, when));
      EXPECT_EQ(ours, botocore_authorization(r, keys, sqs_scope, amz_date(when)))
          << "request body: " << r.body;
    }
  }
}

// SNS requests as the provider signs them (sigv4_sign_view, service "sns", a form body with
// every character the Query encoding escapes) carry the signature botocore computes.
TEST(SigV4, MatchesBotocoreForSnsQueryRequests) {
  const aws_credentials keys{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                             "FQoGZXIvYXdzEXAMPLE//token"};
  const auto when = at(2026, 12, 3, 17, 5, 9);
  const signing_scope sns_scope{"eu-west-1", "sns"};
  wire_message m;
  m.body = "h\u00e9llo & = + / ~ * \u2603";
  m.attributes["qrt.subject"] = wire_attribute{"String", "a b"};
  m.attributes["bin"] = wire_attribute{"Binary", std::string("\xff\x00", 2)};
  const std::string bodies[] = {
      sns::encode_publish("arn:aws:sns:eu-west-1:123456789012:orders_dcreated", m),
      sns::encode_subscribe("arn:aws:sns:eu-west-1:123456789012:t",
                            "arn:aws:sqs:eu-west-1:123456789012:t--s", R"({"k":["v w"]})"),
  };
  for (const auto& body : bodies) {
    const std::string content_type = "application/x-www-form-urlencoded";
    const std::string host = "sns.eu-west-1.amazonaws.com";
    const header_view view[] = {{"Content-Type", content_type}, {"Host", host}};
    const auto ours =
        authorization(sigv4_sign_view("POST", "/", view, body, keys, sns_scope, when));
    const signable_request r{
        "POST", "/", {}, {{"Content-Type", content_type}, {"Host", host}}, body};
    EXPECT_NE(ours.find("/eu-west-1/sns/aws4_request"), std::string::npos) << ours;
    EXPECT_EQ(ours, botocore_authorization(r, keys, sns_scope, amz_date(when))) << body;
  }
}

// The signing key is derived once per day and reused: anything it depends on (secret, day,
// region, service) changing must change the signature, in any order of calls on one thread.
TEST(SigV4, TheReusedSigningKeyFollowsSecretDayRegionAndService) {
  signable_request r{"GET", "/", {}, {{"Host", "example.amazonaws.com"}}, ""};
  const auto base = authorization(sigv4_sign(r, example_keys, example_scope, vector_time));
  aws_credentials rotated = example_keys;
  rotated.secret_access_key = "another-secret";
  const auto next_day = vector_time + std::chrono::hours(24);
  const std::vector<std::string> variants = {
      authorization(sigv4_sign(r, rotated, example_scope, vector_time)),
      authorization(sigv4_sign(r, example_keys, example_scope, next_day)),
      authorization(sigv4_sign(r, example_keys, {"eu-west-1", "service"}, vector_time)),
      authorization(sigv4_sign(r, example_keys, {"us-east-1", "sqs"}, vector_time)),
  };
  for (const auto& v : variants) {
    EXPECT_NE(v.substr(v.find("Signature=")), base.substr(base.find("Signature="))) << v;
  }
  // And back: the first signature again, not one left over from the last key.
  EXPECT_EQ(authorization(sigv4_sign(r, example_keys, example_scope, vector_time)), base);
}
