// One AMQP 1.0 connection to one endpoint, bridged to Asio. Internal to qrt (never in
// include/qrt/): the generic amqp provider and the Service Bus provider build on it.
//
// Threading (docs/adr/0031-amqp-proton-driver-on-asio.md): Proton's connection_driver runs on a
// strand of the executor given to create(), over an Asio TCP (or TLS) socket; every Proton
// object is touched only there. Calls here are awaitables: their work is dispatched onto the
// strand, and the result is posted to the awaiting coroutine's executor (never run inline, so
// no user code runs on the strand). proton::message values cross over (they are plain values).
//
// What the connection does for its users:
//  - connects lazily on first use (SASL PLAIN with a user, else ANONYMOUS; TLS for amqps with
//    peer-name verification on unless turned off), and reconnects on demand after a loss, the
//    attempts spaced by exponential back-off;
//  - multiplexes links on one connection, each on its own session (a broker that ends a session
//    hurts one link): senders cached per address, receivers cached per link id, attached on
//    first use and re-attached on demand after a loss;
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

#include "amqp/message_codec.hpp"

namespace qrt::amqp::detail {

using std::chrono::milliseconds;
using property_map = std::map<proton::symbol, proton::value>;

/// Where and how to connect. Secrets stay here: nothing in this struct is ever logged, and
/// display() omits the user and password.
struct endpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 5672;
  bool tls = false;         ///< amqps
  bool tls_verify = true;   ///< verify the certificate chain and the host name
  std::string tls_ca_file;  ///< PEM file of trusted CAs; empty: the system store
  std::string user;         ///< empty: SASL ANONYMOUS
  std::string password;
  std::string sasl_mechanisms;  ///< e.g. "PLAIN"; empty: PLAIN with a user, else ANONYMOUS
  std::string virtual_host;     ///< open frame's hostname; empty: host
  milliseconds idle_timeout{60'000};
  milliseconds connect_timeout{10'000};
  milliseconds reconnect_initial_delay{100};  ///< first back-off after a failed attempt
  milliseconds reconnect_max_delay{5'000};
  std::string container_id;  ///< empty: generated
  property_map properties;   ///< the open frame's properties
  /// The most bytes of prefetched deliveries the connection holds or has asked for: buffered
  /// deliveries by their encoded size, plus each link's outstanding credit at its
  /// max-message-size. Credit beyond it is withheld; a link with a waiting receive and nothing
  /// buffered or credited still gets one credit, so no call starves. 0: no bound.
  std::uint64_t max_prefetch_bytes = 0;
  /// The most links qrt holds on the connection (senders, receivers, and two per
  /// request/response node). At the cap, the least recently used idle sender or node is closed
  /// to make room; a send or request waits (within its timeout) while every link is busy, and a
  /// receiver beyond the cap is refused. 0: no bound.
  std::size_t max_links = 0;

  /// "amqp://host:port" or "amqps://host:port" — safe for errors and logs.
  std::string display() const;
};

/// How to settle one delivery.
struct outcome {
  enum class kind { accepted, released, modified, rejected };
  kind type = kind::accepted;
  bool delivery_failed = false;     ///< modified: count this as a failed delivery
  bool undeliverable_here = false;  ///< modified: don't redeliver to this link
  std::string error_name;           ///< rejected: the error condition, e.g. "qrt:dead-letter"
  std::string error_description;
  std::map<std::string, std::string> error_info;  ///< rejected: the condition's info map

  static outcome accepted() { return {}; }
  static outcome released() { return {kind::released}; }
  static outcome modified(bool failed, bool undeliverable) {
    return {kind::modified, failed, undeliverable};
  }
  static outcome rejected(std::string name, std::string description,
                          std::map<std::string, std::string> info = {}) {
    return {kind::rejected, false, false, std::move(name), std::move(description), std::move(info)};
  }
};

/// How to attach a receiver link (used when the link is (re)attached; ignored while it lives).
struct receiver_spec {
  std::string address;                 ///< the source address
  std::uint32_t prefetch = 0;          ///< most messages this link holds locked unasked
  proton::source::filter_map filters;  ///< e.g. com.microsoft:session-filter
  property_map properties;             ///< the attach frame's link properties
  /// Ask for a durable source (terminus durability unsettled-state, never expires). RabbitMQ
  /// declares a durable queue for "/queue/NAME" only when asked this way.
  bool durable = false;
  /// Attach with rcv-settle-mode second (Service Bus peek-lock, as the official SDK does): an
  /// outcome goes out unsettled and settle() completes only when the peer's settled
  /// disposition arrives, so the peer's refusal (e.g. a lost lock) reaches the caller. Only
  /// when the peer's attach agrees to "second"; a peer answering "first" is settled at once.
  bool confirm_settlement = false;
  /// The largest delivery the link takes, announced in its attach (max-message-size); 0: no
  /// limit. A delivery that grows past it is rejected (amqp:link:message-size-exceeded, with the
  /// reason in the info map so Service Bus dead-letters it) as soon as its first frames exceed
  /// it, so qrt never buffers more than this (plus one socket read) of a delivery.
  std::uint64_t max_message_size = 0;
};

/// What a receiver link takes beyond the provider's max_message_bytes: the broker adds
/// annotations and properties on delivery (Service Bus: sequence number, lock, enqueue time).
inline constexpr std::uint64_t receive_size_headroom = 64 * 1024;

/// The largest reply a request/response node ($management, $cbs) may send: announced on the
/// reply link, and a reply that grows past it is refused as its first frames exceed it (the
/// requests waiting on that node fail with protocol_error, the node is attached afresh for the
/// next one). Peek sizes its pages to fit (docs/servicebus.md).
inline constexpr std::uint64_t max_reply_bytes = 64ull << 20;

/// Identifies one delivery on one link instance. Only meaningful to the connection that made it.
struct delivery_ref {
  std::uint64_t link = 0;  ///< link instance: a new number every attach
  std::uint64_t seq = 0;   ///< delivery number on that link instance
};

/// One delivery to send: an encoded AMQP message, or a Service Bus batch (the envelope with
/// message_format = batch_message_format, see outbound_frames.hpp).
struct outgoing_delivery {
  std::string bytes;
  std::uint32_t message_format = 0;
};

/// One received, unsettled delivery.
struct inbound {
  decoded_message message;  ///< decoded by message_codec (broker annotations included)
  proton::binary tag;       ///< the delivery tag (Service Bus: the lock token)
  delivery_ref ref;
};

/// What the peer said when it attached a receiver link.
struct link_info {
  proton::source::filter_map remote_filters;  ///< the source filter the peer echoed
  property_map remote_properties;
  std::uint64_t instance = 0;
};

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
  /// connection_failed / timeout where the outcome is unknown (the message may have arrived).
  boost::asio::awaitable<result<std::vector<result<void>>>> send(
      std::string address, std::vector<outgoing_delivery> deliveries, milliseconds timeout);

  /// Attaches (or finds) the receiver link `link_id` and reports what the peer attached.
  boost::asio::awaitable<result<link_info>> open_receiver(std::string link_id, receiver_spec spec,
                                                          milliseconds timeout);

  /// Up to `max` deliveries from receiver link `link_id` (attached with `spec` when needed);
  /// waits at most `wait` for the first; empty on timeout. Deliveries stay unsettled.
  boost::asio::awaitable<result<std::vector<inbound>>> receive(std::string link_id,
                                                               receiver_spec spec, std::size_t max,
                                                               milliseconds wait);

  /// Settles deliveries; one result per item, in order: invalid_receipt for an unknown or
  /// already settled delivery, receipt_expired when its link or connection has died. On links
  /// attached with confirm_settlement, waits (at most `timeout`) for the peer to settle: its
  /// error condition fails the item (mapped, description kept); a link or connection lost
  /// before the answer fails it with connection_failed (the outcome is then unknown).
  boost::asio::awaitable<std::vector<result<void>>> settle(
      std::vector<std::pair<delivery_ref, outcome>> items, milliseconds timeout);

  /// Detaches receiver link `link_id` (if attached). Its unsettled deliveries go back to the
  /// broker; their receipts then fail with receipt_expired. Calls still waiting on the link
  /// fail with errc::closed, so give short-lived links (probes) ids of their own.
  boost::asio::awaitable<result<void>> close_receiver(std::string link_id);

  /// Request/response with a management node (`$cbs`, `<entity>/$management`): sends `request`
  /// with reply-to and message-id set, and returns the message whose correlation-id matches.
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

  /// Closes the connection (the close frame is written, then the socket closes) and fails every
  /// pending call with errc::closed. Idempotent. Destroying the connection without close()
  /// does the same once the executor next runs.
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
