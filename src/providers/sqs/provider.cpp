// qrt's provider interface on SQS. See docs/sqs.md for the mapping and its limits.
#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <deque>
#include <iostream>
#include <mutex>
#include <qrt/sqs.hpp>
#include <random>
#include <set>
#include <type_traits>
#include <unordered_map>

#include "codec.hpp"
#include "core/deadline.hpp"
#include "credentials.hpp"
#include "digest.hpp"
#include "net/http.hpp"
#include "sigv4.hpp"
#include "sns_codec.hpp"

namespace qrt::sqs {

namespace asio = boost::asio;
using namespace detail;
using namespace qrt::net;
using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

namespace {

std::atomic<std::uint64_t> next_provider_id{1};

/// The tag qrt puts on a dead-letter queue it creates, naming the queue it belongs to. A queue
/// of the paired name without it was made by someone else, and is neither taken over nor
/// deleted with the queue.
constexpr std::string_view dead_letter_tag = "qrt:dead-letter-of";

/// The dead-letter queue qrt pairs with a queue: "orders" -> "orders-dlq",
/// "orders.fifo" -> "orders-dlq.fifo" (SQS wants a FIFO queue's DLQ to be FIFO too).
std::string dead_letter_queue_name(const std::string& name) {
  constexpr std::string_view fifo = ".fifo";
  if (name.size() > fifo.size() &&
      name.compare(name.size() - fifo.size(), fifo.size(), fifo) == 0) {
    return name.substr(0, name.size() - fifo.size()) + "-dlq.fifo";
  }
  return name + "-dlq";
}

/// The dead-letter queue of an SQS queue qrt names: a subscription's queue appends "--dlq"
/// (sns_codec.hpp), any other queue follows dead_letter_queue_name.
std::string dead_letter_of(const std::string& sqs_queue) {
  return sns::is_subscription_queue_name(sqs_queue)
             ? sns::subscription_dead_letter_queue_name(sqs_queue)
             : dead_letter_queue_name(sqs_queue);
}

/// The SQS queue a qrt name reads: a subscription's own queue (sns_codec.hpp) or the queue.
result<std::string> sqs_name(const queue_name& q) {
  if (q.is_subscription()) return sns::subscription_queue_name(q);
  return q.is_dead_letter() ? dead_letter_queue_name(q.str()) : q.str();
}

/// SNS's limit on one published message and on a PublishBatch in total.
constexpr std::size_t sns_max_message_bytes = 262'144;

/// The bytes SNS counts for a message: body, attribute names, types and values as sent (a
/// Binary value in base64).
std::size_t sns_size(const wire_message& w) {
  std::size_t total = w.body.size();
  for (const auto& [name, a] : w.attributes) {
    total += name.size() + a.data_type.size() +
             (a.is_binary() ? (a.value.size() + 2) / 3 * 4 : a.value.size());
  }
  return total;
}

connection_stats operator+(connection_stats a, const connection_stats& b) {
  a.bytes_sent += b.bytes_sent;
  a.bytes_received += b.bytes_received;
  a.connections_opened += b.connections_opened;
  a.connection_failures += b.connection_failures;
  a.recoveries += b.recoveries;
  a.recovery_time_total += b.recovery_time_total;
  a.longest_recovery = std::max(a.longest_recovery, b.longest_recovery);
  return a;
}

bool is_fifo_name(const std::string& name) {
  return name.size() > 5 && name.compare(name.size() - 5, 5, ".fifo") == 0;
}

struct queue_info {
  std::uint64_t key = 0;
  std::string name;  ///< the SQS queue's name
  std::string url;
  bool fifo = false;
  std::atomic<int> visibility_seconds{-1};  ///< the queue's default; -1 until read
};

/// A message this provider handed out and that is not settled yet: what settle and renew_lock
/// need, and the wire form dead_letter forwards.
struct inflight_entry {
  std::shared_ptr<queue_info> queue;
  std::string receipt_handle;
  time_point locked_until;
  std::string message_id;
  /// Body and attributes as received, group id on FIFO (shared: lookups copy the entry).
  std::shared_ptr<wire_message> wire;
};

/// How long an answer may take on its way back from SQS and still be taken as on time (see
/// receive): a receive that took this much longer than its long poll was held up, and its locks
/// count from the request; any other counts from no later than this long (or half the
/// visibility timeout, if shorter) before its answer.
constexpr milliseconds slow_answer_tolerance{1'000};

int ceil_seconds(milliseconds d) {
  if (d <= milliseconds::zero()) return 0;
  return static_cast<int>(std::chrono::ceil<std::chrono::seconds>(d).count());
}

class sqs_session;

class sqs_provider final : public provider, public std::enable_shared_from_this<sqs_provider> {
 public:
  sqs_provider(options opts, asio::any_io_executor executor, endpoint ep, endpoint sns_ep,
               std::string region)
      : opts_(std::move(opts)),
        executor_(executor),
        region_(std::move(region)),
        pool_(executor, ep,
              http_settings{opts_.connect_timeout, opts_.max_idle_connections, opts_.verify_tls,
                            opts_.ca_file, 64u << 20, opts_.max_connections}),
        sns_pool_(executor, sns_ep,
                  http_settings{opts_.connect_timeout, opts_.max_idle_connections, opts_.verify_tls,
                                opts_.ca_file, 64u << 20, opts_.max_connections}),
        credentials_(executor, credential_settings{
                                   aws_credentials{opts_.access_key_id, opts_.secret_access_key,
                                                   opts_.session_token},
                                   opts_.profile}) {
    caps_.sessions = session_support::emulated;
    caps_.max_batch_messages = max_entries_per_batch;
    caps_.max_batch_bytes = opts_.max_message_bytes;
    caps_.max_message_bytes = opts_.max_message_bytes;
    caps_.peek = false;
    caps_.scheduling = true;
    caps_.time_to_live = false;
    caps_.abandon = true;
    caps_.lock_renewal = true;
    caps_.dead_letter_queue = true;
    caps_.max_delivery_count = true;
    caps_.session_state = false;
    caps_.queue_management = true;
    caps_.topics = true;
    caps_.subscription_filters = true;
    caps_.durable_subscriptions = true;
    // FIFO topics (*.fifo) deliver to FIFO queues, whose sessions are emulated as on a FIFO
    // queue: accept_session takes the next group, never a named one. The capability promises
    // named session locks on any subscription, which SQS cannot give.
    caps_.subscription_sessions = false;
    for (const auto* e : {&ep, &sns_ep}) {
      if (!e->tls && !is_loopback_host(e->host) && !plaintext_warned_.exchange(true)) {
        warn((e == &ep ? "SQS endpoint " : "SNS endpoint ") + e->to_string() +
             " is plain HTTP to another machine: requests, message bodies, the access key id and "
             "any session token travel unencrypted; use https://");
      }
    }
    if (ep.tls && !opts_.verify_tls) {
      warn("TLS certificate verification is off for SQS endpoint " + ep.to_string() +
           ": anyone on the path can read the requests and the session token; turn verify_tls "
           "back on outside test rigs");
    }
  }

  /// The HTTP client's TLS set-up (trust store, ca_file) loaded.
  result<void> ready() const {
    if (auto r = pool_.ready(); !r) return r;
    return sns_pool_.ready();
  }

  std::string_view name() const noexcept override { return "sqs"; }
  const capabilities& caps() const noexcept override { return caps_; }
  connection_stats connections() const noexcept override {
    return pool_.traffic() + sns_pool_.traffic();
  }

  // ---- queues ----

  awaitable<result<void>> create_queue(const queue_name& queue, const queue_options& qo) override {
    if (queue.is_subscription()) {
      co_return fail(errc::invalid_argument, "'" + queue.to_string() +
                                                 "' is a subscription: create it with "
                                                 "create_subscription");
    }
    if (queue.is_dead_letter()) {
      co_return fail(errc::invalid_argument,
                     "create '" + queue.parent().to_string() +
                         "' instead: qrt creates its dead-letter queue with it");
    }
    const std::string name = queue.str();
    const bool fifo = is_fifo_name(name);
    if (qo.requires_session && !fifo) {
      co_return fail(
          errc::invalid_argument,
          "queue '" + name +
              "' requires sessions, which on SQS needs a FIFO queue (name ending in .fifo)");
    }
    const std::string dlq = dead_letter_queue_name(name);
    if (dlq.size() > 80) {
      co_return fail(errc::invalid_argument,
                     "queue name '" + name + "' is too long for SQS with its dead-letter queue '" +
                         dlq + "' (80 characters at most)");
    }
    std::string no_topic;
    auto made = co_await create_pair(name, dlq, qo, std::move(no_topic));
    if (!made) co_return made.error();
    co_return result<void>{};
  }

  awaitable<result<void>> delete_queue(const queue_name& queue) override {
    if (queue.is_subscription()) {
      co_return fail(errc::invalid_argument, "'" + queue.to_string() +
                                                 "' is a subscription: delete it with "
                                                 "delete_subscription");
    }
    co_return co_await delete_queue_pair(queue);
  }

  /// Deletes the queue and, for a queue (not a dead-letter queue), its paired DLQ.
  awaitable<result<void>> delete_queue_pair(const queue_name& queue) {
    auto info = co_await resolve(queue);
    if (!info) co_return info.error();
    auto r =
        co_await call("DeleteQueue", encode_queue_url_only((*info)->url), opts_.request_timeout);
    forget((*info)->name);
    if (!r) co_return r.error();
    if (!queue.is_dead_letter()) {
      // The paired DLQ goes with its queue when qrt made it for this one (check_pairing); one
      // it did not make, or from before it tagged them, stays. It may already be gone.
      auto dlq = co_await resolve(queue.dead_letter());
      if (dlq) {
        auto owner = co_await dead_letter_owner((*dlq)->url);
        if (owner && *owner == (*info)->name) {
          auto d = co_await call("DeleteQueue", encode_queue_url_only((*dlq)->url),
                                 opts_.request_timeout);
          forget((*dlq)->name);
          if (!d && d.error().code != errc::queue_not_found) co_return d.error();
        }
      }
    }
    co_return result<void>{};
  }

  awaitable<result<queue_stats>> stats(const queue_name& queue) override {
    auto info = co_await resolve(queue);
    if (!info) co_return info.error();
    // (GCC 12 cannot brace-initialise a vector of literals inside a co_await expression.)
    std::vector<std::string> names{"ApproximateNumberOfMessages",
                                   "ApproximateNumberOfMessagesNotVisible",
                                   "ApproximateNumberOfMessagesDelayed"};
    auto attrs = co_await attributes((*info)->url, std::move(names));
    if (!attrs) co_return attrs.error();
    queue_stats s;
    auto num = [&](const std::map<std::string, std::string>& m, const char* key) -> std::int64_t {
      auto it = m.find(key);
      if (it == m.end()) return -1;
      try {
        return std::stoll(it->second);
      } catch (...) {
        return -1;
      }
    };
    s.active = num(*attrs, "ApproximateNumberOfMessages");
    s.in_flight = num(*attrs, "ApproximateNumberOfMessagesNotVisible");
    s.scheduled = num(*attrs, "ApproximateNumberOfMessagesDelayed");
    if (!queue.is_dead_letter()) {
      auto dlq = co_await resolve(queue.dead_letter());
      if (dlq) {
        std::vector<std::string> count{"ApproximateNumberOfMessages"};
        auto d = co_await attributes((*dlq)->url, std::move(count));
        if (d) s.dead_lettered = num(*d, "ApproximateNumberOfMessages");
      }
    }
    co_return s;
  }

  // ---- send ----

  awaitable<result<std::vector<send_outcome>>> send(const queue_name& queue,
                                                    std::vector<message> messages,
                                                    milliseconds timeout) override {
    if (queue.is_subscription()) {
      co_return fail(errc::invalid_argument, "'" + queue.to_string() +
                                                 "' is a subscription: publish to topic '" +
                                                 queue.topic() + "' instead");
    }
    auto info_r = co_await resolve(queue);
    if (!info_r) co_return info_r.error();
    auto info = *info_r;
    std::vector<send_outcome> outcomes(messages.size(), send_outcome{message_id{}});
    std::vector<std::pair<std::size_t, wire_message>> ready;
    const auto now = clock::now();
    for (std::size_t i = 0; i < messages.size(); ++i) {
      auto w = to_wire(messages[i], info->fifo, fifo_defaults{opts_.default_message_group}, now);
      if (!w) {
        outcomes[i] = w.error();
        continue;
      }
      if (w->size() > opts_.max_message_bytes) {
        outcomes[i] =
            fail(errc::message_too_large,
                 "message " + std::to_string(i) + " is " + std::to_string(w->size()) +
                     " bytes as SQS counts them (body, attributes" +
                     (w->attributes.count(std::string(reserved::body_encoding)) ? ", base64" : "") +
                     "); the limit is " + std::to_string(opts_.max_message_bytes));
        continue;
      }
      ready.emplace_back(i, std::move(*w));
    }
    const queue_send_api api{*this, *info};
    auto sent = co_await send_in_chunks(api, ready, outcomes, timeout);
    if (!sent) co_return sent.error();
    co_return outcomes;
  }

  // ---- receive ----

  awaitable<result<std::vector<received_message>>> receive(const queue_name& queue,
                                                           std::size_t max_messages,
                                                           milliseconds wait) override {
    if (max_messages == 0)
      co_return fail(errc::invalid_argument, "max_messages must be at least 1");
    auto info_r = co_await resolve(queue);
    if (!info_r) co_return info_r.error();
    auto info = *info_r;
    int visibility = 0;
    if (opts_.visibility_timeout) {
      visibility = static_cast<int>(opts_.visibility_timeout->count());
    } else {
      auto v = co_await queue_visibility(info);
      if (!v) co_return v.error();
      visibility = *v;
      if (visibility == 0) {
        // Nothing received could be handed out: SQS shows it to everyone again at once.
        co_return fail(errc::invalid_argument,
                       "SQS queue '" + info->name +
                           "' has a VisibilityTimeout of 0, which locks nothing: set the "
                           "visibility_timeout option or the queue's VisibilityTimeout");
      }
    }
    std::vector<received_message> out;
    std::optional<error> released;  // why the last message this call had to release was
    int quick_empty_answers = 0;    // empty answers that came back without waiting
    const auto deadline = qrt::detail::deadline_after(steady::now(), wait);
    while (out.size() < max_messages) {
      if (closed_) co_return fail(errc::closed, "the SQS provider is closed");
      const int per_call = static_cast<int>(std::min<std::size_t>(
          max_messages - out.size(), static_cast<std::size_t>(opts_.max_number_of_messages)));
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - steady::now());
      // SQS waits in whole seconds: round up so a short wait still long-polls instead of
      // sampling (a short poll can miss messages on real SQS).
      const int wait_s = out.empty() ? std::min(ceil_seconds(left),
                                                static_cast<int>(opts_.wait_time_seconds.count()))
                                     : 0;
      receive_request req;
      req.queue_url = info->url;
      req.max_messages = per_call;
      req.wait_time_seconds = wait_s;
      if (opts_.visibility_timeout) req.visibility_timeout = visibility;
      if (info->fifo && opts_.receive_request_attempt_id)
        req.receive_request_attempt_id = random_uuid();
      const auto sent_at = clock::now();
      auto body = co_await call("ReceiveMessage", encode_receive_message(req),
                                opts_.request_timeout + std::chrono::seconds(wait_s));
      if (!body) {
        if (body.error().code == errc::queue_not_found) forget(info->name);
        // Messages already taken stay locked to us: hand them out rather than lose the call.
        if (!out.empty()) break;
        co_return body.error();
      }
      // SQS starts the visibility clock when it hands the messages out: after the request went,
      // before the answer came. qrt's lock must not outlast SQS's: once SQS has handed a message
      // to someone else it answers a delete with the old receipt with success without deleting,
      // so a complete qrt let through then would be reported done and the message delivered
      // again. So the lock counts from the request (ahead of SQS's by a network trip), except
      // after a long poll that waited before messages came: SQS handed them out just before it
      // answered, and counting from the request would cut the lock by the wait. Then it counts
      // from a margin before the answer arrived: the tolerance, or half the visibility timeout
      // when that is shorter (a lock must be left to hand out). A call that took clearly longer
      // than its long poll was held up on the way: its lock counts from the request.
      const auto answered_at = clock::now();
      const auto took = answered_at - sent_at;
      const milliseconds trip_margin =
          std::min(slow_answer_tolerance, milliseconds(std::chrono::seconds(visibility)) / 2);
      const auto lock_start = took > std::chrono::seconds(wait_s) + slow_answer_tolerance
                                  ? sent_at
                                  : std::max(sent_at, answered_at - trip_margin);
      auto batch = decode_receive_message(*body);
      if (!batch) {
        if (!out.empty()) break;
        co_return batch.error();
      }
      // The same delivery twice in one answer (not SQS; a faulty server or proxy) is handed out
      // once: a second copy would be a second receipt for one lock. At most ten entries.
      for (std::size_t i = 1; i < batch->size(); ++i) {
        for (std::size_t j = 0; j < i; ++j) {
          if ((*batch)[j].receipt_handle == (*batch)[i].receipt_handle) {
            batch->erase(batch->begin() + static_cast<std::ptrdiff_t>(i--));
            break;
          }
        }
      }
      // Each message on its own: one that cannot be read never costs the others.
      for (auto& w : *batch) {
        // The usual case, an intact message qrt can read, is checked here without a coroutine
        // frame; anything else takes accept_received, which checks again and deals with it.
        std::optional<received_message> m = readable(w);
        if (!m) {
          auto accepted = co_await accept_received(info, queue.is_dead_letter(), w);
          if (!accepted) {
            released = accepted.error();
            continue;
          }
          if (!*accepted) continue;  // dead-lettered: it is safe in the DLQ
          m = std::move(*accepted);
        }
        if (queue.is_dead_letter() && !m->dead_letter) {
          // Only SQS's redrive moves messages in without qrt's reason attributes.
          m->dead_letter = dead_letter_info{"MaxDeliveryCountExceeded",
                                            "moved by the queue's SQS redrive policy"};
        }
        m->locked_until = lock_start + std::chrono::seconds(visibility);
        // Its lock ran out on the way: SQS delivers it again, to whoever asks.
        if (m->locked_until <= clock::now()) continue;
        m->receipt = remember(info, std::move(w), m->locked_until, m->id);
        out.push_back(std::move(*m));
      }
      // A released message is visible again at once: polling on would only fetch it again.
      if (released) break;
      // A full answer can leave nothing to hand out (each message dead-lettered, or its lock
      // run out on the way): ask again only while the wait lasts. The check below is reached
      // only after an answer with fewer messages than asked for.
      if (out.empty() && steady::now() >= deadline) break;
      if (static_cast<int>(batch->size()) < per_call) {
        if (!out.empty() || steady::now() >= deadline || wait_s == 0) break;
      }
      if (batch->empty() && took < milliseconds(std::chrono::seconds(wait_s)) / 2) {
        // Nothing, and at once: the server did not wait as asked (an emulator or a proxy, not
        // SQS). Asking again at once would spin through the wait; pause, longer each time.
        co_await sleep_for(std::min(milliseconds(50) * (1 << std::min(quick_empty_answers++, 4)),
                                    qrt::detail::time_left(deadline, steady::now())));
      }
    }
    // Only released messages and nothing to hand out: the error lets callers back off instead
    // of receiving the same message in a tight loop.
    if (out.empty() && released) co_return *released;
    co_return out;
  }

  awaitable<result<std::vector<received_message>>> peek(const queue_name&, std::size_t,
                                                        std::int64_t) override {
    co_return fail(errc::unsupported, "SQS cannot read messages without locking them (no peek)");
  }

  // ---- settle ----

  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements) override {
    std::vector<result<void>> results(settlements.size(), result<void>{});
    // Per queue: completes and abandons go out as batches of ten.
    std::map<std::uint64_t, std::vector<std::size_t>> completes, abandons;
    std::vector<std::size_t> dead_letters;
    std::set<std::uint64_t> seen;
    for (std::size_t i = 0; i < settlements.size(); ++i) {
      auto entry = lookup_for_settle(settlements[i].receipt);
      if (!entry) {
        results[i] = entry.error();
        continue;
      }
      if (!seen.insert(settlements[i].receipt.item).second) {
        results[i] =
            fail(errc::invalid_receipt, "the same receipt appears twice in one settle call");
        continue;
      }
      switch (settlements[i].action) {
        case settle_action::complete:
          completes[entry->queue->key].push_back(i);
          break;
        case settle_action::abandon:
          abandons[entry->queue->key].push_back(i);
          break;
        case settle_action::dead_letter:
          dead_letters.push_back(i);
          break;
      }
    }
    for (auto& [key, idx] : completes) co_await settle_batch(settlements, idx, results, false);
    for (auto& [key, idx] : abandons) co_await settle_batch(settlements, idx, results, true);
    for (auto i : dead_letters) results[i] = co_await dead_letter_one(settlements[i]);
    co_return results;
  }

