// The TCP and TLS-over-TCP byte stream of a connection attempt (byte_stream.hpp): resolve,
// connect (TCP_NODELAY: AMQP frames are small and latency matters), then the TLS handshake with
// SNI and host name verification.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <string>
#include <utility>

#include "amqp/byte_stream.hpp"

namespace asio = boost::asio;

namespace qrt::amqp::detail {

namespace {

using tcp = asio::ip::tcp;

/// asio::ssl::stream needs a context even when TLS is off (only next_layer() is used then).
asio::ssl::context& plain_context() {
  static asio::ssl::context ctx(asio::ssl::context::tls_client);
  return ctx;
}

class tcp_stream final : public byte_stream {
 public:
  tcp_stream(const connection_strand& strand, const endpoint& where, asio::ssl::context* tls)
      : host_(where.host),
        port_(std::to_string(where.port)),
        display_(where.display()),
        verify_(where.tls_verify),
        resolver_(strand),
        stream_(strand, tls ? *tls : plain_context()),
        uses_tls_(tls != nullptr) {}

  void async_open(open_handler done) override {
    resolver_.async_resolve(
        host_, port_,
        [this, done = std::move(done)](boost::system::error_code ec,
                                       const tcp::resolver::results_type& found) mutable {
          if (closed_) return failed(done, "the attempt was abandoned");
          if (ec) return failed(done, "resolving the host failed: " + ec.message());
          asio::async_connect(stream_.next_layer(), found,
                              [this, done = std::move(done)](boost::system::error_code ec,
                                                             const tcp::endpoint&) mutable {
                                if (closed_) return failed(done, "the attempt was abandoned");
                                if (ec) return failed(done, ec.message());
                                stream_.next_layer().set_option(tcp::no_delay(true), ec);
                                if (!uses_tls_) return done(std::nullopt);
                                handshake(std::move(done));
                              });
        });
  }

  void async_read_some(asio::mutable_buffer into, io_handler done) override {
    if (uses_tls_) {
      stream_.async_read_some(into, std::move(done));
    } else {
      stream_.next_layer().async_read_some(into, std::move(done));
    }
  }

  void async_write(asio::const_buffer bytes, io_handler done) override {
    if (uses_tls_) {
      asio::async_write(stream_, bytes, std::move(done));
    } else {
      asio::async_write(stream_.next_layer(), bytes, std::move(done));
    }
  }

  void close() override {
    // A step already completed and queued is not cancelled: closed_ stops it going on (a
    // connect after the close would open the socket again).
    closed_ = true;
    resolver_.cancel();
    boost::system::error_code ignored;
    stream_.next_layer().close(ignored);
  }

  bool is_open() const override { return stream_.next_layer().is_open(); }

 private:
  void handshake(open_handler done) {
    // SNI, and the host name the certificate must carry.
    SSL_set_tlsext_host_name(stream_.native_handle(), host_.c_str());
    if (verify_) stream_.set_verify_callback(asio::ssl::host_name_verification(host_));
    stream_.async_handshake(asio::ssl::stream_base::client,
                            [this, done = std::move(done)](boost::system::error_code ec) mutable {
                              if (ec) {
                                return failed(done,
                                              "TLS handshake failed: " + ec.message() +
                                                  " (TLS: check the server certificate, the CA "
                                                  "file and the host name)");
                              }
                              done(std::nullopt);
                            });
  }

  void failed(open_handler& done, const std::string& why) const {
    done(fail(errc::connection_failed, "connect to '" + display_ + "' failed: " + why));
  }

  const std::string host_;
  const std::string port_;
  const std::string display_;  ///< no user or password (endpoint::display)
  const bool verify_;
  tcp::resolver resolver_;
  asio::ssl::stream<tcp::socket> stream_;
  bool uses_tls_;
  bool closed_ = false;
};

/// The system store (or the configured CA file) and, unless turned off, verification of the
/// certificate chain and of the host name.
result<std::shared_ptr<asio::ssl::context>> make_tls_context(const endpoint& where) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  boost::system::error_code ec;
  if (where.tls_ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
  } else {
    ctx->load_verify_file(where.tls_ca_file, ec);
  }
  if (ec) {
    return fail(errc::configuration_error,
                "TLS for '" + where.display() + "': cannot load the trusted CAs" +
                    (where.tls_ca_file.empty() ? std::string(" from the system store")
                                               : " from '" + where.tls_ca_file + "'") +
                    ": " + ec.message());
  }
  ctx->set_verify_mode(where.tls_verify ? asio::ssl::verify_peer : asio::ssl::verify_none);
  return ctx;
}

}  // namespace

stream_factory tcp_streams(const endpoint& where) {
  // `where` is the connection's own endpoint, which outlives every stream it makes.
  return [&where, tls = std::shared_ptr<asio::ssl::context>()](
             const connection_strand& strand) mutable -> result<std::unique_ptr<byte_stream>> {
    if (where.tls && !tls) {
      auto made = make_tls_context(where);
      if (!made) return made.error();
      tls = std::move(*made);
    }
    return std::unique_ptr<byte_stream>(
        std::make_unique<tcp_stream>(strand, where, where.tls ? tls.get() : nullptr));
  };
}

}  // namespace qrt::amqp::detail
