// The SQS JSON codec: message mapping, request bodies, response parsing, MD5s, error mapping.
#include "codec.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <limits>

#include "../../support/shown_text.hpp"
#include "digest.hpp"

using namespace qrt;
using namespace qrt::sqs::detail;
namespace json = boost::json;

namespace {
const auto now = std::chrono::system_clock::time_point{std::chrono::seconds(1'700'000'000)};
const fifo_defaults defaults{"default"};

json::object parse(const std::string& s) {
  return json::parse(s).as_object();
}
}  // namespace

TEST(SqsDigest, Base64RoundTripsEveryByteAndRejectsGarbage) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (std::size_t n : {0u, 1u, 2u, 3u, 4u, 255u, 256u}) {
    const auto part = all.substr(0, n);
    EXPECT_EQ(base64_decode(base64_encode(part)), part) << n;
  }
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_FALSE(base64_decode("Zm8"));   // not a multiple of 4
  EXPECT_FALSE(base64_decode("Z=8="));  // padding in the middle
  EXPECT_FALSE(base64_decode("Zm9v!mFy"));
}

TEST(SqsDigest, Md5MatchesKnownValues) {
  EXPECT_EQ(md5_of_body(""), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(md5_of_body("The quick brown fox jumps over the lazy dog"),
            "9e107d9d372bb6826bd81d3542a419d6");
}

// The check made per message compares exactly as md5_of_body(body) == text does: lower-case
// hex of 32 characters, nothing else.
TEST(SqsDigest, Md5ComparisonAgreesWithTheHexText) {
  const std::string body = "The quick brown fox jumps over the lazy dog";
  EXPECT_TRUE(md5_of_body_is(body, "9e107d9d372bb6826bd81d3542a419d6"));
  EXPECT_TRUE(md5_of_body_is("", "d41d8cd98f00b204e9800998ecf8427e"));
  EXPECT_FALSE(md5_of_body_is(body, "9E107D9D372BB6826BD81D3542A419D6"));   // upper case
  EXPECT_FALSE(md5_of_body_is(body, "9e107d9d372bb6826bd81d3542a419d"));    // one short
  EXPECT_FALSE(md5_of_body_is(body, "9e107d9d372bb6826bd81d3542a419d60"));  // one long
  EXPECT_FALSE(md5_of_body_is(body, "9e107d9d372bb6826bd81d3542a419d7"));   // last digit
  EXPECT_FALSE(md5_of_body_is(body, ""));
  EXPECT_FALSE(md5_of_body_is(body + ".", "9e107d9d372bb6826bd81d3542a419d6"));
}

// Values SQS itself returned (and fauxqs agrees) for these attribute sets.
TEST(SqsDigest, AttributeMd5FollowsSqsAlgorithm) {
  EXPECT_EQ(md5_of_attributes({}), "");
  // Build the expected buffer by hand: length-prefixed name, type, transport byte, value.
  auto prefixed = [](std::string_view s) {
    std::string out(4, '\0');
    out[3] = static_cast<char>(s.size());
    return out + std::string(s);
  };
  std::string buf = prefixed("a") + prefixed("String") + '\x01' + prefixed("1") + prefixed("b") +
                    prefixed("Binary") + '\x02' + prefixed(std::string("\x00\xff", 2));
  wire_attributes attrs{{"b", {"Binary", std::string("\x00\xff", 2)}}, {"a", {"String", "1"}}};
  EXPECT_EQ(md5_of_attributes(attrs), hex(md5(buf)));
}

TEST(SqsCodec, ValidSqsTextFollowsTheAllowedRanges) {
  EXPECT_TRUE(is_valid_sqs_text("hello\t\r\n"));
  EXPECT_TRUE(is_valid_sqs_text("h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80"));
  EXPECT_FALSE(is_valid_sqs_text(std::string("a\0b", 3)));
  EXPECT_FALSE(is_valid_sqs_text("\x01"));
  EXPECT_FALSE(is_valid_sqs_text("\xff\xfe"));
  EXPECT_FALSE(is_valid_sqs_text("\xc0\xaf"));      // overlong '/'
  EXPECT_FALSE(is_valid_sqs_text("\xed\xa0\x80"));  // surrogate
  EXPECT_FALSE(is_valid_sqs_text("\xef\xbf\xbf"));  // U+FFFF
  EXPECT_FALSE(is_valid_sqs_text("\xe2\x98"));      // truncated
}

// The tag that marks a dead-letter queue as qrt's goes out with CreateQueue ("tags", lower case
// in SQS's JSON protocol) and is read back from ListQueueTags; an answer of another shape is an
// error, not an empty set of tags.
TEST(SqsCodec, QueueTagsGoOutWithCreateQueueAndAreReadBack) {
  const auto body = boost::json::parse(encode_create_queue("orders-dlq", {{"FifoQueue", "true"}},
                                                           {{"qrt:dead-letter-of", "orders"}}));
  EXPECT_EQ(body.at("tags").at("qrt:dead-letter-of").as_string(), "orders");
  EXPECT_EQ(body.at("Attributes").at("FifoQueue").as_string(), "true");
  EXPECT_FALSE(boost::json::parse(encode_create_queue("q", {})).as_object().contains("tags"));

  auto tags = decode_queue_tags(R"({"Tags":{"qrt:dead-letter-of":"orders","team":"x","n":3}})");
  ASSERT_TRUE(tags) << tags.error().to_string();
  EXPECT_EQ(tags->size(), 2u) << "a value that is not a string is skipped";
  EXPECT_EQ(tags->at("qrt:dead-letter-of"), "orders");
  auto none = decode_queue_tags("{}");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  auto garbage = decode_queue_tags("<html>");
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code, errc::protocol_error);
}

TEST(SqsCodec, TextMessageMapsFieldsToAttributes) {
  message m;
  m.body = "hello";
  m.attributes = {{"tenant", "acme"}};
  m.correlation_id = "corr-1";
  m.content_type = "text/plain";
  m.subject = "greeting";
  auto w = to_wire(m, false, defaults, now);
  ASSERT_TRUE(w) << w.error().to_string();
  EXPECT_EQ(w->body, "hello");
  EXPECT_EQ(w->attributes.at("tenant").value, "acme");
  EXPECT_EQ(w->attributes.at("qrt.correlation_id").value, "corr-1");
  EXPECT_EQ(w->attributes.at("qrt.content_type").value, "text/plain");
  EXPECT_EQ(w->attributes.at("qrt.subject").value, "greeting");
  EXPECT_TRUE(w->group_id.empty());
  EXPECT_TRUE(w->deduplication_id.empty());
  EXPECT_FALSE(w->delay_seconds);
}

TEST(SqsCodec, AnyAttributeNameAndValueRoundTrips) {
  message m;
  m.body = "x";
  m.attributes = {{"plain.name-1_x", "as is"},
                  {"a=b", "encoded name"},
                  {"key with spaces", ""},
                  {"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", "unicode"},
                  {"qrt.subject", "not the subject"},
                  {"AWS.thing", "not AWS's"},
                  {"bytes", std::string("\x00\x01\xff", 3)}};
  auto w = to_wire(m, false, defaults, now);
  ASSERT_TRUE(w) << w.error().to_string();
  EXPECT_EQ(w->attributes.count("plain.name-1_x"), 1u) << "valid names stay readable";
  EXPECT_EQ(w->attributes.count("qrt.subject"), 0u) << "users cannot forge reserved attributes";
  for (const auto& [name, a] : w->attributes) {
    EXPECT_TRUE(is_valid_attribute_name(name, true)) << name;
  }
  EXPECT_TRUE(w->attributes.at(*sqs_attribute_name("bytes")).is_binary());
  wire_received r;
  r.message_id = "m";
  r.body = w->body;
  r.attributes = w->attributes;
  auto back = from_wire(r);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(back->attributes, m.attributes);
  EXPECT_TRUE(back->subject.empty());
}

TEST(SqsCodec, BinaryBodyTravelsAsBase64AndComesBackExact) {
  message m;
  m.body = std::string("\x00\x01\xff\xfe binary", 11);
  auto w = to_wire(m, false, defaults, now);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->body, base64_encode(m.body));
  EXPECT_EQ(w->attributes.at("qrt.body_encoding").value, "base64");

