// The HTTP client's pure parts (src/net/http.hpp): endpoint URLs from configuration and the
// reading of a server's response, which parse_http_response does exactly as a connection is read.
#include "net/http.hpp"

#include <gtest/gtest.h>

#include <string>

using qrt::errc;
using qrt::net::parse_endpoint;
using qrt::net::parse_http_response;

TEST(HttpEndpoint, ParsesSchemeHostAndPort) {
  auto ep = parse_endpoint("http://127.0.0.1:4566/");
  ASSERT_TRUE(ep);
  EXPECT_FALSE(ep->tls);
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, 4566);
  ep = parse_endpoint("https://[::1]");
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->host, "::1");
  EXPECT_EQ(ep->port, 443);
  EXPECT_EQ(parse_endpoint(ep->to_string())->host, "::1");
}

TEST(HttpEndpoint, AHostWithWhitespaceOrControlCharactersIsRefused) {
  // The host is copied into every request's Host header: a CR LF in it would add headers.
  for (const std::string& url :
       {std::string("http://127.0.0.1\0\0:4566", 23), std::string("http://evil\r\nX-Injected: 1"),
        std::string("http://a b:80"), std::string("http://a:b:80")}) {
    auto ep = parse_endpoint(url);
    ASSERT_FALSE(ep) << url;
    EXPECT_EQ(ep.error().code, errc::configuration_error);
    EXPECT_NE(ep.error().message.find("endpoint host"), std::string::npos) << ep.error().message;
    EXPECT_EQ(ep.error().message.find('\r'), std::string::npos);
  }
}

TEST(HttpResponse, ReadsContentLengthChunkedAndUntilCloseBodies) {
  auto r = parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello", 1024);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(r->header("x-a"), "b");
  EXPECT_EQ(r->body, "hello");
  r = parse_http_response(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n", 1024);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->body, "abc");
  r = parse_http_response("HTTP/1.0 503 Busy\r\n\r\nuntil the server closes", 1024);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 503u);
  EXPECT_EQ(r->body, "until the server closes");
}

TEST(HttpResponse, NothingTruncatedOrOverTheLimitIsAProtocolError) {
  for (const std::string& bytes :
       {std::string(), std::string("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
        std::string("HTTP/1.1 200"), std::string("garbage\r\n\r\n"),
        std::string("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world")}) {
    auto r = parse_http_response(bytes, 8);
    ASSERT_FALSE(r) << bytes;
    EXPECT_EQ(r.error().code, errc::protocol_error);
    EXPECT_FALSE(r.error().message.empty());
  }
}
