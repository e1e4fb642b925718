// The Asio side of the AMQP connection: runs one engine (engine.hpp) on a strand, over one
// byte_stream per connection attempt (byte_stream.hpp: TCP/TLS, or memory in the unit tests),
// with one timer at the engine's next deadline. It decides nothing: it opens the stream the
// engine asks for, feeds it what the stream reads, writes what the engine produced, closes the
// streams of attempts that are over once their last bytes are out, and calls tick() when the
// deadline comes. Timeouts, back-off and reconnecting are the engine's, expressed in time.
#pragma once

#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "amqp/byte_stream.hpp"
#include "amqp/connection.hpp"
#include "amqp/engine.hpp"
#include "core/connection_meter.hpp"

namespace qrt::amqp::detail {

class asio_transport : public std::enable_shared_from_this<asio_transport> {
 public:
  asio_transport(endpoint where, boost::asio::any_io_executor executor, stream_factory streams);

  /// Run after every engine call, on the strand: acts on what the call left for the transport
  /// (a stream to open or to close, bytes to write, a new deadline).
  void service();
  static engine::time_point now() { return engine::clock::now(); }

  connection_strand strand;
  qrt::detail::connection_meter meter;  ///< traffic, failures, recoveries (connection_stats)
  engine protocol;                      ///< the engine; touched on the strand only

 private:
  /// One attempt's stream and its buffers. A retired one (the attempt is over) writes what it
  /// still has (a close frame), then closes; it is freed once its last handler has run.
  struct stream_io {
    stream_io(std::uint64_t n, std::unique_ptr<byte_stream> s) : attempt(n), stream(std::move(s)) {}
    std::uint64_t attempt;
    std::unique_ptr<byte_stream> stream;
    bool writing = false;
    bool retired = false;
    std::string out;       ///< being written
    std::string next_out;  ///< produced while a write is in flight
    std::array<char, 64 * 1024> in{};
  };

  void open_stream(std::uint64_t attempt);
  void read_more(const std::shared_ptr<stream_io>& s);
  void write_out(const std::shared_ptr<stream_io>& s);
  void retire(engine::closing_stream closing);
  void wait_for_deadline();
  bool is_current(const std::shared_ptr<stream_io>& s) const { return s == current_; }

  stream_factory make_stream_;
  std::shared_ptr<stream_io> current_;
  boost::asio::steady_timer timer_;
  engine::time_point timer_at_ = engine::time_point::max();
  std::uint64_t timer_waits_ = 0;  ///< identifies the wait that owns the timer
};

}  // namespace qrt::amqp::detail