  wire_received r;
  r.message_id = "id-1";
  r.receipt_handle = "rh";
  r.body = w->body;
  r.attributes = w->attributes;
  r.md5_of_body = md5_of_body(r.body);
  r.md5_of_attributes = md5_of_attributes(r.attributes);
  r.system_attributes = {{"ApproximateReceiveCount", "3"}, {"SentTimestamp", "1700000000123"}};
  ASSERT_TRUE(verify_checksums(r));
  auto back = from_wire(r);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->body, m.body);
  EXPECT_TRUE(back->attributes.empty()) << "reserved attributes must not leak to users";
  EXPECT_EQ(back->delivery_count, 3u);
  EXPECT_EQ(back->enqueued_time, time_point{std::chrono::milliseconds(1'700'000'000'123)});
  EXPECT_EQ(back->id, "id-1");
}

TEST(SqsCodec, ASentTimestampTheClockCannotHoldLeavesTheEnqueuedTimeUnset) {
  // Past year 2262 in milliseconds, or negative: converting it would wrap around.
  for (const char* sent : {"7753640039368432673", "9223372036854775807", "-1"}) {
    wire_received r;
    r.message_id = "id-1";
    r.body = "x";
    r.system_attributes = {{"SentTimestamp", sent}};
    auto m = from_wire(r);
    ASSERT_TRUE(m) << sent;
    EXPECT_EQ(m->enqueued_time, time_point{}) << sent;
  }
}

