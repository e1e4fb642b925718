// One AMQP 1.0 connection to one endpoint, bridged to Asio. Internal to qrt (never in
// include/qrt/): the generic amqp provider and the Service Bus provider build on it.
//
// Layers (docs/adr/0033-amqp-core-target-and-byte-stream.md): this is the awaitable front end.
// What the connection decides is in the I/O-free engine (engine.hpp), which owns Proton's
// connection_driver; the Asio transport (asio_transport.hpp) runs it on a strand of the
// executor given to create(), over a TCP (or TLS) byte stream, with one timer at the engine's
// next deadline.
//
// Threading (docs/adr/0031-amqp-proton-driver-on-asio.md): every Proton object is touched only
// on that strand. Calls here are awaitables: their work is dispatched onto the strand, and the
// result is posted to the awaiting coroutine's executor (never run inline, so no user code runs
// on the strand). proton::message values cross over (they are plain values).
//
// What the connection does for its users:
//  - connects lazily on first use (SASL PLAIN with a user, else ANONYMOUS; TLS for amqps with
//    peer-name verification on unless turned off), and reconnects on demand after a loss, the
//    attempts spaced by exponential back-off;
//  - multiplexes links on one connection, each on its own session (a broker that ends a session
//    hurts one link): senders cached per address, receivers cached per link id, attached on
//    first use and re-attached on demand after a loss; probes (probe()) share one session;
//  - peek-lock: deliveries stay unsettled until settle(); credit is granted by hand (credit
//    window 0) so at most `prefetch` messages are locked by a receiver link (buffered + handed
//    out), or the size of a pending receive call if that is larger;
//  - receiver links announce a max-message-size and refuse (reject) deliveries past it before
//    buffering them whole;
//  - a receiver attach answered without a source (a refusal: the detach with the reason follows)
//    fails with the detach's error, not as a success;
//  - receipts carry the link instance that delivered them: once that link or the connection is
//    gone (the broker has then released the message), settling fails with receipt_expired;
//  - request/response on a management node ($cbs, $management) for Service Bus.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <proton/binary.hpp>
#include <proton/message.hpp>
#include <proton/source.hpp>
#include <proton/symbol.hpp>
#include <proton/value.hpp>
#include <qrt/error.hpp>
#include <qrt/message.hpp>
#include <qrt/provider.hpp>
#include <string>
#include <vector>

#include "amqp/connection_types.hpp"

namespace qrt::amqp::detail {

/// Warns once per process and endpoint on stderr, never showing the user or password, when
/// `where` exposes secrets or messages: TLS without verification (tls_verify=false), or a
/// password sent without TLS. connection::create calls it.
void warn_if_insecure(const endpoint& where);

class byte_stream;
using stream_factory = std::function<result<std::unique_ptr<byte_stream>>(
    const boost::asio::strand<boost::asio::any_io_executor>& strand)>;

class connection {
 public:
  /// Connects on first use, on a strand of `executor`. Never fails: errors surface on
  /// operations. Results go to each caller's own executor. Each attempt runs over a stream from
  /// `streams` (byte_stream.hpp); none given: TCP, or TLS over TCP (tcp_streams(where)).
  static std::shared_ptr<connection> create(endpoint where, boost::asio::any_io_executor executor,
                                            stream_factory streams = {});
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Sends each delivery on the cached sender link to `address`, unsettled, and waits for the
  /// broker's outcome. The outer result fails only when nothing was sent (attach refused,
  /// connection down); otherwise one result per delivery: accepted, or the broker's refusal, or
  /// unconfirmed where the outcome is unknown (handed to the broker, no outcome back before the
  /// link or connection ended or `timeout` passed: the message may have arrived).
  boost::asio::awaitable<result<std::vector<result<void>>>> send(
      std::string address, std::vector<outgoing_delivery> deliveries, milliseconds timeout);

  /// Attaches (or finds) the receiver link `link_id` and reports what the peer attached.
  boost::asio::awaitable<result<link_info>> open_receiver(std::string link_id, receiver_spec spec,
                                                          milliseconds timeout);

