// The generic amqp provider: qrt::provider over one detail::connection. Its configuration
// keys are in options.cpp.
#include <algorithm>
#include <atomic>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <map>
#include <mutex>
#include <proton/annotation_key.hpp>
#include <proton/timestamp.hpp>
#include <qrt/amqp.hpp>
#include <random>

#include "amqp/connection.hpp"
#include "amqp/mapping.hpp"
#include "amqp/message_codec.hpp"
#include "core/borrowing_provider.hpp"
#include "core/message_checks.hpp"
#include "core/post_releasing.hpp"
#include "core/random_id.hpp"
#include "providers/amqp/options.hpp"

namespace qrt::amqp {

using detail::connection;
using detail::delivery_ref;
using detail::outcome;

namespace {

std::atomic<std::uint64_t> next_provider_id{1};

class amqp_provider final : public qrt::detail::provider_that_borrows {
 public:
  amqp_provider(options opts, std::shared_ptr<connection> conn)
      : opts_(std::move(opts)), conn_(std::move(conn)), id_(next_provider_id++) {
    caps_.sessions = session_support::none;
    caps_.max_batch_messages = 1000;  // each message is its own transfer; this bounds one call
    caps_.max_batch_bytes = 0;
    caps_.max_message_bytes = opts_.max_message_bytes;
    caps_.peek = false;
    caps_.scheduling = false;
    caps_.time_to_live = true;  // the header's ttl (RabbitMQ: per-message expiration)
    caps_.timed_locks = false;  // a delivery stays locked as long as its link lives
    // Receiver links settle first (see receive()): nothing confirms an outcome.
    caps_.confirmed_settlement = false;
    // The contract's abandon counts a failed delivery; only `modified` does that. With
    // `released` (RabbitMQ) abandon still returns the message at once, but the delivery count
    // stays, so the capability is not declared.
    caps_.abandon = opts_.abandon_with == abandon_outcome::modified;
    caps_.lock_renewal = false;       // a lock lasts as long as the link: nothing to renew
    caps_.dead_letter_queue = false;  // rejected messages go wherever the broker's policy says
    caps_.max_delivery_count = false;
    caps_.session_state = false;
    caps_.queue_management = false;  // AMQP 1.0 has no standard way to create or delete queues
    // Topics where the broker has an address for them. A subscription is the broker's queue
    // behind one receiver link (RabbitMQ: an exclusive, auto-delete queue bound to amq.topic),
    // so it ends with its link; filters and sessions cannot be asked for over AMQP 1.0.
    caps_.topics = !opts_.topic_prefix.empty();
    caps_.subscription_filters = false;
    caps_.durable_subscriptions = false;
    caps_.subscription_sessions = false;
  }

  std::string_view name() const noexcept override { return "amqp"; }
  const capabilities& caps() const noexcept override { return caps_; }
  connection_stats connections() const noexcept override { return conn_->traffic(); }

  awaitable<result<void>> create_queue(const queue_name& queue, const queue_options&) override {
    if (auto e = check_queue(queue); !e) co_return e.error();
    if (queue.is_subscription()) {
      co_return fail(errc::invalid_argument,
                     "amqp: '" + queue.str() + "' is a subscription: use create_subscription");
    }
    if (opts_.declare_prefix.empty()) {
      co_return fail(errc::unsupported,
                     "amqp: create_queue needs 'declare_prefix' (a broker address that declares "
                     "queues on attach, e.g. /queue/ on RabbitMQ)");
    }
    // Attaching to the declaring address makes the broker create the queue; detach at once.
    const std::string link = "declare:" + std::to_string(next_link_++) + ":" + queue.str();
    detail::receiver_spec spec;
    spec.address = opts_.declare_prefix + queue.str();
    spec.durable = true;
    auto attached = co_await conn_->open_receiver(link, spec, opts_.connect_timeout);
    co_await conn_->close_receiver(link);
    if (!attached) co_return attached.error();
    co_return result<void>{};
  }