  awaitable<result<time_point>> renew_lock(const receipt_handle& receipt) override {
    auto entry = lookup(receipt);
    if (!entry) co_return entry.error();
    int visibility = 0;
    if (opts_.visibility_timeout) {
      visibility = static_cast<int>(opts_.visibility_timeout->count());
    } else {
      auto v = co_await queue_visibility(entry->queue);
      if (!v) co_return v.error();
      visibility = *v;
    }
    const auto now = clock::now();
    std::optional<error> unanswered;
    auto r = co_await call(
        "ChangeMessageVisibility",
        encode_change_visibility(entry->queue->url, entry->receipt_handle, visibility),
        opts_.request_timeout, false, &unanswered);
    if (!r) co_return r.error();
    const auto until = now + std::chrono::seconds(visibility);
    std::lock_guard lock(inflight_mutex_);
    if (auto it = inflight_.find(receipt.item); it != inflight_.end())
      it->second.locked_until = until;
    co_return until;
  }

  awaitable<result<std::shared_ptr<session_receiver>>> accept_session(
      const queue_name& queue, std::optional<session_id> which, milliseconds wait) override;

  awaitable<void> close() override {
    closed_ = true;
    pool_.close();
    sns_pool_.close();
    co_return;
  }

  // ---- topics: SNS topics fanning out to SQS queues (docs/sqs.md, "Topics") ----

  awaitable<result<void>> create_topic(const topic_name& topic) override {
    auto name = sns::topic_aws_name(topic);
    if (!name) co_return name.error();
    // CreateTopic is idempotent: an existing topic's ARN comes back.
    auto body =
        co_await call("CreateTopic", sns::encode_create_topic(*name, sns::is_fifo_topic(topic)),
                      opts_.request_timeout, true);
    if (!body) co_return body.error();
    auto arn = sns::decode_create_topic(*body);
    if (!arn) co_return arn.error();
    remember_topic(topic.str(), *arn);
    co_return result<void>{};
  }

