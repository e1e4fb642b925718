// Endpoints that expose secrets warn once on stderr, and neither the warning nor an error ever
// shows the password. No broker needed: providers connect on first use, and these never do.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <qrt/amqp.hpp>
#include <string>

namespace {

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

/// What creating a provider for `o` twice writes to stderr.
std::string stderr_of_two_providers(const qrt::amqp::options& o) {
  boost::asio::io_context io;
  ::testing::internal::CaptureStderr();
  auto first = qrt::amqp::make_provider(o, io.get_executor());
  auto second = qrt::amqp::make_provider(o, io.get_executor());
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(first) << first.error().to_string();
  EXPECT_TRUE(second) << second.error().to_string();
  return err;
}

TEST(amqp_insecure_transport, a_password_without_tls_warns_once_without_the_password) {
  qrt::amqp::options o;
  o.url = "amqp://user:SECRETPW@plaintext-password.invalid:5673";
  const std::string err = stderr_of_two_providers(o);
  EXPECT_EQ(count_of(err, "amqp://plaintext-password.invalid:5673"), 1u) << err;
  EXPECT_NE(err.find("unencrypted"), std::string::npos) << err;
  EXPECT_EQ(err.find("SECRETPW"), std::string::npos) << err;
  EXPECT_EQ(err.find("user:"), std::string::npos) << err;
}

TEST(amqp_insecure_transport, tls_without_verification_warns_once) {
  qrt::amqp::options o;
  o.host = "unverified-tls.invalid";
  o.tls = true;
  o.tls_verify = false;
  o.user = "user";
  o.password = "SECRETPW";
  const std::string err = stderr_of_two_providers(o);
  EXPECT_EQ(count_of(err, "amqps://unverified-tls.invalid:5671"), 1u) << err;
  EXPECT_NE(err.find("tls_verify=false"), std::string::npos) << err;
  EXPECT_EQ(err.find("SECRETPW"), std::string::npos) << err;
}

TEST(amqp_insecure_transport, verified_tls_and_anonymous_plaintext_do_not_warn) {
  qrt::amqp::options verified;
  verified.host = "verified-tls.invalid";
  verified.tls = true;
  verified.user = "user";
  verified.password = "SECRETPW";
  EXPECT_EQ(stderr_of_two_providers(verified), "");
  qrt::amqp::options anonymous;
  anonymous.host = "anonymous-plaintext.invalid";
  EXPECT_EQ(stderr_of_two_providers(anonymous), "");
}

TEST(amqp_insecure_transport, a_malformed_url_never_echoes_its_password) {
  for (const char* url :
       {"amqp://user:SECRETPW@host:notaport", "amqp://user:SECRETPW@host/path",
        "http://user:SECRETPW@host", "amqp://user:SECRETPW@", "amqp://user:SECRETPW@host:0"}) {
    auto o = qrt::amqp::options_from_config(qrt::config{{"endpoint", url}});
    ASSERT_FALSE(o) << url;
    EXPECT_EQ(o.error().code, qrt::errc::configuration_error);
    EXPECT_NE(o.error().message.find("endpoint"), std::string::npos) << o.error().message;
    EXPECT_EQ(o.error().message.find("SECRETPW"), std::string::npos) << o.error().message;
  }
}

}  // namespace