TEST(SqsCodec, FifoMessagesGetGroupAndDeduplicationIds) {
  message m;
  m.body = "x";
  m.session = session_id::from("customer-7");
  m.id = "order-42";
  auto w = to_wire(m, true, defaults, now);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->group_id, "customer-7");
  EXPECT_EQ(w->deduplication_id, "order-42");

  message plain;
  plain.body = "x";
  auto a = to_wire(plain, true, defaults, now);
  auto b = to_wire(plain, true, defaults, now);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->group_id, "default");
  EXPECT_FALSE(a->deduplication_id.empty());
  EXPECT_NE(a->deduplication_id, b->deduplication_id) << "equal bodies must not be deduplicated";
}

TEST(SqsCodec, ScheduledTimeBecomesDelayRoundedUp) {
  message m;
  m.body = "x";
  m.scheduled_enqueue_time = now + std::chrono::milliseconds(4'200);
  auto w = to_wire(m, false, defaults, now);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->delay_seconds, 5);
  m.scheduled_enqueue_time = now - std::chrono::seconds(3);
  EXPECT_FALSE(to_wire(m, false, defaults, now)->delay_seconds);
  m.scheduled_enqueue_time = now + std::chrono::seconds(901);
  EXPECT_EQ(to_wire(m, false, defaults, now).error().code, errc::invalid_argument);
  m.scheduled_enqueue_time = now + std::chrono::seconds(10);
  EXPECT_EQ(to_wire(m, true, defaults, now).error().code, errc::unsupported);
}

TEST(SqsCodec, RefusesWhatSqsWouldRejectWithAClearError) {
  message m;
  m.body = "x";
  m.attributes = {{std::string(200, '\xe2'), "v"}};  // 200 bytes: too long once encoded
  auto e = to_wire(m, false, defaults, now);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, errc::invalid_argument);
  EXPECT_NE(e.error().message.find("too long"), std::string::npos);

  m.attributes.clear();
  for (int i = 0; i < 10; ++i) m.attributes["a" + std::to_string(i)] = "v";
  m.correlation_id = "c";  // the 11th attribute
  e = to_wire(m, false, defaults, now);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("at most 10"), std::string::npos);

  message ttl;
  ttl.body = "x";
  ttl.time_to_live = std::chrono::seconds(5);
  EXPECT_EQ(to_wire(ttl, false, defaults, now).error().code, errc::unsupported);

  message session;
  session.body = "x";
  session.session = session_id::from("s");
  EXPECT_EQ(to_wire(session, false, defaults, now).error().code, errc::invalid_argument);

  message empty;
  EXPECT_EQ(to_wire(empty, false, defaults, now).error().code, errc::invalid_argument);
}

TEST(SqsCodec, SendBatchRequestShape) {
  wire_message a;
  a.body = "one";
  a.attributes = {{"k", {"String", "v"}}, {"bin", {"Binary", std::string("\x00\x01", 2)}}};
  wire_message b;
  b.body = "two";
  b.group_id = "g";
  b.deduplication_id = "d";
  b.delay_seconds = 7;
  auto o = parse(encode_send_message_batch("http://q", {{"0", a}, {"1", b}}));
  EXPECT_EQ(o.at("QueueUrl"), "http://q");
  const auto& entries = o.at("Entries").as_array();
  ASSERT_EQ(entries.size(), 2u);
  const auto& e0 = entries[0].as_object();
  EXPECT_EQ(e0.at("Id"), "0");
  EXPECT_EQ(e0.at("MessageBody"), "one");
  EXPECT_EQ(e0.at("MessageAttributes").at("k").at("DataType"), "String");
  EXPECT_EQ(e0.at("MessageAttributes").at("k").at("StringValue"), "v");
  EXPECT_EQ(e0.at("MessageAttributes").at("bin").at("BinaryValue"), "AAE=");
  EXPECT_FALSE(e0.contains("MessageGroupId"));
  const auto& e1 = entries[1].as_object();
  EXPECT_EQ(e1.at("MessageGroupId"), "g");
  EXPECT_EQ(e1.at("MessageDeduplicationId"), "d");
  EXPECT_EQ(e1.at("DelaySeconds"), 7);
}