  awaitable<result<void>> delete_topic(const topic_name& topic) override {
    auto arn = co_await existing_topic(topic);
    if (!arn) co_return arn.error();
    // The subscriptions' queues first: deleting the topic removes its subscriptions but not
    // the queues they delivered to.
    auto subs = co_await topic_subscriptions(*arn);
    if (!subs) co_return subs.error();
    for (const auto& s : *subs) {
      auto parsed = qrt_subscription(topic, s);
      if (!parsed) continue;
      auto gone = co_await delete_queue_pair(*parsed);
      if (!gone && gone.error().code != errc::queue_not_found) co_return gone.error();
    }
    auto body = co_await call("DeleteTopic", sns::encode_topic_action("DeleteTopic", *arn),
                              opts_.request_timeout, true);
    forget_topic(topic.str());
    if (!body) co_return body.error();
    co_return sns::decode_empty(*body, "DeleteTopic");
  }

  awaitable<result<std::vector<send_outcome>>> publish(const topic_name& topic,
                                                       std::vector<message> messages,
                                                       milliseconds timeout) override {
    auto arn_r = co_await topic_arn(topic);
    if (!arn_r) co_return arn_r.error();
    const std::string arn = std::move(*arn_r);
    const topic_publish_api api{*this, topic, arn};
    const std::size_t limit = api.max_bytes();
    std::vector<send_outcome> outcomes(messages.size(), send_outcome{message_id{}});
    std::vector<std::pair<std::size_t, wire_message>> ready;
    const auto now = clock::now();
    const bool fifo = sns::is_fifo_topic(topic);
    std::vector<std::string> ids(messages.size());  // the id each message travels with
    for (std::size_t i = 0; i < messages.size(); ++i) {
      if (messages[i].session && !fifo) {
        outcomes[i] =
            fail(errc::invalid_argument, "a session needs a FIFO topic (name ending in .fifo); '" +
                                             topic.str() + "' is a standard topic");
        continue;
      }
      if (messages[i].scheduled_enqueue_time) {
        outcomes[i] = fail(errc::unsupported, "SNS has no per-message delivery delay");
        continue;
      }
      // Exactly what a send to a queue of the same kind sends (a FIFO topic's messages get a
      // group and a deduplication id): raw delivery hands it on unchanged.
      auto w = to_wire(messages[i], fifo, fifo_defaults{opts_.default_message_group}, now);
      if (!w) {
        outcomes[i] = w.error();
        continue;
      }
      // Every subscription's SQS queue gives its copy an id of its own, and SNS's MessageId
      // reaches none of them: the id publish reports travels with the message (qrt.message_id,
      // which a receive reads as the id), so every copy carries it (ADR 0050).
      if (w->attributes.size() >= max_attributes_per_message) {
        outcomes[i] = fail(errc::invalid_argument,
                           "SQS allows at most 10 message attributes, and a published message "
                           "needs one for its id: this one has 10 already (user attributes plus "
                           "qrt's for correlation id, content type, subject and a binary body)");
        continue;
      }
      std::string id = !w->deduplication_id.empty() ? w->deduplication_id
                       : !messages[i].id.empty()    ? messages[i].id
                                                    : random_uuid();
      if (!is_valid_sqs_text(id) || id.size() > 1024) {
        outcomes[i] = fail(errc::invalid_argument,
                           "a published message's id must be SQS text of at most 1024 bytes");
        continue;
      }
      ids[i] = id;
      w->attributes[std::string(reserved::message_id)] = wire_attribute{"String", std::move(id)};
      if (const auto size = sns_size(*w); size > limit) {
        outcomes[i] =
            fail(errc::message_too_large,
                 "message " + std::to_string(i) + " is " + std::to_string(size) +
                     " bytes as SNS counts them (body, attributes" +
                     (w->attributes.count(std::string(reserved::body_encoding)) ? ", base64" : "") +
                     "); the limit is " + std::to_string(limit));
        continue;
      }
      ready.emplace_back(i, std::move(*w));
    }
    auto published = co_await send_in_chunks(api, ready, outcomes, timeout);
    if (!published) co_return published.error();
    // Published: report the id the copies carry, not SNS's MessageId.
    for (const auto& [index, w] : ready) {
      if (outcomes[index]) outcomes[index] = ids[index];
    }
    co_return outcomes;
  }

  awaitable<result<void>> create_subscription(const queue_name& subscription,
                                              const subscription_options& so) override {
    if (!subscription.is_subscription() || subscription.is_dead_letter()) {
      co_return fail(errc::invalid_argument,
                     "'" + subscription.to_string() +
                         "' does not name a subscription (queue_name::subscription)");
    }
    auto topic = topic_name::parse(subscription.topic());
    if (!topic) co_return topic.error();
    if (so.queue.requires_session && !sns::is_fifo_topic(*topic)) {
      co_return fail(errc::invalid_argument,
                     "subscription '" + subscription.str() +
                         "' requires sessions, which on SNS needs a FIFO topic (name ending in "
                         ".fifo)");
    }
    auto name = sns::subscription_queue_name(subscription);
    if (!name) co_return name.error();
    auto policy = sns::encode_filter_policy(so.filter);
    if (!policy) co_return policy.error();
    auto arn = co_await existing_topic(*topic);
    if (!arn) co_return arn.error();
    std::string dlq = sns::subscription_dead_letter_queue_name(*name);
    auto made = co_await create_pair(*name, std::move(dlq), so.queue, *arn);
    if (!made) co_return made.error();
    // Raw delivery: the queue gets the published body and attributes as they were sent, so a
    // subscription reads exactly like a queue. Subscribe is idempotent for the same queue and
    // attributes; with another filter SNS refuses it (invalid_argument).
    auto body = co_await call("Subscribe", sns::encode_subscribe(*arn, made->arn, *policy),
                              opts_.request_timeout, true);
    if (!body) co_return body.error();
    auto sub_arn = sns::decode_subscribe(*body);
    if (!sub_arn) co_return sub_arn.error();
    co_return result<void>{};
  }

  awaitable<result<void>> delete_subscription(const queue_name& subscription) override {
    if (!subscription.is_subscription() || subscription.is_dead_letter()) {
      co_return fail(errc::invalid_argument,
                     "'" + subscription.to_string() +
                         "' does not name a subscription (queue_name::subscription)");
    }
    auto name = sns::subscription_queue_name(subscription);
    if (!name) co_return name.error();
    auto topic = topic_name::parse(subscription.topic());
    if (!topic) co_return topic.error();
    bool found = false;
    // Without its topic a subscription is gone on SNS; its queues may still be there.
    auto arn = co_await existing_topic(*topic);
    if (arn) {
      auto subs = co_await topic_subscriptions(*arn);
      if (!subs) co_return subs.error();
      for (const auto& s : *subs) {
        if (s.protocol != "sqs" || sns::arn_resource(s.endpoint) != *name) continue;
        auto body = co_await call(
            "Unsubscribe", sns::encode_subscription_action("Unsubscribe", s.subscription_arn),
            opts_.request_timeout, true);
        if (!body) co_return body.error();
        found = true;
      }
    } else if (arn.error().code != errc::topic_not_found) {
      co_return arn.error();
    }
    auto gone = co_await delete_queue_pair(subscription);
    if (!gone) {
      if (gone.error().code == errc::queue_not_found && found) co_return result<void>{};
      if (gone.error().code == errc::queue_not_found) {
        co_return fail(errc::queue_not_found,
                       "subscription '" + subscription.str() + "' does not exist");
      }
      co_return gone.error();
    }
    co_return result<void>{};
  }

  awaitable<result<std::vector<subscription_info>>> list_subscriptions(
      const topic_name& topic) override {
    auto arn = co_await existing_topic(topic);
    if (!arn) co_return arn.error();
    auto subs = co_await topic_subscriptions(*arn);
    if (!subs) co_return subs.error();
    std::vector<subscription_info> out;
    for (const auto& s : *subs) {
      auto name = qrt_subscription(topic, s);
      if (!name) continue;  // not a subscription qrt made (another protocol or queue)
      subscription_info info;
      info.name = std::move(*name);
      auto body = co_await call(
          "GetSubscriptionAttributes",
          sns::encode_subscription_action("GetSubscriptionAttributes", s.subscription_arn),
          opts_.request_timeout, true);
      if (!body) {
        // Unsubscribed since it was listed.
        if (body.error().code == errc::topic_not_found) continue;
        co_return body.error();
      }
      auto attrs = sns::decode_attributes(*body);
      if (!attrs) co_return attrs.error();
      if (auto p = attrs->find("FilterPolicy"); p != attrs->end() && !p->second.empty()) {
        auto filter = sns::decode_filter_policy(p->second);
        if (!filter) {
          co_return fail(errc::protocol_error,
                         "subscription '" + info.name.str() + "': " + filter.error().message);
        }
        info.filter = std::move(*filter);
      }
      out.push_back(std::move(info));
    }
    std::sort(out.begin(), out.end(), [](const subscription_info& a, const subscription_info& b) {
      return a.name < b.name;
    });
    out.erase(std::unique(out.begin(), out.end(),
                          [](const subscription_info& a, const subscription_info& b) {
                            return a.name == b.name;
                          }),
              out.end());
    co_return out;
  }

 private:
  friend class sqs_session;

  // ---- emulated sessions ----

  void park(const std::string& queue, std::vector<received_message> messages) {
    std::lock_guard lock(groups_mutex_);
    auto& groups = spare_[queue];
    for (auto& m : messages) {
      const std::string group = m.session ? m.session->str() : std::string{};
      groups[group].push_back(std::move(m));
    }
  }

  void claim_spare(const std::string& queue, const std::string& group,
                   std::deque<received_message>& into) {
    std::lock_guard lock(groups_mutex_);
    auto q = spare_.find(queue);
    if (q == spare_.end()) return;
    auto g = q->second.find(group);
    if (g == q->second.end()) return;
    for (auto& m : g->second) into.push_back(std::move(m));
    q->second.erase(g);
  }

  void unhold(const std::string& queue, const std::string& group,
              std::deque<received_message> unsettled) {
    std::lock_guard lock(groups_mutex_);
    held_.erase({queue, group});
    if (unsettled.empty()) return;
    auto& spare = spare_[queue][group];
    // Ours came first: they go before anything parked meanwhile.
    for (auto it = unsettled.rbegin(); it != unsettled.rend(); ++it)
      spare.push_front(std::move(*it));
  }

  /// A parked group no session of ours holds, with its unexpired messages; marks it held.
  std::optional<std::pair<session_id, std::deque<received_message>>> take_free_group(
      const std::string& queue) {
    std::lock_guard lock(groups_mutex_);
    auto q = spare_.find(queue);
    if (q == spare_.end()) return std::nullopt;
    const auto now = clock::now();
    for (auto g = q->second.begin(); g != q->second.end();) {
      auto& msgs = g->second;
      std::erase_if(msgs, [&](const received_message& m) { return m.locked_until <= now; });
      if (msgs.empty()) {
        g = q->second.erase(g);
        continue;
      }
      auto id = session_id::parse(g->first);
      if (!held_.count({queue, g->first}) && id) {
        held_.insert({queue, g->first});
        auto taken = std::make_pair(*id, std::move(msgs));
        q->second.erase(g);
        return taken;
      }
      ++g;
    }
    return std::nullopt;
  }

  // ---- messages that cannot be read ----

