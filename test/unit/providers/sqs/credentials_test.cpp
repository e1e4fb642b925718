// The credential chain: each source, its order, caching and refresh before expiry. The network
// sources (ECS, IMDSv2) talk to a local HTTP server standing in for the metadata endpoints.
#include "credentials.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <filesystem>
#include <fstream>

#include "local_http_server.hpp"

using namespace qrt;
using namespace qrt::sqs::detail;
namespace fs = std::filesystem;

namespace {

struct fake_env {
  std::map<std::string, std::string> vars;
  environment_lookup lookup() const {
    return [vars = vars](std::string_view name) -> std::optional<std::string> {
      auto it = vars.find(std::string(name));
      if (it == vars.end()) return std::nullopt;
      return it->second;
    };
  }
};

class temp_home {
 public:
  temp_home() : path_(fs::temp_directory_path() / ("qrt-aws-" + random_name())) {
    fs::create_directories(path_ / ".aws");
  }
  ~temp_home() { fs::remove_all(path_); }
  void write(const std::string& rel, const std::string& text) {
    std::ofstream(path_ / rel) << text;
  }
  std::string str() const { return path_.string(); }

 private:
  static std::string random_name() {
    return std::to_string(::getpid()) + "-" + std::to_string(++counter_);
  }
  static inline int counter_ = 0;
  fs::path path_;
};

result<expiring_credentials> get(
    credential_chain& chain,
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) {
  boost::asio::io_context io;
  auto f = boost::asio::co_spawn(io, chain.get(now), boost::asio::use_future);
  io.run();
  return f.get();
}

credential_chain make_chain(fake_env env, credential_settings s = {}) {
  static boost::asio::io_context unused;  // the chain only uses its executor inside get()
  s.http_timeout = std::chrono::milliseconds(2'000);
  // A test never probes the real metadata address (169.254.169.254): IMDS is off unless the
  // test points it at its own local server.
  if (!env.vars.count("AWS_EC2_METADATA_SERVICE_ENDPOINT")) {
    env.vars.emplace("AWS_EC2_METADATA_DISABLED", "true");
  }
  return credential_chain(unused.get_executor(), s, env.lookup());
}

}  // namespace

TEST(SqsCredentials, IniParsingHandlesCommentsCaseAndSpacing) {
  auto ini = parse_ini(
      "# top\n[default]\n AWS_Access_Key_ID = AKIA1 \naws_secret_access_key=s1\n; c\n"
      "[profile dev]\nregion = eu-west-2\n\n[broken\nx=y\n");
  EXPECT_EQ(ini["default"]["aws_access_key_id"], "AKIA1");
  EXPECT_EQ(ini["default"]["aws_secret_access_key"], "s1");
  EXPECT_EQ(ini["profile dev"]["region"], "eu-west-2");
}

TEST(SqsCredentials, Iso8601Parsing) {
  using namespace std::chrono;
  const auto expected = sys_days{2026y / 11 / 27} + 12h;
  EXPECT_EQ(parse_iso8601("2026-11-27T12:00:00Z"), expected);
  EXPECT_EQ(parse_iso8601("2026-11-27T12:00:00.123Z"), expected);
  EXPECT_EQ(parse_iso8601("2026-11-27T14:00:00+02:00"), expected);
  EXPECT_FALSE(parse_iso8601("2026-13-27T12:00:00Z"));
  EXPECT_FALSE(parse_iso8601("yesterday"));
  // Years the clock cannot hold (past 2262 in nanoseconds) are unreadable, not wrapped around.
  EXPECT_FALSE(parse_iso8601("5478-12-02T16:00:00Z"));
  EXPECT_FALSE(parse_iso8601("9999-12-31T23:59:59Z"));
  EXPECT_FALSE(parse_iso8601("1000-01-01T00:00:00Z"));
  EXPECT_TRUE(parse_iso8601("2261-12-31T23:59:59Z"));
  auto doc = parse_credentials_document(
      R"({"AccessKeyId":"a","SecretAccessKey":"s","Expiration":"5478-12-02T16:00:00Z"})", "imds");
  ASSERT_FALSE(doc);
  EXPECT_NE(doc.error().message.find("unreadable Expiration"), std::string::npos);
}

TEST(SqsCredentials, ExplicitKeysWinOverEverything) {
  fake_env env{{{"AWS_ACCESS_KEY_ID", "ENVKEY"}, {"AWS_SECRET_ACCESS_KEY", "envsecret"}}};
  credential_settings s;
  s.explicit_keys = {"EXPLICIT", "explicitsecret", ""};
  auto chain = make_chain(env, s);
  auto c = get(chain);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->keys.access_key_id, "EXPLICIT");
  EXPECT_EQ(c->source, "explicit");
}

