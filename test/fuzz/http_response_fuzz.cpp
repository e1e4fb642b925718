// libFuzzer target for what an HTTP server sends back (src/net/http.cpp: the response parser every
// SQS call and metadata endpoint goes through) and for the endpoint URLs a configuration names.
// Properties:
// - a refusal is a protocol_error (a response) or a configuration_error (an endpoint) that says
//   why;
// - a response is bounded by its bytes and the body limit: no more headers than lines, no body
//   larger than the limit or the input; a response read under a small body limit reads the same
//   under a large one;
// - no header name or value carries CR, LF or NUL (nothing a server sends can split a header);
// - a response printed back (status line, headers, Content-Length framing) reads the same;
// - an endpoint that parses has a host and a port, prints back to a URL that parses to the
//   same endpoint, and its host has no whitespace or control characters (it goes into the Host
//   header of every request).
#include <string>

#include "fuzz_check.hpp"
#include "net/http.hpp"

using namespace qrt::net;
using qrt::errc;

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

bool is_framing(std::string_view name) {
  return iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding");
}

bool has_no_body(unsigned status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

header_list without_framing(const header_list& headers) {
  header_list out;
  for (const auto& h : headers) {
    if (!is_framing(h.first)) out.push_back(h);
  }
  return out;
}

void check_response(std::string_view bytes, std::size_t limit) {
  auto r = parse_http_response(bytes, limit);
  if (!r) {
    qrt::fuzz::check_refusal(r.error(), errc::protocol_error);
    return;
  }
  QRT_FUZZ_CHECK(r->status >= 100 && r->status <= 999, "the status has three digits");
  QRT_FUZZ_CHECK(r->headers.size() * 3 <= bytes.size(), "no more headers than lines");
  QRT_FUZZ_CHECK(r->body.size() <= limit && r->body.size() <= bytes.size(),
                 "the body fits the limit and the input");
  for (const auto& [name, value] : r->headers) {
    QRT_FUZZ_CHECK(!name.empty(), "a header has a name");
    for (const std::string* s : {&name, &value}) {
      QRT_FUZZ_CHECK(s->find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos,
                     "no CR, LF or NUL in a header");
    }
  }
  if (has_no_body(r->status)) {
    QRT_FUZZ_CHECK(r->body.empty(), "a 1xx, 204 or 304 response has no body");
  }

  std::string printed = "HTTP/1.1 " + std::to_string(r->status) + " X\r\n";
  for (const auto& [name, value] : without_framing(r->headers)) {
    printed += name + ": " + value + "\r\n";
  }
  if (!has_no_body(r->status))
    printed += "Content-Length: " + std::to_string(r->body.size()) + "\r\n";
  printed += "\r\n" + r->body;
  auto again = parse_http_response(printed, limit);
  QRT_FUZZ_CHECK(again.has_value(), "a response printed back parses");
  QRT_FUZZ_CHECK(again->status == r->status && again->body == r->body &&
                     without_framing(again->headers) == without_framing(r->headers),
                 "a response printed back reads the same");

  if (limit < (1u << 20)) {
    auto larger = parse_http_response(bytes, 1u << 20);
    QRT_FUZZ_CHECK(larger && larger->status == r->status && larger->body == r->body &&
                       larger->headers == r->headers,
                   "a response within a small body limit reads the same under a large one");
  }
}

void check_endpoint(std::string_view url) {
  auto ep = parse_endpoint(url);
  if (!ep) {
    qrt::fuzz::check_refusal(ep.error(), errc::configuration_error);
    return;
  }
  QRT_FUZZ_CHECK(!ep->host.empty() && ep->port != 0, "an endpoint has a host and a port");
  for (const char c : ep->host) {
    const auto u = static_cast<unsigned char>(c);
    QRT_FUZZ_CHECK(u > 0x20 && u != 0x7f, "a host has no whitespace or control characters");
  }
  auto again = parse_endpoint(ep->to_string());
  QRT_FUZZ_CHECK(
      again && again->tls == ep->tls && again->host == ep->host && again->port == ep->port,
      "an endpoint prints back to a URL that parses the same");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto bytes = qrt::fuzz::as_text(data, size);
  check_response(bytes, 64);
  check_response(bytes, 1u << 20);
  check_endpoint(bytes);
  return 0;
}