  /// The message when it arrived intact and qrt can read it (accept_received's first case),
  /// else nullopt: accept_received then decides what becomes of it.
  static std::optional<received_message> readable(const wire_received& w) {
    if (!w.problem.empty() || !verify_checksums(w)) return std::nullopt;
    auto m = from_wire(w);
    if (!m) return std::nullopt;
    return std::move(*m);
  }

  /// One received message: the decoded message to hand out, nullopt when it could not be
  /// decoded and is now in the dead-letter queue, or the error it was released with
  /// (visibility 0) because it could neither be read nor dead-lettered. Released and
  /// dead-lettered messages are reported through `warn`, with a running count.
  awaitable<result<std::optional<received_message>>> accept_received(
      const std::shared_ptr<queue_info>& info, bool from_dead_letter_queue,
      const wire_received& w) {
    error why;
    if (!w.problem.empty()) {
      why = fail(errc::protocol_error, "SQS sent message " + excerpt(w.message_id) +
                                           " in a form qrt cannot read: " + w.problem);
    } else if (auto ok = verify_checksums(w); !ok) {
      // Corrupted in transit: another receive may get intact bytes.
      why = ok.error();
    } else if (auto m = from_wire(w)) {
      co_return std::optional<received_message>(std::move(*m));
    } else if (from_dead_letter_queue) {
      // There is no queue further on: hand it out as SQS holds it, to be read or removed.
      co_return std::optional<received_message>(from_wire_verbatim(w));
    } else {
      const inflight_entry entry = undecodable_entry(info, w);
      std::string problem = m.error().message;
      auto moved =
          co_await move_to_dead_letter(entry, std::string(undecodable_reason), std::move(problem));
      if (moved) {
        report("dead-lettered message " + excerpt(w.message_id) + " of SQS queue '" + info->name +
               "': " + m.error().message);
        co_return std::optional<received_message>{};
      }
      why = fail(errc::protocol_error, m.error().message +
                                           "; it could not be dead-lettered either (" +
                                           moved.error().message + ")");
    }
    auto undone = co_await call("ChangeMessageVisibility",
                                encode_change_visibility(info->url, w.receipt_handle, 0),
                                opts_.request_timeout);
    report("released message " + excerpt(w.message_id) + " of SQS queue '" + info->name +
           "': " + why.message +
           (undone ? std::string{}
                   : " (releasing failed too: it reappears after its visibility timeout)"));
    co_return why;
  }

  /// What dead-lettering needs of a message that is not handed out (it has no receipt).
  inflight_entry undecodable_entry(const std::shared_ptr<queue_info>& info,
                                   const wire_received& w) {
    inflight_entry e;
    e.queue = info;
    e.receipt_handle = w.receipt_handle;
    e.message_id = w.message_id;
    e.wire = wire_of(w);
    return e;
  }

  void report(const std::string& what) {
    const auto n = ++refused_messages_;
    warn(what + " (" + std::to_string(n) + " message" + (n == 1 ? "" : "s") +
         " refused by this SQS provider so far)");
  }

  void warn(const std::string& line) const {
    if (opts_.warn) {
      opts_.warn(line);
    } else {
      std::cerr << "qrt: " << line << '\n';
    }
  }

  // ---- topic internals ----

  void remember_topic(const std::string& topic, const std::string& arn) {
    std::lock_guard lock(topics_mutex_);
    topic_arns_[topic] = arn;
    const auto resource = sns::arn_resource(arn);
    if (!resource.empty()) arn_prefix_ = arn.substr(0, arn.size() - resource.size());
  }

  void forget_topic(const std::string& topic) {
    std::lock_guard lock(topics_mutex_);
    topic_arns_.erase(topic);
  }

  /// The topic's ARN: cached, else made from the ARN prefix of any topic seen before (the
  /// service then says whether it exists), else looked up with ListTopics, which also learns
  /// the prefix. topic_not_found when the listing lacks it.
  awaitable<result<std::string>> topic_arn(const topic_name& topic) {
    auto name = sns::topic_aws_name(topic);
    if (!name) co_return name.error();
    {
      std::lock_guard lock(topics_mutex_);
      if (auto it = topic_arns_.find(topic.str()); it != topic_arns_.end()) co_return it->second;
      if (!arn_prefix_.empty()) co_return arn_prefix_ + *name;
    }
    std::string token;
    std::string found;
    for (int page = 0; page < max_pages; ++page) {
      auto body =
          co_await call("ListTopics", sns::encode_list_topics(token), opts_.request_timeout, true);
      if (!body) co_return body.error();
      auto listed = sns::decode_list_topics(*body);
      if (!listed) co_return listed.error();
      for (const auto& arn : listed->topic_arns) {
        const auto resource = sns::arn_resource(arn);
        if (resource.empty()) continue;
        std::lock_guard lock(topics_mutex_);
        arn_prefix_ = arn.substr(0, arn.size() - resource.size());
        if (resource == *name) found = arn;
      }
      if (!found.empty() || listed->next_token.empty() || listed->next_token == token) break;
      token = std::move(listed->next_token);
    }
    if (found.empty()) {
      co_return fail(errc::topic_not_found,
                     "topic '" + topic.str() + "' (SNS topic '" + *name + "') does not exist");
    }
    remember_topic(topic.str(), found);
    co_return found;
  }

  /// topic_arn, checked with GetTopicAttributes: for the calls that must not act on a missing
  /// topic (SNS answers ListSubscriptionsByTopic of one with NotFound, fauxqs with nothing).
  awaitable<result<std::string>> existing_topic(const topic_name& topic) {
    auto arn = co_await topic_arn(topic);
    if (!arn) co_return arn.error();
    auto body =
        co_await call("GetTopicAttributes", sns::encode_topic_action("GetTopicAttributes", *arn),
                      opts_.request_timeout, true);
    if (!body) {
      if (body.error().code == errc::topic_not_found) {
        forget_topic(topic.str());
        co_return fail(errc::topic_not_found, "topic '" + topic.str() + "' does not exist",
                       body.error().provider_code);
      }
      co_return body.error();
    }
    co_return std::move(*arn);
  }

  /// Every subscription of the topic, all pages.
  awaitable<result<std::vector<sns::subscription_entry>>> topic_subscriptions(std::string arn) {
    std::vector<sns::subscription_entry> out;
    std::string token;
    for (int page = 0; page < max_pages; ++page) {
      auto body = co_await call("ListSubscriptionsByTopic",
                                sns::encode_list_subscriptions_by_topic(arn, token),
                                opts_.request_timeout, true);
      if (!body) co_return body.error();
      auto listed = sns::decode_list_subscriptions(*body);
      if (!listed) co_return listed.error();
      for (auto& s : listed->subscriptions) out.push_back(std::move(s));
      if (listed->next_token.empty() || listed->next_token == token) break;
      token = std::move(listed->next_token);
    }
    co_return out;
  }

  /// The qrt subscription an SNS subscription of `topic` is, when qrt made it: protocol sqs,
  /// delivering to a queue named as sns::subscription_queue_name names them for this topic.
  static std::optional<queue_name> qrt_subscription(const topic_name& topic,
                                                    const sns::subscription_entry& s) {
    if (s.protocol != "sqs") return std::nullopt;
    auto parsed = sns::parse_subscription_queue_name(sns::arn_resource(s.endpoint));
    if (!parsed || parsed->first != topic.str()) return std::nullopt;
    auto name = queue_name::subscription(topic, parsed->second);
    if (!name) return std::nullopt;
    return std::move(*name);
  }

  /// Bound on the pages one listing reads (100 entries each): a server handing out tokens
  /// forever cannot keep a call going.
  static constexpr int max_pages = 1000;

  // ---- HTTP + retries ----

  /// One action with retries. `sns`: an SNS action (a form body, signed for service "sns",
  /// answered in XML); else SQS's JSON 1.0. `unanswered` is given for an action that changes
  /// state (a send, a delete, a visibility change): it is set to the transport failure of the
  /// first attempt whose whole request was written and whose answer never came (http_pool::send's
  /// `reached_server`), which may have taken effect; the call then fails with errc::unconfirmed
  /// whatever its last attempt found, and a caller reading a success's per-entry failures
  /// knows they may be what that attempt left behind. `deadline` bounds the attempts and the
  /// pauses between them together: no attempt starts (nor is waited for) past it, and none is
  /// given longer than what is left of it.
  awaitable<result<std::string>> call(std::string_view action, std::string body,
                                      milliseconds timeout, bool sns = false,
                                      std::optional<error>* unanswered = nullptr,
                                      steady::time_point deadline = steady::time_point::max()) {
    http_pool& pool = sns ? sns_pool_ : pool_;
    int unanswered_attempt = -1;
    const auto maybe_applied = [&] { return unanswered && *unanswered; };
    // The call's failure once an attempt may have taken effect, whatever `last` (the last
    // attempt's failure) says.
    const auto unconfirmed = [&](const error& last, int attempt) {
      return unconfirmed_call(action, **unanswered,
                              attempt == unanswered_attempt ? nullptr : &last);
    };
    for (int attempt = 0;; ++attempt) {
      if (closed_) {
        error e = fail(errc::closed, "the SQS provider is closed");
        co_return maybe_applied() ? unconfirmed(e, attempt) : e;
      }
      auto keys = co_await credentials_.get();
      if (!keys) co_return maybe_applied() ? unconfirmed(keys.error(), attempt) : keys.error();
      if (!keys->keys.session_token.empty() && !pool.target().tls &&
          !plaintext_warned_.exchange(true)) {
        warn(std::string(sns ? "SNS" : "SQS") + " endpoint " + pool.target().to_string() +
             " is plain HTTP: the session token of the " + keys->source +
             " credentials travels unencrypted; use https://");
      }
      http_request req;
      req.headers.reserve(5);
      if (sns) {
        req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
        const header_view signed_headers[] = {{req.headers[0].first, req.headers[0].second},
                                              {"Host", sns_host_header_}};
        auto added = sigv4_sign_view("POST", "/", signed_headers, body, keys->keys, sns_scope_,
                                     clock::now());
        for (auto& h : added) req.headers.push_back(std::move(h));
      } else {
        req.headers.emplace_back("Content-Type", "application/x-amz-json-1.0");
        std::string target = "AmazonSQS.";
        target += action;
        req.headers.emplace_back("X-Amz-Target", std::move(target));
        // Signed from views of the request: the body is copied once, into the request (a
        // retry sends the same bytes again).
        const header_view signed_headers[] = {{req.headers[0].first, req.headers[0].second},
                                              {req.headers[1].first, req.headers[1].second},
                                              {"Host", host_header_}};
        auto added =
            sigv4_sign_view("POST", "/", signed_headers, body, keys->keys, scope_, clock::now());
        for (auto& h : added) req.headers.push_back(std::move(h));
      }
      req.body = body;
      bool written = false;
      auto res = co_await pool.send(
          std::move(req), std::min(timeout, qrt::detail::time_left(deadline, steady::now())),
          &written);
      error err;
      if (!res) {
        err = res.error();
        if (written && unanswered && !*unanswered) {
          *unanswered = err;
          unanswered_attempt = attempt;
        }
        if (err.code == errc::closed) co_return maybe_applied() ? unconfirmed(err, attempt) : err;
      } else if (res->status / 100 == 2) {
        co_return std::move(res->body);
      } else if (sns) {
        err = sns::decode_error(res->status, res->body, res->header("Retry-After"));
        if (err.code == errc::permission && keys->expiration) credentials_.invalidate();
      } else {
        err = decode_error(res->status, res->body, res->header("x-amzn-query-error"),
                           res->header("Retry-After"));
        if (err.code == errc::permission && keys->expiration) credentials_.invalidate();
      }
      if (err.kind == error_kind::permanent || attempt >= opts_.max_retries) {
        if (maybe_applied()) co_return unconfirmed(err, attempt);
        err.message = std::string(action) + ": " + err.message;
        co_return err;
      }
      const milliseconds delay = backoff_delay(attempt, err.retry_after);
      if (steady::now() + delay >= deadline) {
        if (maybe_applied()) co_return unconfirmed(err, attempt);
        err.message = std::string(action) + ": " + err.message + " (attempt " +
                      std::to_string(attempt + 1) +
                      "; no time left for another within the call's timeout)";
        co_return err;
      }
      co_await sleep_for(delay);
    }
  }