TEST(SqsCredentials, EnvironmentWithSessionToken) {
  fake_env env{{{"AWS_ACCESS_KEY_ID", "ENVKEY"},
                {"AWS_SECRET_ACCESS_KEY", "envsecret"},
                {"AWS_SESSION_TOKEN", "envtoken"},
                {"AWS_EC2_METADATA_DISABLED", "true"}}};
  auto chain = make_chain(env);
  auto c = get(chain);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->keys.access_key_id, "ENVKEY");
  EXPECT_EQ(c->keys.session_token, "envtoken");
  EXPECT_EQ(c->source, "environment");
}

TEST(SqsCredentials, ProfilesFromSharedFilesAndRegion) {
  temp_home home;
  home.write(".aws/credentials",
             "[default]\naws_access_key_id=DEFAULTKEY\naws_secret_access_key=d\n"
             "[dev]\naws_access_key_id=DEVKEY\naws_secret_access_key=x\naws_session_token=t\n");
  home.write(".aws/config",
             "[profile dev]\nregion=ap-south-1\n[profile cfgonly]\n"
             "aws_access_key_id=CFGKEY\naws_secret_access_key=c\n");
  fake_env env{
      {{"HOME", home.str()}, {"AWS_PROFILE", "dev"}, {"AWS_EC2_METADATA_DISABLED", "true"}}};
  auto chain = make_chain(env);
  auto c = get(chain);
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->keys.access_key_id, "DEVKEY");
  EXPECT_EQ(c->keys.session_token, "t");
  EXPECT_EQ(c->source, "profile 'dev'");

  const auto files = load_shared_files(env.lookup(), "");
  EXPECT_EQ(resolve_region("", env.lookup(), files), "ap-south-1");
  EXPECT_EQ(resolve_region("us-west-2", env.lookup(), files), "us-west-2");
  fake_env with_region = env;
  with_region.vars["AWS_REGION"] = "eu-central-1";
  EXPECT_EQ(resolve_region("", with_region.lookup(), files), "eu-central-1");

  credential_settings cfgonly;
  cfgonly.profile = "cfgonly";
  auto chain2 = make_chain(env, cfgonly);
  auto c2 = get(chain2);
  ASSERT_TRUE(c2);
  EXPECT_EQ(c2->keys.access_key_id, "CFGKEY");
}

TEST(SqsCredentials, NothingFoundNamesEverySourceButNoSecret) {
  temp_home home;
  fake_env env{{{"HOME", home.str()},
                {"AWS_EC2_METADATA_DISABLED", "true"},
                {"AWS_SECRET_ACCESS_KEY", "only-the-secret-is-set"}}};
  auto chain = make_chain(env);
  auto c = get(chain);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, errc::permission);
  for (auto word : {"explicit", "environment", "profile 'default'", "ecs", "imds: disabled"}) {
    EXPECT_NE(c.error().message.find(word), std::string::npos)
        << word << " in " << c.error().message;
  }
  EXPECT_EQ(c.error().message.find("only-the-secret-is-set"), std::string::npos);
}

// One key of a pair set without the other is a half-finished configuration: the error names
// what is set and what is missing, in each source, and never the value that is set.
TEST(SqsCredentials, HalfAKeyPairIsNamedInEachSourceWithoutItsValue) {
  temp_home home;
  home.write(".aws/credentials", "[default]\naws_access_key_id = PROFILEKEYID\n");
  fake_env env{{{"HOME", home.str()}, {"AWS_ACCESS_KEY_ID", "ENVKEYID"}}};
  credential_settings explicit_half;
  explicit_half.explicit_keys.secret_access_key = "explicit-secret-value";
  auto chain = make_chain(env, explicit_half);
  auto c = get(chain);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, errc::permission);
  const std::string& m = c.error().message;
  for (auto words : {"explicit keys: the secret access key is set but the access key id is not",
                     "environment: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
                     "profile 'default': aws_access_key_id is set but aws_secret_access_key is "
                     "not"}) {
    EXPECT_NE(m.find(words), std::string::npos) << words << " in " << m;
  }
  for (auto value : {"PROFILEKEYID", "ENVKEYID", "explicit-secret-value"}) {
    EXPECT_EQ(m.find(value), std::string::npos) << value << " in " << m;
  }
}

TEST(SqsCredentials, EcsEndpointWithAuthorizationToken) {
  std::string seen_auth;
  qrt::test::local_http_server server([&](const qrt::test::seen_request& r) {
    seen_auth = r.headers.count("authorization") ? r.headers.at("authorization") : "";
    if (r.target != "/v2/credentials/abc") return qrt::test::canned_response{404, ""};
    return qrt::test::canned_response{
        200, R"({"AccessKeyId":"ECSKEY","SecretAccessKey":"ecssecret","Token":"ecstoken",
                 "Expiration":"2099-01-01T00:00:00Z"})"};
  });
  temp_home home;
  fake_env env{{{"HOME", home.str()},
                {"AWS_CONTAINER_CREDENTIALS_FULL_URI", server.url() + "/v2/credentials/abc"},
                {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "task-auth"}}};
  auto chain = make_chain(env);
  auto c = get(chain);
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->keys.access_key_id, "ECSKEY");
  EXPECT_EQ(c->keys.session_token, "ecstoken");
  EXPECT_EQ(c->source, "ecs");
  EXPECT_EQ(seen_auth, "task-auth");
}