TEST(SqsCodec, ReceiveRequestAsksForAllAttributes) {
  receive_request r{"http://q", 10, 20, 300, "attempt-1"};
  auto o = parse(encode_receive_message(r));
  EXPECT_EQ(o.at("MaxNumberOfMessages"), 10);
  EXPECT_EQ(o.at("WaitTimeSeconds"), 20);
  EXPECT_EQ(o.at("VisibilityTimeout"), 300);
  EXPECT_EQ(o.at("ReceiveRequestAttemptId"), "attempt-1");
  EXPECT_EQ(o.at("MessageSystemAttributeNames").as_array().at(0), "All");
  EXPECT_EQ(o.at("MessageAttributeNames").as_array().at(0), "All");
  receive_request plain{"http://q", 1, 0, std::nullopt, ""};
  auto p = parse(encode_receive_message(plain));
  EXPECT_FALSE(p.contains("VisibilityTimeout"));
  EXPECT_FALSE(p.contains("ReceiveRequestAttemptId"));
}

TEST(SqsCodec, DecodesReceiveAnswerAndVerifiesChecksums) {
  const std::string body = R"({"Messages":[{"MessageId":"m1","ReceiptHandle":"rh1","Body":"hello",
    "MD5OfBody":"5d41402abc4b2a76b9719d911017c592",
    "Attributes":{"ApproximateReceiveCount":"2","SentTimestamp":"1700000000000","MessageGroupId":"g1",
                  "SequenceNumber":"18849496460467696128"},
    "MessageAttributes":{"tenant":{"DataType":"String","StringValue":"acme"},
                         "qrt.dead_letter_reason":{"DataType":"String","StringValue":"poison"}},
    "MD5OfMessageAttributes":"PLACEHOLDER"}]})";
  wire_attributes attrs{{"tenant", {"String", "acme"}},
                        {"qrt.dead_letter_reason", {"String", "poison"}}};
  std::string fixed = body;
  fixed.replace(fixed.find("PLACEHOLDER"), 11, md5_of_attributes(attrs));
  auto msgs = decode_receive_message(fixed);
  ASSERT_TRUE(msgs) << msgs.error().to_string();
  ASSERT_EQ(msgs->size(), 1u);
  const auto& w = msgs->front();
  EXPECT_TRUE(verify_checksums(w));
  auto m = from_wire(w);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->body, "hello");
  EXPECT_EQ(m->delivery_count, 2u);
  EXPECT_EQ(m->attributes.at("tenant"), "acme");
  ASSERT_TRUE(m->dead_letter);
  EXPECT_EQ(m->dead_letter->reason, "poison");
  ASSERT_TRUE(m->session);
  EXPECT_EQ(m->session->str(), "g1");
  EXPECT_EQ(m->sequence_number, 0) << "a sequence number past int64 must not wrap";

  auto tampered = w;
  tampered.body = "hellO";
  auto e = verify_checksums(tampered);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, errc::protocol_error);
  tampered = w;
  tampered.attributes["tenant"].value = "evil";
  EXPECT_FALSE(verify_checksums(tampered));
}

TEST(SqsCodec, EmptyReceiveIsNoMessages) {
  EXPECT_TRUE(decode_receive_message("{}")->empty());
  EXPECT_TRUE(decode_receive_message(R"({"Messages":[]})")->empty());
}

TEST(SqsCodec, GarbageAnswersAreProtocolErrorsNotCrashes) {
  for (std::string_view junk :
       {"not json", "[1,2]", R"({"Messages":5})", R"({"Messages":[{"Body":1}]})",
        R"({"Messages":[{"MessageId":"m","Body":"b"}]})",
        R"({"Messages":[{"MessageId":"m","ReceiptHandle":"","Body":"b"}]})", "\xff\xfe"}) {
    auto r = decode_receive_message(junk);
    ASSERT_FALSE(r) << junk;
    EXPECT_EQ(r.error().code, errc::protocol_error);
  }
  EXPECT_FALSE(decode_send_message(R"({"MD5OfMessageBody":"x"})"));
  EXPECT_FALSE(decode_batch_result(R"({"Successful":{}})"));
  EXPECT_FALSE(decode_queue_url("{}"));
}

