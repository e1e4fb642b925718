// The Service Bus provider: qrt::provider over one AMQP connection (src/amqp), with the
// Service Bus extensions on top: CBS tokens, lock tokens, annotations, sessions, $management.
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <proton/annotation_key.hpp>
#include <proton/codec/map.hpp>
#include <proton/codec/vector.hpp>
#include <proton/scalar.hpp>
#include <proton/symbol.hpp>
#include <proton/timestamp.hpp>
#include <qrt/servicebus.hpp>
#include <random>

#include "amqp/connection.hpp"
#include "amqp/mapping.hpp"
#include "amqp/message_codec.hpp"
#include "amqp/outbound_frames.hpp"
#include "connection_string.hpp"
#include "core/borrowing_provider.hpp"
#include "core/message_checks.hpp"
#include "core/peek_checks.hpp"
#include "core/random_id.hpp"
#include "managed_identity_source.hpp"
#include "management.hpp"
#include "provider_settings.hpp"
#include "sas.hpp"
#include "wire.hpp"

namespace qrt::servicebus {
namespace {

namespace amqp = qrt::amqp::detail;
using detail::connection_string;

constexpr const char* session_filter = "com.microsoft:session-filter";
constexpr const char* locked_until_utc = "com.microsoft:locked-until-utc";
constexpr const char* timeout_property = "com.microsoft:timeout";
constexpr const char* dead_letter_condition = "com.microsoft:dead-letter";

std::atomic<std::uint64_t> next_provider_id{1};

/// Bytes kept back from the service's message size limit for AMQP encoding overhead.
constexpr std::size_t encoding_reserve = 8 * 1024;

/// A send's deliveries: the messages in Service Bus batches (one delivery each, message-format
/// 0x80013700, accepted or refused as a whole), packed in order up to the link's message size
/// `max_bytes`; a batch of one goes as a plain transfer.
struct packed_wire {
  std::vector<amqp::outgoing_delivery> deliveries;
  std::vector<std::size_t> delivery_of;  ///< per message sent: the delivery carrying it
};

/// Packs every message not `refused` (same indexes as `messages`).
packed_wire pack_into_batches(const std::vector<message>& messages,
                              const std::vector<std::optional<error>>& refused,
                              std::size_t max_bytes) {
  packed_wire p;
  std::vector<std::string> batch;
  std::size_t batch_bytes = 0;
  amqp::batch_envelope envelope;
  auto close_batch = [&] {
    if (batch.size() == 1) {
      p.deliveries.push_back({std::move(batch.front()), 0});
    } else if (!batch.empty()) {
      amqp::outgoing_delivery d{{}, amqp::batch_message_format};
      amqp::encode_batch(batch, envelope, d.bytes);
      p.deliveries.push_back(std::move(d));
    }
    batch.clear();
  };
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (refused[i]) continue;
    const auto& m = messages[i];
    // The service holds a message with x-opt-scheduled-enqueue-time until then.
    const amqp::encode_extras extras{.scheduled_enqueue_time = m.scheduled_enqueue_time};
    std::string bytes;
    amqp::encode_message(m, extras, bytes);
    const std::size_t cost = amqp::batch_entry_size(bytes.size());
    if (!batch.empty() && batch_bytes + cost > max_bytes) close_batch();
    if (batch.empty()) {
      envelope = amqp::batch_envelope::of_first(m, extras);
      batch_bytes = amqp::batch_envelope_size(envelope);
    }
    batch_bytes += cost;
    batch.push_back(std::move(bytes));
    p.delivery_of.push_back(p.deliveries.size());
  }
  close_batch();
  return p;
}

/// The AMQP core maps conditions it knows; Service Bus adds its own (com.microsoft:*). An
/// unconfirmed error keeps its code: its provider code is why the link or connection ended,
/// not a verdict on the send, settlement or request, which may have taken effect.
error remap(error e) {
  if (e.code != errc::unconfirmed && e.provider_code.rfind("com.microsoft:", 0) == 0) {
    const error mapped = detail::error_from_condition(e.provider_code, "", "");
    e.code = mapped.code;
    e.kind = mapped.kind;
    e.retry_after = mapped.retry_after;
  }
  return e;
}

template <class T>
result<T> remap(result<T> r) {
  if (!r) return remap(r.error());
  return r;
}

/// An AMQP message read the Service Bus way: annotations for sequence number, enqueued time and
/// lock expiry, dead-letter reason/description from the application properties.
received_message from_wire(amqp::decoded_message&& wire) {
  received_message m = std::move(wire.message);
  const auto& annotations = wire.annotations;
  if (annotations.sequence_number) m.sequence_number = *annotations.sequence_number;
  if (annotations.enqueued_time) m.enqueued_time = *annotations.enqueued_time;
  if (annotations.locked_until) m.locked_until = *annotations.locked_until;
  if (annotations.scheduled_enqueue_time) {
    m.scheduled_enqueue_time = *annotations.scheduled_enqueue_time;
  }
  const auto reason = m.attributes.find("DeadLetterReason");
  const auto description = m.attributes.find("DeadLetterErrorDescription");
  if (reason != m.attributes.end() || description != m.attributes.end()) {
    dead_letter_info info;
    if (reason != m.attributes.end()) info.reason = reason->second;
    if (description != m.attributes.end()) info.description = description->second;
    m.dead_letter = std::move(info);
    m.attributes.erase("DeadLetterReason");
    m.attributes.erase("DeadLetterErrorDescription");
  }
  return m;
}

/// receipt.token = "<lock token> <entity>": what renew-lock needs; settlement uses the delivery.
std::string receipt_token(const std::string& lock_token, const std::string& entity) {
  return lock_token + " " + entity;
}
std::pair<std::string, std::string> split_receipt_token(const std::string& token) {
  const auto space = token.find(' ');
  if (space == std::string::npos) return {token, {}};
  return {token.substr(0, space), token.substr(space + 1)};
}

class servicebus_provider;

class servicebus_session final : public session_receiver {
 public:
  servicebus_session(std::shared_ptr<servicebus_provider> owner, std::string entity,
                     std::string link_id, amqp::receiver_spec spec, session_id id,
                     time_point locked_until)
      : owner_(std::move(owner)),
        entity_(std::move(entity)),
        link_id_(std::move(link_id)),
        spec_(std::move(spec)),
        id_(std::move(id)),
        locked_until_ms_(
            std::chrono::duration_cast<milliseconds>(locked_until.time_since_epoch()).count()) {}

