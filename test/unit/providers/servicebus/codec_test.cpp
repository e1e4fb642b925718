// Service Bus codecs without sockets: connection strings, SAS tokens, lock tokens, ticks,
// $management bodies and error mapping.
#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <proton/annotation_key.hpp>
#include <proton/binary.hpp>
#include <proton/codec/encoder.hpp>
#include <proton/codec/map.hpp>
#include <proton/codec/vector.hpp>
#include <proton/message_id.hpp>
#include <proton/null.hpp>
#include <proton/timestamp.hpp>
#include <proton/uuid.hpp>
#include <proton/value.hpp>
#include <qrt/processor.hpp>

#include "../../support/shown_text.hpp"
#include "amqp/message_codec.hpp"
#include "connection_string.hpp"
#include "management.hpp"
#include "sas.hpp"
#include "wire.hpp"

namespace sb = qrt::servicebus::detail;
using qrt::errc;

namespace {

TEST(ServiceBusConnectionString, ParsesEveryField) {
  auto cs = sb::parse_connection_string(
      "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
      "SharedAccessKey=abc+/def==;EntityPath=orders");
  ASSERT_TRUE(cs) << cs.error().to_string();
  EXPECT_EQ(cs->host, "contoso.servicebus.windows.net");
  EXPECT_EQ(cs->port, 5671);
  EXPECT_TRUE(cs->use_tls);
  EXPECT_EQ(cs->key_name, "RootManageSharedAccessKey");
  EXPECT_EQ(cs->key, "abc+/def==");  // '=' inside a value is kept
  EXPECT_EQ(cs->entity_path, "orders");
  EXPECT_EQ(cs->audience("orders"), "sb://contoso.servicebus.windows.net/orders");
}

TEST(ServiceBusConnectionString, DevelopmentEmulatorIsPlainTcpOn5672UnlessAPortIsGiven) {
  auto local = sb::parse_connection_string(
      "Endpoint=sb://"
      "localhost;SharedAccessKeyName=x;SharedAccessKey=y;UseDevelopmentEmulator=true");
  ASSERT_TRUE(local);
  EXPECT_FALSE(local->use_tls);
  EXPECT_EQ(local->port, 5672);
  auto peer = sb::parse_connection_string(
      "endpoint=sb://127.0.0.1:40123/"
      ";sharedaccesskeyname=x;sharedaccesskey=y;usedevelopmentemulator=TRUE");
  ASSERT_TRUE(peer);
  EXPECT_EQ(peer->port, 40123);
  EXPECT_EQ(peer->audience("q/$management"), "sb://127.0.0.1:40123/q/$management");
}

TEST(ServiceBusConnectionString, AcceptsASharedAccessSignatureInsteadOfAKey) {
  auto cs = sb::parse_connection_string(
      "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature "
      "sr=a&sig=b&se=1&skn=k");
  ASSERT_TRUE(cs);
  EXPECT_EQ(cs->shared_access_signature, "SharedAccessSignature sr=a&sig=b&se=1&skn=k");
  EXPECT_TRUE(cs->key.empty());
}

TEST(ServiceBusConnectionString, ErrorsNameTheFieldAndNeverEchoTheKey) {
  struct bad_case {
    const char* text;
    const char* names;
  };
  const bad_case cases[] = {
      {"SharedAccessKeyName=x;SharedAccessKey=s3cr3t-key", "Endpoint is missing"},
      {"Endpoint=http://ns/;SharedAccessKeyName=x;SharedAccessKey=s3cr3t-key", "Endpoint scheme"},
      {"Endpoint=sb://ns:99999/;SharedAccessKeyName=x;SharedAccessKey=s3cr3t-key", "port"},
      {"Endpoint=sb://ns/;SharedAccessKey=s3cr3t-key", "SharedAccessKeyName"},
      {"Endpoint=sb://ns/;SharedAccessKeyName=x", "SharedAccessKey is missing"},
      {"Endpoint=sb://ns/;SharedAccessKeyName=x;SharedAccessKey=s3cr3t-key;Colour=blue", "Colour"},
      {"Endpoint=sb://ns/"
       ";SharedAccessKeyName=x;SharedAccessKey=s3cr3t-key;UseDevelopmentEmulator=yes",
       "UseDevelopmentEmulator"},
      {"Endpoint=sb://ns/;SharedAccessKeyName=x;SharedAccessKey=s3cr3t-key;"
       "SharedAccessSignature=SharedAccessSignature sr=s3cr3t-key",
       "not both"},
      {"Endpoint=sb://ns/;SharedAccessSignature=s3cr3t-key", "SharedAccessSignature must start"},
      {"Endpoint=sb://ns/;s3cr3t-key;SharedAccessKeyName=x", "Name=value"},
  };
  for (const auto& c : cases) {
    auto r = sb::parse_connection_string(c.text);
    ASSERT_FALSE(r) << c.text;
    EXPECT_EQ(r.error().code, errc::configuration_error);
    EXPECT_NE(r.error().message.find(c.names), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.find("s3cr3t"), std::string::npos) << r.error().message;
  }
}

TEST(ServiceBusSas, UrlEncodesLikeEncodeUriComponent) {
  EXPECT_EQ(sb::url_encode("sb://ns.servicebus.windows.net/q/$DeadLetterQueue"),
            "sb%3A%2F%2Fns.servicebus.windows.net%2Fq%2F%24DeadLetterQueue");
  EXPECT_EQ(sb::url_encode("a+b=c/d -_.!~*'()"), "a%2Bb%3Dc%2Fd%20-_.!~*'()");
}

TEST(ServiceBusSas, Base64MatchesRfc4648Vectors) {
  EXPECT_EQ(sb::base64_encode(""), "");
  EXPECT_EQ(sb::base64_encode("f"), "Zg==");
  EXPECT_EQ(sb::base64_encode("fo"), "Zm8=");
  EXPECT_EQ(sb::base64_encode("foo"), "Zm9v");
  EXPECT_EQ(sb::base64_encode("foobar"), "Zm9vYmFy");
}

TEST(ServiceBusSas, TokenMatchesAnIndependentlyComputedSignature) {
  // Computed with python3 (hmac, hashlib.sha256, base64, urllib.parse.quote with the
  // encodeURIComponent safe set) over
  // "sb%3A%2F%2Fmynamespace.servicebus.windows.net%2Forders\n1700000000" keyed with the UTF-8 bytes
  // of the key string.
  const std::string key = "dGhpcyBpcyBhIHRlc3Qga2V5IG5vdCBhIHJlYWwgb25lPQ==";
  const auto expiry = std::chrono::system_clock::time_point{std::chrono::seconds{1700000000}};
  EXPECT_EQ(
      sb::make_sas_token("sb://mynamespace.servicebus.windows.net/orders",
                         "RootManageSharedAccessKey", key, expiry + std::chrono::milliseconds(999)),
      "SharedAccessSignature sr=sb%3A%2F%2Fmynamespace.servicebus.windows.net%2Forders"
      "&sig=gFdpzNw4bVD0M%2BaLeeMbTGuZfXTwrFDST7z2u11aJO8%3D&se=1700000000&skn="
      "RootManageSharedAccessKey");
  EXPECT_EQ(sb::sas_token_expiry("SharedAccessSignature sr=x&sig=y&se=1700000000&skn=k", {}),
            expiry);
}

TEST(ServiceBusSas, AnExpiryTheClockCannotHoldIsTheFallbackNotAWrappedTime) {
  // A hand-made token's se is any number: one past the clock's range (year 2262) or negative
  // must not wrap into the past, which would make qrt put the token again on every call.
  const auto fallback = std::chrono::system_clock::time_point{std::chrono::seconds{1'800'000'000}};
  for (const char* se : {"99999999999", "9223372036854775807", "-5"}) {
    const std::string token = std::string("SharedAccessSignature sr=x&sig=y&se=") + se + "&skn=k";
    EXPECT_EQ(sb::sas_token_expiry(token, fallback), fallback) << se;
  }
  const auto far = std::chrono::system_clock::time_point{std::chrono::seconds{9'000'000'000}};
  EXPECT_EQ(sb::sas_token_expiry("SharedAccessSignature sr=x&sig=y&se=9000000000", fallback), far);
}

TEST(ServiceBusSas, HmacSha256MatchesRfc4231TestCase2) {
  const auto mac = sb::hmac_sha256("Jefe", "what do ya want for nothing?");
  std::string hex;
  for (unsigned char c : mac) {
    static constexpr char digits[] = "0123456789abcdef";
    hex += digits[c >> 4];
    hex += digits[c & 15];
  }
  EXPECT_EQ(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(ServiceBusLockToken, DeliveryTagIsTheGuidInDotNetByteOrder) {
  // Guid("00112233-4455-6677-8899-aabbccddeeff").ToByteArray() in .NET.
  const std::uint8_t tag[16] = {0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66,
                                0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
  auto token = sb::lock_token_from_delivery_tag(tag);
  ASSERT_TRUE(token);
  EXPECT_EQ(*token, "00112233-4455-6677-8899-aabbccddeeff");
  auto back = sb::delivery_tag_from_lock_token(*token);
  ASSERT_TRUE(back);
  EXPECT_TRUE(std::equal(back->begin(), back->end(), std::begin(tag)));
  auto uuid = sb::uuid_from_lock_token("00112233-4455-6677-8899-AABBCCDDEEFF");
  ASSERT_TRUE(uuid);
  EXPECT_EQ((*uuid)[0], 0x00);
  EXPECT_EQ((*uuid)[3], 0x33);
  EXPECT_EQ(sb::lock_token_from_uuid(*uuid), "00112233-4455-6677-8899-aabbccddeeff");
}

TEST(ServiceBusLockToken, RejectsMalformedTokensAndTags) {
  const std::uint8_t short_tag[3] = {1, 2, 3};
  EXPECT_EQ(sb::lock_token_from_delivery_tag(short_tag).error().code, errc::protocol_error);
  for (const char* bad :
       {"", "not-a-guid", "00112233-4455-6677-8899-aabbccddeef",
        "00112233-4455-6677-8899-aabbccddeeffaa", "0011223344556677-8899-aabb-ccddeeff",
        "zz112233-4455-6677-8899-aabbccddeeff"}) {
    EXPECT_EQ(sb::uuid_from_lock_token(bad).error().code, errc::invalid_receipt) << bad;
  }
}

TEST(ServiceBusTicks, RoundTripAndKnownValues) {
  // 2000-01-01T00:00:00Z is 630822816000000000 ticks; the Unix epoch is 621355968000000000.
  EXPECT_EQ(sb::to_dotnet_ticks(qrt::time_point{}), 621355968000000000);
  const auto y2k = qrt::time_point{std::chrono::seconds{946684800}};
  EXPECT_EQ(sb::to_dotnet_ticks(y2k), 630822816000000000);
  EXPECT_EQ(sb::from_dotnet_ticks(630822816000000000), y2k);
  const auto t = qrt::time_point{std::chrono::microseconds{1700000000123456}};
  EXPECT_EQ(sb::from_dotnet_ticks(sb::to_dotnet_ticks(t)), t);
}

TEST(ServiceBusTicks, ExtremesSaturateInsteadOfWrapping) {
  // DateTime.MaxValue (9999-12-31T23:59:59.9999999Z) is past the nanosecond clock's year 2262.
  EXPECT_EQ(sb::from_dotnet_ticks(3'155'378'975'999'999'999), qrt::time_point::max());
  EXPECT_EQ(sb::from_dotnet_ticks(std::numeric_limits<std::int64_t>::max()),
            qrt::time_point::max());
  EXPECT_EQ(sb::from_dotnet_ticks(0), qrt::time_point::min());  // DateTime.MinValue, year 1
  EXPECT_EQ(sb::from_dotnet_ticks(std::numeric_limits<std::int64_t>::min()),
            qrt::time_point::min());
  // The last representable instant still converts exactly.
  const auto last = qrt::time_point{std::chrono::duration_cast<qrt::clock::duration>(
      std::chrono::duration_cast<std::chrono::microseconds>(
          qrt::time_point::max().time_since_epoch()))};
  EXPECT_EQ(sb::from_dotnet_ticks(sb::to_dotnet_ticks(last)), last);
}

TEST(ServiceBusConnectionString, DevelopmentEmulatorIsRefusedForAHostThatIsNotLoopback) {
  for (const char* host : {"localhost", "LOCALHOST", "127.0.0.1", "127.5.6.7", "[::1]"}) {
    auto cs = sb::parse_connection_string(std::string("Endpoint=sb://") + host +
                                          "/;SharedAccessKeyName=x;SharedAccessKey=y;"
                                          "UseDevelopmentEmulator=true");
    ASSERT_TRUE(cs) << host << ": " << cs.error().message;
    EXPECT_FALSE(cs->use_tls);
  }
  auto v6 = sb::parse_connection_string(
      "Endpoint=sb://[::1]:40123/;SharedAccessKeyName=x;SharedAccessKey=y;"
      "UseDevelopmentEmulator=true");
  ASSERT_TRUE(v6) << v6.error().message;
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 40123);
  EXPECT_EQ(v6->audience("q"), "sb://[::1]:40123/q");

  for (const char* host : {"contoso.servicebus.windows.net", "10.0.0.5", "128.0.0.1",
                           "127.0.0.1.example.com", "localhost.example.com", "[::2]"}) {
    auto cs = sb::parse_connection_string(std::string("Endpoint=sb://") + host +
                                          "/;SharedAccessKeyName=x;SharedAccessKey=s3cr3t-key;"
                                          "UseDevelopmentEmulator=true");
    ASSERT_FALSE(cs) << host << " was accepted with TLS off";
    EXPECT_EQ(cs.error().code, errc::configuration_error);
    EXPECT_NE(cs.error().message.find("UseDevelopmentEmulator"), std::string::npos)
        << cs.error().message;
    EXPECT_EQ(cs.error().message.find("s3cr3t"), std::string::npos) << cs.error().message;
  }
  // Without the flag any host is fine, with TLS.
  auto remote = sb::parse_connection_string(
      "Endpoint=sb://10.0.0.5/;SharedAccessKeyName=x;SharedAccessKey=y");
  ASSERT_TRUE(remote);
  EXPECT_TRUE(remote->use_tls);
}

// The IPv6 parser reads a C string: a NUL in the brackets must not end the address early and
// let the bytes after it in as host (found by fuzzing: the host did not survive printing back).
TEST(ServiceBusConnectionString, AnIpv6HostWithBytesAnAddressCannotHoldIsRefused) {
  for (const std::string& endpoint :
       {std::string("Endpoint=sb://[::\0]/;", 21), std::string("Endpoint=sb://[::1 ]/;"),
        std::string("Endpoint=sb://[::1\n]/;")}) {
    auto cs = sb::parse_connection_string(endpoint + "SharedAccessKeyName=x;SharedAccessKey=y");
    ASSERT_FALSE(cs) << "accepted host '" << cs->host << "'";
    EXPECT_EQ(cs.error().code, errc::configuration_error);
    EXPECT_NE(cs.error().message.find("not a valid IPv6 address"), std::string::npos)
        << cs.error().message;
  }
  auto plain = sb::parse_connection_string(
      "Endpoint=sb://[::1]:5671/;SharedAccessKeyName=x;SharedAccessKey=y");
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_EQ(plain->host, "::1");
}

TEST(ServiceBusConnectionString, AnEndpointWithAUserAndPasswordIsNeverEchoed) {
  for (const char* endpoint :
       {"sb://user:SECRETPW@ns.servicebus.windows.net/", "amqp://user:SECRETPW@127.0.0.1:5672/",
        "sb://SECRETPW@ns/", "sb://user:SECRETPW/", "sb://us!er:SECRETPW/", "SECRETPW://ns/",
        "sb://[SECRETPW]/", "sb://[::1]SECRETPW/"}) {
    auto cs = sb::parse_connection_string(std::string("Endpoint=") + endpoint +
                                          ";SharedAccessKeyName=x;SharedAccessKey=y");
    ASSERT_FALSE(cs) << endpoint;
    EXPECT_EQ(cs.error().code, errc::configuration_error);
    EXPECT_NE(cs.error().message.find("Endpoint"), std::string::npos) << cs.error().message;
    EXPECT_EQ(cs.error().message.find("SECRETPW"), std::string::npos) << cs.error().message;
  }
}

TEST(ServiceBusErrors, ConditionsMapOntoQrtErrors) {
  struct mapping {
    const char* condition;
    errc code;
  };
  for (auto [condition, code] : std::initializer_list<mapping>{
           {"amqp:not-found", errc::queue_not_found},
           {"com.microsoft:entity-not-found", errc::queue_not_found},
           {"com.microsoft:server-busy", errc::throttled},
           {"com.microsoft:message-lock-lost", errc::receipt_expired},
           {"com.microsoft:session-lock-lost", errc::session_lock_lost},
           {"com.microsoft:session-cannot-be-locked", errc::session_locked},
           {"amqp:unauthorized-access", errc::permission},
           {"com.microsoft:timeout", errc::timeout},
           {"amqp:link:message-size-exceeded", errc::message_too_large},
           {"amqp:connection:forced", errc::connection_failed},
           {"something:else", errc::provider_error}}) {
    const auto e = sb::error_from_condition(condition, "details", "queue 'orders'");
    EXPECT_EQ(e.code, code) << condition;
    EXPECT_EQ(e.provider_code, condition);
    EXPECT_NE(e.message.find("queue 'orders'"), std::string::npos);
  }
  const auto busy = sb::error_from_condition("com.microsoft:server-busy", "", "send");
  EXPECT_EQ(busy.kind, qrt::error_kind::throttled);
  EXPECT_TRUE(busy.retry_after.has_value());
  EXPECT_TRUE(sb::check_status(200, "", "", "op"));
  EXPECT_TRUE(sb::check_status(204, "", "", "op"));
  EXPECT_EQ(sb::check_status(410, "", "lock gone", "renew-lock").error().code,
            errc::receipt_expired);
  EXPECT_EQ(sb::check_status(401, "", "", "put-token").error().code, errc::permission);
  EXPECT_EQ(sb::check_status(500, "com.microsoft:session-lock-lost", "", "op").error().code,
            errc::session_lock_lost);
}

// The service's condition and description (a link's detach, a $management reply's status
// description) reach error::provider_code and the message as valid UTF-8 without control
// characters, whatever bytes the service sent. Before, bytes from 0x80 up went through as they
// were.
TEST(ServiceBusErrors, TheServicesHostileBytesReachTheErrorFitToShow) {
  const std::string hostile(qrt::test::hostile_text);
  const auto from_condition = sb::error_from_condition("com.microsoft:" + hostile, hostile, "send");
  EXPECT_TRUE(qrt::test::fit_to_show(from_condition.message)) << from_condition.message;
  EXPECT_TRUE(qrt::test::fit_to_show(from_condition.provider_code)) << from_condition.provider_code;
  const auto from_status = sb::check_status(500, "", hostile, "renew-lock");
  ASSERT_FALSE(from_status);
  EXPECT_TRUE(qrt::test::fit_to_show(from_status.error().message)) << from_status.error().message;

  proton::message reply;
  reply.properties().put("statusCode", 500);
  reply.properties().put("statusDescription", hostile);
  auto refused = sb::parse_renew_lock_response(reply, 1);
  ASSERT_FALSE(refused);
  EXPECT_TRUE(qrt::test::fit_to_show(refused.error().message)) << refused.error().message;
  EXPECT_NE(refused.error().message.find("caf\xc3\xa9"), std::string::npos);
}

std::map<std::string, proton::value> body_of(const proton::message& m) {
  std::map<std::string, proton::value> body;
  proton::get(m.body(), body);
  return body;
}

TEST(ServiceBusManagement, RenewLockCarriesUuidArrayAndLinkName) {
  const auto token = *sb::uuid_from_lock_token("00112233-4455-6677-8899-aabbccddeeff");
  const sb::uuid_bytes tokens[] = {token};
  const auto m = sb::renew_lock_request(tokens, "receiver-1");
  EXPECT_EQ(proton::get<std::string>(m.properties().get("operation")), "com.microsoft:renew-lock");
  EXPECT_EQ(proton::get<std::string>(m.properties().get("associated-link-name")), "receiver-1");
  EXPECT_EQ(proton::get<std::string>(m.properties().get("com.microsoft:tracking-id")).size(), 36u);
  const auto body = body_of(m);
  ASSERT_EQ(body.at("lock-tokens").type(), proton::ARRAY);
  std::vector<proton::uuid> uuids;
  proton::get(body.at("lock-tokens"), uuids);
  ASSERT_EQ(uuids.size(), 1u);
  EXPECT_TRUE(std::equal(uuids[0].begin(), uuids[0].end(), token.begin()));
}

TEST(ServiceBusManagement, PeekAndDispositionBodies) {
  const auto peek = body_of(sb::peek_request(42, 10, std::string("s-1")));
  EXPECT_EQ(proton::get<std::int64_t>(peek.at("from-sequence-number")), 42);
  EXPECT_EQ(proton::get<std::int32_t>(peek.at("message-count")), 10);
  EXPECT_EQ(proton::get<std::string>(peek.at("session-id")), "s-1");
  const sb::uuid_bytes tokens[] = {sb::uuid_bytes{}};
  const auto dispo =
      body_of(sb::update_disposition_request(tokens, "suspended", "Bad", "field x", std::nullopt));
  EXPECT_EQ(proton::get<std::string>(dispo.at("disposition-status")), "suspended");
  EXPECT_EQ(proton::get<std::string>(dispo.at("deadletter-reason")), "Bad");
  EXPECT_EQ(proton::get<std::string>(dispo.at("deadletter-description")), "field x");
  EXPECT_EQ(dispo.count("session-id"), 0u);
  const std::int64_t seqs[] = {7, 9};
  const auto cancel = body_of(sb::cancel_scheduled_request(seqs));
  std::vector<std::int64_t> got;
  proton::get(cancel.at("sequence-numbers"), got);
  EXPECT_EQ(got, (std::vector<std::int64_t>{7, 9}));
}

// Reads change nothing at the service; every other request may have, so one whose answer never
// comes fails as unconfirmed (docs/servicebus.md). An operation not known to be a read counts
// as a change: calling a read "maybe applied" costs a retry, the reverse a lost update.
TEST(ServiceBusManagement, OnlyReadsAreRequestsThatChangeNothing) {
  const sb::uuid_bytes tokens[] = {sb::uuid_bytes{}};
  const std::int64_t seqs[] = {7};
  struct named_request {
    proton::message request;
    std::string operation;
    bool changes_state;
  };
  std::vector<named_request> requests;
  requests.push_back({sb::peek_request(1, 1, std::nullopt), "com.microsoft:peek-message", false});
  requests.push_back(
      {sb::get_session_state_request("s", {}), "com.microsoft:get-session-state", false});
  requests.push_back({sb::enumerate_rules_request(16, 0), "com.microsoft:enumerate-rules", false});
  requests.push_back({sb::renew_lock_request(tokens, {}), "com.microsoft:renew-lock", true});
  requests.push_back(
      {sb::renew_session_lock_request("s", {}), "com.microsoft:renew-session-lock", true});
  requests.push_back({sb::set_session_state_request("s", std::string("x"), {}),
                      "com.microsoft:set-session-state", true});
  requests.push_back({sb::update_disposition_request(tokens, "completed", "", "", std::nullopt),
                      "com.microsoft:update-disposition", true});
  requests.push_back(
      {sb::cancel_scheduled_request(seqs), "com.microsoft:cancel-scheduled-message", true});
  requests.push_back({sb::schedule_request({}), "com.microsoft:schedule-message", true});
  requests.push_back({sb::receive_by_sequence_request(seqs, std::nullopt),
                      "com.microsoft:receive-by-sequence-number", true});
  requests.push_back(
      {sb::add_rule_request("r", qrt::subscription_filter{}), "com.microsoft:add-rule", true});
  requests.push_back({sb::remove_rule_request("r"), "com.microsoft:remove-rule", true});
  proton::message unknown;
  unknown.properties().put("operation", "com.microsoft:something-new");
  requests.push_back({unknown, "com.microsoft:something-new", true});
  for (const auto& r : requests) {
    SCOPED_TRACE(r.operation);
    const auto kind = sb::management_request_kind(r.request);
    EXPECT_EQ(kind.operation, r.operation);
    EXPECT_EQ(kind.changes_state, r.changes_state);
  }
}

proton::message reply(int status, std::map<std::string, proton::value> body,
                      const char* condition = nullptr) {
  proton::message m;
  m.properties().put("statusCode", status);
  if (condition) m.properties().put("errorCondition", proton::symbol(condition));
  m.body(body);
  return m;
}

// The service answers DateTime.MaxValue (and a peer may answer anything) as a lock's expiry:
// it must saturate, not wrap into the past (the processor would then renew in a loop).
TEST(ServiceBusManagement, RenewLockExpiriesSaturateAtTheClocksRange) {
  constexpr std::int64_t datetime_max_ms = 253'402'300'799'999;  // 9999-12-31T23:59:59.999Z
  const std::vector<proton::timestamp> stamps{
      proton::timestamp(datetime_max_ms),
      proton::timestamp(std::numeric_limits<std::int64_t>::max()),
      proton::timestamp(std::numeric_limits<std::int64_t>::min()), proton::timestamp(0),
      proton::timestamp(9'223'372'036'854)};  // the last millisecond the clock holds
  auto renewed =
      sb::parse_renew_lock_response(reply(200, {{"expirations", stamps}}), stamps.size());
  ASSERT_TRUE(renewed) << renewed.error().message;
  ASSERT_EQ(renewed->size(), stamps.size());
  EXPECT_EQ((*renewed)[0], qrt::time_point::max());
  EXPECT_GT((*renewed)[0], qrt::clock::now());
  EXPECT_EQ((*renewed)[1], qrt::time_point::max());
  EXPECT_EQ((*renewed)[2], qrt::time_point::min());
  EXPECT_EQ((*renewed)[3], qrt::time_point{});
  EXPECT_EQ((*renewed)[4], qrt::time_point{std::chrono::milliseconds{9'223'372'036'854}});

  auto session = sb::parse_renew_session_lock_response(
      reply(200, {{"expiration", proton::timestamp(datetime_max_ms)}}));
  ASSERT_TRUE(session) << session.error().message;
  EXPECT_EQ(*session, qrt::time_point::max());
}

TEST(ServiceBusManagement, ParsesRepliesAndTheirErrors) {
  const std::vector<proton::timestamp> stamps{proton::timestamp(1700000000123)};
  auto renewed = sb::parse_renew_lock_response(reply(200, {{"expirations", stamps}}), 1);
  ASSERT_TRUE(renewed);
  ASSERT_EQ(renewed->size(), 1u);
  EXPECT_EQ((*renewed)[0], qrt::time_point{std::chrono::milliseconds{1700000000123}});

  // DateTime.MaxValue (year 9999), as the service sends for a lock that does not expire, is past
  // what the clock holds: it saturates instead of wrapping around into the past.
  const proton::timestamp max_value(253402300799999);
  auto forever = sb::parse_renew_lock_response(
      reply(200, {{"expirations", std::vector<proton::timestamp>{max_value}}}), 1);
  ASSERT_TRUE(forever);
  EXPECT_EQ(forever->at(0), qrt::time_point::max());
  auto session_forever =
      sb::parse_renew_session_lock_response(reply(200, {{"expiration", max_value}}));
  ASSERT_TRUE(session_forever);
  EXPECT_EQ(*session_forever, qrt::time_point::max());

  auto lost = sb::parse_renew_lock_response(reply(410, {}, "com.microsoft:message-lock-lost"), 1);
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code, errc::receipt_expired);

  // The SDK and the service send sequence numbers as longs or as 8 big-endian bytes.
  std::vector<proton::value> seqs{
      proton::value(std::int64_t{5}),
      proton::value(proton::binary(std::string("\0\0\0\0\0\0\x01\x02", 8)))};
  auto scheduled = sb::parse_schedule_response(reply(200, {{"sequence-numbers", seqs}}), 2);
  ASSERT_TRUE(scheduled);
  EXPECT_EQ(*scheduled, (std::vector<std::int64_t>{5, 258}));

  auto empty = sb::parse_messages_response(reply(204, {}), 10);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());

  proton::message inner;
  inner.id(std::string("m-1"));
  inner.body(proton::binary(std::string("payload")));
  std::vector<char> encoded;
  inner.encode(encoded);
  const auto token = *sb::uuid_from_lock_token("00112233-4455-6677-8899-aabbccddeeff");
  proton::uuid u;
  std::copy(token.begin(), token.end(), u.begin());
  std::map<std::string, proton::value> entry{
      {"message", proton::binary(encoded.begin(), encoded.end())}, {"lock-token", u}};
  auto messages =
      sb::parse_messages_response(reply(200, {{"messages", std::vector<proton::value>{entry}}}), 1);
  ASSERT_TRUE(messages) << messages.error().to_string();
  ASSERT_EQ(messages->size(), 1u);
  EXPECT_EQ((*messages)[0].message.message.id, "m-1");
  EXPECT_EQ((*messages)[0].message.message.body, "payload");
  ASSERT_TRUE((*messages)[0].lock_token);
  EXPECT_EQ(*(*messages)[0].lock_token, token);
  EXPECT_FALSE((*messages)[0].undecodable);

  // One entry that is not an AMQP message does not fail the reply: it is kept with its reason,
  // the others decode.
  std::map<std::string, proton::value> garbage_entry{
      {"message", proton::binary(std::string("\x00\x53\x75\xb0\xff\xff\xff\xff", 8))}};
  auto mixed = sb::parse_messages_response(
      reply(200, {{"messages", std::vector<proton::value>{garbage_entry, entry}}}), 2);
  ASSERT_TRUE(mixed) << mixed.error().to_string();
  ASSERT_EQ(mixed->size(), 2u);
  ASSERT_TRUE((*mixed)[0].undecodable);
  EXPECT_EQ((*mixed)[0].undecodable->code, errc::protocol_error);
  EXPECT_NE((*mixed)[0].undecodable->message.find("undecodable"), std::string::npos);
  EXPECT_FALSE((*mixed)[1].undecodable);
  EXPECT_EQ((*mixed)[1].message.message.body, "payload");

  auto state = sb::parse_session_state_response(
      reply(200, {{"session-state", proton::binary(std::string("s2"))}}));
  ASSERT_TRUE(state);
  EXPECT_EQ(state->value_or(""), "s2");
  auto no_state =
      sb::parse_session_state_response(reply(200, {{"session-state", proton::value{}}}));
  ASSERT_TRUE(no_state);
  EXPECT_FALSE(no_state->has_value());

  // The service's descriptions reach errors bounded and printable.
  proton::message long_error;
  long_error.properties().put("statusCode", 500);
  long_error.properties().put("statusDescription", std::string(100'000, 'd') + "\nforged line");
  auto bounded = sb::parse_renew_lock_response(long_error, 1);
  ASSERT_FALSE(bounded);
  EXPECT_LT(bounded.error().message.size(), 2 * qrt::amqp::detail::max_peer_text);
  EXPECT_EQ(bounded.error().message.find('\n'), std::string::npos);

  // A binary "long" longer than 8 bytes is refused, not shifted through.
  auto too_long = sb::parse_schedule_response(
      reply(200, {{"sequence-numbers", std::vector<proton::value>{proton::value(
                                           proton::binary(std::string(9, '\x01')))}}}),
      1);
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().code, errc::protocol_error);

  proton::message garbage;
  garbage.properties().put("statusCode", 200);
  garbage.body(std::string("not a map"));
  EXPECT_EQ(sb::parse_renew_lock_response(garbage, 1).error().code, errc::protocol_error);
  // A status code that is not an integer in 0-999 is malformed, never converted: a huge double
  // would convert with undefined behaviour, 2^32 + 200 would wrap to 200.
  for (const proton::scalar& bad :
       {proton::scalar(1.8e25), proton::scalar(std::uint64_t{4294967496}),
        proton::scalar(std::int64_t{-200}), proton::scalar(std::string("200"))}) {
    proton::message m;
    m.properties().put("statusCode", bad);
    m.body(std::map<std::string, proton::value>{{"expirations", stamps}});
    auto r = sb::parse_renew_lock_response(m, 1);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::protocol_error);
    EXPECT_NE(r.error().message.find("status code"), std::string::npos) << r.error().message;
  }
  // An array whose described element makes Proton's decoder throw std::length_error (found by
  // fuzzing): a malformed reply, not an exception escaping to the I/O thread.
  const std::string bad_array(
      "\x00\x53\x70\x45\x00\x53\x73\x45\x00\x53\x74\xd1\x00\x00\x00\x2c\x00\x00\x00\x04\xa1\x0a"
      "\x73\x74\x61\x74\x75\x73\x43\x6f\x64\x65\x71\x00\x00\x00\xc8\xa1\x11\x73\x74\x61\x74\x75"
      "\x73\x44\x65\x73\x63\x72\x69\x70\x74\x69\x6f\x6e\xa1\x02\x4b\x00\x53\x77\xd1\x00\x00\x00"
      "\x2b\x00\x00\x00\x02\xa1\x0b\x65\x78\x70\x69\x72\x61\x74\x69\x6f\x6e\x73\xf0\x00\x00\x00"
      "\x15\x00\x00\x00\x00\x00\xc5\x00\x01\x8b\xcf\x73\x45\x00\x53\x74\x01\x8b\xcf\xe6\x52\x60",
      110);
  proton::message odd;
  odd.decode(std::vector<char>(bad_array.begin(), bad_array.end()));
  auto refused = sb::parse_renew_lock_response(odd, 1);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::protocol_error);

  proton::message no_status;
  EXPECT_EQ(sb::parse_schedule_response(no_status, 1).error().code, errc::protocol_error);
}

// A reply body is read entry by entry and may hold at most 64 entries: the service sends one to
// three, and a hostile reply of a few hundred bytes with hundreds of entries once took minutes
// to read (its values compared with each other), stalling the connection it arrived on.
TEST(ServiceBusManagement, AReplyBodyWithMoreEntriesThanAnyReplyHasIsRefused) {
  std::map<std::string, proton::value> body{{"expirations", std::vector<proton::timestamp>{}}};
  for (int i = 0; i < 64; ++i) body.emplace("extra-" + std::to_string(i), proton::value(i));
  auto refused = sb::parse_renew_lock_response(reply(200, body), 0);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::protocol_error);
  EXPECT_NE(refused.error().message.find("65 entries"), std::string::npos)
      << refused.error().message;

  body.erase("extra-0");  // 64 entries: read, the unknown ones ignored
  auto read = sb::parse_renew_lock_response(reply(200, body), 0);
  ASSERT_TRUE(read) << read.error().to_string();
  EXPECT_TRUE(read->empty());
}

// A reply whose body maps `field` to an array of `count` uint0 elements, which take no bytes
// each, followed by an entry the parsers ignore. Proton's encoder never writes such an array, so
// the bytes are written here.
proton::message reply_with_zero_width_array(std::string_view field, std::uint32_t count) {
  std::string b;
  const auto u32 = [&](std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<char>(v >> shift));
  };
  const auto str8 = [&](std::string_view text) {
    b.push_back('\xa1');
    b.push_back(static_cast<char>(text.size()));
    b.append(text);
  };
  b.append("\x00\x53\x74\xc1\x12\x02", 6);  // application-properties, map8 of 2
  str8("statusCode");
  b.append("\x71\x00\x00\x00\xc8", 5);  // int 200
  const std::string padding(32, 'p');
  b.append("\x00\x53\x77\xd1", 4);  // amqp-value, map32 of 4
  u32(static_cast<std::uint32_t>(4 + (2 + field.size()) + 10 + (2 + 3) + (2 + padding.size())));
  u32(4);
  str8(field);
  b.push_back('\xf0');  // array32: size, count, the element constructor uint0, no elements
  u32(5);
  u32(count);
  b.push_back('\x43');
  str8("pad");
  str8(padding);
  proton::message m;
  m.decode(std::vector<char>(b.begin(), b.end()));
  return m;
}

// Elements of a zero-width type cost no bytes: a reply of a few dozen bytes claims a thousand
// expirations, sequence numbers or messages. The request says how many there are; a reply that
// claims another number is refused before any element is read.
TEST(ServiceBusManagement, AReplyClaimingMoreElementsThanRequestedIsRefused) {
  const auto many_numbers = reply_with_zero_width_array("sequence-numbers", 1000);
  auto scheduled = sb::parse_schedule_response(many_numbers, 1);
  ASSERT_FALSE(scheduled) << scheduled->size() << " sequence numbers for one message";
  EXPECT_EQ(scheduled.error().code, errc::protocol_error);
  EXPECT_NE(scheduled.error().message.find("sequence-numbers has 1000 elements (1 requested)"),
            std::string::npos)
      << scheduled.error().message;
  // Proton read the array as written: the same reply is accepted when that many were asked for.
  auto all = sb::parse_schedule_response(many_numbers, 1000);
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(all->size(), 1000u);

  auto renewed = sb::parse_renew_lock_response(reply_with_zero_width_array("expirations", 1000), 1);
  ASSERT_FALSE(renewed);
  EXPECT_EQ(renewed.error().code, errc::protocol_error);
  EXPECT_NE(renewed.error().message.find("expirations has 1000 elements"), std::string::npos)
      << renewed.error().message;

  auto peeked = sb::parse_messages_response(reply_with_zero_width_array("messages", 1000), 10);
  ASSERT_FALSE(peeked);
  EXPECT_NE(peeked.error().message.find("messages has 1000 elements (at most 10 requested)"),
            std::string::npos)
      << peeked.error().message;

  // Fewer messages than asked for is a normal page; fewer expirations than tokens is not.
  const std::vector<proton::timestamp> one{proton::timestamp(1700000000123)};
  EXPECT_FALSE(sb::parse_renew_lock_response(reply(200, {{"expirations", one}}), 2));
  EXPECT_TRUE(
      sb::parse_messages_response(reply(200, {{"messages", std::vector<proton::value>{}}}), 10));
}

// ----- rules ($management of a subscription) -----

TEST(ServiceBusRules, AddRuleCarriesTheFilterAsACorrelationFilter) {
  const qrt::subscription_filter filter{.subject = "red", .attributes = {{"tenant", "t1"}}};
  const auto m = sb::add_rule_request("qrt-filter", filter);
  EXPECT_EQ(proton::get<std::string>(m.properties().get("operation")), "com.microsoft:add-rule");
  const auto body = body_of(m);
  EXPECT_EQ(proton::get<std::string>(body.at("rule-name")), "qrt-filter");
  std::map<std::string, proton::value> description;
  proton::get(body.at("rule-description"), description);
  ASSERT_EQ(description.size(), 1u);
  std::map<std::string, proton::value> correlation;
  proton::get(description.at("correlation-filter"), correlation);
  EXPECT_EQ(proton::get<std::string>(correlation.at("label")), "red");
  std::map<std::string, std::string> properties;
  proton::get(correlation.at("properties"), properties);
  EXPECT_EQ(properties, filter.attributes);
  // A filter on attributes only sends no label (a null label would match only unlabelled ones).
  const auto only = body_of(sb::add_rule_request("r", {.attributes = {{"k", "v"}}}));
  std::map<std::string, proton::value> only_description;
  proton::get(only.at("rule-description"), only_description);
  std::map<std::string, proton::value> only_correlation;
  proton::get(only_description.at("correlation-filter"), only_correlation);
  EXPECT_EQ(only_correlation.count("label"), 0u);

  const auto remove = sb::remove_rule_request("$Default");
  EXPECT_EQ(proton::get<std::string>(remove.properties().get("operation")),
            "com.microsoft:remove-rule");
  EXPECT_EQ(proton::get<std::string>(body_of(remove).at("rule-name")), "$Default");
  const auto list = body_of(sb::enumerate_rules_request(16, 2));
  EXPECT_EQ(proton::get<std::int32_t>(list.at("top")), 16);
  EXPECT_EQ(proton::get<std::int32_t>(list.at("skip")), 2);
}

/// A described list, as the service encodes a rule description and its filter and action.
proton::value described(std::uint64_t code, const std::vector<proton::value>& fields) {
  proton::value v;
  proton::codec::encoder e(v);
  e << proton::codec::start::described() << code << proton::codec::start::list();
  for (const auto& f : fields) e << f;
  e << proton::codec::finish() << proton::codec::finish();
  return v;
}

proton::value rule(const std::string& name, const proton::value& filter,
                   std::uint64_t action = 0x0000013700000005) {
  std::map<std::string, proton::value> entry{
      {"rule-description",
       described(0x0000013700000004, {filter, described(action, {}), proton::value(name),
                                      proton::value(proton::timestamp(1700000000000))})}};
  return proton::value(entry);
}

proton::value correlation(const std::vector<proton::value>& first_eight,
                          const std::map<std::string, std::string>& properties) {
  std::vector<proton::value> fields = first_eight;
  fields.emplace_back(properties);
  return described(0x0000001370000009, fields);
}

TEST(ServiceBusRules, EnumerateRulesReadsTrueCorrelationAndSqlFilters) {
  const proton::value none = proton::null();
  const std::vector<proton::value> only_label{none, none, none, none, proton::value("red"),
                                              none, none, none};
  std::vector<proton::value> with_correlation_id = only_label;
  with_correlation_id[0] = proton::value("corr");
  const std::vector<proton::value> rules{
      rule("$Default", described(0x0000001370000007, {proton::value("1=1")})),
      rule("by-label", correlation(only_label, {{"tenant", "t1"}})),
      rule("by-id", correlation(with_correlation_id, {})),
      rule("sql", described(0x0000001370000006, {proton::value("a > 1")})),
      rule("with-action", described(0x0000001370000007, {proton::value("1=1")}),
           0x0000013700000006)};
  auto parsed = sb::parse_enumerate_rules_response(reply(200, {{"rules", rules}}), 16);
  ASSERT_TRUE(parsed) << parsed.error().message;
  ASSERT_EQ(parsed->size(), 5u);
  const auto& all = *parsed;
  EXPECT_EQ(all[0].name, "$Default");
  EXPECT_EQ(all[0].filter, sb::rule_entry::kind::true_filter);
  EXPECT_FALSE(all[0].beyond_subscription_filter);
  EXPECT_EQ(all[1].name, "by-label");
  EXPECT_EQ(all[1].filter, sb::rule_entry::kind::correlation_filter);
  EXPECT_EQ(all[1].label, "red");
  EXPECT_EQ(all[1].properties, (std::map<std::string, std::string>{{"tenant", "t1"}}));
  EXPECT_FALSE(all[1].beyond_subscription_filter);
  EXPECT_TRUE(all[2].beyond_subscription_filter) << "a correlation-id is not a subject";
  EXPECT_EQ(all[3].filter, sb::rule_entry::kind::sql_filter);
  EXPECT_TRUE(all[3].beyond_subscription_filter);
  EXPECT_TRUE(all[4].beyond_subscription_filter) << "a rule action changes messages";

  auto empty = sb::parse_enumerate_rules_response(reply(204, {}), 16);
  ASSERT_TRUE(empty) << empty.error().message;
  EXPECT_TRUE(empty->empty());
  // More rules than asked for, or a description that is not one, is a protocol error.
  auto many = sb::parse_enumerate_rules_response(reply(200, {{"rules", rules}}), 2);
  ASSERT_FALSE(many);
  EXPECT_EQ(many.error().code, errc::protocol_error);
  const std::map<std::string, proton::value> bare{{"rule-description", proton::value("x")}};
  const std::vector<proton::value> odd{proton::value(bare)};
  auto malformed = sb::parse_enumerate_rules_response(reply(200, {{"rules", odd}}), 16);
  ASSERT_FALSE(malformed);
  EXPECT_EQ(malformed.error().code, errc::protocol_error);
  auto refused =
      sb::parse_enumerate_rules_response(reply(404, {}, "com.microsoft:entity-not-found"), 16);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::queue_not_found);
}

}  // namespace