  /// A state-changing action whose outcome is unknown: an attempt's whole request reached the
  /// service and its answer never came (`unanswered`, that attempt's transport failure, whose
  /// words are kept), and no later attempt settled the matter (`later`: what the last attempt
  /// found, when it was another one). A later refusal (a receipt already gone, say) may be
  /// just what the first attempt left behind, so it never stands for the call.
  static error unconfirmed_call(std::string_view action, const error& unanswered,
                                const error* later) {
    error e = unanswered;
    e.code = errc::unconfirmed;
    e.kind = default_kind(errc::unconfirmed);
    e.message = std::string(action) + ": the whole request was sent, then " +
                std::string(to_string(unanswered.code)) + ": " + unanswered.message;
    if (later) {
      e.message +=
          "; a retry then found " + std::string(to_string(later->code)) + ": " + later->message;
      if (e.provider_code.empty()) e.provider_code = later->provider_code;
    }
    e.message += "; it may or may not have taken effect";
    return e;
  }

  /// A state-changing action the service answered with success but without confirming what
  /// it did: its answer cannot be read (unreadable()), or a batch answer leaves an entry out
  /// (left_out()). The service most likely acted, but nothing says so: the outcome is unknown,
  /// as for an answer that never came (docs/sqs.md). `consequence` says what that means.
  static error unconfirmed_answer(std::string_view action, const std::string& problem,
                                  std::string_view consequence) {
    return error(errc::unconfirmed, std::string(action) + ": answered with success, but " +
                                        problem + "; " + std::string(consequence));
  }
  static std::string unreadable(const error& why) {
    return "its answer could not be read (" + why.message + ")";
  }
  static std::string left_out(std::string_view service, const std::string& id) {
    return std::string(service) + " reported nothing for batch entry " + id;
  }
  static constexpr std::string_view maybe_stored =
      "the service may have stored the message, so sending it again may duplicate it";
  static constexpr std::string_view maybe_applied = "it may or may not have taken effect";