TEST(SqsCodec, BatchResultSeparatesSuccessAndFailure) {
  auto r =
      decode_batch_result(R"({"Successful":[{"Id":"0","MessageId":"m0","MD5OfMessageBody":"x"}],
    "Failed":[{"Id":"1","Code":"InternalError","Message":"try again","SenderFault":false}]})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->successful.at("0").message_id, "m0");
  EXPECT_EQ(r->failed.at("1").code, "InternalError");
  EXPECT_FALSE(r->failed.at("1").sender_fault);
  auto del = decode_batch_result(R"({"Successful":[{"Id":"3"}]})");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->successful.count("3"), 1u);
}

TEST(SqsErrors, CodesMapOntoQrtErrors) {
  auto e = decode_error(
      400,
      R"({"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."})",
      "AWS.SimpleQueueService.NonExistentQueue;Sender", "");
  EXPECT_EQ(e.code, errc::queue_not_found);
  EXPECT_EQ(e.provider_code, "QueueDoesNotExist");
  EXPECT_EQ(e.kind, error_kind::permanent);

  e = decode_error(
      400, R"({"__type":"com.amazonaws.sqs#ThrottlingException","message":"slow down"})", "", "2");
  EXPECT_EQ(e.code, errc::throttled);
  EXPECT_EQ(e.kind, error_kind::throttled);
  EXPECT_EQ(e.retry_after, std::chrono::milliseconds(2000));
  // A huge Retry-After neither overflows nor parks the caller for ages: it is capped.
  for (const char* huge : {"7753640039368432673", "9223372036854775807", "86400"}) {
    e = decode_error(503, "", "", huge);
    EXPECT_EQ(e.retry_after, max_retry_after_header) << huge;
  }
  EXPECT_EQ(decode_error(429, "", "", "").code, errc::throttled);
  EXPECT_EQ(decode_error(503, "<html>", "", "").code, errc::throttled);
  EXPECT_EQ(map_error("RequestThrottled", "", 400).code, errc::throttled);

  EXPECT_EQ(map_error("ReceiptHandleIsInvalid", "bad", 400).code, errc::invalid_receipt);
  EXPECT_EQ(
      map_error(
          "InvalidParameterValue",
          "Value x for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.",
          400)
          .code,
      errc::receipt_expired);
  EXPECT_EQ(map_error("AccessDenied", "no", 403).code, errc::permission);
  EXPECT_EQ(map_error("SignatureDoesNotMatch", "no", 403).code, errc::permission);
  EXPECT_EQ(
      map_error(
          "InvalidParameterValue",
          "One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.",
          400)
          .code,
      errc::message_too_large);
  EXPECT_EQ(map_error("BatchRequestTooLong", "", 400).code, errc::message_too_large);
  EXPECT_EQ(map_error("InvalidAttributeName", "", 400).code, errc::invalid_argument);

  e = decode_error(500, "garbage", "", "");
  EXPECT_EQ(e.code, errc::provider_error);
  EXPECT_EQ(e.kind, error_kind::transient);
  EXPECT_NE(e.message.find("500"), std::string::npos);
}

// A server's error text reaches error::message and error::provider_code, and from there logs and
// the CLI's terminal: whatever bytes the server sent, both are valid UTF-8 without control
// characters. Before, bytes from 0x80 up went through as they were: a C1 control (sent escaped
// in JSON as \u009b, or raw in the x-amzn-query-error header), malformed UTF-8, or a character
// cut in half at the 512-byte limit.
TEST(SqsErrors, AServersHostileBytesReachTheErrorFitToShow) {
  auto e = decode_error(
      400, R"({"__type":"Bad\u009bCode\u001b","message":"caf\u00e9 \u009b31m \u001b[2J"})", "", "");
  EXPECT_TRUE(qrt::test::fit_to_show(e.message)) << e.message;
  EXPECT_TRUE(qrt::test::fit_to_show(e.provider_code)) << e.provider_code;
  EXPECT_NE(e.message.find("caf\xc3\xa9"), std::string::npos) << e.message;

  e = decode_error(400, "", std::string(qrt::test::hostile_text) + ";Sender", "");
  EXPECT_TRUE(qrt::test::fit_to_show(e.message)) << e.message;
  EXPECT_TRUE(qrt::test::fit_to_show(e.provider_code)) << e.provider_code;
  // A batch entry's failure is mapped by map_error, with the entry's code and message.
  e = map_error(qrt::test::hostile_text, qrt::test::hostile_text, 400);
  EXPECT_TRUE(qrt::test::fit_to_show(e.message)) << e.message;
  EXPECT_TRUE(qrt::test::fit_to_show(e.provider_code)) << e.provider_code;

  // 511 bytes, then a two-byte character the 512-byte limit would cut in half.
  e = decode_error(400,
                   R"({"__type":"X","message":")" + std::string(511, 'a') + "\xc3\xa9" +
                       std::string(100, 'b') + R"("})",
                   "", "");
  EXPECT_TRUE(qrt::test::fit_to_show(e.message)) << e.message;
  EXPECT_NE(e.message.find(std::string(511, 'a') + "... (102 more bytes)"), std::string::npos)
      << e.message;
}