  /// Whether `address` exists now: attaches a creditless receiver link to it, begun after this
  /// call, and detaches it as soon as the broker answers. Success when the broker attached it;
  /// its refusal (amqp:not-found: queue_not_found) or a connection error otherwise. Probes share
  /// one session per connection, so one that is answered costs an attach and a detach; while
  /// one waits for its answer there, another goes on a session of its own (a broker that ends
  /// the session over a refused attach, as RabbitMQ does, must not end a second probe with it).
  boost::asio::awaitable<result<void>> probe(std::string address, milliseconds timeout);

  /// Up to `max` deliveries from receiver link `link_id` (attached with `spec` when needed);
  /// waits at most `wait` for the first; empty on timeout. Deliveries stay unsettled.
  boost::asio::awaitable<result<std::vector<inbound>>> receive(std::string link_id,
                                                               receiver_spec spec, std::size_t max,
                                                               milliseconds wait);

  /// Settles deliveries; one result per item, in order: invalid_receipt for an unknown or
  /// already settled delivery, receipt_expired when its link or connection has died. On links
  /// attached with confirm_settlement, waits (at most `timeout`) for the peer to settle: its
  /// error condition fails the item (mapped, description kept); a link or connection lost, or
  /// `timeout` passed, before the answer fails it with unconfirmed (the outcome is unknown).
  boost::asio::awaitable<std::vector<result<void>>> settle(
      std::vector<std::pair<delivery_ref, outcome>> items, milliseconds timeout);

  /// Detaches receiver link `link_id` (if attached). Its unsettled deliveries go back to the
  /// broker; their receipts then fail with receipt_expired. Calls still waiting on the link
  /// fail with errc::closed, so give short-lived links (probes) ids of their own.
  boost::asio::awaitable<result<void>> close_receiver(std::string link_id);

  /// Request/response with a management node (`$cbs`, `<entity>/$management`): sends `request`
  /// with reply-to and message-id set, and returns the message whose correlation-id matches.
  /// When no answer will come (the node's link detached, the connection was lost or closed, or
  /// `timeout` passed), a request sent that changes state (`kind`) fails as unconfirmed,
  /// transient: the node may have applied it. A read, or a request never sent, fails with the
  /// cause (`timeout` for the deadline), saying whether it went out; `closed` when the connection
  /// was closed. close() waits for the reply to a request sent that changes state (within
  /// endpoint::close_timeout), not for the others.
  boost::asio::awaitable<result<proton::message>> request(std::string node, proton::message request,
                                                          milliseconds timeout, request_kind kind);
  /// A request of no declared kind: failed with the cause when no answer will come.
  boost::asio::awaitable<result<proton::message>> request(std::string node, proton::message request,
                                                          milliseconds timeout);

  /// Connects now if not connected (useful to fail fast on bad credentials).
  boost::asio::awaitable<result<void>> connect(milliseconds timeout);

  /// What the connection holds now and the most it has held, against endpoint's bounds.
  struct usage {
    std::size_t links = 0;
    std::size_t peak_links = 0;
    std::uint64_t prefetched_bytes = 0;  ///< buffered deliveries, by their encoded size
    /// The most the prefetch has committed at once: buffered bytes plus outstanding credit at
    /// max-message-size (what endpoint::max_prefetch_bytes bounds).
    std::uint64_t peak_committed_bytes = 0;
  };
  boost::asio::awaitable<result<usage>> current_usage();

  /// Closes the connection gracefully (every session ended, then the close frame, each answer
  /// awaited within endpoint::close_timeout; then the socket closes) and fails what is still
  /// pending with errc::closed, except what the broker may have acted on (engine::shutdown),
  /// which fails as unconfirmed. Idempotent: every call returns once the close is over.
  /// Destroying the connection without close() starts the same once the executor next runs.
  boost::asio::awaitable<void> close();

  /// How many times the connection has been opened: a change means links and receipts from
  /// before are gone, and per-connection state (e.g. a CBS token) must be set up again.
  std::uint64_t generation() const noexcept;
  /// Bytes written and read (AMQP frames, after TLS: plaintext), opens, failures (not qrt's own
  /// close) and recoveries so far. Lock-free; any thread.
  connection_stats traffic() const noexcept;

  const endpoint& where() const noexcept;

  struct impl;

 private:
  explicit connection(std::shared_ptr<impl> impl);
  std::shared_ptr<impl> impl_;
};

}  // namespace qrt::amqp::detail
