// AWS Signature Version 4 as a pure function: the same request, keys and time always give the
// same headers. No clock, no I/O; the caller supplies the timestamp.
#pragma once

#include <chrono>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qrt::sqs::detail {

struct aws_credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  ///< empty for long-term keys
};

/// One HTTP request as it will go on the wire. `path` is already URI-encoded as sent;
/// `query` holds decoded name/value pairs (SigV4 encodes and sorts them).
struct signable_request {
  std::string method = "POST";
  std::string path = "/";
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;  ///< must include "host"
  std::string body;
};

struct signing_scope {
  std::string region;
  std::string service = "sqs";
};

/// The headers to add to the request: "X-Amz-Date", "X-Amz-Security-Token" (with a session
/// token) and "Authorization", in that order.
std::vector<std::pair<std::string, std::string>> sigv4_sign(
    const signable_request& request, const aws_credentials& credentials, const signing_scope& scope,
    std::chrono::system_clock::time_point now);

/// A header of a request signed with sigv4_sign_view: views of the caller's texts.
struct header_view {
  std::string_view name;
  std::string_view value;
};

/// sigv4_sign for a request without a query string (every request qrt's SQS provider sends),
/// from views of its parts: the same headers, without copying the body or building the
/// intermediate texts sigv4_explain keeps for diagnostics. `headers` must include "host".
std::vector<std::pair<std::string, std::string>> sigv4_sign_view(
    std::string_view method, std::string_view path, std::span<const header_view> headers,
    std::string_view body, const aws_credentials& credentials, const signing_scope& scope,
    std::chrono::system_clock::time_point now);

/// The intermediate texts, for tests and for debugging a signature mismatch. Never contains
/// the secret key.
struct sigv4_trace {
  std::string canonical_request;
  std::string signed_headers;  ///< "content-type;host;x-amz-date"
  std::string string_to_sign;
  std::string signature;
};
sigv4_trace sigv4_explain(const signable_request& request, const aws_credentials& credentials,
                          const signing_scope& scope, std::chrono::system_clock::time_point now);

/// "20150830T123600Z"
std::string amz_date(std::chrono::system_clock::time_point t);

/// RFC 3986 encoding as SigV4 wants it (unreserved characters kept, everything else %XX).
std::string uri_encode(std::string_view text, bool keep_slash);

}  // namespace qrt::sqs::detail