  const session_id& id() const noexcept override { return id_; }
  time_point locked_until() const noexcept override {
    return time_point{
        std::chrono::duration_cast<clock::duration>(milliseconds(locked_until_ms_.load()))};
  }

  awaitable<result<std::vector<received_message>>> receive(std::size_t max_messages,
                                                           milliseconds wait) override;
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements) override;
  awaitable<result<time_point>> renew_session_lock() override;
  awaitable<result<std::string>> get_state() override;
  awaitable<result<void>> set_state(std::string state) override;
  awaitable<result<void>> close() override;

 private:
  bool lock_lost() const noexcept;
  error lock_lost_error() const;
  std::shared_ptr<servicebus_provider> owner_;
  std::string entity_;
  std::string link_id_;
  amqp::receiver_spec spec_;
  session_id id_;
  std::atomic<std::int64_t> locked_until_ms_;
  std::atomic<bool> closed_{false};
};

class servicebus_provider final : public qrt::detail::provider_that_borrows,
                                  public std::enable_shared_from_this<servicebus_provider> {
 public:
  servicebus_provider(detail::provider_settings opts, connection_string cs,
                      std::shared_ptr<amqp::connection> conn,
                      std::shared_ptr<detail::managed_identity_source> identity)
      : opts_(std::move(opts)),
        cs_(std::move(cs)),
        conn_(std::move(conn)),
        identity_(std::move(identity)),
        id_(next_provider_id++) {
    caps_.sessions = session_support::native;
    caps_.max_batch_messages = 1000;  // packed into batch transfers by encoded size (send)
    // The service's limit counts the encoded message; qrt's counts body plus attributes. Keep a
    // reserve for the AMQP sections and system properties so that a message qrt admits fits.
    caps_.max_message_bytes = opts_.max_message_bytes > 4 * encoding_reserve
                                  ? opts_.max_message_bytes - encoding_reserve
                                  : opts_.max_message_bytes;
    // A batch travels as one AMQP message, so the message size limit bounds it too (a send
    // larger than that is packed into several batches).
    caps_.max_batch_bytes = caps_.max_message_bytes;
    caps_.peek = true;
    caps_.scheduling = true;
    caps_.time_to_live = true;
    caps_.abandon = true;
    caps_.lock_renewal = true;
    caps_.dead_letter_queue = true;
    caps_.max_delivery_count = true;
    caps_.session_state = true;
    caps_.queue_management = opts_.test_peer_admin;
    // Publishing and reading subscriptions work on any namespace; creating topics and
    // subscriptions (and so giving one a filter) needs the test peer's admin node, as queue
    // management does (docs/servicebus.md, "Topics and subscriptions").
    caps_.topics = true;
    caps_.subscription_filters = true;
    caps_.durable_subscriptions = true;
    caps_.subscription_sessions = true;
  }

  std::string_view name() const noexcept override { return "servicebus"; }
  const capabilities& caps() const noexcept override { return caps_; }
  connection_stats connections() const noexcept override { return conn_->traffic(); }

  // ----- queue management (test peer only) -----

  awaitable<result<void>> create_queue(const queue_name& queue, const queue_options& o) override {
    if (queue.is_subscription()) co_return not_a_queue(queue, "create_subscription");
    if (!opts_.test_peer_admin) co_return no_management("create_queue");
    proton::message m;
    m.properties().put("operation", "create-queue");
    m.properties().put("queue", queue.parent().str());
    std::map<std::string, proton::value> body{
        {"lock-duration-ms", static_cast<std::int64_t>(o.lock_duration.count())},
        {"max-delivery-count", static_cast<std::int64_t>(o.max_delivery_count)},
        {"requires-session", o.requires_session},
        {"dead-letter-on-expiration", o.dead_letter_on_expiration}};
    m.body(body);
    auto reply = co_await admin(std::move(m));
    if (!reply) co_return reply.error();
    co_return result<void>{};
  }

  awaitable<result<void>> delete_queue(const queue_name& queue) override {
    if (queue.is_subscription()) co_return not_a_queue(queue, "delete_subscription");
    if (!opts_.test_peer_admin) co_return no_management("delete_queue");
    proton::message m;
    m.properties().put("operation", "delete-queue");
    m.properties().put("queue", queue.parent().str());
    auto reply = co_await admin(std::move(m));
    if (!reply) co_return reply.error();
    co_return result<void>{};
  }

  awaitable<result<queue_stats>> stats(const queue_name& queue) override {
    if (!opts_.test_peer_admin) co_return queue_stats{};  // a namespace reports these over ARM
    proton::message m;
    m.properties().put("operation", "queue-stats");
    m.properties().put("queue", queue.to_string());
    auto reply = co_await admin(std::move(m));
    if (!reply) co_return reply.error();
    try {
      std::map<std::string, proton::value> body;
      proton::get(reply->body(), body);
      auto count = [&](const char* key) -> std::int64_t {
        const auto it = body.find(key);
        return it == body.end() ? -1 : proton::coerce<std::int64_t>(it->second);
      };
      queue_stats s;
      s.active = count("active");
      s.in_flight = count("locked");
      s.scheduled = count("scheduled");
      s.dead_lettered = count("deadLettered");
      s.expired = static_cast<std::uint64_t>(std::max<std::int64_t>(0, count("expired")));
      co_return s;
    } catch (const proton::error& e) {
      co_return fail(errc::protocol_error,
                     std::string("servicebus: malformed queue-stats reply: ") + e.what());
    }
  }

  // ----- send / receive -----

  /// The messages are only read (encoded), so the retrying layer lends them instead of
  /// copying them for every attempt (core/borrowing_provider.hpp).
  awaitable<result<std::vector<send_outcome>>> send_from(const queue_name& queue,
                                                         std::vector<message>& messages,
                                                         milliseconds timeout) override {
    if (queue.is_dead_letter()) {
      co_return fail(errc::invalid_argument, "servicebus: cannot send to the dead-letter queue '" +
                                                 queue.to_string() + "'");
    }
    if (queue.is_subscription()) {
      co_return fail(errc::invalid_argument, "servicebus: cannot send to the subscription '" +
                                                 queue.str() + "': publish to its topic '" +
                                                 queue.topic() + "'");
    }
    std::string entity = queue.str();
    co_return co_await send_to(std::move(entity), messages, timeout);
  }

  // ----- topics and subscriptions -----

  /// The same sender machinery as send: the topic's address is an entity like a queue's.
  awaitable<result<std::vector<send_outcome>>> publish_from(const topic_name& topic,
                                                            std::vector<message>& messages,
                                                            milliseconds timeout) override {
    std::string entity = topic.str();
    auto out = co_await send_to(std::move(entity), messages, timeout);
    // The service says amqp:not-found for a missing entity, whatever its kind.
    if (!out) co_return as_topic_error(out.error());
    for (auto& o : *out) {
      if (!o) o = as_topic_error(o.error());
    }
    co_return out;
  }

  awaitable<result<void>> create_topic(const topic_name& topic) override {
    if (!opts_.test_peer_admin) co_return no_entity_management("create_topic");
    proton::message request = admin_request("create-topic", topic.str());
    auto reply = co_await admin(std::move(request));
    if (!reply) co_return as_topic_error(reply.error());
    co_return result<void>{};
  }

  awaitable<result<void>> delete_topic(const topic_name& topic) override {
    if (!opts_.test_peer_admin) co_return no_entity_management("delete_topic");
    proton::message request = admin_request("delete-topic", topic.str());
    auto reply = co_await admin(std::move(request));
    if (!reply) co_return as_topic_error(reply.error());
    co_return result<void>{};
  }

  awaitable<result<void>> create_subscription(const queue_name& subscription,
                                              const subscription_options& o) override {
    if (auto bad = check_subscription(subscription); !bad) co_return bad.error();
    if (!opts_.test_peer_admin) co_return no_entity_management("create_subscription");
    proton::message m = admin_request("create-subscription", subscription.topic());
    m.properties().put("subscription", std::string(subscription.subscription_name()));
    std::map<std::string, proton::value> body{
        {"lock-duration-ms", static_cast<std::int64_t>(o.queue.lock_duration.count())},
        {"max-delivery-count", static_cast<std::int64_t>(o.queue.max_delivery_count)},
        {"requires-session", o.queue.requires_session},
        {"dead-letter-on-expiration", o.queue.dead_letter_on_expiration}};
    m.body(body);
    auto reply = co_await admin(std::move(m));
    if (!reply) co_return as_topic_error(reply.error());
    // An existing subscription is left as it is, as create_queue leaves an existing queue.
    if (status_code(*reply) == 409 || o.filter.empty()) co_return result<void>{};
    // The filter replaces the "$Default" rule (a true filter) through the subscription's own
    // $management node, as on a real namespace. $Default goes first: until the filter is added
    // the subscription takes nothing, where the other order would let a message that does not
    // match in meanwhile.
    const std::string entity = subscription.str();
    proton::message remove_default = detail::remove_rule_request(detail::default_rule_name);
    auto replaced = co_await management(entity, std::move(remove_default));
    if (replaced) replaced = status_of(std::move(*replaced), "remove-rule");
    if (replaced) {
      proton::message add_filter = detail::add_rule_request(qrt_rule, o.filter);
      replaced = co_await management(entity, std::move(add_filter));
      if (replaced) replaced = status_of(std::move(*replaced), "add-rule");
    }
    if (!replaced) {
      // A subscription without its filter would take the wrong messages or none: remove it, so
      // that a retry creates it again instead of finding it and keeping it as it is.
      proton::message undo = admin_subscription_request("delete-subscription", subscription);
      (void)co_await admin(std::move(undo));
      co_return replaced.error();
    }
    co_return result<void>{};
  }

  awaitable<result<void>> delete_subscription(const queue_name& subscription) override {
    if (auto bad = check_subscription(subscription); !bad) co_return bad.error();
    if (!opts_.test_peer_admin) co_return no_entity_management("delete_subscription");
    proton::message request = admin_subscription_request("delete-subscription", subscription);
    auto reply = co_await admin(std::move(request));
    if (!reply) co_return reply.error();
    co_return result<void>{};
  }

  /// The names come from the test peer's admin node; each filter from the subscription's rules
  /// (enumerate-rules), so a rule made by another client shows as the service holds it.
  awaitable<result<std::vector<subscription_info>>> list_subscriptions(
      const topic_name& topic) override {
    if (!opts_.test_peer_admin) co_return no_entity_management("list_subscriptions");
    proton::message request = admin_request("list-subscriptions", topic.str());
    auto reply = co_await admin(std::move(request));
    if (!reply) co_return as_topic_error(reply.error());
    std::vector<std::string> names;
    try {
      std::map<std::string, proton::value> body;
      proton::get(reply->body(), body);
      const auto it = body.find("subscriptions");
      if (it != body.end()) proton::get(it->second, names);
    } catch (const proton::error& e) {
      co_return fail(errc::protocol_error,
                     std::string("servicebus: malformed list-subscriptions reply: ") + e.what());
    }
    std::sort(names.begin(), names.end());
    std::vector<subscription_info> out;
    for (const auto& name : names) {
      auto q = queue_name::subscription(topic, name);
      if (!q) co_return q.error();
      auto filter = co_await read_filter(*q);
      if (!filter) co_return filter.error();
      out.push_back(subscription_info{std::move(*q), std::move(*filter)});
    }
    co_return out;
  }

  /// The subscription's rules as one subscription_filter: "$Default" alone (or any single true
  /// filter) is the empty filter, a single correlation filter on label and text properties is
  /// itself; anything else (several rules, SQL, other correlation fields) has no
  /// subscription_filter form and is refused naming the subscription.
  awaitable<result<subscription_filter>> read_filter(const queue_name& subscription) {
    constexpr std::int32_t page = 16;  // more than one rule is refused anyway
    proton::message request = detail::enumerate_rules_request(page, 0);
    auto reply = co_await management(subscription.str(), std::move(request));
    if (!reply) co_return reply.error();
    auto rules = detail::parse_enumerate_rules_response(*reply, page);
    if (!rules) co_return rules.error();
    if (rules->size() == 1 && !rules->front().beyond_subscription_filter) {
      const auto& rule = rules->front();
      if (rule.filter == detail::rule_entry::kind::true_filter) co_return subscription_filter{};
      if (rule.filter == detail::rule_entry::kind::correlation_filter) {
        co_return subscription_filter{rule.label, rule.properties};
      }
    }
    co_return fail(errc::unsupported,
                   "servicebus: the rules of subscription '" + subscription.str() + "' (" +
                       std::to_string(rules->size()) +
                       " rule(s)) are more than a subscription_filter expresses (one correlation "
                       "filter on the subject and attributes, or none)");
  }

  /// Reads `messages` (a message without an id is given one, which it keeps: a retry of a send
  /// that failed as a whole sends it under the same id).
  awaitable<result<std::vector<send_outcome>>> send_to(std::string entity,
                                                       std::vector<message>& messages,
                                                       milliseconds timeout) {
    std::vector<message_id> ids;
    std::vector<std::optional<error>> refused(messages.size());  // never sent
    for (std::size_t i = 0; i < messages.size(); ++i) {
      auto& m = messages[i];
      if (auto invalid = qrt::detail::non_positive_time_to_live(m)) {
        refused[i] = fail(invalid->code, "servicebus: " + invalid->message);
        continue;
      }
      if (m.wire_size() > caps_.max_message_bytes) {
        refused[i] = fail(errc::message_too_large,
                          std::string("servicebus: a message of ") + std::to_string(m.wire_size()) +
                              " bytes exceeds the limit of " +
                              std::to_string(caps_.max_message_bytes) + " bytes");
        continue;
      }
      if (m.id.empty()) m.id = qrt::detail::random_hex_id();
      ids.push_back(m.id);
    }
    auto build_wire = [&] { return pack_into_batches(messages, refused, opts_.max_message_bytes); };
    packed_wire wire = build_wire();
    for (int attempt = 0;; ++attempt) {
      if (auto a = co_await authorize(entity); !a) co_return a.error();
      std::vector<result<void>> results;
      if (!ids.empty()) {
        // The deliveries move into the core; the rare retry after re-authorisation builds them
        // again.
        if (attempt > 0) wire = build_wire();
        auto sent = co_await conn_->send(entity, std::move(wire.deliveries), timeout);
        if (!sent && retry_after_reauth(sent.error(), attempt)) continue;
        if (!sent) co_return remap(sent.error());
        results.reserve(ids.size());
        for (std::size_t d : wire.delivery_of) results.push_back((*sent)[d]);
      }
      std::vector<send_outcome> out;
      out.reserve(messages.size());
      std::size_t next = 0;
      for (std::size_t i = 0; i < messages.size(); ++i) {
        if (refused[i]) {
          out.emplace_back(*refused[i]);
        } else if (results[next]) {
          out.emplace_back(std::move(ids[next++]));
        } else {
          out.emplace_back(remap(results[next++].error()));
        }
      }
      co_return out;
    }
  }

  awaitable<result<std::vector<received_message>>> receive(const queue_name& queue,
                                                           std::size_t max_messages,
                                                           milliseconds wait) override {
    if (max_messages == 0)
      co_return fail(errc::invalid_argument, "servicebus: receive needs max_messages >= 1");
    const std::string entity = queue.to_string();
    amqp::receiver_spec spec;
    spec.address = entity;
    spec.prefetch = opts_.prefetch_count;
    spec.max_message_size = opts_.max_message_bytes + amqp::receive_size_headroom;
    spec.confirm_settlement = true;
    co_return co_await receive_on("queue:" + entity, entity, spec, max_messages, wait);
  }

  awaitable<result<std::vector<received_message>>> receive_on(std::string link_id,
                                                              std::string entity,
                                                              amqp::receiver_spec spec,
                                                              std::size_t max, milliseconds wait) {
    for (int attempt = 0;; ++attempt) {
      if (auto a = co_await authorize(entity); !a) co_return a.error();
      auto got = co_await conn_->receive(link_id, spec, max, wait);
      if (!got && retry_after_reauth(got.error(), attempt)) continue;
      if (!got) co_return remap(got.error());
      std::vector<received_message> out;
      out.reserve(got->size());
      for (auto& in : *got) {
        // Moved once, into the answer, and filled in there.
        received_message& m = out.emplace_back(from_wire(std::move(in.message)));
        const auto* tag = reinterpret_cast<const std::uint8_t*>(in.tag.data());
        // A delivery tag that is not a lock token (not Service Bus, or a broken service) leaves
        // the receipt without one: the message still settles through its delivery, and a renewal
        // is refused as such, instead of every such message sharing one made-up token (whose
        // renewal the service would refuse, and whose first settlement would make the others
        // read as settled).
        auto token = detail::lock_token_from_delivery_tag({tag, in.tag.size()});
        if (!token) token = std::string();
        if (m.locked_until == time_point{}) m.locked_until = time_point::max();
        m.receipt.owner = id_;
        m.receipt.queue = in.ref.link;
        m.receipt.item = in.ref.seq;
        m.receipt.lock = conn_->generation();
        m.receipt.token = receipt_token(*token, entity);
        if (!token->empty()) remember_lock(*token, m.locked_until);
      }
      co_return out;
    }
  }

  awaitable<result<std::vector<received_message>>> peek(const queue_name& queue,
                                                        std::size_t max_messages,
                                                        std::int64_t from_sequence) override {
    if (auto refused = qrt::detail::peek_refusal(max_messages, from_sequence)) co_return *refused;
    // A page is one reply: at most as many messages as fit the reply limit at their largest.
    const std::size_t fit = std::max<std::uint64_t>(
        1, amqp::max_reply_bytes / (opts_.max_message_bytes + amqp::receive_size_headroom));
    const auto count = static_cast<std::int32_t>(
        std::min<std::size_t>({max_messages, fit, std::size_t{INT32_MAX}}));
    auto reply = co_await management(
        queue.to_string(),
        detail::peek_request(std::max<std::int64_t>(from_sequence, 1), count, std::nullopt));
    if (!reply) co_return reply.error();
    auto entries = detail::parse_messages_response(*reply, static_cast<std::size_t>(count));
    if (!entries) co_return entries.error();
    // A message qrt cannot decode is left out of the page and the others are returned; a page
    // of nothing but such messages is an error naming why, not an empty page that would read
    // as the end of the queue.
    std::vector<received_message> out;
    const error* first_undecodable = nullptr;
    for (auto& e : *entries) {
      if (e.undecodable) {
        if (!first_undecodable) first_undecodable = &*e.undecodable;
        continue;
      }
      received_message m = from_wire(std::move(e.message));
      m.locked_until = time_point{};
      // The header's delivery-count is the deliveries before this one, and decoding adds one
      // for the delivery under way; a peek is not a delivery (the official SDKs read a peeked
      // message's count as the header's), so a message never received peeks as 0.
      if (m.delivery_count > 0) --m.delivery_count;
      out.push_back(std::move(m));
    }
    if (out.empty() && first_undecodable) co_return *first_undecodable;
    co_return out;
  }

  // ----- settlement and locks -----

  awaitable<std::vector<result<void>>> settle_from(
      const std::vector<settlement>& settlements) override {
    std::vector<result<void>> out(settlements.size());
    std::vector<std::pair<amqp::delivery_ref, amqp::outcome>> items;
    std::vector<std::size_t> positions;
    for (std::size_t i = 0; i < settlements.size(); ++i) {
      const auto& s = settlements[i];
      if (s.receipt.owner != id_) {
        out[i] =
            fail(errc::invalid_receipt, "servicebus: the receipt was not issued by this provider");
        continue;
      }
      // No local check of the lock's expiry: the receiver links settle in rcv-settle-mode
      // second, so the service itself says whether the lock still holds
      // (com.microsoft:message-lock-lost -> receipt_expired, its description kept).
      amqp::outcome how;
      switch (s.action) {
        case settle_action::complete:
          how = amqp::outcome::accepted();
          break;
        case settle_action::abandon:
          how = amqp::outcome::modified(false, false);
          break;
        case settle_action::dead_letter:
          how = amqp::outcome::rejected(
              dead_letter_condition, s.description,
              {{"DeadLetterReason", s.reason}, {"DeadLetterErrorDescription", s.description}});
          break;
      }
      items.emplace_back(amqp::delivery_ref{s.receipt.queue, s.receipt.item}, std::move(how));
      positions.push_back(i);
    }
    if (!items.empty()) {
      auto results = co_await conn_->settle(std::move(items), opts_.operation_timeout);
      for (std::size_t j = 0; j < positions.size(); ++j) {
        out[positions[j]] = results[j] ? result<void>{} : result<void>{remap(results[j].error())};
        if (results[j])
          forget_lock(split_receipt_token(settlements[positions[j]].receipt.token).first);
      }
    }
    co_return out;
  }

  awaitable<result<time_point>> renew_lock(const receipt_handle& receipt) override {
    if (receipt.owner != id_)
      co_return fail(errc::invalid_receipt,
                     "servicebus: the receipt was not issued by this provider");
    const auto [lock_token, entity] = split_receipt_token(receipt.token);
    auto uuid = detail::uuid_from_lock_token(lock_token);
    if (!uuid || entity.empty())
      co_return fail(errc::invalid_receipt,
                     "servicebus: the receipt has no lock token (the service delivered the "
                     "message without one), so its lock cannot be renewed");
    if (!lock_expiry(lock_token)) {
      co_return fail(errc::invalid_receipt,
                     "servicebus: the message of this receipt was already settled");
    }
    const detail::uuid_bytes tokens[] = {*uuid};
    auto reply = co_await management(entity, detail::renew_lock_request(tokens, {}));
    if (!reply) co_return reply.error();
    auto expirations = detail::parse_renew_lock_response(*reply, std::size(tokens));
    if (!expirations) co_return expirations.error();  // exactly one: one token was sent
    remember_lock(lock_token, expirations->front());
    co_return expirations->front();
  }

  // ----- sessions -----

  awaitable<result<std::shared_ptr<session_receiver>>> accept_session(
      const queue_name& queue, std::optional<session_id> session, milliseconds wait) override {
    const std::string entity = queue.to_string();
    if (auto a = co_await authorize(entity); !a) co_return a.error();
    amqp::receiver_spec spec;
    spec.address = entity;
    spec.prefetch = opts_.prefetch_count;
    spec.max_message_size = opts_.max_message_bytes + amqp::receive_size_headroom;
    spec.confirm_settlement = true;
    spec.filters.put(proton::symbol(session_filter),
                     session ? proton::value(session->str()) : proton::value());
    spec.properties[proton::symbol(timeout_property)] =
        proton::value(static_cast<std::uint32_t>(std::min<std::int64_t>(wait.count(), UINT32_MAX)));
    const std::string link_id =
        "session:" + entity + std::string(":") + std::to_string(next_session_link_++);
    auto info = co_await conn_->open_receiver(link_id, spec, wait + opts_.operation_timeout);
    if (!info) {
      co_await conn_->close_receiver(link_id);
      co_return remap(info.error());
    }
    // A refused session attach (no source, then a detach with
    // com.microsoft:session-cannot-be-locked, or com.microsoft:timeout when no session became
    // free) already failed above with the service's condition and description. An attach that
    // does not echo the filter is a service that did not lock a session: refuse it the same way.
    if (!info->remote_filters.exists(proton::symbol(session_filter))) {
      co_await conn_->close_receiver(link_id);
      if (session) {
        co_return fail(errc::session_locked,
                       "servicebus: session '" + session->str() + "' of '" + entity +
                           "' cannot be locked: another receiver may hold it",
                       "com.microsoft:session-cannot-be-locked");
      }
      co_return fail(errc::timeout,
                     "servicebus: no unlocked session of '" + entity +
                         std::string("' became available within ") + std::to_string(wait.count()) +
                         " ms",
                     "com.microsoft:timeout");
    }
    std::string chosen;
    time_point locked_until = clock::now();
    std::optional<error> malformed;
    try {
      const proton::symbol key(session_filter);
      if (info->remote_filters.exists(key)) {
        const auto v = info->remote_filters.get(key);
        if (v.type() == proton::STRING) chosen = proton::get<std::string>(v);
      }
      const auto it = info->remote_properties.find(proton::symbol(locked_until_utc));
      if (it != info->remote_properties.end()) {
        locked_until = detail::from_dotnet_ticks(proton::coerce<std::int64_t>(it->second));
      }
    } catch (const proton::error& e) {
      malformed = fail(errc::protocol_error,
                       std::string("servicebus: malformed session attach: ") + e.what());
    }
    if (malformed) {
      co_await conn_->close_receiver(link_id);
      co_return *malformed;
    }
    if (chosen.empty() && session) chosen = session->str();
    auto id = session_id::parse(chosen);
    if (!id) {
      co_await conn_->close_receiver(link_id);
      co_return fail(errc::protocol_error,
                     "servicebus: the service attached a session receiver without a session id");
    }
    // Re-attaching after a connection loss must ask for the same session, not the next one.
    spec.filters.put(proton::symbol(session_filter), proton::value(id->str()));
    co_return std::shared_ptr<session_receiver>(std::make_shared<servicebus_session>(
        shared_from_this(), entity, link_id, std::move(spec), std::move(*id), locked_until));
  }

  awaitable<void> close() override { co_await conn_->close(); }

  // ----- shared with sessions -----

  /// A request on `<entity>/$management`, authorised first; errors mapped. One whose answer
  /// never comes fails as unconfirmed when it may have changed state (management_request_kind).
  awaitable<result<proton::message>> management(std::string entity, proton::message request) {
    const std::string node = entity + "/$management";
    const amqp::request_kind kind = detail::management_request_kind(request);
    for (int attempt = 0;; ++attempt) {
      if (auto a = co_await authorize(node); !a) co_return a.error();
      auto reply = co_await conn_->request(node, request, opts_.operation_timeout, kind);
      if (!reply && retry_after_reauth(reply.error(), attempt)) continue;
      if (!reply) co_return remap(reply.error());
      co_return reply;
    }
  }

  awaitable<result<void>> close_link(std::string link_id) {
    co_return co_await conn_->close_receiver(link_id);
  }

 private:
  /// The rule qrt adds for a subscription_filter.
  static constexpr std::string_view qrt_rule = "qrt-filter";

  static error as_topic_error(error e) {
    if (e.code == errc::queue_not_found) e.code = errc::topic_not_found;
    return e;
  }

  static result<void> check_subscription(const queue_name& q) {
    if (q.is_subscription() && !q.is_dead_letter()) return {};
    return fail(errc::invalid_argument, "servicebus: '" + q.to_string() +
                                            "' is not a subscription (queue_name::subscription)");
  }

  static error not_a_queue(const queue_name& q, const char* call) {
    return fail(errc::invalid_argument,
                "servicebus: '" + q.str() + "' is a subscription: use " + call);
  }

  error no_entity_management(const char* what) const {
    return fail(errc::unsupported,
                std::string("servicebus: ") + what +
                    " is not done over AMQP; create topics and subscriptions (with their rules) "
                    "beforehand in the Azure portal, ARM or the Service Bus administration API");
  }

  static proton::message admin_request(const char* operation, const std::string& topic) {
    proton::message m;
    m.properties().put("operation", operation);
    m.properties().put("topic", topic);
    return m;
  }
  static proton::message admin_subscription_request(const char* operation,
                                                    const queue_name& subscription) {
    proton::message m = admin_request(operation, subscription.topic());
    m.properties().put("subscription", std::string(subscription.subscription_name()));
    return m;
  }

  static std::int64_t status_code(const proton::message& reply) {
    if (!reply.properties().exists("statusCode")) return 0;
    return proton::coerce<std::int64_t>(reply.properties().get("statusCode"));
  }
  static result<proton::message> status_of(proton::message reply, std::string_view what) {
    if (auto s = detail::response_status(reply, what); !s) return s.error();
    return reply;
  }

  error no_management(const char* what) const {
    return fail(errc::unsupported, std::string("servicebus: ") + what +
                                       " is not done over AMQP; manage queues in the Azure portal, "
                                       "ARM or the Service Bus administration API");
  }

  awaitable<result<proton::message>> admin(proton::message request) {
    auto reply =
        co_await conn_->request("$peer-admin", std::move(request), opts_.operation_timeout);
    if (!reply) co_return remap(reply.error());
    auto status = detail::response_status(*reply, "test peer admin");
    if (!status && reply->properties().exists("statusCode") &&
        proton::coerce<std::int64_t>(reply->properties().get("statusCode")) == 409) {
      co_return reply;  // create_queue on an existing queue: nothing to do
    }
    if (!status) co_return status.error();
    co_return reply;
  }

  // CBS: one token per audience and connection; replaced once 80% of its life has passed.
  struct token_state {
    std::uint64_t generation = 0;
    time_point refresh_at{};
  };

  awaitable<result<void>> authorize(std::string entity) {
    const std::string audience = cs_.audience(entity);
    {
      std::lock_guard lock(mutex_);
      const auto it = tokens_.find(audience);
      if (it != tokens_.end() && it->second.generation == conn_->generation() &&
          clock::now() < it->second.refresh_at) {
        co_return result<void>{};
      }
    }
    const auto now = clock::now();
    std::string token;
    std::string type = "servicebus.windows.net:sastoken";
    time_point expires_at;
    if (opts_.tokens) {
      auto t = opts_.tokens(audience);
      if (!t) co_return t.error();
      token = std::move(t->token);
      type = t->type;
      expires_at = t->expires_at;
    } else if (identity_) {
      // One Azure AD token (resource https://servicebus.azure.net/) serves every audience.
      auto t = co_await identity_->token();
      if (!t) co_return t.error();
      token = std::move(t->token);
      type = t->type;
      expires_at = t->expires_at;
    } else if (!cs_.shared_access_signature.empty()) {
      token = cs_.shared_access_signature;
      expires_at = detail::sas_token_expiry(token, now + std::chrono::hours(1));
    } else {
      expires_at = now + opts_.token_lifetime;
      token = detail::make_sas_token(audience, cs_.key_name, cs_.key, expires_at);
    }
    auto reply = co_await conn_->request(
        "$cbs", detail::put_token_request(audience, token, type, expires_at),
        opts_.operation_timeout);
    if (!reply) co_return remap(reply.error());
    if (auto status = detail::response_status(*reply, "put-token for '" + entity + "'"); !status) {
      co_return status.error();
    }
    std::lock_guard lock(mutex_);
    tokens_[audience] = token_state{conn_->generation(), detail::refresh_time(now, expires_at)};
    co_return result<void>{};
  }

  /// After a reconnect the links re-attach before a new token is put; the service then refuses
  /// them as unauthorised. Forget the tokens and try once more.
  bool retry_after_reauth(const error& e, int attempt) {
    if (attempt > 0 || e.code != errc::permission) return false;
    std::lock_guard lock(mutex_);
    bool stale = false;
    for (const auto& [audience, state] : tokens_) stale |= state.generation != conn_->generation();
    if (stale) tokens_.clear();
    return stale;
  }

  void remember_lock(const std::string& lock_token, time_point until) {
    std::lock_guard lock(mutex_);
    if (locks_.size() > 100'000) {
      const auto now = clock::now();
      std::erase_if(locks_,
                    [&](const auto& kv) { return kv.second < now - std::chrono::minutes(5); });
    }
    locks_[lock_token] = until;
  }
  void forget_lock(const std::string& lock_token) {
    std::lock_guard lock(mutex_);
    locks_.erase(lock_token);
  }
  std::optional<time_point> lock_expiry(const std::string& lock_token) {
    std::lock_guard lock(mutex_);
    const auto it = locks_.find(lock_token);
    if (it == locks_.end()) return std::nullopt;
    return it->second;
  }

  detail::provider_settings opts_;
  connection_string cs_;
  std::shared_ptr<amqp::connection> conn_;
  /// Set with auth_method::managed_identity (and no `tokens` hook).
  std::shared_ptr<detail::managed_identity_source> identity_;
  std::uint64_t id_;
  capabilities caps_;
  std::mutex mutex_;
  std::map<std::string, token_state> tokens_;
  std::map<std::string, time_point> locks_;
  std::atomic<std::uint64_t> next_session_link_{1};

  friend class servicebus_session;
};

