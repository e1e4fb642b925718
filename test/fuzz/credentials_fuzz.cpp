// libFuzzer target for the credential answers qrt reads: the AWS ECS/IMDS credentials document
// and its Expiration time, the AWS shared credentials/config files (INI), and the Azure managed
// identity (IMDS / App Service) token answer. For the last, a first line of three digits is the
// HTTP status (else 200) and the rest the body. Properties:
// - a refusal says why, with the documented code (permission for AWS documents; permission,
//   throttled, connection_failed or protocol_error for Azure answers);
// - no error echoes a secret: the input is read again with SecretAccessKey, Token and
//   access_token replaced by a marker that no error may contain; an Azure error stays one short
//   line whatever the server sent;
// - what is read is made of the input's bytes (keys, INI entries), a token read has not expired;
// - an Expiration printed back in the canonical form reads the same; an INI file printed back
//   reads the same;
// - a token's refresh time lies within its life.
#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <string>

#include "fuzz_check.hpp"
#include "providers/servicebus/managed_identity.hpp"
#include "providers/sqs/credentials.hpp"

using namespace std::chrono;
using qrt::errc;
namespace json = boost::json;
namespace aws = qrt::sqs::detail;
namespace azure = qrt::servicebus::detail;

namespace {

constexpr std::string_view marker = "CANARY7f3a9c";

// The body with the named secret members (if it is a JSON object) replaced by the marker.
std::optional<std::string> with_marked_secrets(std::string_view body,
                                               std::initializer_list<std::string_view> secrets) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object() || body.find(marker) != std::string_view::npos) return std::nullopt;
  for (auto name : secrets) {
    if (auto* member = v.as_object().if_contains(name)) *member = marker;
  }
  return json::serialize(v);
}

void check_aws_document(std::string_view body) {
  auto c = aws::parse_credentials_document(body, "imds");
  if (!c) {
    qrt::fuzz::check_refusal(c.error(), errc::permission);
  } else {
    QRT_FUZZ_CHECK(!c->keys.access_key_id.empty() && !c->keys.secret_access_key.empty(),
                   "credentials read have both keys");
    QRT_FUZZ_CHECK(c->keys.access_key_id.size() + c->keys.secret_access_key.size() +
                           c->keys.session_token.size() <=
                       body.size(),
                   "keys are made of the input's bytes");
  }
  if (auto marked = with_marked_secrets(body, {"SecretAccessKey", "Token"})) {
    auto again = aws::parse_credentials_document(*marked, "imds");
    QRT_FUZZ_CHECK(again || again.error().message.find(marker) == std::string::npos,
                   "no error echoes a secret key or session token");
  }
}

void check_iso8601(std::string_view text) {
  auto t = aws::parse_iso8601(text);
  if (!t) return;
  const auto day = floor<days>(*t);
  const year_month_day ymd{day};
  if (static_cast<int>(ymd.year()) < 0 || static_cast<int>(ymd.year()) > 9999) return;
  const hh_mm_ss<seconds> hms{floor<seconds>(*t - day)};
  char printed[64];
  std::snprintf(printed, sizeof printed, "%04d-%02u-%02uT%02ld:%02ld:%02ldZ",
                static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()), static_cast<long>(hms.hours().count()),
                static_cast<long>(hms.minutes().count()), static_cast<long>(hms.seconds().count()));
  auto again = aws::parse_iso8601(printed);
  QRT_FUZZ_CHECK(again && *again == floor<seconds>(*t),
                 "an Expiration printed back in the canonical form reads the same");
}

void check_ini(std::string_view text) {
  const auto ini = aws::parse_ini(text);
  std::size_t entries = 0;
  std::string printed;
  for (const auto& [section, keys] : ini) {
    entries += 1 + keys.size();
    printed += "[" + section + "]\n";
    for (const auto& [k, v] : keys) printed += k + " = " + v + "\n";
  }
  QRT_FUZZ_CHECK(entries <= text.size() / 2 + 1, "no more INI entries than lines");
  QRT_FUZZ_CHECK(aws::parse_ini(printed) == ini, "an INI file printed back reads the same");
}

void check_azure_answer(std::string_view input) {
  unsigned status = 200;
  std::string_view body = input;
  if (input.size() >= 4 && input[3] == '\n') {
    unsigned parsed = 0;
    auto [p, ec] = std::from_chars(input.data(), input.data() + 3, parsed);
    if (ec == std::errc{} && p == input.data() + 3) {
      status = parsed;
      body = input.substr(4);
    }
  }
  const auto now = system_clock::time_point{seconds{1'800'000'000}};
  auto check = [&](std::string_view answer) {
    auto t = azure::parse_identity_response(status, answer, "client-1", now);
    if (t) {
      QRT_FUZZ_CHECK(!t->token.empty() && t->token.size() <= answer.size(),
                     "a token is made of the answer's bytes");
      QRT_FUZZ_CHECK(t->expires_at > now, "a token read has not expired");
      const auto refresh = azure::refresh_time(now, t->expires_at);
      QRT_FUZZ_CHECK(refresh >= now && refresh <= t->expires_at,
                     "a token is refreshed within its life");
      return t->token;
    }
    const auto& e = t.error();
    QRT_FUZZ_CHECK(!e.message.empty(), "a refusal says why");
    QRT_FUZZ_CHECK(e.code == errc::permission || e.code == errc::throttled ||
                       e.code == errc::connection_failed || e.code == errc::protocol_error,
                   "a refusal has a documented code");
    QRT_FUZZ_CHECK(e.message.size() <= 1024, "an error is bounded whatever the server sent");
    QRT_FUZZ_CHECK(e.message.find_first_of("\r\n") == std::string::npos,
                   "an error is one line whatever the server sent");
    return e.message;
  };
  check(body);
  if (auto marked = with_marked_secrets(body, {"access_token"})) {
    auto t = azure::parse_identity_response(status, *marked, "client-1", now);
    QRT_FUZZ_CHECK(t || t.error().message.find(marker) == std::string::npos,
                   "no error echoes the access token");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = qrt::fuzz::as_text(data, size);
  check_aws_document(text);
  check_iso8601(text);
  check_ini(text);
  check_azure_answer(text);
  return 0;
}