  /// The pause before retry `attempt`: doubling from retry_base_delay, jittered, capped at 5 s;
  /// at least `hint` (the server's Retry-After, itself capped) when there is one.
  milliseconds backoff_delay(int attempt, std::optional<milliseconds> hint) {
    milliseconds delay = opts_.retry_base_delay * (1 << std::min(attempt, 6));
    delay = std::min(delay, milliseconds(5'000));
    {
      std::lock_guard lock(rng_mutex_);
      std::uniform_int_distribution<long long> jitter(delay.count() / 2, delay.count());
      delay = milliseconds(jitter(rng_));
    }
    if (hint) delay = std::max(delay, *hint);
    return delay;
  }

  static awaitable<void> sleep_for(milliseconds delay) {
    asio::steady_timer timer(co_await asio::this_coro::executor, delay);
    co_await timer.async_wait(asio::use_awaitable);
  }

  // ---- queue URLs ----

  awaitable<result<std::shared_ptr<queue_info>>> resolve(const queue_name& queue) {
    auto sqs = sqs_name(queue);
    if (!sqs) co_return sqs.error();
    co_return co_await resolve_named(std::move(*sqs), queue.to_string());
  }

  /// The queue SQS knows as `name`; `display` is how errors name it to the caller.
  awaitable<result<std::shared_ptr<queue_info>>> resolve_named(std::string name,
                                                               std::string display) {
    {
      std::lock_guard lock(queues_mutex_);
      if (auto it = queues_.find(name); it != queues_.end()) co_return it->second;
    }
    auto body = co_await call("GetQueueUrl", encode_get_queue_url(name), opts_.request_timeout);
    if (!body) {
      if (body.error().code == errc::queue_not_found) {
        co_return fail(errc::queue_not_found,
                       "queue '" + display + "' (SQS queue '" + name + "') does not exist",
                       body.error().provider_code);
      }
      co_return body.error();
    }
    auto url = decode_queue_url(*body);
    if (!url) co_return url.error();
    co_return remember_queue(name, *url);
  }

  std::shared_ptr<queue_info> remember_queue(const std::string& name, const std::string& url) {
    std::lock_guard lock(queues_mutex_);
    auto& slot = queues_[name];
    if (!slot || slot->url != url) {
      slot = std::make_shared<queue_info>();
      slot->key = ++next_queue_key_;
      slot->name = name;
      slot->url = url;
      slot->fifo = is_fifo_name(name);
    }
    return slot;
  }

  void forget(const std::string& name) {
    std::lock_guard lock(queues_mutex_);
    queues_.erase(name);
  }

  struct created_queue {
    std::string url;
    std::string arn;  ///< known when a topic delivers to it
  };

  /// Creates queue `name` with its dead-letter queue `dlq` (first, so the redrive policy can
  /// name it). With `delivering_topic_arn`, the queue's policy lets that SNS topic send to it,
  /// and its ARN is reported.
  awaitable<result<created_queue>> create_pair(std::string name, std::string dlq, queue_options qo,
                                               std::string delivering_topic_arn) {
    const bool fifo = is_fifo_name(name);
    // The lock is the queue's VisibilityTimeout, 1 s to 12 h on SQS: 0 would lock nothing
    // (receives could hand nothing out), and a longer one was cut to 12 h without a word.
    if (qo.lock_duration <= milliseconds::zero() || qo.lock_duration > std::chrono::hours(12)) {
      co_return fail(errc::invalid_argument, "lock_duration of queue '" + name +
                                                 "' must be more than 0 and at most 12 h "
                                                 "(SQS's VisibilityTimeout)");
    }
    if (auto paired = co_await check_pairing(name, dlq); !paired) co_return paired.error();
    std::map<std::string, std::string> dlq_attrs{{"MessageRetentionPeriod", "1209600"}};
    if (fifo) dlq_attrs["FifoQueue"] = "true";
    const std::map<std::string, std::string> dlq_tags{{std::string(dead_letter_tag), name}};
    auto dlq_url = co_await create_one(dlq, dlq_attrs, dlq_tags);
    if (!dlq_url) co_return dlq_url.error();

    std::map<std::string, std::string> attrs;
    if (fifo) attrs["FifoQueue"] = "true";
    attrs["VisibilityTimeout"] = std::to_string(ceil_seconds(qo.lock_duration));
    const std::size_t max_bytes =
        qo.max_message_bytes ? qo.max_message_bytes : opts_.max_message_bytes;
    attrs["MaximumMessageSize"] =
        std::to_string(std::clamp<std::size_t>(max_bytes, 1'024, 1'048'576));
    if (qo.default_time_to_live) {
      attrs["MessageRetentionPeriod"] =
          std::to_string(std::clamp(ceil_seconds(*qo.default_time_to_live), 60, 1'209'600));
    }
    std::string dlq_arn;
    if (qo.max_delivery_count > 0 || !delivering_topic_arn.empty()) {
      auto arn = co_await queue_arn(*dlq_url);
      if (!arn) co_return arn.error();
      dlq_arn = std::move(*arn);
    }
    if (qo.max_delivery_count > 0) {
      boost::json::object policy{
          {"deadLetterTargetArn", dlq_arn},
          {"maxReceiveCount", std::min<std::uint32_t>(qo.max_delivery_count, 1000)}};
      attrs["RedrivePolicy"] = boost::json::serialize(policy);
    }
    created_queue made;
    if (!delivering_topic_arn.empty()) {
      // Both queues live in one account and region: the queue's ARN is the DLQ's with the
      // name swapped, known before the queue exists, so the policy goes in with CreateQueue.
      made.arn = dlq_arn.substr(0, dlq_arn.rfind(':') + 1) + name;
      attrs["Policy"] = sns::queue_policy(made.arn, delivering_topic_arn);
    }
    auto url = co_await create_one(name, attrs);
    if (!url) co_return url.error();
    made.url = std::move(*url);
    co_return made;
  }

  /// The URL of queue `name`, or nullopt when it does not exist.
  awaitable<result<std::optional<std::string>>> existing_url(const std::string& name) {
    auto body = co_await call("GetQueueUrl", encode_get_queue_url(name), opts_.request_timeout);
    if (!body) {
      if (body.error().code == errc::queue_not_found) co_return std::optional<std::string>{};
      co_return body.error();
    }
    auto url = decode_queue_url(*body);
    if (!url) co_return url.error();
    co_return std::optional<std::string>(std::move(*url));
  }

  /// The queue whose dead-letter queue `url` is, by qrt's tag; empty when untagged.
  awaitable<result<std::string>> dead_letter_owner(const std::string& url) {
    auto body = co_await call("ListQueueTags", encode_queue_url_only(url), opts_.request_timeout);
    if (!body) co_return body.error();
    auto tags = decode_queue_tags(*body);
    if (!tags) co_return tags.error();
    const auto it = tags->find(std::string(dead_letter_tag));
    co_return it == tags->end() ? std::string() : it->second;
  }

  /// Whether `dlq` may be (or become) the dead-letter queue of `name`: it does not exist yet,
  /// or qrt tagged it as `name`'s, or it is untagged while `name` exists already (a pair made
  /// before qrt tagged its dead-letter queues). Otherwise it is someone else's queue, which
  /// create_queue would take over and delete_queue would delete with its messages.
  awaitable<result<void>> check_pairing(const std::string& name, const std::string& dlq) {
    auto dlq_url = co_await existing_url(dlq);
    if (!dlq_url) co_return dlq_url.error();
    if (!*dlq_url) co_return result<void>{};
    auto owner = co_await dead_letter_owner(**dlq_url);
    if (!owner) co_return owner.error();
    if (*owner == name) co_return result<void>{};
    if (owner->empty()) {
      auto queue_url = co_await existing_url(name);
      if (!queue_url) co_return queue_url.error();
      if (*queue_url) co_return result<void>{};
    }
    co_return fail(errc::invalid_argument,
                   "queue '" + dlq +
                       "' already exists and is not the dead-letter queue qrt made for '" + name +
                       "': qrt pairs each queue with '<name>-dlq', and would take it over "
                       "(and delete it with '" +
                       name + "'); rename that queue or choose another name");
  }

  awaitable<result<std::string>> create_one(const std::string& name,
                                            const std::map<std::string, std::string>& attrs,
                                            const std::map<std::string, std::string>& tags = {}) {
    auto body =
        co_await call("CreateQueue", encode_create_queue(name, attrs, tags), opts_.request_timeout);
    if (!body) {
      // CreateQueue on an existing queue with other attributes: the queue is there; use it.
      const auto& code = body.error().provider_code;
      if (code == "QueueAlreadyExists" || code == "QueueNameExists") {
        auto url = co_await call("GetQueueUrl", encode_get_queue_url(name), opts_.request_timeout);
        if (!url) co_return url.error();
        auto u = decode_queue_url(*url);
        if (!u) co_return u.error();
        remember_queue(name, *u);
        co_return *u;
      }
      co_return body.error();
    }
    auto url = decode_queue_url(*body);
    if (!url) co_return url.error();
    remember_queue(name, *url);
    co_return *url;
  }

  awaitable<result<std::map<std::string, std::string>>> attributes(const std::string& url,
                                                                   std::vector<std::string> names) {
    auto body = co_await call("GetQueueAttributes", encode_get_queue_attributes(url, names),
                              opts_.request_timeout);
    if (!body) co_return body.error();
    co_return decode_queue_attributes(*body);
  }

  awaitable<result<std::string>> queue_arn(const std::string& url) {
    std::vector<std::string> names{"QueueArn"};
    auto a = co_await attributes(url, std::move(names));
    if (!a) co_return a.error();
    auto it = a->find("QueueArn");
    if (it == a->end())
      co_return fail(errc::protocol_error, "SQS did not report the dead-letter queue's ARN");
    co_return it->second;
  }

  awaitable<result<int>> queue_visibility(const std::shared_ptr<queue_info>& info) {
    int v = info->visibility_seconds.load();
    if (v >= 0) co_return v;
    std::vector<std::string> names{"VisibilityTimeout"};
    auto a = co_await attributes(info->url, std::move(names));
    if (!a) co_return a.error();
    v = 30;
    if (auto it = a->find("VisibilityTimeout"); it != a->end()) {
      const auto& text = it->second;
      auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc{} || p != text.data() + text.size() || v < 0 || v > 43'200) {
        co_return fail(errc::protocol_error,
                       "SQS reported a VisibilityTimeout that is not 0-43200 seconds");
      }
    }
    info->visibility_seconds = v;
    co_return v;
  }

  // ---- send internals ----

  /// What differs between sending to a queue (SendMessage / SendMessageBatch) and publishing
  /// to a topic (Publish / PublishBatch) for send_entries().
  struct queue_send_api {
    const sqs_provider& self;
    const queue_info& info;
    static constexpr bool sns = false;
    static constexpr std::string_view service = "SQS";
    static constexpr std::string_view one_action = "SendMessage";
    static constexpr std::string_view batch_action = "SendMessageBatch";
    std::string encode_one(const wire_message& w) const { return encode_send_message(info.url, w); }
    result<send_outcome> decode_one(std::string_view body, const wire_message& w) const {
      auto r = decode_send_message(body);
      if (!r) return {boost::system::in_place_error, r.error()};
      return {boost::system::in_place_value, self.checked_id(*r, w)};
    }
    std::string encode_batch(const std::vector<batch_send_entry>& entries) const {
      return encode_send_message_batch(info.url, entries);
    }
    result<batch_result> decode_batch(std::string_view body) const {
      return decode_batch_result(body);
    }
    send_outcome sent(const send_result& r, const wire_message& w) const {
      return self.checked_id(r, w);
    }
    error map(const batch_failure& f) const { return map_error(f.code, f.message, 400); }
    /// What send_in_chunks() counts against `max_bytes`.
    static std::size_t size(const wire_message& w) { return w.size(); }
    std::size_t max_bytes() const { return self.opts_.max_message_bytes; }
    /// A failed call's error, as the caller reports it.
    error call_error(error e) const { return e; }
  };
  struct topic_publish_api {
    sqs_provider& self;
    const topic_name& topic;
    const std::string& arn;
    static constexpr bool sns = true;
    static constexpr std::string_view service = "SNS";
    static constexpr std::string_view one_action = "Publish";
    static constexpr std::string_view batch_action = "PublishBatch";
    std::string encode_one(const wire_message& w) const { return sns::encode_publish(arn, w); }
    result<send_outcome> decode_one(std::string_view body, const wire_message&) const {
      auto id = sns::decode_publish(body);
      if (!id) return {boost::system::in_place_error, id.error()};
      return {boost::system::in_place_value, send_outcome{std::move(*id)}};
    }
    std::string encode_batch(const std::vector<batch_send_entry>& entries) const {
      return sns::encode_publish_batch(arn, entries);
    }
    result<sns::publish_batch_result> decode_batch(std::string_view body) const {
      return sns::decode_publish_batch(body);
    }
    send_outcome sent(const std::string& id, const wire_message&) const { return id; }
    error map(const batch_failure& f) const { return sns::map_error(f.code, f.message, 400); }
    static std::size_t size(const wire_message& w) { return sns_size(w); }
    std::size_t max_bytes() const {
      return std::min(sns_max_message_bytes, self.opts_.max_message_bytes);
    }
    /// A missing topic is forgotten (its ARN was cached) and named.
    error call_error(error e) const {
      if (e.code == errc::topic_not_found) {
        self.forget_topic(topic.str());
        e.message = "topic '" + topic.str() + "' does not exist (" + e.message + ")";
      }
      return e;
    }
  };

  /// Sends `ready` in consecutive chunks within the batch limits (max_entries_per_batch entries,
  /// api.max_bytes() in all), one send_entries() call each. Keeps order: nothing after a failed
  /// call is sent, and the messages of that chunk and after it report its error. Fails as a
  /// whole only when the first call does.
  template <class Api>
  awaitable<result<void>> send_in_chunks(
      Api api, const std::vector<std::pair<std::size_t, wire_message>>& ready,
      std::vector<send_outcome>& outcomes, milliseconds timeout) {
    std::vector<std::vector<std::size_t>> chunks;  // indexes into `ready`
    std::size_t bytes = 0;
    for (std::size_t k = 0; k < ready.size(); ++k) {
      const auto size = Api::size(ready[k].second);
      if (chunks.empty() || chunks.back().size() >= max_entries_per_batch ||
          bytes + size > api.max_bytes()) {
        chunks.emplace_back();
        bytes = 0;
      }
      chunks.back().push_back(k);
      bytes += size;
    }
    const auto http_timeout = timeout > milliseconds::zero()
                                  ? std::min(timeout, opts_.request_timeout)
                                  : opts_.request_timeout;
    const auto deadline = timeout > milliseconds::zero()
                              ? qrt::detail::deadline_after(steady::now(), timeout)
                              : steady::time_point::max();
    for (std::size_t c = 0; c < chunks.size(); ++c) {
      auto r = co_await send_entries(api, ready, chunks[c], outcomes, http_timeout, deadline);
      if (r) continue;
      const error e = api.call_error(r.error());
      if (c == 0) co_return e;
      for (std::size_t rest = c; rest < chunks.size(); ++rest) {
        for (auto k : chunks[rest]) outcomes[ready[k].first] = e;
      }
      break;
    }
    co_return result<void>{};
  }

  /// One call for a chunk of entries: the single-entry action for one, the batch action for
  /// more. Failed entries that may succeed later (throttling, server faults) are sent again,
  /// alone; the others are reported. Fails as a whole only when the first call itself failed
  /// (nothing of this chunk is known to be sent).
  template <class Api>
  awaitable<result<void>> send_entries(
      Api api, const std::vector<std::pair<std::size_t, wire_message>>& ready,
      std::vector<std::size_t> pending, std::vector<send_outcome>& outcomes, milliseconds timeout,
      steady::time_point deadline) {
    // A call that failed after a request of it reached the service whole is not a failure as
    // a whole: the messages may be stored, so each reports it as unconfirmed (the client's
    // retry layer resends only what failed as a whole, which would duplicate them; a caller
    // that resends an unconfirmed message accepts a possible second copy: at least once).
    std::optional<error> unanswered;
    // Every message still pending reports `e`.
    const auto each_reports = [&](const error& e) {
      for (auto k : pending) outcomes[ready[k].first] = e;
      return result<void>{};
    };
    // An attempt whose answer never came: the call's unconfirmed error, saying what it means
    // for a message.
    const auto answer_lost = [](error e) {
      e.message += "; ";
      e.message += maybe_stored;
      return e;
    };
    // An entry that failed on the service's side (a fault, throttling) after an attempt that
    // may have stored it: that failure is no verdict on the earlier attempt.
    const auto refused = [&](error e) {
      return unanswered ? unconfirmed_call(Api::batch_action, *unanswered, &e) : e;
    };
    for (int attempt = 0;; ++attempt) {
      if (pending.size() == 1 && attempt == 0) {
        const auto& [index, w] = ready[pending.front()];
        auto body = co_await call(Api::one_action, api.encode_one(w), timeout, Api::sns,
                                  &unanswered, deadline);
        if (!body) co_return unanswered ? each_reports(answer_lost(body.error())) : body.error();
        auto outcome = api.decode_one(*body, w);
        if (!outcome) {
          co_return each_reports(
              unconfirmed_answer(Api::one_action, unreadable(outcome.error()), maybe_stored));
        }
        outcomes[index] = std::move(*outcome);
        co_return result<void>{};
      }
      std::vector<batch_send_entry> entries;
      for (auto k : pending) entries.push_back({std::to_string(k), ready[k].second});
      auto body = co_await call(Api::batch_action, api.encode_batch(entries), timeout, Api::sns,
                                &unanswered, deadline);
      if (!body) {
        if (unanswered) co_return each_reports(answer_lost(body.error()));
        if (attempt == 0) co_return body.error();
        co_return each_reports(body.error());
      }
      auto r = api.decode_batch(*body);
      if (!r) {
        co_return each_reports(
            unconfirmed_answer(Api::batch_action, unreadable(r.error()), maybe_stored));
      }
      std::vector<std::size_t> again;
      std::vector<error> again_why;  // what each entry sent again failed with, by position
      std::optional<milliseconds> hint;
      for (auto k : pending) {
        const auto id = std::to_string(k);
        const auto index = ready[k].first;
        if (auto s = r->successful.find(id); s != r->successful.end()) {
          outcomes[index] = api.sent(s->second, ready[k].second);
        } else if (auto f = r->failed.find(id); f != r->failed.end()) {
          auto e = api.map(f->second);
          if (!f->second.sender_fault && e.code != errc::throttled) e.kind = error_kind::transient;
          if (e.kind != error_kind::permanent && attempt < opts_.max_retries) {
            again.push_back(k);
            hint = e.retry_after;
            again_why.push_back(std::move(e));
          } else if (f->second.sender_fault) {
            outcomes[index] = std::move(e);  // refused for what it is: any attempt would be
          } else {
            outcomes[index] = refused(std::move(e));
          }
        } else {
          outcomes[index] =
              unconfirmed_answer(Api::batch_action, left_out(Api::service, id), maybe_stored);
        }
      }
      if (again.empty()) co_return result<void>{};
      const milliseconds delay = backoff_delay(attempt, hint);
      if (steady::now() + delay >= deadline) {  // no time for another try: as they failed
        for (std::size_t j = 0; j < again.size(); ++j)
          outcomes[ready[again[j]].first] = refused(std::move(again_why[j]));
        co_return result<void>{};
      }
      co_await sleep_for(delay);
      pending = std::move(again);
    }
  }

  send_outcome checked_id(const send_result& r, const wire_message& w) const {
    if (r.message_id.empty()) {
      return fail(errc::protocol_error,
                  "SQS reported the message stored without giving its id; it may be stored, but "
                  "qrt cannot say under which id");
    }
    if (!r.md5_of_body.empty() && !md5_of_body_is(w.body, r.md5_of_body)) {
      return fail(errc::protocol_error, "SQS stored message " + excerpt(r.message_id) +
                                            " with a body MD5 that differs from what was sent");
    }
    if (!r.md5_of_attributes.empty() && r.md5_of_attributes != md5_of_attributes(w.attributes)) {
      return fail(errc::protocol_error,
                  "SQS stored message " + excerpt(r.message_id) +
                      " with an attributes MD5 that differs from what was sent");
    }
    return r.message_id;
  }

  // ---- receipts ----

  /// Body and attributes as received, and the group on FIFO: what a dead-letter copy sends.
  static std::shared_ptr<wire_message> wire_of(const wire_received& w) {
    auto wire = std::make_shared<wire_message>();
    wire->body = w.body;
    wire->attributes = w.attributes;
    if (auto g = w.system_attributes.find("MessageGroupId"); g != w.system_attributes.end()) {
      wire->group_id = g->second;
    }
    return wire;
  }

  /// As wire_of, taking the body and attributes instead of copying them.
  static std::shared_ptr<wire_message> wire_of(wire_received&& w) {
    auto wire = std::make_shared<wire_message>();
    wire->body = std::move(w.body);
    wire->attributes = std::move(w.attributes);
    if (auto g = w.system_attributes.find("MessageGroupId"); g != w.system_attributes.end()) {
      wire->group_id = std::move(g->second);
    }
    return wire;
  }

  /// Takes what it keeps from `w` (the message handed out is already decoded from it). `id` is
  /// the id the message was handed out with (a published message's, or a dead letter's id in its
  /// source queue, else SQS's), which a dead-letter copy keeps.
  receipt_handle remember(const std::shared_ptr<queue_info>& info, wire_received&& w,
                          time_point locked_until, const std::string& id) {
    receipt_handle r;
    r.owner = id_;
    r.queue = info->key;
    r.token = w.receipt_handle;
    inflight_entry e;
    e.queue = info;
    e.receipt_handle = std::move(w.receipt_handle);
    e.locked_until = locked_until;
    e.message_id = id;
    e.wire = wire_of(std::move(w));
    std::lock_guard lock(inflight_mutex_);
    r.item = ++next_item_;
    inflight_.emplace(r.item, std::move(e));
    if (++inserts_since_prune_ >= 1024) prune_locked();
    return r;
  }

  // Drops entries whose lock ran out long ago; a receipt that old reads as invalid.
  void prune_locked() {
    inserts_since_prune_ = 0;
    const auto cutoff = clock::now() - std::chrono::minutes(10);
    for (auto it = inflight_.begin(); it != inflight_.end();) {
      it = it->second.locked_until < cutoff ? inflight_.erase(it) : std::next(it);
    }
  }

  /// What settling a message needs of its entry (lookup without copying the rest).
  struct settle_fields {
    std::shared_ptr<queue_info> queue;
    std::string receipt_handle;
    time_point locked_until;
  };

  /// What `take` makes of the entry of a receipt this provider issued and that is still
  /// usable (read under the in-flight lock), else why the receipt cannot be used.
  template <class Take>
  auto with_usable_entry(const receipt_handle& r, Take take)
      -> result<std::invoke_result_t<Take, const inflight_entry&>> {
    if (r.owner != id_ || r.token.empty()) {
      return fail(errc::invalid_receipt, "the receipt was not issued by this SQS provider");
    }
    std::lock_guard lock(inflight_mutex_);
    auto it = inflight_.find(r.item);
    if (it == inflight_.end() || it->second.receipt_handle != r.token) {
      return fail(errc::invalid_receipt, "the receipt was already settled (or is unknown)");
    }
    if (it->second.locked_until <= clock::now()) {
      // SQS may already have handed the message to someone else: using the old handle could
      // delete their copy, so refuse here.
      return fail(errc::receipt_expired,
                  "the message's visibility timeout ran out before it was settled");
    }
    return take(it->second);
  }

  /// lookup() giving only what settling needs, without copying the rest of the entry.
  result<settle_fields> lookup_for_settle(const receipt_handle& r) {
    return with_usable_entry(r, [](const inflight_entry& e) {
      return settle_fields{e.queue, e.receipt_handle, e.locked_until};
    });
  }

  /// The entry for a receipt this provider issued and that is still usable.
  result<inflight_entry> lookup(const receipt_handle& r) {
    return with_usable_entry(r, [](const inflight_entry& e) { return e; });
  }

  void settled(const receipt_handle& r) {
    std::lock_guard lock(inflight_mutex_);
    inflight_.erase(r.item);
  }

  awaitable<void> settle_batch(const std::vector<settlement>& settlements,
                               const std::vector<std::size_t>& idx,
                               std::vector<result<void>>& results, bool abandon) {
    for (std::size_t start = 0; start < idx.size(); start += max_entries_per_batch) {
      const auto end = std::min(idx.size(), start + max_entries_per_batch);
      std::shared_ptr<queue_info> queue;
      std::vector<receipt_entry> entries;
      std::vector<time_point> locked_until;  // per entry
      for (auto k = start; k < end; ++k) {
        const auto i = idx[k];
        auto e = lookup_for_settle(settlements[i].receipt);
        if (!e) {
          results[i] = e.error();
          continue;
        }
        queue = std::move(e->queue);
        entries.push_back({std::to_string(i), std::move(e->receipt_handle),
                           static_cast<int>(opts_.abandon_visibility.count())});
        locked_until.push_back(e->locked_until);
      }
      if (entries.empty()) continue;
      // One co_await per statement: GCC 12 destroys the temporaries of a conditional holding
      // two co_awaits twice.
      const std::string_view action =
          abandon ? "ChangeMessageVisibilityBatch" : "DeleteMessageBatch";
      std::string request = abandon ? encode_change_visibility_batch(queue->url, entries)
                                    : encode_delete_message_batch(queue->url, entries);
      std::optional<error> unanswered;
      auto body =
          co_await call(action, std::move(request), opts_.request_timeout, false, &unanswered);
      result<batch_result> r =
          body ? decode_batch_result(*body) : result<batch_result>(body.error());
      // A success whose answer cannot be read may have been applied: unknown, not malformed.
      if (body && !r) r = unconfirmed_answer(action, unreadable(r.error()), maybe_applied);
      const auto answered_at = clock::now();
      for (std::size_t k = 0; k < entries.size(); ++k) {
        const auto& entry = entries[k];
        const auto i = static_cast<std::size_t>(std::stoul(entry.id));
        if (!r) {
          results[i] = r.error();
        } else if (auto f = r->failed.find(entry.id); f != r->failed.end()) {
          // After an attempt that may have been applied, a refusal (ReceiptHandleIsInvalid for
          // a message that attempt deleted) is no verdict: the outcome stays unknown.
          const error refused = map_error(f->second.code, f->second.message, 400);
          results[i] = unanswered ? unconfirmed_call(action, *unanswered, &refused) : refused;
        } else if (!r->successful.count(entry.id)) {
          results[i] = unconfirmed_answer(action, left_out("SQS", entry.id), maybe_applied);
        } else if (!abandon && answered_at >= locked_until[k]) {
          // The delete may have reached SQS after the lock ran out, when the message could
          // already be another consumer's: SQS then reports success without deleting it. Not
          // a complete qrt can vouch for: the message may be delivered again. The entry stays
          // (its lock has run out), so the receipt keeps failing as expired, not as unknown.
          results[i] = fail(errc::receipt_expired,
                            "SQS answered the delete after the message's visibility timeout ran "
                            "out: the message may be delivered again");
        } else {
          settled(settlements[i].receipt);
        }
      }
    }
  }

  /// Sends a copy to the paired DLQ with the reason in attributes, then deletes the original.
  /// Between the two steps a crash leaves the message in both queues (at-least-once); on FIFO
  /// the copy's deduplication id is the original message id, so a retried move within SQS's
  /// five-minute window does not duplicate it.
  awaitable<result<void>> dead_letter_one(const settlement& s) {
    auto entry = lookup(s.receipt);
    if (!entry) co_return entry.error();
    auto moved = co_await move_to_dead_letter(*entry, s.reason, s.description);
    if (!moved) co_return moved.error();
    if (clock::now() >= entry->locked_until) {
      // As for a complete (settle_batch): a delete SQS answered after the lock ran out may
      // have come when the message was another consumer's, and SQS reports that success
      // without deleting. The entry stays, so the receipt keeps failing as expired.
      co_return fail(errc::receipt_expired,
                     "the copy is in the dead-letter queue, but SQS answered the delete after "
                     "the message's visibility timeout ran out: the message may be delivered "
                     "again");
    }
    settled(s.receipt);
    co_return result<void>{};
  }

  /// dead_letter's two steps for one message: the copy with the reason to the paired DLQ, then
  /// the delete of the original.
  awaitable<result<void>> move_to_dead_letter(const inflight_entry& entry, std::string reason,
                                              std::string description) {
    const auto& source = *entry.queue;
    std::string dlq_name = dead_letter_of(source.name);
    auto dlq = co_await resolve_named(dlq_name, dlq_name);
    if (!dlq) {
      co_return fail(dlq.error().code, "cannot dead-letter: " + dlq.error().message +
                                           " (qrt pairs queue '" + source.name + "' with '" +
                                           dlq_name + "', created by create_queue)");
    }
    wire_message copy = *entry.wire;
    copy.attributes.erase(std::string(reserved::dead_letter_reason));
    copy.attributes.erase(std::string(reserved::dead_letter_description));
    copy.attributes.erase(std::string(reserved::message_id));
    if (copy.attributes.size() >= max_attributes_per_message) {
      co_return fail(
          errc::invalid_argument,
          "cannot dead-letter: the message already has 10 attributes, leaving no room for "
          "the reason (it stays in the queue; SQS's redrive still moves it)");
    }
    copy.attributes[std::string(reserved::dead_letter_reason)] =
        wire_attribute{"String", reason.empty() ? std::string("DeadLettered") : reason};
    // The id in the source queue, so the DLQ copy reads as the same message; then the
    // description, as far as SQS's 10 attributes allow.
    if (copy.attributes.size() < max_attributes_per_message) {
      copy.attributes[std::string(reserved::message_id)] =
          wire_attribute{"String", entry.message_id};
    }
    if (!description.empty() && copy.attributes.size() < max_attributes_per_message) {
      copy.attributes[std::string(reserved::dead_letter_description)] =
          wire_attribute{"String", description};
    }
    if ((*dlq)->fifo) {
      if (copy.group_id.empty()) copy.group_id = opts_.default_message_group;
      copy.deduplication_id = entry.message_id;
    }
    std::optional<error> copy_unanswered;
    auto sent = co_await call("SendMessage", encode_send_message((*dlq)->url, copy),
                              opts_.request_timeout, false, &copy_unanswered);
    if (!sent) co_return sent.error();
    std::vector<receipt_entry> one{{"0", entry.receipt_handle, 0}};
    std::optional<error> unanswered;
    auto del = co_await call("DeleteMessageBatch", encode_delete_message_batch(source.url, one),
                             opts_.request_timeout, false, &unanswered);
    if (!del) co_return del.error();
    auto r = decode_batch_result(*del);
    if (!r)
      co_return unconfirmed_answer("DeleteMessageBatch", unreadable(r.error()), maybe_applied);
    if (auto f = r->failed.find("0"); f != r->failed.end()) {
      const error refused = map_error(f->second.code, f->second.message, 400);
      if (unanswered) co_return unconfirmed_call("DeleteMessageBatch", *unanswered, &refused);
      co_return refused;
    }
    if (!r->successful.count("0")) {
      co_return unconfirmed_answer("DeleteMessageBatch", left_out("SQS", "0"), maybe_applied);
    }
    co_return result<void>{};
  }

  options opts_;
  asio::any_io_executor executor_;
  std::string region_;
  http_pool pool_;
  const std::string host_header_ = pool_.target().host_header();  ///< signed on every request
  const signing_scope scope_{region_, "sqs"};
  http_pool sns_pool_;
  const std::string sns_host_header_ = sns_pool_.target().host_header();
  const signing_scope sns_scope_{region_, "sns"};
  credential_chain credentials_;
  capabilities caps_;
  const std::uint64_t id_ = next_provider_id++;
  std::atomic<bool> closed_{false};
  std::atomic<bool> plaintext_warned_{false};  ///< the plain-HTTP warning is given once
  std::atomic<std::uint64_t> refused_messages_{0};

  std::mutex queues_mutex_;
  std::map<std::string, std::shared_ptr<queue_info>> queues_;

  std::mutex topics_mutex_;
  std::map<std::string, std::string> topic_arns_;  ///< qrt topic name -> ARN
  std::string arn_prefix_;                         ///< "arn:aws:sns:REGION:ACCOUNT:" once seen
  std::uint64_t next_queue_key_ = 0;

  std::mutex inflight_mutex_;
  std::unordered_map<std::uint64_t, inflight_entry> inflight_;
  std::uint64_t next_item_ = 0;
  std::size_t inserts_since_prune_ = 0;

  // Emulated sessions (FIFO groups): messages received for a group no session of ours holds
  // yet wait here, locked to us, for the next accept_session; `held_` marks groups a session
  // of ours holds. Keyed by SQS queue name, then group.
  std::mutex groups_mutex_;
  std::map<std::string, std::map<std::string, std::deque<received_message>>> spare_;
  std::set<std::pair<std::string, std::string>> held_;

  std::mutex rng_mutex_;
  std::minstd_rand rng_{std::random_device{}()};
};

/// An emulated session: one FIFO message group, held by this provider instance while the
/// session is open. SQS itself holds the group back from every other consumer while any of
/// its messages is in flight; this object adds the "one holder in this process" rule and routes
/// messages of other groups that a receive brings along to the provider's spare buffer.
class sqs_session final : public session_receiver {
 public:
  sqs_session(std::shared_ptr<sqs_provider> provider, queue_name queue, std::string sqs_queue,
              session_id group, std::deque<received_message> buffered)
      : provider_(std::move(provider)),
        queue_(std::move(queue)),
        sqs_queue_(std::move(sqs_queue)),
        group_(std::move(group)),
        buffered_(std::move(buffered)) {}

  ~sqs_session() override { release(); }

  const session_id& id() const noexcept override { return group_; }
  time_point locked_until() const noexcept override {
    // The group stays ours while any message we hold is locked; report the earliest expiry.
    std::lock_guard lock(mutex_);
    time_point until = time_point::max();
    for (const auto& m : buffered_) until = std::min(until, m.locked_until);
    return until == time_point::max() ? clock::now() : until;
  }

  awaitable<result<std::vector<received_message>>> receive(std::size_t max_messages,
                                                           milliseconds wait) override {
    if (max_messages == 0)
      co_return fail(errc::invalid_argument, "max_messages must be at least 1");
    if (closed_) co_return fail(errc::closed, "the session is closed");
    auto out = take(max_messages);
    if (!out.empty()) co_return out;
    // Nothing buffered: receive from the queue, keep our group's, park the others.
    const auto deadline = qrt::detail::deadline_after(steady::now(), wait);
    do {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - steady::now());
      auto got = co_await provider_->receive(queue_, 10, std::max(left, milliseconds::zero()));
      if (!got) co_return got.error();
      provider_->park(sqs_queue_, std::move(*got));
      out = take(max_messages);
      if (!out.empty()) co_return out;
    } while (steady::now() < deadline);
    co_return out;
  }

  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements) override {
    co_return co_await provider_->settle(std::move(settlements));
  }

  awaitable<result<time_point>> renew_session_lock() override {
    co_return fail(errc::unsupported,
                   "an SQS message group has no lock of its own: renew each message's visibility "
                   "with renew_lock");
  }
  awaitable<result<std::string>> get_state() override {
    co_return fail(errc::unsupported, "SQS message groups have no session state");
  }
  awaitable<result<void>> set_state(std::string) override {
    co_return fail(errc::unsupported, "SQS message groups have no session state");
  }

  awaitable<result<void>> close() override {
    release();
    co_return result<void>{};
  }

 private:
  // Our group's messages from the buffer and from the provider's spare list, in order,
  // skipping any whose lock ran out (SQS redelivers those).
  std::vector<received_message> take(std::size_t max) {
    std::lock_guard lock(mutex_);
    provider_->claim_spare(sqs_queue_, group_.str(), buffered_);
    std::vector<received_message> out;
    const auto now = clock::now();
    while (!buffered_.empty() && out.size() < max) {
      if (buffered_.front().locked_until > now) out.push_back(std::move(buffered_.front()));
      buffered_.pop_front();
    }
    return out;
  }

  // Unsettled messages we still buffer go back to the spare list (still locked to us, in
  // order) for the next accept_session; the group is free again.
  void release() {
    if (closed_.exchange(true)) return;
    std::lock_guard lock(mutex_);
    provider_->unhold(sqs_queue_, group_.str(), std::move(buffered_));
  }

  std::shared_ptr<sqs_provider> provider_;
  queue_name queue_;
  std::string sqs_queue_;
  session_id group_;
  mutable std::mutex mutex_;
  std::deque<received_message> buffered_;
  std::atomic<bool> closed_{false};
};

awaitable<result<std::shared_ptr<session_receiver>>> sqs_provider::accept_session(
    const queue_name& queue, std::optional<session_id> which, milliseconds wait) {
  if (which) {
    co_return fail(errc::unsupported,
                   "SQS cannot receive from a chosen message group; accept_session(nullopt) takes "
                   "the next group that has messages");
  }
  auto info_r = co_await resolve(queue);
  if (!info_r) co_return info_r.error();
  auto info = *info_r;
  if (!info->fifo) {
    co_return fail(errc::unsupported,
                   "sessions on SQS need a FIFO queue (name ending in .fifo); '" + queue.str() +
                       "' is a standard queue");
  }
  const auto deadline = qrt::detail::deadline_after(steady::now(), wait);
  for (;;) {
    if (auto taken = take_free_group(info->name)) {
      co_return std::shared_ptr<session_receiver>(
          std::make_shared<sqs_session>(shared_from_this(), queue, info->name,
                                        std::move(taken->first), std::move(taken->second)));
    }
    if (steady::now() >= deadline && wait > milliseconds::zero()) break;
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - steady::now());
    auto got = co_await receive(queue, 10, std::max(left, milliseconds::zero()));
    if (!got) co_return got.error();
    const bool nothing = got->empty();
    park(info->name, std::move(*got));
    if (nothing && steady::now() >= deadline) {
      if (auto taken = take_free_group(info->name)) {
        co_return std::shared_ptr<session_receiver>(
            std::make_shared<sqs_session>(shared_from_this(), queue, info->name,
                                          std::move(taken->first), std::move(taken->second)));
      }
      break;
    }
  }
  co_return fail(errc::timeout, "no message group of '" + queue.str() +
                                    "' became available within " + std::to_string(wait.count()) +
                                    " ms");
}

}  // namespace

