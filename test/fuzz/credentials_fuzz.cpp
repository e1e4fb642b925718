// libFuzzer target for the credential answers qrt reads: the AWS ECS/IMDS credentials document
// and its Expiration time, the EC2 IMDS session token and instance role name answers, the AWS
// shared credentials/config files (INI) and the keys and region a profile takes from them, and
// the Azure managed identity (IMDS / App Service) token answer. For the last, a first line of
// three digits is the HTTP status (else 200) and the rest the body. For the profile lookups, the
// input up to its first NUL byte is the credentials file and the rest the config file; every
// section either file names is looked up as a profile, and "default". Properties:
// - a refusal says why, with the documented code (permission for AWS documents, IMDS answers and
//   profile keys qrt cannot send; permission, throttled, connection_failed or protocol_error for
//   Azure answers);
// - no error echoes a secret: the input is read again with SecretAccessKey, Token,
//   aws_secret_access_key, aws_session_token, the IMDS token and access_token marked by a marker
//   that no error may contain; an Azure error stays one short line, valid UTF-8 without control
//   characters, whatever the server sent;
// - what is read is made of the input's bytes (keys, INI entries, IMDS token and role name,
//   profile keys and region), a token read has not expired;
// - an Expiration printed back in the canonical form reads the same; an INI file printed back
//   reads the same; an IMDS token, a role name, a profile's keys and its region written back
//   the way the server or the user would read the same;
// - a token's refresh time lies within its life.
#include <boost/json.hpp>
#include <cctype>
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

// The text with the marker placed in its middle: a property about secrets that must hold
// whatever the fuzzer put around the secret, for answers that are nothing but the secret.
std::optional<std::string> with_marker_inside(std::string_view text) {
  if (text.find(marker) != std::string_view::npos) return std::nullopt;
  const auto half = text.size() / 2;
  return std::string(text.substr(0, half)) + std::string(marker) + std::string(text.substr(half));
}

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

void check_imds_token(std::string_view body) {
  auto token = aws::parse_imds_token(body);
  if (!token) {
    qrt::fuzz::check_refusal(token.error(), errc::permission);
  } else {
    QRT_FUZZ_CHECK(!token->empty() && token->size() <= 4096 && token->size() <= body.size(),
                   "an IMDS token is 1-4096 of the answer's bytes");
    QRT_FUZZ_CHECK(token->find_first_of(" \t\r\n") == std::string::npos,
                   "an IMDS token has no whitespace");
    auto again = aws::parse_imds_token(*token + "\n");
    QRT_FUZZ_CHECK(again && *again == *token, "an IMDS token answered again reads the same");
  }
  if (auto marked = with_marker_inside(body)) {
    auto again = aws::parse_imds_token(*marked);
    QRT_FUZZ_CHECK(again || again.error().message.find(marker) == std::string::npos,
                   "no error echoes the IMDS token");
  }
}

void check_imds_role_name(std::string_view body) {
  auto role = aws::parse_imds_role_name(body);
  if (!role) {
    qrt::fuzz::check_refusal(role.error(), errc::permission);
    return;
  }
  QRT_FUZZ_CHECK(role->size() <= 128 && role->size() <= body.size(),
                 "a role name is at most 128 of the answer's bytes");
  QRT_FUZZ_CHECK(role->find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789+=,.@_-") == std::string::npos,
                 "a role name has only the characters of an IAM role name");
  QRT_FUZZ_CHECK(!role->empty() || trimmed(body.substr(0, body.find('\n'))).empty(),
                 "no role only when the answer's first line is blank");
  auto again = aws::parse_imds_role_name(*role + "\n");
  QRT_FUZZ_CHECK(again && *again == *role, "a role name listed again reads the same");
}

// A name the INI reader gives back as a section: trimmed, one line, without ']'.
bool writable_section(std::string_view name) {
  return !name.empty() && trimmed(name) == name && name.find_first_of("]\n") == std::string::npos;
}

void check_profile(const aws::ini_file& credentials, const aws::ini_file& config,
                   const std::string& profile, std::size_t input_size) {
  if (auto c = aws::profile_credentials(credentials, config, profile)) {
    QRT_FUZZ_CHECK(!c->access_key_id.empty() && !c->secret_access_key.empty(),
                   "a profile's keys have both halves");
    QRT_FUZZ_CHECK(
        c->access_key_id.size() + c->secret_access_key.size() + c->session_token.size() <=
            input_size,
        "a profile's keys are made of the input's bytes");
    if (writable_section(profile)) {
      const auto written = "[" + profile + "]\naws_access_key_id = " + c->access_key_id +
                           "\naws_secret_access_key = " + c->secret_access_key +
                           "\naws_session_token = " + c->session_token + "\n";
      auto again = aws::profile_credentials(aws::parse_ini(written), {}, profile);
      QRT_FUZZ_CHECK(again && again->access_key_id == c->access_key_id &&
                         again->secret_access_key == c->secret_access_key &&
                         again->session_token == c->session_token,
                     "a profile's keys written to a credentials file read the same");
    }
    if (auto ok = aws::check_credentials(*c, "profile"); !ok) {
      qrt::fuzz::check_refusal(ok.error(), errc::permission);
    }
    if (c->secret_access_key.find(marker) == std::string::npos &&
        c->session_token.find(marker) == std::string::npos) {
      auto marked = *c;
      marked.secret_access_key = std::string(marker) + marked.secret_access_key;
      if (!marked.session_token.empty())
        marked.session_token = std::string(marker) + marked.session_token;
      auto ok = aws::check_credentials(marked, "profile");
      QRT_FUZZ_CHECK(ok || ok.error().message.find(marker) == std::string::npos,
                     "no error echoes a profile's secret key or session token");
    }
  }
  const auto region = aws::profile_region(credentials, config, profile);
  QRT_FUZZ_CHECK(region.size() <= input_size, "a region is made of the input's bytes");
  QRT_FUZZ_CHECK(trimmed(region) == region && region.find('\n') == std::string::npos,
                 "a region is one trimmed line");
  if (!region.empty() && writable_section(profile)) {
    const auto written = "[profile " + profile + "]\nregion = " + region + "\n";
    QRT_FUZZ_CHECK(aws::profile_region({}, aws::parse_ini(written), profile) == region,
                   "a profile's region written to a config file reads the same");
  }
}

void check_profiles(std::string_view text) {
  const auto nul = text.find('\0');
  const auto credentials = aws::parse_ini(text.substr(0, nul));
  const auto config =
      aws::parse_ini(nul == std::string_view::npos ? std::string_view{} : text.substr(nul + 1));
  check_profile(credentials, config, "default", text.size());
  for (const auto& [name, keys] : credentials)
    check_profile(credentials, config, name, text.size());
  constexpr std::string_view prefix = "profile ";
  for (const auto& [name, keys] : config) {
    check_profile(credentials, config, name, text.size());
    if (name.starts_with(prefix))
      check_profile(credentials, config, name.substr(prefix.size()), text.size());
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
    qrt::fuzz::check_shown(e);
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
  check_imds_token(text);
  check_imds_role_name(text);
  check_profiles(text);
  check_azure_answer(text);
  return 0;
}
