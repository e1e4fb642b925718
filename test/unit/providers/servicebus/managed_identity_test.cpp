// Managed identity without sockets: which endpoint, the request IMDS / App Service expect, how
// their answers (good and bad) are read, when a token is replaced, and the configuration fields.
#include "managed_identity.hpp"

#include <gtest/gtest.h>

#include <map>
#include <qrt/servicebus.hpp>

#include "../../support/shown_text.hpp"
#include "connection_string.hpp"

namespace sb = qrt::servicebus::detail;
using qrt::errc;
using std::chrono::seconds;
using std::chrono::system_clock;

namespace {

sb::environment_lookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    const auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string header(const sb::identity_request& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return "<absent>";
}

const system_clock::time_point now = system_clock::time_point(seconds(1'700'000'000));
constexpr const char* secret_token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.the-secret-part";

TEST(ServiceBusManagedIdentity, EndpointIsConfiguredThenAppServiceEnvironmentThenImds) {
  const auto app_env = env_of({{"IDENTITY_ENDPOINT", "http://localhost:42356/msi/token"},
                               {"IDENTITY_HEADER", "platform-secret"}});
  const auto configured = sb::choose_identity_endpoint("http://127.0.0.1:9/token", app_env);
  EXPECT_EQ(configured.protocol, sb::identity_protocol::imds);
  EXPECT_EQ(configured.url, "http://127.0.0.1:9/token");

  const auto app = sb::choose_identity_endpoint("", app_env);
  EXPECT_EQ(app.protocol, sb::identity_protocol::app_service);
  EXPECT_EQ(app.url, "http://localhost:42356/msi/token");
  EXPECT_EQ(app.identity_header, "platform-secret");

  // IDENTITY_ENDPOINT without its header is not App Service: IMDS.
  const auto half = sb::choose_identity_endpoint(
      "", env_of({{"IDENTITY_ENDPOINT", "http://localhost:42356/msi/token"}}));
  EXPECT_EQ(half.protocol, sb::identity_protocol::imds);
  EXPECT_EQ(half.url, "http://169.254.169.254/metadata/identity/oauth2/token");
  EXPECT_EQ(sb::choose_identity_endpoint("", env_of({})).url, half.url);
}

TEST(ServiceBusManagedIdentity, ImdsRequestCarriesMetadataHeaderResourceAndClientId) {
  const sb::identity_endpoint imds{
      sb::identity_protocol::imds, "http://169.254.169.254/metadata/identity/oauth2/token", {}};
  auto system = sb::build_identity_request(imds, sb::servicebus_resource, "");
  ASSERT_TRUE(system) << system.error().to_string();
  EXPECT_EQ(system->origin, "http://169.254.169.254");
  EXPECT_EQ(system->target,
            "/metadata/identity/oauth2/token?api-version=2018-02-01"
            "&resource=https%3A%2F%2Fservicebus.azure.net%2F");
  EXPECT_EQ(header(*system, "Metadata"), "true");
  EXPECT_EQ(header(*system, "X-IDENTITY-HEADER"), "<absent>");

  auto user = sb::build_identity_request(imds, sb::servicebus_resource,
                                         "6a0f5b2c-1111-2222-3333-444455556666");
  ASSERT_TRUE(user);
  EXPECT_EQ(user->target,
            "/metadata/identity/oauth2/token?api-version=2018-02-01"
            "&resource=https%3A%2F%2Fservicebus.azure.net%2F"
            "&client_id=6a0f5b2c-1111-2222-3333-444455556666");
}

TEST(ServiceBusManagedIdentity, AppServiceRequestUsesItsApiVersionAndIdentityHeader) {
  const sb::identity_endpoint app{sb::identity_protocol::app_service,
                                  "http://localhost:42356/msi/token", "platform-secret"};
  auto r = sb::build_identity_request(app, sb::servicebus_resource, "cid");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->origin, "http://localhost:42356");
  EXPECT_EQ(r->target,
            "/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fservicebus.azure.net%2F"
            "&client_id=cid");
  EXPECT_EQ(header(*r, "X-IDENTITY-HEADER"), "platform-secret");
  EXPECT_EQ(header(*r, "Metadata"), "<absent>");
}

TEST(ServiceBusManagedIdentity, MalformedEndpointsAreConfigurationErrors) {
  for (const char* url : {"https://169.254.169.254/token", "169.254.169.254/token",
                          "http://127.0.0.1:1/token?x=1", "http:///token"}) {
    auto r = sb::build_identity_request({sb::identity_protocol::imds, url, {}},
                                        sb::servicebus_resource, "");
    ASSERT_FALSE(r) << url;
    EXPECT_EQ(r.error().code, errc::configuration_error) << url;
    EXPECT_NE(r.error().message.find(url), std::string::npos) << r.error().message;
  }
  auto root = sb::build_identity_request({sb::identity_protocol::imds, "http://h:8", {}},
                                         sb::servicebus_resource, "");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->target.substr(0, 2), "/?");
}

TEST(ServiceBusManagedIdentity, ReadsTokenAndExpiryFromImdsAnswer) {
  const std::string body = std::string(R"({"access_token":")") + secret_token +
                           R"(","client_id":"cid","expires_in":"86399","expires_on":"1700003600",)"
                           R"("ext_expires_in":"86399","not_before":"1699999700",)"
                           R"("resource":"https://servicebus.azure.net/","token_type":"Bearer"})";
  auto t = sb::parse_identity_response(200, body, "cid", now);
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(t->token, secret_token);
  EXPECT_EQ(t->type, "jwt");
  EXPECT_EQ(t->expires_at, system_clock::time_point(seconds(1'700'003'600)));

  // Some hosts send expires_on as a JSON number.
  auto numeric = sb::parse_identity_response(
      200, R"({"access_token":"t","expires_on":1700000060,"token_type":"Bearer"})", "", now);
  ASSERT_TRUE(numeric) << numeric.error().to_string();
  EXPECT_EQ(numeric->expires_at, system_clock::time_point(seconds(1'700'000'060)));
}

TEST(ServiceBusManagedIdentity, RefusedIdentityIsPermissionNamingTheClientId) {
  auto r = sb::parse_identity_response(
      400, R"({"error":"invalid_request","error_description":"Identity not found"})",
      "6a0f5b2c-1111-2222-3333-444455556666", now);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::permission);
  EXPECT_EQ(r.error().kind, qrt::error_kind::permanent);
  EXPECT_NE(r.error().message.find("6a0f5b2c-1111-2222-3333-444455556666"), std::string::npos);
  EXPECT_NE(r.error().message.find("Identity not found"), std::string::npos);
  EXPECT_NE(r.error().message.find("HTTP 400"), std::string::npos);

  auto system = sb::parse_identity_response(403, "forbidden", "", now);
  ASSERT_FALSE(system);
  EXPECT_EQ(system.error().code, errc::permission);
  EXPECT_NE(system.error().message.find("system-assigned"), std::string::npos);
}

// The endpoint's error text (JSON error and error_description, or a proxy's plain body) reaches the
// error as valid UTF-8 without control characters: before, only CR and LF were replaced, and an
// escape sequence (ESC, or the C1 CSI U+009B) or malformed UTF-8 went through to the terminal.
TEST(ServiceBusManagedIdentity, TheEndpointsHostileBytesReachTheErrorFitToShow) {
  auto json_answer = sb::parse_identity_response(
      400, R"({"error":"bad\u001b[2J","error_description":"caf\u00e9 \u009b31m red"})", "", now);
  ASSERT_FALSE(json_answer);
  EXPECT_TRUE(qrt::test::fit_to_show(json_answer.error().message)) << json_answer.error().message;
  EXPECT_NE(json_answer.error().message.find("caf\xc3\xa9"), std::string::npos);
  auto text_answer = sb::parse_identity_response(502, qrt::test::hostile_text, "", now);
  ASSERT_FALSE(text_answer);
  EXPECT_TRUE(qrt::test::fit_to_show(text_answer.error().message)) << text_answer.error().message;
}

TEST(ServiceBusManagedIdentity, BusyOrStartingEndpointIsRetryable) {
  auto throttled = sb::parse_identity_response(429, R"({"error":"too many"})", "", now);
  ASSERT_FALSE(throttled);
  EXPECT_EQ(throttled.error().code, errc::throttled);
  for (unsigned status : {404u, 410u, 500u, 503u}) {
    auto r = sb::parse_identity_response(status, "", "", now);
    ASSERT_FALSE(r) << status;
    EXPECT_EQ(r.error().code, errc::connection_failed) << status;
    EXPECT_EQ(r.error().kind, qrt::error_kind::transient) << status;
  }
}

TEST(ServiceBusManagedIdentity, GarbageAnswersAreProtocolErrorsThatNeverShowTheToken) {
  const std::string tok = secret_token;
  const std::pair<std::string, std::string> cases[] = {
      {"<html>not json</html>", "not a JSON object"},
      {R"(["access_token"])", "not a JSON object"},
      {R"({"expires_on":"1700003600"})", "no access_token"},
      {R"({"access_token":"","expires_on":"1700003600"})", "no access_token"},
      {R"({"access_token":")" + tok + R"("})", "no expires_on"},
      {R"({"access_token":")" + tok + R"(","expires_on":"soon"})", "bad expires_on 'soon'"},
      {R"({"access_token":")" + tok + R"(","expires_on":""})", "bad expires_on"},
      {R"({"access_token":")" + tok + R"(","expires_on":null})", "bad expires_on"},
      {R"({"access_token":")" + tok + R"(","expires_on":"-5"})", "bad expires_on"},
      {R"({"access_token":")" + tok + R"(","expires_on":"99999999999999999999"})",
       "bad expires_on"},
      // Past year 2262 the clock (nanoseconds) cannot hold it: refused, not wrapped around.
      {R"({"access_token":")" + tok + R"(","expires_on":"16000000000"})", "bad expires_on"},
      {R"({"access_token":")" + tok + R"(","expires_on":9300000000})", "bad expires_on"},
      {R"({"access_token":")" + tok + R"(","expires_on":"1699999999"})", "already expired"},
  };
  for (const auto& [body, expected] : cases) {
    auto r = sb::parse_identity_response(200, body, "cid", now);
    ASSERT_FALSE(r) << body;
    EXPECT_EQ(r.error().code, errc::protocol_error) << body;
    EXPECT_NE(r.error().message.find(expected), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.find("the-secret-part"), std::string::npos) << r.error().message;
  }
}

TEST(ServiceBusManagedIdentity, TokenIsReplacedAfterEightyPercentOfItsLife) {
  EXPECT_EQ(sb::refresh_time(now, now + seconds(100)), now + seconds(80));
  EXPECT_EQ(sb::refresh_time(now, now + std::chrono::hours(24)), now + std::chrono::minutes(1152));
  EXPECT_EQ(sb::refresh_time(now, now - seconds(1)), now);
  // A token that lives for centuries (a hand-made SAS token) is still replaced after 80%, not at
  // a time wrapped around by overflow.
  const auto never = system_clock::time_point::max();
  const auto at = sb::refresh_time(now, never);
  EXPECT_GT(at, now);
  EXPECT_LT(at, never);
  EXPECT_EQ(never - at, (never - now) / 5);
}

constexpr const char* endpoint_only = "Endpoint=sb://contoso.servicebus.windows.net/";

TEST(ServiceBusManagedIdentity, ConfigSelectsManagedIdentityWithAnEndpointOnlyConnectionString) {
  auto o = qrt::servicebus::options_from_config(
      {{"connection_string", endpoint_only},
       {"auth", "managed_identity"},
       {"managed_identity_client_id", "6a0f5b2c-1111-2222-3333-444455556666"},
       {"managed_identity_endpoint", "http://127.0.0.1:8080/metadata/identity/oauth2/token"}});
  ASSERT_TRUE(o) << o.error().to_string();
  EXPECT_EQ(o->auth, qrt::servicebus::auth_method::managed_identity);
  EXPECT_EQ(o->managed_identity_client_id, "6a0f5b2c-1111-2222-3333-444455556666");
  EXPECT_EQ(o->managed_identity_endpoint, "http://127.0.0.1:8080/metadata/identity/oauth2/token");

  auto defaults = qrt::servicebus::options_from_config(
      {{"connection_string", endpoint_only}, {"auth", "managed_identity"}});
  ASSERT_TRUE(defaults) << defaults.error().to_string();
  EXPECT_TRUE(defaults->managed_identity_client_id.empty());
  EXPECT_TRUE(defaults->managed_identity_endpoint.empty());

  // SAS (the default) still needs a key.
  auto sas = qrt::servicebus::options_from_config({{"connection_string", endpoint_only}});
  ASSERT_FALSE(sas);
  EXPECT_NE(sas.error().message.find("SharedAccessKeyName is missing"), std::string::npos);
  EXPECT_TRUE(sb::parse_connection_string(endpoint_only, sb::credentials::optional));
}

TEST(ServiceBusManagedIdentity, BadAuthConfigurationNamesTheField) {
  auto unknown =
      qrt::servicebus::options_from_config({{"connection_string", endpoint_only}, {"auth", "aad"}});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, errc::configuration_error);
  EXPECT_NE(unknown.error().message.find("'auth'"), std::string::npos);
  EXPECT_NE(unknown.error().message.find("aad"), std::string::npos);

  auto stray = qrt::servicebus::options_from_config(
      {{"connection_string", endpoint_only}, {"managed_identity_client_id", "cid"}});
  ASSERT_FALSE(stray);
  EXPECT_NE(stray.error().message.find("managed_identity_client_id"), std::string::npos);
  EXPECT_NE(stray.error().message.find("auth=managed_identity"), std::string::npos);

  auto bad_url = qrt::servicebus::options_from_config(
      {{"connection_string", endpoint_only},
       {"auth", "managed_identity"},
       {"managed_identity_endpoint", "https://imds.example/token"}});
  ASSERT_FALSE(bad_url);
  EXPECT_NE(bad_url.error().message.find("managed_identity_endpoint"), std::string::npos);
}

}  // namespace
