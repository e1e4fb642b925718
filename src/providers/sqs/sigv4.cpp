#include "sigv4.hpp"

#include <algorithm>
#include <cctype>

#include "digest.hpp"

namespace qrt::sqs::detail {

namespace {

// "YYYYMMDDTHHMMSSZ" into `out` (16 characters), from calendar arithmetic: no time zone
// database, no locale, no allocation (strftime and gmtime_r were a visible cost per request).
void format_amz_date(std::chrono::system_clock::time_point t, char* out) {
  using namespace std::chrono;
  const auto secs = floor<seconds>(t);
  const auto day = floor<days>(secs);
  const year_month_day ymd{day};
  const hh_mm_ss hms{secs - day};
  auto put = [&](int value, int width) {
    for (int i = width - 1; i >= 0; --i) {
      out[i] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
    out += width;
  };
  put(static_cast<int>(ymd.year()), 4);
  put(static_cast<int>(static_cast<unsigned>(ymd.month())), 2);
  put(static_cast<int>(static_cast<unsigned>(ymd.day())), 2);
  *out++ = 'T';
  put(static_cast<int>(hms.hours().count()), 2);
  put(static_cast<int>(hms.minutes().count()), 2);
  put(static_cast<int>(hms.seconds().count()), 2);
  *out = 'Z';
}

}  // namespace

std::string amz_date(std::chrono::system_clock::time_point t) {
  char buf[16];
  format_amz_date(t, buf);
  return std::string(buf, sizeof buf);
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

char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// Appends the value trimmed, with runs of spaces and tabs collapsed to one space, as the
// canonical header value requires.
void append_canonical_value(std::string& out, std::string_view v) {
  bool space = false;
  bool any = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = true;
      continue;
    }
    if (space && any) out += ' ';
    space = false;
    any = true;
    out += c;
  }
}

void append_hex(std::string& out, const unsigned char* data, std::size_t size) {
  static constexpr char digits[] = "0123456789abcdef";
  for (std::size_t i = 0; i < size; ++i) {
    out += digits[data[i] >> 4];
    out += digits[data[i] & 0xf];
  }
}

// The texts of one signature. The signing path keeps one set per thread and reuses its
// capacity, so a request costs no allocation for them; sigv4_explain copies them out.
struct signing_texts {
  char date[16] = {};
  std::string canonical_request;
  std::string signed_headers;
  std::string string_to_sign;
  std::string signature;
  // Header names lower-cased, values canonical, in the order given (reused capacity).
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::size_t> order;
  std::string_view date_view() const { return {date, sizeof date}; }
};

std::string_view as_view(const std::array<unsigned char, 32>& bytes);
const std::array<unsigned char, 32>& signing_key(const std::string& secret, std::string_view day,
                                                 const signing_scope& scope);

// Everything a signature needs; `canonical_query` is already encoded, sorted and joined.
void compute(signing_texts& t, std::string_view method, std::string_view path,
             std::string_view canonical_query, std::span<const header_view> headers,
             std::string_view body, const aws_credentials& creds, const signing_scope& scope,
             std::chrono::system_clock::time_point now) {
  format_amz_date(now, t.date);
  const std::string_view date = t.date_view();
  const std::string_view day = date.substr(0, 8);

  // Header names lower-cased and sorted (stable: repeated names keep their order and join
  // their values with ',').
  std::size_t n = 0;
  auto add = [&](std::string_view name, std::string_view value) {
    if (n == t.headers.size()) t.headers.emplace_back();
    auto& [lname, canonical] = t.headers[n++];
    lname.assign(name);
    for (auto& c : lname) c = ascii_lower(c);
    canonical.clear();
    append_canonical_value(canonical, value);
  };
  for (const auto& h : headers) add(h.name, h.value);
  add("x-amz-date", date);
  if (!creds.session_token.empty()) add("x-amz-security-token", creds.session_token);
  t.order.resize(n);
  for (std::size_t i = 0; i < n; ++i) t.order[i] = i;
  std::stable_sort(t.order.begin(), t.order.end(), [&](std::size_t a, std::size_t b) {
    return t.headers[a].first < t.headers[b].first;
  });

  auto& cr = t.canonical_request;
  cr.clear();
  cr += method;
  cr += '\n';
  cr += path.empty() ? std::string_view("/") : path;
  cr += '\n';
  cr += canonical_query;
  cr += '\n';
  t.signed_headers.clear();
  for (std::size_t k = 0; k < n;) {
    const auto& name = t.headers[t.order[k]].first;
    cr += name;
    cr += ':';
    // As one slot per name that each value is appended to: a ',' only after a non-empty one.
    bool filled = false;
    for (; k < n && t.headers[t.order[k]].first == name; ++k) {
      const auto& value = t.headers[t.order[k]].second;
      if (filled) cr += ',';
      cr += value;
      filled = filled || !value.empty();
    }
    cr += '\n';
    if (!t.signed_headers.empty()) t.signed_headers += ';';
    t.signed_headers += name;
  }
  cr += '\n';
  cr += t.signed_headers;
  cr += '\n';
  const auto body_hash = sha256(body);
  append_hex(cr, body_hash.data(), body_hash.size());

  auto& sts = t.string_to_sign;
  sts.clear();
  sts += "AWS4-HMAC-SHA256\n";
  sts += date;
  sts += '\n';
  sts += day;
  sts += '/';
  sts += scope.region;
  sts += '/';
  sts += scope.service;
  sts += "/aws4_request\n";
  const auto request_hash = sha256(cr);
  append_hex(sts, request_hash.data(), request_hash.size());

  const auto& key = signing_key(creds.secret_access_key, day, scope);
  const auto mac = hmac_sha256(as_view(key), sts);
  t.signature.clear();
  append_hex(t.signature, mac.data(), mac.size());
}

std::string canonical_query(const signable_request& r) {
  std::vector<std::pair<std::string, std::string>> query;
  for (const auto& [k, v] : r.query) query.emplace_back(uri_encode(k, false), uri_encode(v, false));
  std::sort(query.begin(), query.end());
  std::string out;
  for (std::size_t i = 0; i < query.size(); ++i) {
    if (i) out += '&';
    out += query[i].first + '=' + query[i].second;
  }
  return out;
}

void compute(signing_texts& t, const signable_request& r, const aws_credentials& creds,
             const signing_scope& scope, std::chrono::system_clock::time_point now) {
  std::vector<header_view> headers;
  headers.reserve(r.headers.size());
  for (const auto& [name, value] : r.headers) headers.push_back({name, value});
  compute(t, r.method, r.path, canonical_query(r), headers, r.body, creds, scope, now);
}

std::vector<std::pair<std::string, std::string>> signed_headers_of(
    const signing_texts& t, const aws_credentials& credentials, const signing_scope& scope) {
  const std::string_view date = t.date_view();
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(3);
  out.emplace_back("X-Amz-Date", date);
  if (!credentials.session_token.empty()) {
    out.emplace_back("X-Amz-Security-Token", credentials.session_token);
  }
  std::string auth;
  auth.reserve(120 + credentials.access_key_id.size() + scope.region.size() + scope.service.size() +
               t.signed_headers.size());
  auth += "AWS4-HMAC-SHA256 Credential=";
  auth += credentials.access_key_id;
  auth += '/';
  auth += date.substr(0, 8);
  auth += '/';
  auth += scope.region;
  auth += '/';
  auth += scope.service;
  auth += "/aws4_request, SignedHeaders=";
  auth += t.signed_headers;
  auth += ", Signature=";
  auth += t.signature;
  out.emplace_back("Authorization", std::move(auth));
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
  signing_texts texts;
  compute(texts, request, credentials, scope, now);
  sigv4_trace t;
  t.canonical_request = std::move(texts.canonical_request);
  t.signed_headers = std::move(texts.signed_headers);
  t.string_to_sign = std::move(texts.string_to_sign);
  t.signature = std::move(texts.signature);
  return t;
}

std::vector<std::pair<std::string, std::string>> sigv4_sign(
    const signable_request& request, const aws_credentials& credentials, const signing_scope& scope,
    std::chrono::system_clock::time_point now) {
  signing_texts texts;
  compute(texts, request, credentials, scope, now);
  return signed_headers_of(texts, credentials, scope);
}

std::vector<std::pair<std::string, std::string>> sigv4_sign_view(
    std::string_view method, std::string_view path, std::span<const header_view> headers,
    std::string_view body, const aws_credentials& credentials, const signing_scope& scope,
    std::chrono::system_clock::time_point now) {
  thread_local signing_texts texts;  // reused: no allocation once warm
  compute(texts, method, path, {}, headers, body, credentials, scope, now);
  return signed_headers_of(texts, credentials, scope);
}

}  // namespace qrt::sqs::detail
