#include "sigv4.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <map>

#include "digest.hpp"

namespace qrt::sqs::detail {

std::string amz_date(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[17];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string uri_encode(std::string_view text, bool keep_slash) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out += ch;
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 0xf];
    }
  }
  return out;
}

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Trims and collapses runs of spaces, as the canonical header value requires.
std::string canonical_value(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = true;
      continue;
    }
    if (space && !out.empty()) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

struct canonical_parts {
  std::string request;
  std::string signed_headers;
};

canonical_parts canonicalize(const signable_request& r, const std::string& date,
                             const aws_credentials& creds) {
  // Header names lower-cased and sorted; repeated names join their values with ','.
  std::map<std::string, std::string> headers;
  auto add = [&](std::string name, std::string_view value) {
    auto& slot = headers[lower(name)];
    if (!slot.empty()) slot += ',';
    slot += canonical_value(value);
  };
  for (const auto& [name, value] : r.headers) add(name, value);
  add("x-amz-date", date);
  if (!creds.session_token.empty()) add("x-amz-security-token", creds.session_token);

  std::vector<std::pair<std::string, std::string>> query;
  for (const auto& [k, v] : r.query) query.emplace_back(uri_encode(k, false), uri_encode(v, false));
  std::sort(query.begin(), query.end());

  canonical_parts out;
  out.request = r.method + '\n' + (r.path.empty() ? std::string("/") : r.path) + '\n';
  for (std::size_t i = 0; i < query.size(); ++i) {
    if (i) out.request += '&';
    out.request += query[i].first + '=' + query[i].second;
  }
  out.request += '\n';
  for (const auto& [name, value] : headers) {
    out.request += name + ':' + value + '\n';
    if (!out.signed_headers.empty()) out.signed_headers += ';';
    out.signed_headers += name;
  }
  out.request += '\n' + out.signed_headers + '\n' + hex(sha256(r.body));
  return out;
}

std::string_view as_view(const std::array<unsigned char, 32>& bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// The signing key depends only on the secret, the day, the region and the service, so each
// thread derives it once a day instead of on every request (four HMACs of five).
const std::array<unsigned char, 32>& signing_key(const std::string& secret, std::string_view day,
                                                 const signing_scope& scope) {
  struct derived {
    std::string secret, day, region, service;
    std::array<unsigned char, 32> key{};
    bool valid = false;
  };
  thread_local derived last;
  if (last.valid && last.day == day && last.region == scope.region &&
      last.service == scope.service && last.secret == secret) {
    return last.key;
  }
  auto key = hmac_sha256("AWS4" + secret, day);
  key = hmac_sha256(as_view(key), scope.region);
  key = hmac_sha256(as_view(key), scope.service);
  key = hmac_sha256(as_view(key), "aws4_request");
  last = {secret, std::string(day), scope.region, scope.service, key, true};
  return last.key;
}

}  // namespace

sigv4_trace sigv4_explain(const signable_request& request, const aws_credentials& credentials,
                          const signing_scope& scope, std::chrono::system_clock::time_point now) {
  const std::string date = amz_date(now);
  const std::string day = date.substr(0, 8);
  const std::string credential_scope =
      day + '/' + scope.region + '/' + scope.service + "/aws4_request";
  const auto canonical = canonicalize(request, date, credentials);

  sigv4_trace t;
  t.canonical_request = canonical.request;
  t.signed_headers = canonical.signed_headers;
  t.string_to_sign =
      "AWS4-HMAC-SHA256\n" + date + '\n' + credential_scope + '\n' + hex(sha256(canonical.request));
  const auto& key = signing_key(credentials.secret_access_key, day, scope);
  t.signature = hex(hmac_sha256(as_view(key), t.string_to_sign));
  return t;
}

std::vector<std::pair<std::string, std::string>> sigv4_sign(
    const signable_request& request, const aws_credentials& credentials, const signing_scope& scope,
    std::chrono::system_clock::time_point now) {
  const std::string date = amz_date(now);
  const auto trace = sigv4_explain(request, credentials, scope, now);
  std::vector<std::pair<std::string, std::string>> out;
  out.emplace_back("X-Amz-Date", date);
  if (!credentials.session_token.empty()) {
    out.emplace_back("X-Amz-Security-Token", credentials.session_token);
  }
  out.emplace_back("Authorization", "AWS4-HMAC-SHA256 Credential=" + credentials.access_key_id +
                                        '/' + date.substr(0, 8) + '/' + scope.region + '/' +
                                        scope.service + "/aws4_request, SignedHeaders=" +
                                        trace.signed_headers + ", Signature=" + trace.signature);
  return out;
}

}  // namespace qrt::sqs::detail