TEST(SqsCredentials, ImdsV2TokenRoleAndKeysAreCachedThenRefreshedBeforeExpiry) {
  using namespace std::chrono;
  const auto now = system_clock::now();
  int credential_fetches = 0;
  std::string expiration = "2099-01-01T00:00:00Z";
  qrt::test::local_http_server server(
      [&](const qrt::test::seen_request& r) -> qrt::test::canned_response {
        if (r.method == "PUT" && r.target == "/latest/api/token") {
          if (!r.headers.count("x-aws-ec2-metadata-token-ttl-seconds")) return {400, ""};
          return {200, "imds-session-token"};
        }
        // IMDSv2: every metadata read must carry the session token.
        if (r.headers.count("x-aws-ec2-metadata-token") == 0 ||
            r.headers.at("x-aws-ec2-metadata-token") != "imds-session-token") {
          return {401, ""};
        }
        if (r.target == "/latest/meta-data/iam/security-credentials/")
          return {200, "worker-role\n"};
        if (r.target == "/latest/meta-data/iam/security-credentials/worker-role") {
          ++credential_fetches;
          return {200,
                  R"({"Code":"Success","AccessKeyId":"IMDSKEY)" +
                      std::to_string(credential_fetches) +
                      R"(","SecretAccessKey":"imdssecret","Token":"imdstoken","Expiration":")" +
                      expiration + "\"}"};
        }
        return {404, ""};
      });
  temp_home home;
  fake_env env{{{"HOME", home.str()}, {"AWS_EC2_METADATA_SERVICE_ENDPOINT", server.url()}}};
  auto chain = make_chain(env);

  auto first = get(chain, now);
  ASSERT_TRUE(first) << first.error().to_string();
  EXPECT_EQ(first->keys.access_key_id, "IMDSKEY1");
  EXPECT_EQ(first->source, "imds");
  auto cached = get(chain, now + minutes(30));
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->keys.access_key_id, "IMDSKEY1") << "valid keys must come from the cache";
  EXPECT_EQ(credential_fetches, 1);

  // Within five minutes of expiry the chain fetches again.
  const auto expiry = *first->expiration;
  auto refreshed = get(chain, expiry - minutes(4));
  ASSERT_TRUE(refreshed);
  EXPECT_EQ(refreshed->keys.access_key_id, "IMDSKEY2");
  EXPECT_EQ(credential_fetches, 2);
}

TEST(SqsCredentials, ImdsGarbageIsAPermissionErrorNotACrash) {
  qrt::test::local_http_server server(
      [&](const qrt::test::seen_request& r) -> qrt::test::canned_response {
        if (r.method == "PUT") return {200, "t"};
        if (r.target == "/latest/meta-data/iam/security-credentials/") return {200, "role"};
        return {200, "{\"AccessKeyId\": 42"};
      });
  temp_home home;
  fake_env env{{{"HOME", home.str()}, {"AWS_EC2_METADATA_SERVICE_ENDPOINT", server.url()}}};
  auto chain = make_chain(env);
  auto c = get(chain);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, errc::permission);
  EXPECT_NE(c.error().message.find("imds"), std::string::npos);
}

