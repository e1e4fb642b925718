// The values the AMQP connection's callers and its engine exchange: where to connect
// (endpoint), how to attach a receiver (receiver_spec), how to settle (outcome), what to send
// (outgoing_delivery) and what arrives (inbound, link_info). A header of their own, free of
// Asio, so the I/O-free engine (engine.hpp) and the awaitable front end (connection.hpp) share
// them without the engine seeing Asio.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <proton/binary.hpp>
#include <proton/source.hpp>
#include <proton/symbol.hpp>
#include <proton/value.hpp>
#include <string>
#include <vector>

#include "amqp/message_codec.hpp"

namespace qrt::amqp::detail {

using std::chrono::milliseconds;
using property_map = std::map<proton::symbol, proton::value>;

/// What a request/response call does at its node, so that a request whose answer never comes
/// (its link or its connection went, or the connection was closed) fails saying what is known.
struct request_kind {
  std::string operation;  ///< named in the request's errors, e.g. "com.microsoft:renew-lock"
  /// It changes state at the broker (renews a lock, sets a session's state, adds a rule): sent
  /// and never answered, it may or may not have been applied, and it fails as unconfirmed. A
  /// read changed nothing whatever happened, and fails with the plain cause.
  bool changes_state = false;
};

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
  /// How long close() waits for the broker to answer its close frame. The answer comes only
  /// after the broker has read every frame before it (settlements the broker never confirms
  /// included), so the stream is not cut off under them; a broker that does not answer in
  /// time is hung up on.
  milliseconds close_timeout{2'000};
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
  /// A delivery the link refuses (larger than max_message_size, or not a message qrt can
  /// decode) fails the next receive on it that has nothing else to hand out, naming why. Where
  /// a rejected message may be dropped (RabbitMQ without a dead-letter policy) that error is
  /// its only trace; where the broker dead-letters it (Service Bus) it is not needed.
  bool report_refusals = false;
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
  /// The delivery tag's bytes (Service Bus: the lock token). A string, not proton::binary:
  /// a broker's short tags fit in it without a heap allocation per delivery.
  std::string tag;
  delivery_ref ref;
};

/// What the peer said when it attached a receiver link.
struct link_info {
  proton::source::filter_map remote_filters;  ///< the source filter the peer echoed
  property_map remote_properties;
  std::uint64_t instance = 0;
};

}  // namespace qrt::amqp::detail