awaitable<result<std::vector<received_message>>> servicebus_session::receive(
    std::size_t max_messages, milliseconds wait) {
  if (closed_) co_return fail(errc::closed, "servicebus: session '" + id_.str() + "' is closed");
  if (max_messages == 0)
    co_return fail(errc::invalid_argument, "servicebus: receive needs max_messages >= 1");
  // Past its lock the session may be another receiver's: a receive would attach to it again
  // (after a dropped link) and take messages this holder could never settle, each delivery
  // counting towards the dead-letter queue.
  if (lock_lost()) co_return lock_lost_error();
  auto got = co_await owner_->receive_on(link_id_, entity_, spec_, max_messages, wait);
  if (!got) co_return got.error();
  for (auto& m : *got) m.session = id_;
  co_return got;
}

error servicebus_session::lock_lost_error() const {
  return fail(errc::session_lock_lost,
              "servicebus: the lock on session '" + id_.str() + "' of '" + entity_ +
                  "' has expired; another receiver may hold it",
              "com.microsoft:session-lock-lost");
}

bool servicebus_session::lock_lost() const noexcept {
  return clock::now() >= locked_until();
}

awaitable<std::vector<result<void>>> servicebus_session::settle(
    std::vector<settlement> settlements) {
  if (lock_lost()) {
    // The service refuses settlement on a session whose lock lapsed (its messages are back).
    co_return std::vector<result<void>>(settlements.size(), result<void>{lock_lost_error()});
  }
  auto results = co_await owner_->settle(std::move(settlements));
  for (auto& r : results) {
    // A session link the service detached took its locks with it.
    if (!r && r.error().code == errc::receipt_expired && lock_lost()) r = lock_lost_error();
  }
  co_return results;
}