#include <qrt/runtime.hpp>
#include <qrt/servicebus.hpp>

namespace {

constexpr const char* peer_cs =
    "Endpoint=sb://127.0.0.1:5672/"
    ";SharedAccessKeyName=x;SharedAccessKey=very-secret;UseDevelopmentEmulator=true";

TEST(ServiceBusOptions, PresetsHaveTheirDocumentedValues) {
  // The provider's half of each preset (the receiver's prefetch) ...
  const auto fast = qrt::servicebus::options::for_high_throughput();
  EXPECT_EQ(fast.prefetch_count, 50u);
  const auto quick = qrt::servicebus::options::for_low_latency();
  EXPECT_EQ(quick.prefetch_count, 1u);
  // ... and the processor's half, read from the same configuration.
  auto processing = [](const char* preset) {
    return qrt::processor_options::from_config(
               {{"provider", "servicebus"}, {"connection_string", peer_cs}, {"preset", preset}})
        .value();
  };
  EXPECT_EQ(processing("high_throughput").max_concurrent_calls, 32u);
  EXPECT_EQ(processing("high_throughput").max_auto_lock_renewal_duration, std::chrono::minutes(10));
  EXPECT_EQ(processing("low_latency").max_concurrent_calls, 4u);
  EXPECT_EQ(processing("low_latency").max_auto_lock_renewal_duration, std::chrono::minutes(1));
}

// A malformed processing key fails when the client's options are read, naming the key, though
// only a processor uses it.
TEST(ServiceBusOptions, AMalformedProcessingKeyIsRefusedByTheProvider) {
  for (auto [key, value] : {std::pair{"max_concurrent_calls", "0"},
                            {"prefetch_count", "lots"},
                            {"max_auto_lock_renewal_duration", "soon"}}) {
    auto o = qrt::servicebus::options_from_config({{"connection_string", peer_cs}, {key, value}});
    ASSERT_FALSE(o) << key;
    EXPECT_EQ(o.error().code, qrt::errc::configuration_error);
    EXPECT_NE(o.error().message.find(key), std::string::npos) << o.error().message;
  }
}

// preset=low_resource sizes only the runtime built from the configuration (two threads, 1 MiB
// stacks): the provider accepts it and keeps its defaults, where an unknown preset is refused.
TEST(ServiceBusOptions, TheLowResourcePresetSizesTheRuntimeOnly) {
  const qrt::config cfg{
      {"provider", "servicebus"}, {"connection_string", peer_cs}, {"preset", "low_resource"}};
  auto o = qrt::servicebus::options_from_config(cfg);
  ASSERT_TRUE(o) << o.error().to_string();
  EXPECT_EQ(o->prefetch_count, qrt::servicebus::options{}.prefetch_count);
  auto rt = qrt::runtime_configuration::from_config(cfg);
  ASSERT_TRUE(rt) << rt.error().to_string();
  EXPECT_EQ(rt->worker_threads, 2u);
  EXPECT_EQ(rt->thread_stack_size, std::size_t{1} << 20);
  auto unknown =
      qrt::servicebus::options_from_config({{"connection_string", peer_cs}, {"preset", "low_res"}});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("'low_res'"), std::string::npos)
      << unknown.error().message;
}