TEST(SqsErrors, NormalizesTypeNames) {
  EXPECT_EQ(normalize_error_code("com.amazonaws.sqs#QueueDoesNotExist"), "QueueDoesNotExist");
  EXPECT_EQ(normalize_error_code("ThrottlingException:http://internal"), "ThrottlingException");
  EXPECT_EQ(normalize_error_code("", "AWS.SimpleQueueService.NonExistentQueue;Sender"),
            "AWS.SimpleQueueService.NonExistentQueue");
}

// A message another client sent in a form qrt cannot decode is refused on its own, with a
// reason that names the problem; the verbatim reading keeps every byte for a dead-letter queue.
TEST(SqsCodec, UndecodableMessagesAreRefusedAloneAndReadableVerbatim) {
  wire_received gzip;
  gzip.message_id = "m-gzip";
  gzip.receipt_handle = "rh";
  gzip.body = "H4sIAAAAAAAAA8tIzcnJBwCGphA2BQAAAA==";
  gzip.attributes = {{"qrt.body_encoding", {"String", "gzip"}},
                     {"tenant", {"String", "acme"}},
                     {"qrt.dead_letter_reason", {"String", "UndecodableMessage"}}};
  gzip.system_attributes = {{"ApproximateReceiveCount", "3"}};
  auto refused = from_wire(gzip);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::protocol_error);
  EXPECT_NE(refused.error().message.find("m-gzip"), std::string::npos);
  EXPECT_NE(refused.error().message.find("'gzip'"), std::string::npos);

  auto verbatim = from_wire_verbatim(gzip);
  EXPECT_EQ(verbatim.body, gzip.body);
  EXPECT_EQ(verbatim.attributes.at("qrt.body_encoding"), "gzip");
  EXPECT_EQ(verbatim.attributes.at("tenant"), "acme");
  EXPECT_EQ(verbatim.attributes.count("qrt.dead_letter_reason"), 0u);
  ASSERT_TRUE(verbatim.dead_letter);
  EXPECT_EQ(verbatim.dead_letter->reason, "UndecodableMessage");
  EXPECT_EQ(verbatim.delivery_count, 3u);

  wire_received bad_name;
  bad_name.message_id = "m-name";
  bad_name.body = "text";
  bad_name.attributes = {{"qrt.k.A", {"String", "v"}}};  // one base64url character: no byte
  auto r = from_wire(bad_name);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("malformed encoded attribute name 'qrt.k.A'"),
            std::string::npos);
  EXPECT_EQ(from_wire_verbatim(bad_name).attributes.at("qrt.k.A"), "v");

  // An untrusted value quoted in a reason is cut short and stripped of control characters.
  wire_received long_encoding = gzip;
  long_encoding.attributes["qrt.body_encoding"].value = std::string(10'000, 'z') + "\n";
  auto long_r = from_wire(long_encoding);
  ASSERT_FALSE(long_r);
  EXPECT_LT(long_r.error().message.size(), 200u);
  EXPECT_EQ(long_r.error().message.find('\n'), std::string::npos);
}