awaitable<result<time_point>> servicebus_session::renew_session_lock() {
  if (closed_) co_return fail(errc::closed, "servicebus: session '" + id_.str() + "' is closed");
  if (lock_lost()) co_return lock_lost_error();
  auto reply =
      co_await owner_->management(entity_, detail::renew_session_lock_request(id_.str(), {}));
  if (!reply) co_return reply.error();
  auto until = detail::parse_renew_session_lock_response(*reply);
  if (!until) co_return until.error();
  locked_until_ms_ = std::chrono::duration_cast<milliseconds>(until->time_since_epoch()).count();
  co_return *until;
}

awaitable<result<std::string>> servicebus_session::get_state() {
  if (closed_) co_return fail(errc::closed, "servicebus: session '" + id_.str() + "' is closed");
  if (lock_lost()) co_return lock_lost_error();
  auto reply =
      co_await owner_->management(entity_, detail::get_session_state_request(id_.str(), {}));
  if (!reply) co_return reply.error();
  auto state = detail::parse_session_state_response(*reply);
  if (!state) co_return state.error();
  co_return state->value_or(std::string());
}

awaitable<result<void>> servicebus_session::set_state(std::string state) {
  if (closed_) co_return fail(errc::closed, "servicebus: session '" + id_.str() + "' is closed");
  if (lock_lost()) co_return lock_lost_error();
  std::optional<std::string> value;
  if (!state.empty()) value = std::move(state);
  auto reply =
      co_await owner_->management(entity_, detail::set_session_state_request(id_.str(), value, {}));
  if (!reply) co_return reply.error();
  if (auto s = detail::response_status(*reply, "set-session-state"); !s) co_return s.error();
  co_return result<void>{};
}

