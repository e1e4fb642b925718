// The generic AMQP 1.0 provider (RabbitMQ with rabbitmq_amqp1_0, Artemis, Qpid, Solace), built
// on Qpid Proton C++. Proton stays out of this header.
//
// One connection per provider, one sender and one receiver link per queue, peek-lock receive:
//   complete    -> accepted
//   abandon     -> modified{delivery-failed} (or released, see abandon_outcome)
//   dead_letter -> rejected{error: qrt:dead-letter, reason, description}
// What a queue is on the wire is the broker's business: address = address_prefix + queue name.
#pragma once

#include <cstdint>
#include <qrt/config.hpp>
#include <qrt/provider.hpp>
#include <qrt/registry.hpp>
#include <span>
#include <string>
#include <string_view>

namespace qrt::amqp {

/// The outcome `abandon` sends. AMQP's `modified{delivery-failed}` counts a failed delivery
/// (the next delivery's count is one higher); `released` does not, but is understood by every
/// broker (RabbitMQ 3.10 ends the session with amqp:invalid-field on `modified`).
enum class abandon_outcome { modified, released };

/// Settings of the generic AMQP 1.0 provider: the broker's endpoint and credentials, link
/// addressing, and limits.
struct options {
  /// "amqp://host:port" or "amqps://host:port" (optionally with "user:password@"); overrides
  /// host, port and tls when set. Prefer `password` for the secret: URLs end up in logs.
  std::string url;
  std::string host = "127.0.0.1";  ///< the broker's host
  std::uint16_t port = 0;          ///< 0: 5672, or 5671 with tls
  bool tls = false;                ///< amqps: TLS through OpenSSL
  bool tls_verify = true;          ///< certificate chain and host name; off only for test brokers
  std::string tls_ca_file;         ///< PEM file with the CAs to trust; empty: the system's
  std::string user;                ///< empty: SASL ANONYMOUS; else SASL PLAIN
  std::string password;            ///< secret: never printed
  std::string sasl_mechanisms;     ///< override the mechanism list, e.g. "PLAIN"
  std::string virtual_host;        ///< the open frame's hostname (RabbitMQ: "vhost:NAME")
  /// Messages a receiver link may hold locked without being asked (buffered + handed out and
  /// not yet settled). 0: credit only for what a receive call asks.
  std::uint32_t prefetch = 10;
  /// Prepended to queue names to form link addresses ("/amq/queue/" on RabbitMQ 3.x).
  std::string address_prefix;
  /// Where create_queue attaches to make the broker declare a queue ("/queue/" on RabbitMQ
  /// 3.x); empty: create_queue is unsupported.
  std::string declare_prefix;
  /// Prepended to a topic's name to form the address publish sends to and a subscription's
  /// receiver attaches to ("/topic/" on RabbitMQ 3.x: amq.topic, the topic's name as routing
  /// key). Empty: no topics. A subscription is the broker's queue behind one receiver link: it
  /// lasts as long as that link, so caps().durable_subscriptions is false (docs/amqp.md).
  std::string topic_prefix;
  abandon_outcome abandon_with = abandon_outcome::modified;  ///< what abandon sends
  /// Before the first send to a queue on each connection, after every send the broker
  /// accepted, and after a receive that got nothing, attach (without credit) a receiver to it,
  /// so a missing queue, or one deleted since, fails the call with queue_not_found. Needed where
  /// the broker accepts and silently drops messages for a missing queue (RabbitMQ 3.x
  /// "/amq/queue/", even on a sender link attached while the queue existed).
  bool verify_queue_exists = false;
  std::size_t max_message_bytes = 1024 * 1024;  ///< one message, body plus attributes
  /// The most bytes of prefetched messages this client holds or has asked the broker for,
  /// across its receiver links: buffered messages by size, plus outstanding credit counted at
  /// max_message_bytes + 64 KiB each (what one credit may bring). Credit beyond it is withheld;
  /// a receive waiting on an empty link still gets one message at a time. 0: no bound.
  std::uint64_t max_prefetch_bytes = 64ull << 20;
  /// The most AMQP links this client holds on its connection (each on its own session:
  /// brokers bound the sessions of a connection). At the cap, the least recently used idle
  /// sender is closed to make room; a send waits while every link is busy, and a receiver
  /// beyond the cap is refused (transient provider_error naming max_links). 0: no bound.
  std::size_t max_links = 1000;
  milliseconds connect_timeout{10'000};     ///< bound on TCP, TLS, SASL and open
  milliseconds idle_timeout{60'000};        ///< heartbeats keep the connection alive within this
  milliseconds reconnect_max_delay{5'000};  ///< longest back-off between reconnect attempts

  /// RabbitMQ 3.x with rabbitmq_amqp1_0: queue addresses "/amq/queue/NAME", declaring through
  /// "/queue/NAME", topics through "/topic/NAME", abandon by `released`, queues verified before
  /// the first send.
  static options for_rabbitmq();
  /// The defaults with the link credit of a throughput-bound consumer: 50 messages held per
  /// receiver link (as Service Bus's preset of the same name).
  static options for_high_throughput();
  /// The defaults with one message of link credit: nothing waits locked behind a busy receiver.
  static options for_low_latency();
};

/// Reads the keys known_keys() lists, all optional (docs/amqp.md describes each; the list and a
/// line on each live in one table, src/providers/amqp/options.cpp). broker=rabbitmq starts
/// from for_rabbitmq(); endpoint sets `url` (the CLI's --endpoint). Unknown fields are refused.
result<options> options_from_config(const config& cfg);
/// The keys options_from_config() accepts (any other key is refused, naming it).
std::span<const std::string_view> known_keys() noexcept;

/// A provider that connects on first use, on a strand of `executor`.
result<provider_ptr> make_provider(const options& opts, boost::asio::any_io_executor executor);

/// Registers "amqp".
void register_provider(provider_registry& registry);

}  // namespace qrt::amqp