result<provider_ptr> make_provider(const options& opts, asio::any_io_executor executor) {
  if (opts.max_number_of_messages < 1 || opts.max_number_of_messages > 10) {
    return fail(errc::configuration_error, "field 'max_number_of_messages': must be 1-10");
  }
  if (opts.wait_time_seconds.count() < 0 || opts.wait_time_seconds.count() > 20) {
    return fail(errc::configuration_error, "field 'wait_time': must be 0-20 seconds");
  }
  // 0 would lock nothing: every message would be visible again before qrt could hand it out.
  if (opts.visibility_timeout &&
      (opts.visibility_timeout->count() < 1 || opts.visibility_timeout->count() > 43'200)) {
    return fail(errc::configuration_error, "field 'visibility_timeout': must be 1-43200 seconds");
  }
  if (opts.max_message_bytes < 1'024 || opts.max_message_bytes > 1'048'576) {
    return fail(errc::configuration_error, "field 'max_message_bytes': must be 1024-1048576");
  }
  // The bounds options_from_config applies, for options built in code: a negative back-off
  // base made each pause a draw from an empty range, and a timeout of zero or less fails
  // every call.
  if (opts.abandon_visibility.count() < 0 || opts.abandon_visibility.count() > 43'200) {
    return fail(errc::configuration_error, "field 'abandon_visibility': must be 0-43200 seconds");
  }
  if (opts.max_retries < 0 || opts.max_retries > 20) {
    return fail(errc::configuration_error, "field 'max_retries': must be 0-20");
  }
  for (const auto& [field, value] : {std::pair{"connect_timeout", opts.connect_timeout},
                                     std::pair{"request_timeout", opts.request_timeout},
                                     std::pair{"retry_base_delay", opts.retry_base_delay}}) {
    if (value <= milliseconds::zero()) {
      return fail(errc::configuration_error,
                  std::string("field '") + field + "': must be more than zero");
    }
  }
  if (opts.access_key_id.empty() != opts.secret_access_key.empty()) {
    return fail(errc::configuration_error,
                "fields 'access_key_id' and 'secret_access_key' must be given together");
  }
  const auto env = process_environment();
  const auto files = load_shared_files(env, opts.profile);
  const std::string region = resolve_region(opts.region, env, files);
  // The region goes into host names and into every signature: one that cannot be an AWS
  // region is named here, not later as a malformed endpoint the user never wrote.
  const bool region_ok =
      region.size() <= 64 && std::all_of(region.begin(), region.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
      });
  if (!region_ok) {
    const bool printable =
        std::all_of(region.begin(), region.end(), [](char c) { return c >= 0x20 && c < 0x7F; });
    return fail(errc::configuration_error,
                "field 'region'" +
                    (printable && region.size() <= 64 ? " '" + region + "'" : std::string()) +
                    " (or AWS_REGION, AWS_DEFAULT_REGION, the profile's region) is not an AWS "
                    "region name: lower-case letters, digits and '-', like us-east-1");
  }
  const std::string url =
      opts.endpoint.empty() ? "https://sqs." + region + ".amazonaws.com" : opts.endpoint;
  auto ep = parse_endpoint(url);
  if (!ep) return fail(errc::configuration_error, "field 'endpoint': " + ep.error().message);
  const std::string sns_url = !opts.sns_endpoint.empty() ? opts.sns_endpoint
                              : !opts.endpoint.empty()   ? opts.endpoint
                                                       : "https://sns." + region + ".amazonaws.com";
  auto sns_ep = parse_endpoint(sns_url);
  if (!sns_ep) {
    return fail(
        errc::configuration_error,
        std::string(opts.sns_endpoint.empty() ? "field 'endpoint'" : "field 'sns_endpoint'") +
            " (for SNS): " + sns_ep.error().message);
  }
  auto p = std::make_shared<sqs_provider>(opts, std::move(executor), *ep, *sns_ep, region);
  if (auto ready = p->ready(); !ready) {
    return fail(errc::configuration_error,
                (opts.ca_file.empty() ? std::string("SQS TLS set-up: ") : "field 'ca_file': ") +
                    ready.error().message);
  }
  return provider_ptr(std::move(p));
}

}  // namespace qrt::sqs