// One configuration describes the client and the runtime it runs on: the provider accepts the
// runtime's key and checks it (so a bad value fails when the client is made), and the runtime
// reads it. Before, the provider refused worker_threads as unknown.
TEST(ServiceBusOptions, TheRuntimeKeyIsAcceptedCheckedAndReadByTheRuntime) {
  const qrt::config cfg{
      {"provider", "servicebus"}, {"connection_string", peer_cs}, {"worker_threads", "3"}};
  auto o = qrt::servicebus::options_from_config(cfg);
  ASSERT_TRUE(o) << o.error().to_string();
  auto rt = qrt::runtime_configuration::from_config(cfg);
  ASSERT_TRUE(rt) << rt.error().to_string();
  EXPECT_EQ(rt->worker_threads, 3u);
  for (const char* bad : {"0", "1025", "many"}) {
    auto refused = qrt::servicebus::options_from_config(
        {{"connection_string", peer_cs}, {"worker_threads", bad}});
    ASSERT_FALSE(refused) << bad;
    EXPECT_EQ(refused.error().code, qrt::errc::configuration_error);
    EXPECT_NE(refused.error().message.find("worker_threads"), std::string::npos)
        << refused.error().message;
  }
}

TEST(ServiceBusOptions, FromConfigAppliesPresetThenFields) {
  auto o = qrt::servicebus::options_from_config({{"provider", "servicebus"},
                                                 {"preset", "high_throughput"},
                                                 {"connection_string", peer_cs},
                                                 {"prefetch_count", "7"},
                                                 {"operation_timeout", "5s"}});
  ASSERT_TRUE(o) << o.error().to_string();
  EXPECT_EQ(o->prefetch_count, 7u);
  EXPECT_EQ(o->operation_timeout, std::chrono::seconds(5));
  EXPECT_EQ(o->transport, qrt::servicebus::transport_type::amqp);
}