TEST(SqsCodec, OneMalformedMessageInAnAnswerDoesNotCostTheOthers) {
  const std::string body = R"({"Messages":[
    {"MessageId":"a","ReceiptHandle":"ra","Body":"first"},
    {"MessageId":"b","ReceiptHandle":"rb","Body":"second",
     "MessageAttributes":{"x":{"DataType":"Binary","BinaryValue":"***"}}},
    {"MessageId":"c","ReceiptHandle":"rc","Body":7},
    {"MessageId":"d","ReceiptHandle":"rd","Body":"last"}]})";
  auto msgs = decode_receive_message(body);
  ASSERT_TRUE(msgs) << msgs.error().to_string();
  ASSERT_EQ(msgs->size(), 4u);
  EXPECT_TRUE((*msgs)[0].problem.empty());
  EXPECT_EQ((*msgs)[0].body, "first");
  EXPECT_NE((*msgs)[1].problem.find("not valid base64"), std::string::npos);
  EXPECT_EQ((*msgs)[1].receipt_handle, "rb") << "kept so the message can be released";
  EXPECT_NE((*msgs)[2].problem.find("non-string 'Body'"), std::string::npos);
  EXPECT_TRUE((*msgs)[3].problem.empty());
  EXPECT_EQ((*msgs)[3].body, "last");
}

TEST(SqsCodec, HostileAnswersAreBoundedProtocolErrors) {
  // Nesting far beyond any SQS answer is refused by the parser's depth limit.
  const std::string deep =
      R"({"Messages":)" + std::string(100'000, '[') + std::string(100'000, ']') + "}";
  auto r = decode_receive_message(deep);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::protocol_error);
  EXPECT_FALSE(decode_queue_attributes(R"({"Attributes":)" + std::string(5'000, '[') + "}"));

  // More messages than SQS ever returns for one receive.
  std::string many = R"({"Messages":[)";
  for (int i = 0; i < 11; ++i) {
    many += std::string(i ? "," : "") + R"({"MessageId":"m)" + std::to_string(i) +
            R"(","ReceiptHandle":"r","Body":"b"})";
  }
  many += "]}";
  auto too_many = decode_receive_message(many);
  ASSERT_FALSE(too_many);
  EXPECT_NE(too_many.error().message.find("11 messages"), std::string::npos);

  // System attributes out of range are ignored, never overflowed.
  wire_received w;
  w.message_id = "m";
  w.body = "b";
  w.system_attributes = {{"SentTimestamp", "9223372036854775807"},
                         {"ApproximateReceiveCount", "99999999999"}};
  auto m = from_wire(w);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->enqueued_time, time_point{});
  EXPECT_EQ(m->delivery_count, std::numeric_limits<std::uint32_t>::max());
}

TEST(SqsErrors, RetryAfterIsBoundedAndNeverOverflows) {
  using std::chrono::seconds;
  EXPECT_EQ(parse_retry_after("5"), seconds(5));
  EXPECT_EQ(parse_retry_after(" 7\t"), seconds(7));
  EXPECT_EQ(parse_retry_after("0"), seconds(0));
  EXPECT_EQ(parse_retry_after("60"), max_retry_after_header);
  EXPECT_EQ(parse_retry_after("61"), max_retry_after_header);
  EXPECT_EQ(parse_retry_after("9223372036854775807"), max_retry_after_header);
  EXPECT_EQ(parse_retry_after(std::string(400, '9')), max_retry_after_header);
  for (std::string_view ignored : {"", " ", "-1", "-9223372036854775808", "1.5", "5abc", "abc",
                                   "Wed, 21 Oct 2015 07:28:00 GMT", "+5", "0x10"}) {
    EXPECT_EQ(parse_retry_after(ignored), std::nullopt) << ignored;
  }
  auto e = decode_error(503, "", "", "99999999999999999999999");
  ASSERT_TRUE(e.retry_after);
  EXPECT_EQ(*e.retry_after, max_retry_after_header);
  EXPECT_FALSE(decode_error(503, "", "", "Fri, 31 Dec 1999 23:59:59 GMT").retry_after);
}

TEST(SqsErrors, AHugeServerMessageIsCut) {
  const std::string body =
      R"({"__type":"InternalError","message":")" + std::string(1'000'000, 'x') + "\"}";
  auto e = decode_error(500, body, "", "");
  EXPECT_LT(e.message.size(), 1'000u);
  EXPECT_EQ(e.provider_code, "InternalError");
}