  awaitable<result<void>> delete_queue(const queue_name& queue) override {
    co_return fail(errc::unsupported, "amqp: AMQP 1.0 cannot delete queue '" + queue.str() +
                                          "'; delete it with the broker's own tools");
  }

  awaitable<result<queue_stats>> stats(const queue_name& queue) override {
    if (auto e = check_queue(queue); !e) co_return e.error();
    if (queue.is_subscription()) {
      auto sub = co_await find_subscription(queue);
      if (!sub) co_return sub.error();
    } else if (opts_.verify_queue_exists) {
      // Unknown figures are for a queue that is there: a missing queue or an unreachable broker
      // is an error, not a row of unknowns. Probed afresh: the queue may be gone since a send
      // last found it.
      auto exists = co_await probe_begun_after_now(queue, address(queue), opts_.connect_timeout);
      if (!exists) co_return exists.error();
    }
    co_return queue_stats{};  // AMQP 1.0 does not report queue depth: every figure unknown
  }

  /// The messages are only read (encoded), so the retrying layer lends them instead of
  /// copying them for every attempt (core/borrowing_provider.hpp).
  awaitable<result<std::vector<send_outcome>>> send_from(const queue_name& queue,
                                                         std::vector<message>& messages,
                                                         milliseconds timeout) override {
    if (auto e = check_queue(queue); !e) co_return e.error();
    if (queue.is_subscription()) {
      co_return fail(errc::invalid_argument, "amqp: cannot send to subscription '" + queue.str() +
                                                 "': publish to its topic");
    }
    const std::string to = address(queue);
    co_return co_await send_to(to, &queue, messages, timeout);
  }

  awaitable<result<std::vector<received_message>>> receive(const queue_name& queue,
                                                           std::size_t max_messages,
                                                           milliseconds wait) override {
    if (auto e = check_queue(queue); !e) co_return e.error();
    if (max_messages == 0) {
      co_return fail(errc::invalid_argument, "amqp: receive needs max_messages >= 1");
    }
    detail::receiver_spec spec;
    std::string link_id;
    if (queue.is_subscription()) {
      auto sub = co_await find_subscription(queue);
      if (!sub) co_return sub.error();
      link_id = sub->link_id;
      spec = subscription_spec(sub->name);
    } else {
      spec.address = address(queue);
      spec.prefetch = opts_.prefetch;
      spec.max_message_size = opts_.max_message_bytes + detail::receive_size_headroom;
      spec.report_refusals = true;  // RabbitMQ drops a rejected message unless a policy says
      link_id = "queue:" + spec.address;
    }
    // No confirm_settlement: RabbitMQ 3.10 refuses rcv-settle-mode second
    // (amqp:not-implemented, "rcv-settle-mode second not supported"); see docs/amqp.md.
    auto got = co_await conn_->receive(link_id, spec, max_messages, wait);
    if (queue.is_subscription()) {
      // The connection dropped while this receive waited, and the link was attached again to a
      // new, empty broker queue: the subscription is gone (what this link holds goes back to
      // that queue, which ends with the link).
      if (auto still = co_await find_subscription(queue); !still) co_return still.error();
    }
    if (!got) co_return got.error();
    if (got->empty() && !queue.is_subscription() && opts_.verify_queue_exists) {
      // RabbitMQ 3.10 keeps a receiver link attached to a queue deleted since, and the link
      // just stays silent: nothing delivered may mean the queue is gone.
      if (auto exists = co_await probe_begun_after_now(queue, spec.address, opts_.connect_timeout);
          !exists && exists.error().code == errc::queue_not_found) {
        // The link is dead for good: a queue made again under the name needs a new one.
        co_await conn_->close_receiver(link_id);
        co_return fail(errc::queue_not_found,
                       "amqp: receive from '" + queue.str() +
                           "' failed: the queue does not exist (deleted while it was read?)",
                       exists.error().provider_code);
      }
    }
    std::vector<received_message> out;
    out.reserve(got->size());
    const std::uint64_t generation = conn_->generation();
    for (auto& in : *got) {
      // Moved once, into the answer, and filled in there.
      received_message& m = out.emplace_back(std::move(in.message.message));
      const auto& annotations = in.message.annotations;
      m.receipt.owner = id_;
      m.receipt.queue = in.ref.link;
      m.receipt.item = in.ref.seq;
      m.receipt.lock = generation;
      m.locked_until = time_point::max();  // held until settled or the link dies
      if (annotations.enqueued_time) m.enqueued_time = *annotations.enqueued_time;
      if (m.enqueued_time == time_point{}) m.enqueued_time = clock::now();
      if (annotations.sequence_number) m.sequence_number = *annotations.sequence_number;
    }
    co_return out;
  }

