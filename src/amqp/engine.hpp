// The AMQP connection's engine: everything the connection decides, and nothing it waits on.
// It owns Proton's connection_driver (one per connection attempt) and the tables of pending
// sends, receives, settlements and $cbs/$management requests, and is driven only by:
//  - calls (send, receive, settle, request, ...) that complete through their callback, from
//    the call itself or from a later one;
//  - bytes: stream_opened / bytes_in / stream_failed in, take_output and take_closing out;
//  - the time: every call takes `now`, and tick(now) runs what was due by then and returns
//    the next deadline (operation timeouts, the connect timeout, the reconnect back-off,
//    Proton's heartbeats).
// No sockets, timers, threads or Asio here (docs/adr/0033-amqp-core-target-and-byte-stream.md):
// the Asio transport (asio_transport.hpp) runs one engine on a strand over a byte_stream, and
// the unit tests run one against a second Proton driver with the time passed by hand. So the
// engine is not thread-safe: one caller at a time, and callbacks run inline (a caller that
// must not run user code there, like the transport, posts them on).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <proton/message.hpp>
#include <qrt/error.hpp>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "amqp/connection_types.hpp"

namespace qrt::amqp::detail {

/// How long a new session waits for the broker to answer the end of a session qrt ended before
/// it begins all the same (engine_core.hpp says why it waits). RabbitMQ 3.10 answers within
/// milliseconds, but now and then never answers an end at all; its late frames for an ended
/// session, the reason for the wait, come within milliseconds too.
inline constexpr std::chrono::milliseconds unanswered_end_wait{1'000};

class engine {
 public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;
  /// Runs once with the call's result.
  template <class T>
  using callback = std::function<void(T)>;
  using settle_item = std::pair<delivery_ref, outcome>;

  /// What the connection holds now and the most it has held, against endpoint's bounds.
  struct usage {
    std::size_t links = 0;
    std::size_t peak_links = 0;
    std::uint64_t prefetched_bytes = 0;  ///< buffered deliveries, by their encoded size
    std::uint64_t peak_committed_bytes = 0;
  };

  /// A stream the transport is to close once it has written `last_bytes` (the close frame, or
  /// nothing when the attempt never got as far as AMQP).
  struct closing_stream {
    std::uint64_t attempt = 0;
    std::string last_bytes;
  };

  /// The connection opened (`true`) or was lost other than by shutdown() (`false`): what
  /// connection_stats counts.
  using connection_observer = std::function<void(bool opened)>;

  explicit engine(endpoint where, connection_observer observe = {});
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  // ---- calls (connection.hpp says what each does for its caller) ----

  void connect(milliseconds timeout, time_point now, callback<result<void>> done);
  void send(std::string address, std::vector<outgoing_delivery> deliveries, milliseconds timeout,
            time_point now, callback<result<std::vector<result<void>>>> done);
  void open_receiver(std::string link_id, receiver_spec spec, milliseconds timeout, time_point now,
                     callback<result<link_info>> done);
  void probe(std::string address, milliseconds timeout, time_point now,
             callback<result<void>> done);
  void receive(std::string link_id, receiver_spec spec, std::size_t max, milliseconds wait,
               time_point now, callback<result<std::vector<inbound>>> done);
  /// The outer result fails only as a whole (never today); one result per item otherwise.
  void settle(std::vector<settle_item> items, milliseconds timeout, time_point now,
              callback<result<std::vector<result<void>>>> done);
  void close_receiver(const std::string& link_id, time_point now);
  /// `kind` decides the error when no answer will come (connection::request).
  void request(std::string node, proton::message request, milliseconds timeout, time_point now,
               callback<result<proton::message>> done, request_kind kind = {});
  usage current_usage() const;
  /// Closes the connection and fails every pending call with errc::closed; later calls fail
  /// with errc::closed. An open connection closes gracefully: messages not yet sent fail at
  /// once; messages sent wait for their outcomes, then the sessions end and the close frame
  /// goes out on the stream, which is kept (calls still pending may still complete) until the
  /// broker answers or endpoint::close_timeout passes (counted from this call); then the
  /// stream goes to take_closing and `closed` runs. A sent message whose outcome never came
  /// fails as unconfirmed (transient), not closed: the broker may have stored it; a sent
  /// request that changes state (request_kind) waits for its reply likewise, and fails
  /// unconfirmed without one. Reads and requests not sent fail closed when the close begins.
  /// Otherwise at once. A second call's `closed` runs when the first's does.
  void shutdown(time_point now, std::function<void()> closed = {});

  // ---- the byte stream of each connection attempt ----

  /// The attempt that needs a stream now (once per attempt), if one does.
  std::optional<std::uint64_t> take_stream_request();
  /// The attempt's stream is up (TCP, and TLS when asked): AMQP starts on it.
  void stream_opened(std::uint64_t attempt, time_point now);
  /// The attempt's stream could not be opened, or broke (read or write failed).
  void stream_failed(std::uint64_t attempt, const error& why, time_point now);
  /// Bytes read from the attempt's stream. Returns how many the engine took: fewer than given
  /// once Proton reads no more (a framing error: the transport is closing).
  std::size_t bytes_in(std::uint64_t attempt, std::span<const char> bytes, time_point now);
  /// Whether the attempt's stream is still read (false once it is lost or refused).
  bool reading(std::uint64_t attempt) const;
  /// Appends the bytes to write next on the current attempt's stream to `out` (swapped in when
  /// `out` is empty, so the two buffers keep their capacity from write to write).
  void take_output(std::string& out);
  /// Streams of attempts that are over, to close after their last bytes.
  std::vector<closing_stream> take_closing();

  // ---- the time ----

  /// Runs what was due by `now` (timeouts, the back-off, Proton's heartbeat bookkeeping) and
  /// returns the next deadline; time_point::max() when nothing waits on the time.
  time_point tick(time_point now);
  /// The deadline tick() last returned, moved earlier by the calls made since.
  time_point next_deadline() const;

  /// How many times the connection has been opened. The one member any thread may read.
  std::uint64_t generation() const noexcept;
  const endpoint& where() const noexcept;

  struct core;

 private:
  std::unique_ptr<core> core_;
};

}  // namespace qrt::amqp::detail