// The digests qrt computes itself (HMAC over a fetched SHA-256) against published test vectors:
// RFC 4231 cases 2 (a short key) and 6 (a key longer than the block, hashed first), and the
// RFC 1321 MD5 of "abc".
TEST(SqsDigest, HmacSha256AndMd5MatchTheirPublishedTestVectors) {
  EXPECT_EQ(hex(hmac_sha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(hex(hmac_sha256(std::string(131, '\xaa'),
                            "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  EXPECT_EQ(hex(md5("abc")), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(hex(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// The request bodies are written directly; they must be byte for byte what serializing the
// same JSON object gives (the form qrt sent before, and what SQS and the signature see).
namespace {

json::object reference_attributes(const wire_attributes& attributes) {
  json::object out;
  for (const auto& [name, a] : attributes) {
    json::object v;
    v["DataType"] = a.data_type;
    if (a.is_binary()) {
      v["BinaryValue"] = base64_encode(a.value);
    } else {
      v["StringValue"] = a.value;
    }
    out[name] = std::move(v);
  }
  return out;
}

void reference_message_fields(json::object& o, const wire_message& m) {
  o["MessageBody"] = m.body;
  if (!m.attributes.empty()) o["MessageAttributes"] = reference_attributes(m.attributes);
  if (m.delay_seconds) o["DelaySeconds"] = *m.delay_seconds;
  if (!m.group_id.empty()) o["MessageGroupId"] = m.group_id;
  if (!m.deduplication_id.empty()) o["MessageDeduplicationId"] = m.deduplication_id;
}

wire_message awkward_message() {
  wire_message m;
  m.body =
      std::string("quote \" backslash \\ tab \t newline \n nul ") + '\0' + " \x1f caf\xc3\xa9 /";
  m.attributes["tenant"] = wire_attribute{"String", "a\"b"};
  m.attributes["blob"] = wire_attribute{"Binary", std::string("\x00\xff\x10", 3)};
  m.attributes["n"] = wire_attribute{"Number", "-12.5"};
  m.attributes["e"] = wire_attribute{std::string(empty_value_type), "x"};
  m.delay_seconds = 900;
  m.group_id = "g\\1";
  m.deduplication_id = "d\n";
  return m;
}

}  // namespace

TEST(SqsCodec, RequestBodiesAreWhatSerializingTheObjectGives) {
  const std::string url = "http://127.0.0.1:4566/000000000000/q\"\\";
  for (const auto& m : {wire_message{}, wire_message{"plain", {}, {}, {}, std::nullopt},
                        wire_message{"", {}, {}, {}, std::int64_t{-3}}, awkward_message()}) {
    json::object one;
    one["QueueUrl"] = url;
    reference_message_fields(one, m);
    EXPECT_EQ(encode_send_message(url, m), json::serialize(one));

    const std::vector<batch_send_entry> entries{{"0", m}, {"id\"1", awkward_message()}};
    json::object batch;
    batch["QueueUrl"] = url;
    json::array list;
    for (const auto& e : entries) {
      json::object entry;
      entry["Id"] = e.id;
      reference_message_fields(entry, e.message);
      list.push_back(std::move(entry));
    }
    batch["Entries"] = std::move(list);
    EXPECT_EQ(encode_send_message_batch(url, entries), json::serialize(batch));
  }
  EXPECT_EQ(encode_send_message_batch(url, {}),
            json::serialize(json::object{{"QueueUrl", url}, {"Entries", json::array{}}}));

  for (const bool visibility : {false, true}) {
    receive_request r;
    r.queue_url = url;
    r.max_messages = 7;
    r.wait_time_seconds = 20;
    if (visibility) {
      r.visibility_timeout = 43'200;
      r.receive_request_attempt_id = "attempt\"1";
    }
    json::object o;
    o["QueueUrl"] = r.queue_url;
    o["MaxNumberOfMessages"] = r.max_messages;
    o["WaitTimeSeconds"] = r.wait_time_seconds;
    if (r.visibility_timeout) o["VisibilityTimeout"] = *r.visibility_timeout;
    o["AttributeNames"] = json::array{"All"};
    o["MessageSystemAttributeNames"] = json::array{"All"};
    o["MessageAttributeNames"] = json::array{"All"};
    if (!r.receive_request_attempt_id.empty()) {
      o["ReceiveRequestAttemptId"] = r.receive_request_attempt_id;
    }
    EXPECT_EQ(encode_receive_message(r), json::serialize(o));
  }

  const std::vector<receipt_entry> receipts{{"0", "handle+/=\"\\\x01", 0}, {"9", "h", 0}};
  json::array list;
  for (const auto& e : receipts)
    list.push_back(json::object{{"Id", e.id}, {"ReceiptHandle", e.receipt_handle}});
  EXPECT_EQ(encode_delete_message_batch(url, receipts),
            json::serialize(json::object{{"QueueUrl", url}, {"Entries", std::move(list)}}));
}