  awaitable<result<void>> create_topic(const topic_name& topic) override {
    if (auto e = check_topics(topic); !e) co_return e.error();
    // Nothing to declare: the topic is a routing key on an exchange the broker already has.
    co_return result<void>{};
  }

  awaitable<result<void>> delete_topic(const topic_name& topic) override {
    if (auto e = check_topics(topic); !e) co_return e.error();
    std::vector<std::string> links;
    {
      std::lock_guard lock(mutex_);
      for (auto it = subscriptions_.begin(); it != subscriptions_.end();) {
        if (it->second.name.topic() == topic.str()) {
          links.push_back(it->second.link_id);
          it = subscriptions_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (const auto& link : links) co_await conn_->close_receiver(link);
    co_return result<void>{};
  }

  awaitable<result<std::vector<send_outcome>>> publish_from(const topic_name& topic,
                                                            std::vector<message>& messages,
                                                            milliseconds timeout) override {
    if (auto e = check_topics(topic); !e) co_return e.error();
    const std::string to = opts_.topic_prefix + topic.str();
    co_return co_await send_to(to, nullptr, messages, timeout);
  }

  awaitable<result<void>> create_subscription(const queue_name& subscription,
                                              const subscription_options& options) override {
    if (!subscription.is_subscription()) {
      co_return fail(errc::invalid_argument,
                     "amqp: '" + subscription.str() + "' is not a subscription name");
    }
    if (auto e = check_queue(subscription); !e) co_return e.error();
    const auto topic = topic_name::parse(subscription.topic());
    if (!topic) co_return topic.error();
    if (auto e = check_topics(*topic); !e) co_return e.error();
    if (!options.filter.empty()) {
      co_return fail(errc::unsupported,
                     "amqp: subscription filters cannot be set up over AMQP 1.0 (a subscription "
                     "receives every message published to its topic)");
    }
    if (options.queue.requires_session) {
      co_return fail(errc::unsupported, "amqp: generic AMQP 1.0 brokers have no sessions");
    }
    if (auto existing = co_await find_subscription(subscription); existing) {
      co_return result<void>{};  // as a queue that exists: nothing to do
    }
    // A link id of its own per subscription made: one deleted and made again must not meet
    // the closing link of the first.
    const std::string link_id =
        "subscription:" + std::to_string(next_link_++) + ":" + subscription.str();
    auto attached = co_await conn_->open_receiver(link_id, subscription_spec(subscription),
                                                  opts_.connect_timeout);
    if (!attached) co_return attached.error();
    bool made_twice = false;
    {
      std::lock_guard lock(mutex_);
      auto [it, inserted] = subscriptions_.try_emplace(subscription.str());
      if (inserted || it->second.generation != conn_->generation()) {
        it->second = {subscription, link_id, conn_->generation()};
      } else {
        made_twice = true;  // a concurrent create won: its link is the subscription
      }
    }
    if (made_twice) co_await conn_->close_receiver(link_id);
    co_return result<void>{};
  }

  awaitable<result<void>> delete_subscription(const queue_name& subscription) override {
    std::optional<subscription_link> gone;
    {
      std::lock_guard lock(mutex_);
      auto it = subscriptions_.find(subscription.str());
      if (it != subscriptions_.end() && subscription.is_subscription()) {
        gone = std::move(it->second);
        subscriptions_.erase(it);
      }
    }
    if (!gone) co_return not_a_subscription(subscription);
    co_await conn_->close_receiver(gone->link_id);
    co_return result<void>{};
  }

  awaitable<result<std::vector<subscription_info>>> list_subscriptions(
      const topic_name& topic) override {
    if (auto e = check_topics(topic); !e) co_return e.error();
    std::vector<subscription_info> out;
    const std::uint64_t generation = conn_->generation();
    std::lock_guard lock(mutex_);
    for (const auto& [path, sub] : subscriptions_) {  // ordered by path: by name within a topic
      if (sub.name.topic() == topic.str() && sub.generation == generation) {
        out.push_back({sub.name, {}});
      }
    }
    co_return out;
  }

 private:
  /// Sends `messages` to `to`; `queue` (null for a topic) is checked to exist first where the
  /// broker would drop messages for a missing queue. Oversize messages fail alone with
  /// message_too_large; the rest go out in order.
  /// Reads `messages` (a message without an id is given one, which it keeps: a retry of a send
  /// that failed as a whole sends it under the same id).
  awaitable<result<std::vector<send_outcome>>> send_to(std::string to, const queue_name* queue,
                                                       std::vector<message>& messages,
                                                       milliseconds timeout) {
    std::vector<send_outcome> out(messages.size(), send_outcome(message_id{}));
    std::vector<detail::outgoing_delivery> wire;
    std::vector<std::size_t> positions;
    std::vector<std::size_t> encoded_sizes;  // of each message in `wire`
    wire.reserve(messages.size());
    for (std::size_t i = 0; i < messages.size(); ++i) {
      auto& m = messages[i];
      if (m.scheduled_enqueue_time) {
        co_return fail(errc::unsupported, "amqp: scheduled delivery is not supported");
      }
      if (auto refused = qrt::detail::non_positive_time_to_live(m)) {
        out[i] = fail(refused->code, "amqp: " + refused->message);
        continue;
      }
      if (m.wire_size() > opts_.max_message_bytes) {
        out[i] = fail(errc::message_too_large, "amqp: message of " + std::to_string(m.wire_size()) +
                                                   " bytes exceeds max_message_bytes (" +
                                                   std::to_string(opts_.max_message_bytes) + ")");
        continue;
      }
      if (m.id.empty()) m.id = qrt::detail::random_hex_id();
      out[i] = m.id;
      positions.push_back(i);
      detail::outgoing_delivery d;
      detail::encode_message(m, {}, d.bytes);
      encoded_sizes.push_back(d.bytes.size());
      wire.push_back(std::move(d));
    }
    if (wire.empty()) co_return out;
    if (queue != nullptr) {
      if (auto verified = co_await verify_exists(*queue, to, timeout); !verified) {
        co_return verified.error();
      }
    }
    auto sent = co_await conn_->send(to, std::move(wire), timeout);
    if (!sent) {
      if (broker_max_size(sent.error())) co_return not_the_refused_one(sent.error());
      co_return sent.error();
    }
    if (queue != nullptr &&
        std::any_of(sent->begin(), sent->end(), [](const auto& r) { return r.has_value(); })) {
      // The broker accepts a message for a queue that is gone and drops it (RabbitMQ 3.10
      // publishes it to no one): only a check begun after the broker's answer shows the
      // accepted messages reached the queue. A check that fails otherwise (the connection
      // dropped) fails the call too: the messages may be stored, but reporting them sent would
      // lose them silently if the queue is gone, and at least once (docs/contract.md) takes the
      // possible duplicate instead.
      if (auto still = co_await queue_still_exists(*queue, to, timeout); !still) {
        co_return still.error();
      }
    }
    for (std::size_t j = 0; j < positions.size(); ++j) {
      if ((*sent)[j]) continue;
      const error& e = (*sent)[j].error();
      const auto limit = broker_max_size(e);
      if (!limit) {
        out[positions[j]] = e;
      } else if (encoded_sizes[j] > *limit) {
        out[positions[j]] = fail(errc::message_too_large,
                                 "amqp: message of " + std::to_string(encoded_sizes[j]) +
                                     " bytes encoded is over the broker's max message size (" +
                                     std::to_string(*limit) + "): " + e.message,
                                 e.provider_code);
      } else {
        out[positions[j]] = not_the_refused_one(e);
      }
    }
    co_return out;
  }

  /// The limit in RabbitMQ's refusal of a message over its max_message_size ("message size N
  /// is larger than configured max size M", amqp:precondition-failed), which ends the sender's
  /// session: every message of the call still in flight or unsent gets that error, not only
  /// the large one. nullopt for any other error.
  static std::optional<std::uint64_t> broker_max_size(const error& e) {
    static constexpr std::string_view marker = "larger than configured max size ";
    if (e.provider_code != "amqp:precondition-failed") return std::nullopt;
    const auto at = e.message.find(marker);
    if (at == std::string::npos) return std::nullopt;
    std::uint64_t limit = 0;
    const char* first = e.message.data() + at + marker.size();
    const char* last = e.message.data() + e.message.size();
    if (auto [end, ec] = std::from_chars(first, last, limit); ec != std::errc{} || end == first) {
      return std::nullopt;
    }
    return limit;
  }

  /// A message within the broker's limit, caught up in the end of the link another message's
  /// refusal caused: not refused itself, so worth sending again. One in flight then is
  /// errc::unconfirmed already (the engine's: maybe stored, a resend may store it twice) and
  /// stays so; one that never left (the refusal's own error) was not sent and says so.
  static error not_the_refused_one(const error& e) {
    if (e.code == errc::unconfirmed) {
      error again = e;
      again.message =
          "amqp: the broker ended the link over another message of the batch: " + e.message;
      return again;
    }
    error again = fail(errc::provider_error,
                       "amqp: not sent: the broker ended the link over another message of the "
                       "batch (" +
                           e.message + ") before this one went out",
                       e.provider_code);
    again.kind = error_kind::transient;
    return again;
  }

 public:
  awaitable<result<std::vector<received_message>>> peek(const queue_name&, std::size_t,
                                                        std::int64_t) override {
    co_return fail(errc::unsupported, "amqp: peek is not supported by generic AMQP 1.0 brokers");
  }

  awaitable<std::vector<result<void>>> settle_from(
      const std::vector<settlement>& settlements) override {
    std::vector<result<void>> out(settlements.size());
    std::vector<std::pair<delivery_ref, outcome>> items;
    std::vector<std::size_t> positions;
    items.reserve(settlements.size());  // an outcome holds strings and a map: moved on growth
    positions.reserve(settlements.size());
    for (std::size_t i = 0; i < settlements.size(); ++i) {
      const auto& s = settlements[i];
      if (s.receipt.owner != id_) {
        out[i] = fail(errc::invalid_receipt, "amqp: the receipt was not issued by this provider");
        continue;
      }
      outcome how;
      switch (s.action) {
        case settle_action::complete:
          how = outcome::accepted();
          break;
        case settle_action::abandon:
          how = opts_.abandon_with == abandon_outcome::modified ? outcome::modified(true, false)
                                                                : outcome::released();
          break;
        case settle_action::dead_letter:
          how = outcome::rejected("qrt:dead-letter", s.reason.empty() ? s.description : s.reason,
                                  {{"reason", s.reason}, {"description", s.description}});
          break;
      }
      items.emplace_back(delivery_ref{s.receipt.queue, s.receipt.item}, std::move(how));
      positions.push_back(i);
    }
    if (!items.empty()) {
      auto results = co_await conn_->settle(std::move(items), opts_.connect_timeout);
      for (std::size_t j = 0; j < positions.size(); ++j) out[positions[j]] = std::move(results[j]);
    }
    co_return out;
  }

  awaitable<result<time_point>> renew_lock(const receipt_handle&) override {
    co_return fail(errc::unsupported,
                   "amqp: locks last as long as the link; there is nothing to renew");
  }

  awaitable<result<std::shared_ptr<session_receiver>>> accept_session(const queue_name&,
                                                                      std::optional<session_id>,
                                                                      milliseconds) override {
    co_return fail(errc::unsupported,
                   "amqp: generic AMQP 1.0 brokers have no sessions (group-id is sent, but "
                   "nothing locks a group to one receiver)");
  }

  awaitable<void> close() override { co_await conn_->close(); }

  /// A subscription this provider made, on the connection it was made on.
  struct subscription_link {
    queue_name name;
    std::string link_id;
    std::uint64_t generation = 0;  ///< the connection's; the broker's queue ends with it
  };

 private:
  result<void> check_topics(const topic_name& topic) const {
    if (opts_.topic_prefix.empty()) {
      return fail(errc::unsupported,
                  "amqp: no topics on this broker (set 'topic_prefix' to the "
                  "address topics are published to, e.g. /topic/ on RabbitMQ)");
    }
    if (topic.str().empty()) return fail(errc::invalid_argument, "amqp: empty topic name");
    return {};
  }

  static error not_a_subscription(const queue_name& subscription) {
    return fail(errc::queue_not_found,
                "amqp: subscription '" + subscription.str() +
                    "' does not exist on this connection (an AMQP 1.0 subscription lasts as "
                    "long as the link that made it)");
  }

  /// The receiver link of a subscription: the topic's address; the broker makes a queue for it.
  detail::receiver_spec subscription_spec(const queue_name& subscription) const {
    detail::receiver_spec spec;
    spec.address = opts_.topic_prefix + subscription.topic();
    spec.prefetch = opts_.prefetch;
    spec.max_message_size = opts_.max_message_bytes + detail::receive_size_headroom;
    spec.report_refusals = true;
    return spec;
  }

  /// The subscription made as `subscription`, or queue_not_found: never made here, deleted, or
  /// gone with the connection it was made on. In that last case its link is closed and it is
  /// forgotten: attaching again would make a new, empty queue and hide what the outage lost.
  awaitable<result<subscription_link>> find_subscription(const queue_name& subscription) {
    // Connect first: a connection that broke is only noticed, and made again under a new
    // generation, by the next call on it.
    if (auto up = co_await conn_->connect(opts_.connect_timeout); !up) co_return up.error();
    std::optional<subscription_link> lost;
    {
      std::lock_guard lock(mutex_);
      auto it = subscriptions_.find(subscription.str());
      if (it == subscriptions_.end()) co_return not_a_subscription(subscription);
      if (it->second.generation == conn_->generation()) co_return it->second;
      lost = std::move(it->second);
      subscriptions_.erase(it);
    }
    co_await conn_->close_receiver(lost->link_id);
    co_return fail(errc::queue_not_found,
                   "amqp: subscription '" + subscription.str() +
                       "' ended with the connection it was made on (messages published while "
                       "it was down are not kept); create it again");
  }

  result<void> check_queue(const queue_name& queue) const {
    if (queue.is_dead_letter()) {
      return fail(errc::unsupported, "amqp: '" + queue.to_string() +
                                         "': generic AMQP 1.0 brokers have no dead-letter "
                                         "sub-queue (RabbitMQ dead-letters by policy)");
    }
    return {};
  }
  std::string address(const queue_name& queue) const { return opts_.address_prefix + queue.str(); }

  /// With verify_queue_exists: attach a creditless receiver to prove the queue exists (the
  /// broker refuses the attach with amqp:not-found otherwise). Before a send, once per queue
  /// and connection (a queue known missing fails the call without sending); after a send, and
  /// for stats, every time, by queue_still_exists: RabbitMQ accepts and drops a message for a
  /// queue deleted since, so only a check begun after the broker's answer proves the queue
  /// still took it.
  /// Concurrent calls share probes (a burst of a thousand would otherwise open and close a
  /// thousand links, each on a session of its own): a call joins the probe of its address that
  /// has not begun yet, or begins one if none is running; one that finds a probe running, and
  /// none waiting, queues the next and begins it when the running one ends. A running probe is
  /// never joined: it may have begun before the caller's messages were routed.
  struct probe_in_flight {
    // Guarded by the provider's mutex.
    bool done = false;
    result<void> outcome;
    std::vector<std::pair<boost::asio::any_io_executor,
                          boost::asio::any_completion_handler<void(result<void>)>>>
        waiting;
  };
  struct probes_of_address {
    std::shared_ptr<probe_in_flight> running;  ///< begun
    std::shared_ptr<probe_in_flight> next;     ///< begins when `running` ends; joined meanwhile
  };

  awaitable<result<void>> verify_exists(const queue_name& queue, const std::string& to,
                                        milliseconds timeout) {
    if (!opts_.verify_queue_exists) co_return result<void>{};
    {
      std::lock_guard lock(mutex_);
      auto it = verified_.find(to);
      if (it != verified_.end() && it->second == conn_->generation()) co_return result<void>{};
    }
    co_return co_await probe_begun_after_now(queue, to, timeout);
  }

  /// With verify_queue_exists, a probe begun after this call: whether `to` exists now.
  awaitable<result<void>> queue_still_exists(const queue_name& queue, const std::string& to,
                                             milliseconds timeout) {
    if (!opts_.verify_queue_exists) co_return result<void>{};
    auto found = co_await probe_begun_after_now(queue, to, timeout);
    if (!found && found.error().code == errc::queue_not_found) {
      found.error().message = "amqp: send to '" + queue.str() +
                              "' failed: the queue does not exist (deleted since it was last "
                              "checked?); the broker took the messages and dropped them";
    }
    co_return found;
  }

  awaitable<result<void>> probe_begun_after_now(const queue_name& queue, const std::string& to,
                                                milliseconds timeout) {
    std::shared_ptr<probe_in_flight> joined;  // a probe not begun yet: its answer serves
    std::shared_ptr<probe_in_flight> before;  // the running probe, to let end first
    std::shared_ptr<probe_in_flight> mine;
    {
      std::lock_guard lock(mutex_);
      auto& slot = probing_[to];
      if (!slot.running) {
        slot.running = mine = std::make_shared<probe_in_flight>();
      } else if (slot.next) {
        joined = slot.next;
      } else {
        slot.next = mine = std::make_shared<probe_in_flight>();
        before = slot.running;
      }
    }
    if (joined) co_return co_await outcome_of(joined);
    // Whatever ends this frame (an answer, or its context destroyed mid-probe) hands the outcome
    // to the calls that joined, so none of them waits forever, and lets the next probe begin.
    struct hand_over {
      amqp_provider* self;
      std::string to;
      std::shared_ptr<probe_in_flight> probe;
      result<void> outcome =
          fail(errc::closed, "amqp: the call probing whether the queue exists ended unanswered");
      ~hand_over() {
        decltype(probe->waiting) waiting;
        {
          std::lock_guard lock(self->mutex_);
          if (auto it = self->probing_.find(to); it != self->probing_.end()) {
            auto& slot = it->second;
            if (slot.running == probe) {
              slot.running = std::move(slot.next);  // its caller begins it once this one ends
              slot.next = nullptr;
            } else if (slot.next == probe) {
              slot.next = nullptr;
            }
            if (!slot.running && !slot.next) self->probing_.erase(it);
          }
          probe->done = true;
          probe->outcome = outcome;
          waiting = std::move(probe->waiting);
        }
        for (auto& [ex, h] : waiting) {
          qrt::detail::post_releasing(std::move(ex), [h = std::move(h), r = outcome]() mutable {
            std::move(h)(std::move(r));
          });
        }
      }
    } finish{this, to, std::move(mine)};
    if (before) (void)co_await outcome_of(before);  // its end made this probe the running one
    finish.outcome = co_await probe_exists(queue, to, timeout);
    co_return finish.outcome;
  }

  /// The outcome of `probe`, once it has one.
  awaitable<result<void>> outcome_of(std::shared_ptr<probe_in_flight> probe) {
    // Raw pointers: GCC 12 destroys a co_await expression's lambda captures twice. `probe`
    // keeps the probe alive until this returns.
    auto join = [self = this, p = probe.get()](auto handler) {
      boost::asio::any_io_executor ex = boost::asio::get_associated_executor(handler);
      std::lock_guard lock(self->mutex_);
      if (p->done) {
        boost::asio::post(
            ex, [h = std::move(handler), r = p->outcome]() mutable { std::move(h)(std::move(r)); });
      } else {
        p->waiting.emplace_back(std::move(ex), std::move(handler));
      }
    };
    co_return co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&,
                                                   void(result<void>)>(join,
                                                                       boost::asio::use_awaitable);
  }

  awaitable<result<void>> probe_exists(const queue_name& queue, const std::string& to,
                                       milliseconds timeout) {
    auto attached = co_await conn_->probe(to, timeout);
    const std::uint64_t generation = conn_->generation();
    if (!attached) {
      error e = attached.error();
      if (e.code == errc::queue_not_found) {
        e.message = "amqp: send to '" + queue.str() + "' failed: the queue does not exist";
        std::lock_guard lock(mutex_);
        verified_.erase(to);  // the next send checks again before sending
      }
      co_return e;
    }
    std::lock_guard lock(mutex_);
    verified_[to] = generation;
    co_return result<void>{};
  }

  options opts_;
  std::shared_ptr<connection> conn_;
  std::uint64_t id_;
  capabilities caps_;
  std::atomic<std::uint64_t> next_link_{1};
  std::mutex mutex_;
  std::map<std::string, std::uint64_t> verified_;           ///< address -> connection generation
  std::map<std::string, probes_of_address> probing_;        ///< by address
  std::map<std::string, subscription_link> subscriptions_;  ///< by path
};

}  // namespace

result<provider_ptr> make_provider(const options& opts, boost::asio::any_io_executor executor) {
  options o = opts;
  if (!o.url.empty()) {
    if (auto r = detail::apply_url(o, o.url); !r) return r.error();
  }
  if (o.host.empty()) return fail(errc::configuration_error, "amqp: 'host' is empty");
  detail::endpoint ep;
  ep.host = o.host;
  ep.tls = o.tls;
  ep.port = o.port != 0 ? o.port : (o.tls ? 5671 : 5672);
  ep.tls_verify = o.tls_verify;
  ep.tls_ca_file = o.tls_ca_file;
  ep.user = o.user;
  ep.password = o.password;
  ep.sasl_mechanisms = o.sasl_mechanisms;
  ep.virtual_host = o.virtual_host;
  ep.idle_timeout = o.idle_timeout;
  ep.connect_timeout = o.connect_timeout;
  ep.reconnect_max_delay = o.reconnect_max_delay;
  ep.max_prefetch_bytes = o.max_prefetch_bytes;
  ep.max_links = o.max_links;
  return provider_ptr(
      std::make_shared<amqp_provider>(std::move(o), connection::create(ep, std::move(executor))));
}

void register_provider(provider_registry& registry) {
  registry.add("amqp", &options_from_config, &make_provider);
}

}  // namespace qrt::amqp
