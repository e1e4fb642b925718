// A tiny blocking HTTP/1.1 server on 127.0.0.1 with a kernel-chosen port, for tests that need
// a metadata endpoint or a misbehaving peer. One connection at a time, "Connection: close"; a
// handler can also hang up without answering (canned_response::hang_up).
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <functional>
#include <istream>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace qrt::test {

struct seen_request {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  ///< names lower-cased
  std::string body;                            ///< Content-Length bytes after the headers
};

struct canned_response {
  unsigned status = 200;
  std::string body;
  /// Close the connection without answering, once the whole request is read: a server that
  /// may have acted on it and whose answer is lost.
  bool hang_up = false;
};

class local_http_server {
 public:
  using handler = std::function<canned_response(const seen_request&)>;

  explicit local_http_server(handler h)
      : handler_(std::move(h)),
        acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}),
        thread_([this] { run(); }) {}

  ~local_http_server() {
    stopping_ = true;
    boost::system::error_code ec;
    // Wake the blocking accept with a connection of our own.
    boost::asio::ip::tcp::socket s(io_);
    s.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
  }

  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }
  int requests() const { return count_; }

 private:
  void run() {
    while (!stopping_) {
      boost::asio::ip::tcp::socket socket(io_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stopping_) return;
      boost::asio::streambuf buf;
      boost::asio::read_until(socket, buf, "\r\n\r\n", ec);
      if (ec) continue;
      std::istream in(&buf);
      seen_request req;
      std::string line;
      std::getline(in, line);
      auto sp1 = line.find(' ');
      auto sp2 = line.find(' ', sp1 + 1);
      req.method = line.substr(0, sp1);
      req.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
      while (std::getline(in, line) && line != "\r") {
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string name = line.substr(0, colon);
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::string value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ')) value.erase(0, 1);
        while (!value.empty() && (value.back() == '\r')) value.pop_back();
        req.headers[name] = value;
      }
      // The body: what read_until buffered past the headers, then the rest of Content-Length.
      if (auto length = req.headers.find("content-length"); length != req.headers.end()) {
        const std::size_t want = std::stoul(length->second);
        if (buf.size() < want)
          boost::asio::read(socket, buf, boost::asio::transfer_exactly(want - buf.size()), ec);
        if (ec) continue;
        req.body.resize(want);
        in.read(req.body.data(), static_cast<std::streamsize>(want));
      }
      ++count_;
      auto res = handler_(req);
      if (res.hang_up) continue;  // the socket closes with this iteration
      std::string out = "HTTP/1.1 " + std::to_string(res.status) +
                        " X\r\nContent-Length: " + std::to_string(res.body.size()) +
                        "\r\nConnection: close\r\n\r\n" + res.body;
      boost::asio::write(socket, boost::asio::buffer(out), ec);
    }
  }

  handler handler_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> count_{0};
  std::thread thread_;
};

}  // namespace qrt::test