awaitable<result<void>> servicebus_session::close() {
  if (closed_.exchange(true)) co_return result<void>{};
  co_return co_await owner_->close_link(link_id_);
}

}  // namespace

result<provider_ptr> make_provider(const options& opts, boost::asio::any_io_executor executor) {
  detail::provider_settings settings;
  static_cast<options&>(settings) = opts;
  return detail::make_provider(settings, std::move(executor));
}

result<provider_ptr> detail::make_provider(const provider_settings& opts,
                                           boost::asio::any_io_executor executor) {
  const bool sas = !opts.tokens && opts.auth == auth_method::shared_access_signature;
  auto cs = detail::parse_connection_string(
      opts.connection_string, sas ? detail::credentials::required : detail::credentials::optional);
  if (!cs) return cs.error();
  std::shared_ptr<detail::managed_identity_source> identity;
  if (!opts.tokens && opts.auth == auth_method::managed_identity) {
    auto endpoint = detail::choose_identity_endpoint(opts.managed_identity_endpoint,
                                                     detail::process_environment());
    if (auto r = detail::build_identity_request(endpoint, detail::servicebus_resource,
                                                opts.managed_identity_client_id);
        !r) {
      return r.error();
    }
    identity = std::make_shared<detail::managed_identity_source>(
        std::move(endpoint), opts.managed_identity_client_id, opts.operation_timeout);
  }
  amqp::endpoint ep;
  ep.host = cs->host;
  ep.port = cs->port;
  ep.tls = cs->use_tls;
  ep.tls_verify = opts.tls_verify;
  ep.sasl_mechanisms = "ANONYMOUS";  // authorisation happens on $cbs, as the service expects
  ep.virtual_host = cs->host;
  ep.connect_timeout = opts.operation_timeout;
  ep.max_prefetch_bytes = opts.max_prefetch_bytes;
  ep.max_links = opts.max_links;
  auto conn = amqp::connection::create(ep, std::move(executor));
  return provider_ptr(std::make_shared<servicebus_provider>(opts, std::move(*cs), std::move(conn),
                                                            std::move(identity)));
}

void register_provider(provider_registry& registry) {
  // The registered factory reads the test-only keys too, which servicebus::options lacks.
  registry.add("servicebus", &detail::settings_from_config, &detail::make_provider);
}

}  // namespace qrt::servicebus