// Replies from metadata endpoints and values from files or the environment end up in request
// headers: anything that could not be sent (or would inject a header) is refused by source,
// without quoting it.
TEST(SqsCredentials, MetadataRepliesThatCannotBeSentAreRefusedWithoutEchoingThem) {
  EXPECT_EQ(parse_imds_token("  tok-123\n").value(), "tok-123");
  for (std::string_view token : {"", "a\r\nX-Injected: 1", "two words"}) {
    EXPECT_FALSE(parse_imds_token(token)) << token;
  }
  EXPECT_FALSE(parse_imds_token(std::string(5'000, 't')));
  EXPECT_EQ(parse_imds_role_name("worker-role\nsecond\n").value(), "worker-role");
  EXPECT_EQ(parse_imds_role_name("").value(), "") << "no role is not an error";
  for (std::string_view role : {"../../latest/api/token", "a\rb", "role name", "r?x=1"}) {
    EXPECT_FALSE(parse_imds_role_name(role)) << role;
  }
  EXPECT_FALSE(parse_imds_role_name(std::string(200, 'r')));

  auto injected = parse_credentials_document(
      R"({"AccessKeyId":"AKID","SecretAccessKey":"s","Token":"tok\r\nX-Injected: SECRETVALUE"})",
      "ecs");
  ASSERT_FALSE(injected);
  EXPECT_EQ(injected.error().code, errc::permission);
  EXPECT_NE(injected.error().message.find("session token"), std::string::npos);
  EXPECT_EQ(injected.error().message.find("SECRETVALUE"), std::string::npos);
  EXPECT_FALSE(
      parse_credentials_document(R"({"AccessKeyId":"AK ID","SecretAccessKey":"s"})", "imds"));
  EXPECT_FALSE(
      parse_credentials_document(std::string(10'000, '[') + std::string(10'000, ']'), "imds"));
}

TEST(SqsCredentials, AnInjectedTokenFromImdsIsNeverSent) {
  std::atomic<int> metadata_reads{0};
  qrt::test::local_http_server server(
      [&](const qrt::test::seen_request& r) -> qrt::test::canned_response {
        if (r.method == "PUT") return {200, "tok\r\nX-Injected: 1"};
        ++metadata_reads;
        return {404, ""};
      });
  temp_home home;
  fake_env env{{{"HOME", home.str()}, {"AWS_EC2_METADATA_SERVICE_ENDPOINT", server.url()}}};
  auto chain = make_chain(env);
  auto c = get(chain);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, errc::permission);
  EXPECT_NE(c.error().message.find("not a token"), std::string::npos) << c.error().message;
  EXPECT_EQ(metadata_reads, 0);
}

TEST(SqsCredentials, EnvironmentKeysWithControlCharactersAreRefusedByName) {
  fake_env env{{{"AWS_ACCESS_KEY_ID", "ENVKEY"},
                {"AWS_SECRET_ACCESS_KEY", "envsecret"},
                {"AWS_SESSION_TOKEN", "tok\nX-Injected: SECRETVALUE"}}};
  auto chain = make_chain(env);
  auto c = get(chain);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, errc::permission);
  EXPECT_NE(c.error().message.find("environment"), std::string::npos) << c.error().message;
  EXPECT_EQ(c.error().message.find("SECRETVALUE"), std::string::npos);
}

TEST(SqsCredentials, AnOversizeSharedFileIsSkippedAndNamed) {
  temp_home home;
  // Keys first, then padding: reading the whole file would find them; qrt must not read it.
  home.write(".aws/credentials", "[default]\naws_access_key_id=AKIA1\naws_secret_access_key=s1\n" +
                                     std::string(max_shared_file_bytes, '#') + "\n");
  fake_env env{{{"HOME", home.str()}}};
  auto chain = make_chain(env);
  auto c = get(chain);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("larger than 1048576 bytes"), std::string::npos)
      << c.error().message;
  EXPECT_NE(c.error().message.find(".aws/credentials"), std::string::npos) << c.error().message;
}

TEST(SqsCredentials, AnEcsUrlWithUserInfoIsNeverEchoed) {
  temp_home home;
  fake_env env{{{"HOME", home.str()},
                {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://user:SECRETPW@127.0.0.1:1/creds"}}};
  auto chain = make_chain(env);
  auto c = get(chain);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("ecs:"), std::string::npos) << c.error().message;
  EXPECT_EQ(c.error().message.find("SECRETPW"), std::string::npos) << c.error().message;
}

// The container agent listens on loopback or its own link-local address, and is spoken to in
// plain http with the task's authorization token: a full URI naming any other host is not
// asked (the error says why), so a stray variable cannot send the token elsewhere.
TEST(SqsCredentials, AnEcsFullUriToAnotherHostIsNotAsked) {
  temp_home home;
  // 192.0.2.0/24 is reserved for documentation: nothing answers there.
  fake_env env{{{"HOME", home.str()},
                {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://192.0.2.10:1/creds"},
                {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "task-auth"}}};
  auto chain = make_chain(env);
  auto c = get(chain);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("AWS_CONTAINER_CREDENTIALS_FULL_URI names neither a loopback"),
            std::string::npos)
      << c.error().message;
  EXPECT_EQ(c.error().message.find("task-auth"), std::string::npos) << c.error().message;
}

// The relative URI is appended to the ECS agent's fixed address: a value that is not a path
// ("@host/..." or ".host/...") would turn that address into userinfo or part of another host
// name. It is refused, and the error names the variable.
TEST(SqsCredentials, AnEcsRelativeUriThatIsNotAPathIsRefusedByName) {
  temp_home home;
  fake_env env{
      {{"HOME", home.str()}, {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "@127.0.0.1:1/creds"}}};
  auto chain = make_chain(env);
  auto c = get(chain);
  ASSERT_FALSE(c);
  EXPECT_NE(
      c.error().message.find("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI does not start with '/'"),
      std::string::npos)
      << c.error().message;
}