TEST(ServiceBusOptions, ThePrefetchByteBudgetAndTheLinkCapAreReadAndChecked) {
  auto defaults = qrt::servicebus::options_from_config({{"connection_string", peer_cs}});
  ASSERT_TRUE(defaults) << defaults.error().to_string();
  EXPECT_EQ(defaults->max_prefetch_bytes, 64ull << 20);
  EXPECT_EQ(defaults->max_links, 1000u);
  auto set = qrt::servicebus::options_from_config(
      {{"connection_string", peer_cs}, {"max_prefetch_bytes", "0"}, {"max_links", "16"}});
  ASSERT_TRUE(set) << set.error().to_string();
  EXPECT_EQ(set->max_prefetch_bytes, 0u);
  EXPECT_EQ(set->max_links, 16u);
  auto bad = qrt::servicebus::options_from_config(
      {{"connection_string", peer_cs}, {"max_links", "65536"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, errc::configuration_error);
  EXPECT_NE(bad.error().message.find("max_links"), std::string::npos) << bad.error().message;
}

TEST(ServiceBusOptions, RefusesWebSocketsUnknownFieldsAndBadConnectionStrings) {
  auto ws = qrt::servicebus::options_from_config(
      {{"connection_string", peer_cs}, {"transport_type", "amqp_websockets"}});
  ASSERT_FALSE(ws);
  EXPECT_EQ(ws.error().code, errc::configuration_error);
  EXPECT_NE(ws.error().message.find("WebSockets"), std::string::npos);

  auto typo =
      qrt::servicebus::options_from_config({{"connection_string", peer_cs}, {"prefetch", "5"}});
  ASSERT_FALSE(typo);
  EXPECT_NE(typo.error().message.find("prefetch"), std::string::npos);

  auto missing = qrt::servicebus::options_from_config({{"provider", "servicebus"}});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("connection_string"), std::string::npos);

  auto bad = qrt::servicebus::options_from_config(
      {{"connection_string",
        "Endpoint=ftp://x/;SharedAccessKeyName=x;SharedAccessKey=very-secret"}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("Endpoint"), std::string::npos);
  EXPECT_EQ(bad.error().message.find("very-secret"), std::string::npos);
}

}  // namespace

namespace {

proton::annotation_key key(const char* name) {
  return proton::annotation_key(proton::symbol(name));
}

/// What a receive sees: the message as encoded on the wire, read by qrt's codec.
qrt::amqp::detail::broker_annotations annotations_of(const proton::message& m) {
  std::vector<char> bytes;
  m.encode(bytes);
  auto decoded = qrt::amqp::detail::decode_message(std::span<const std::uint8_t>(
      reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  EXPECT_TRUE(decoded) << decoded.error().to_string();
  return decoded ? decoded->annotations : qrt::amqp::detail::broker_annotations{};
}

TEST(ServiceBusAnnotations, ReadsTheBrokerAnnotationsAndSkipsTheRest) {
  proton::message m;
  auto& a = m.message_annotations();
  a.put(proton::annotation_key(std::uint64_t{7}), std::string("a reserved numeric key"));
  a.put(key("x-opt-partition-key"), std::string("p"));
  a.put(key("x-opt-sequence-number"), std::int64_t{42});
  a.put(key("x-opt-enqueued-time"), proton::timestamp(1'700'000'000'123));
  a.put(key("x-opt-locked-until"), proton::timestamp(1'700'000'030'000));
  a.put(key("x-opt-scheduled-enqueue-time"), proton::timestamp(1'700'000'060'000));
  a.put(key("x-opt-deadletter-source"), std::map<std::string, std::string>{{"k", "v"}});
  const auto got = annotations_of(m);
  ASSERT_TRUE(got.sequence_number);
  EXPECT_EQ(*got.sequence_number, 42);
  auto ms = [](const std::optional<qrt::time_point>& t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count();
  };
  ASSERT_TRUE(got.enqueued_time);
  EXPECT_EQ(ms(got.enqueued_time), 1'700'000'000'123);
  ASSERT_TRUE(got.locked_until);
  EXPECT_EQ(ms(got.locked_until), 1'700'000'030'000);
  ASSERT_TRUE(got.scheduled_enqueue_time);
  EXPECT_EQ(ms(got.scheduled_enqueue_time), 1'700'000'060'000);
}

TEST(ServiceBusAnnotations, WrongTypesAndMissingMapsYieldNothing) {
  EXPECT_FALSE(annotations_of(proton::message{}).sequence_number);
  proton::message m;
  m.message_annotations().put(key("x-opt-sequence-number"), std::string("42"));
  m.message_annotations().put(key("x-opt-locked-until"), std::int64_t{5});
  const auto got = annotations_of(m);
  EXPECT_FALSE(got.sequence_number);
  EXPECT_FALSE(got.locked_until);
}

}  // namespace
