// The bytes under one connection attempt, as the connection sees them: opened, read, written,
// closed. The Asio transport (asio_transport.cpp) carries them between the stream and the
// engine, which knows nothing of sockets; tcp_streams() makes the TCP or TLS-over-TCP stream
// every provider uses, and the connection's unit tests (test/unit/amqp/connection_test.cpp) give
// it one in memory whose other end is a Proton driver acting as the broker.
//
// Every call is made on the connection's strand, and every handler is run there, never inline
// from the call that starts the operation.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <qrt/error.hpp>

#include "amqp/connection.hpp"

namespace qrt::amqp::detail {

class byte_stream {
 public:
  using io_handler = std::function<void(boost::system::error_code, std::size_t)>;
  /// Runs with nothing when the stream is ready for AMQP, or with the attempt's error.
  using open_handler = std::function<void(std::optional<error>)>;

  virtual ~byte_stream() = default;

  /// Connects (resolves, connects, and for TLS handshakes).
  virtual void async_open(open_handler done) = 0;
  /// Reads what has arrived, at most `into.size()` bytes.
  virtual void async_read_some(boost::asio::mutable_buffer into, io_handler done) = 0;
  /// Writes all of `bytes` (kept alive by the caller until `done` runs).
  virtual void async_write(boost::asio::const_buffer bytes, io_handler done) = 0;
  /// Stops: pending operations complete with an error (operation_aborted or the like).
  virtual void close() = 0;
  virtual bool is_open() const = 0;
};

using connection_strand = boost::asio::strand<boost::asio::any_io_executor>;

// stream_factory (connection.hpp) makes the stream of one connection attempt, on the
// connection's strand. An error (a TLS configuration that cannot be loaded) fails the attempt
// before anything is sent.

/// TCP to `where.host:where.port`, with TLS when `where.tls` (peer-name verification unless
/// `where.tls_verify` is off; the CA file, or the system store). The TLS context is made at the
/// first attempt that needs it and kept for the next ones.
stream_factory tcp_streams(const endpoint& where);

}  // namespace qrt::amqp::detail
