#include <array>
#include <chrono>
#include <iterator>
#include <list>
#include <qrt/instrumented_provider.hpp>
#include <unordered_map>

namespace qrt::metrics {
namespace {

using steady = std::chrono::steady_clock;

constexpr std::array provider_ops = {
    operation::send,    operation::receive,     operation::complete,
    operation::abandon, operation::dead_letter, operation::renew,
    operation::peek,    operation::stats,       operation::publish};

constexpr std::size_t op_index(operation op) {
  return static_cast<std::size_t>(op);
}

// Every series one queue needs, looked up once so recording takes no lock.
struct queue_series {
  std::string queue;  // the label: the name as printed ("orders/$DeadLetterQueue" for a DLQ)
  std::string base_name;
  bool dead_letter = false;
  std::atomic<std::uint64_t> provider_key{0};  // receipt_handle::queue seen for this queue
  std::array<histogram*, 10> latency{};
  std::array<counter*, 10> calls{};
  histogram* send_batch = nullptr;
  histogram* publish_batch = nullptr;
  histogram* receive_batch = nullptr;
  counter* sent = nullptr;
  counter* received = nullptr;
  counter* dead_lettered = nullptr;
  gauge* in_flight = nullptr;
  gauge* depth_active = nullptr;
  gauge* depth_in_flight = nullptr;
  gauge* depth_scheduled = nullptr;
  gauge* depth_dead_lettered = nullptr;
};

// Append-only table: readers scan published slots without a lock; writers serialise on a
// mutex. Queue names are few; past capacity everything lands in one "other" series.
class series_table {
 public:
  series_table(runtime_metrics& m, std::string provider) : m_(m), provider_(std::move(provider)) {
    overflow_ = make("other");
    unknown_ = make("unknown");
  }

  queue_series& for_queue(const queue_name& queue) {
    return lookup(queue.str(), queue.is_dead_letter(), queue.to_string(), false);
  }

  /// A topic's own series (publish), under "<topic>/Subscriptions": no queue or subscription
  /// is named so, and the exposition shows it as the label topic="<topic>" (metrics.cpp).
  queue_series& for_topic(const topic_name& topic) {
    const std::string label = topic.str() + "/Subscriptions";
    return lookup(label, false, label, true);
  }

 private:
  queue_series& lookup(const std::string& base_name, bool dead_letter, const std::string& label,
                       bool topic) {
    auto same = [&](const queue_series& s) {
      return s.dead_letter == dead_letter && s.base_name == base_name;
    };
    const std::size_t n = size_.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < n; ++i) {
      if (same(*slots_[i])) return *slots_[i];
    }
    std::lock_guard lock(mutex_);
    const std::size_t m = size_.load(std::memory_order_relaxed);
    for (std::size_t i = n; i < m; ++i) {
      if (same(*slots_[i])) return *slots_[i];
    }
    if (m == slots_.size()) {
      if (!topic) return *overflow_;
      // Made on first need (under the lock), so a provider without topics exposes no topic.
      if (!topic_overflow_) topic_overflow_ = make("other/Subscriptions", true);
      return *topic_overflow_;
    }
    slots_[m] = make(label, topic);
    slots_[m]->base_name = base_name;
    slots_[m]->dead_letter = dead_letter;
    size_.store(m + 1, std::memory_order_release);
    return *slots_[m];
  }

 public:
  queue_series& for_receipt(const receipt_handle& r) {
    if (r.queue == 0) return *unknown_;
    // The common case without a lock: the key a queue received under last.
    const std::size_t n = size_.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < n; ++i) {
      if (slots_[i]->provider_key.load(std::memory_order_relaxed) == r.queue) return *slots_[i];
    }
    // A key a queue received under before (another session's link, a link from before a
    // reconnect), or one of the queues past the table, which share one series but not one key.
    if (keyed_.load(std::memory_order_acquire)) {
      std::lock_guard lock(mutex_);
      if (auto it = keys_.find(r.queue); it != keys_.end()) return *it->second.series;
    }
    return *unknown_;
  }

  void count_error(const queue_series& q, operation op, const error& e) {
    m_.errors.with({q.queue, provider_, std::string(to_string(op)), std::string(to_string(e.code))})
        .inc();
  }

  /// What a receive (on a queue or a session) records, whichever path it took.
  void count_receive(queue_series& q, const result<std::vector<received_message>>& r) {
    if (!r) {
      count_error(q, operation::receive, r.error());
      return;
    }
    if (r->empty()) return;
    const std::uint64_t key = r->front().receipt.queue;
    if (key != 0 && q.provider_key.exchange(key, std::memory_order_relaxed) != key) {
      remember(key, q);
    }
    q.receive_batch->observe(static_cast<double>(r->size()));
    q.received->inc(r->size());
    q.in_flight->add(static_cast<double>(r->size()));
  }

  const std::string& provider() const { return provider_; }

 private:
  // A queue's series cover every call but publish; a topic's only publish, so neither shows a
  // column of zeros for calls it never takes.
  std::unique_ptr<queue_series> make(std::string queue, bool topic = false) {
    auto q = std::make_unique<queue_series>();
    q->queue = std::move(queue);
    for (auto op : provider_ops) {
      if ((op == operation::publish) != topic) continue;
      const std::string name(to_string(op));
      q->latency[op_index(op)] = &m_.operation_duration.with({q->queue, provider_, name});
      q->calls[op_index(op)] = &m_.operations.with({q->queue, provider_, name});
    }
    q->sent = &m_.messages_sent.with({q->queue, provider_});
    if (topic) {
      q->publish_batch = &m_.batch_sizes.with({q->queue, provider_, "publish"});
      return q;
    }
    q->send_batch = &m_.batch_sizes.with({q->queue, provider_, "send"});
    q->receive_batch = &m_.batch_sizes.with({q->queue, provider_, "receive"});
    q->received = &m_.messages_received.with({q->queue, provider_});
    q->dead_lettered = &m_.dead_lettered.with({q->queue, provider_});
    q->in_flight = &m_.in_flight.with({q->queue, provider_});
    q->depth_active = &m_.queue_depth.with({q->queue, provider_, "active"});
    q->depth_in_flight = &m_.queue_depth.with({q->queue, provider_, "in_flight"});
    q->depth_scheduled = &m_.queue_depth.with({q->queue, provider_, "scheduled"});
    q->depth_dead_lettered = &m_.queue_depth.with({q->queue, provider_, "dead_lettered"});
    return q;
  }

  // Ties a receipt key to the series it was received under, for settlements that arrive after
  // the series' latest key has moved on. Bounded, least recently received from first out (their
  // messages' locks are long gone); a settlement whose key went is counted under "unknown".
  void remember(std::uint64_t key, queue_series& q) {
    std::lock_guard lock(mutex_);
    if (auto it = keys_.find(key); it != keys_.end()) {
      it->second.series = &q;
      key_order_.splice(key_order_.end(), key_order_, it->second.place);
    } else {
      key_order_.push_back(key);
      keys_.emplace(key, remembered_key{&q, std::prev(key_order_.end())});
      if (keys_.size() > max_remembered_keys) {
        keys_.erase(key_order_.front());
        key_order_.pop_front();
      }
    }
    keyed_.store(true, std::memory_order_release);
  }

  static constexpr std::size_t max_remembered_keys = 4096;

  runtime_metrics& m_;
  std::string provider_;
  std::mutex mutex_;
  std::array<std::unique_ptr<queue_series>, 64> slots_;
  std::atomic<std::size_t> size_{0};
  std::unique_ptr<queue_series> overflow_;
  std::unique_ptr<queue_series> unknown_;
  std::unique_ptr<queue_series> topic_overflow_;  ///< shown as topic="other"
  struct remembered_key {
    queue_series* series;
    std::list<std::uint64_t>::iterator place;  ///< in key_order_
  };
  std::unordered_map<std::uint64_t, remembered_key> keys_;  ///< receipt key → series (mutex_)
  std::list<std::uint64_t> key_order_;  ///< keys_, least recently received from first (mutex_)
  std::atomic<bool> keyed_{false};      ///< keys_ has been written to
};

struct call_timer {
  steady::time_point start = steady::now();
  void record(queue_series& q, operation op) const {
    q.latency[op_index(op)]->observe(steady::now() - start);
    q.calls[op_index(op)]->inc();
  }
};

operation settle_operation(settle_action a) {
  switch (a) {
    case settle_action::complete:
      return operation::complete;
    case settle_action::abandon:
      return operation::abandon;
    case settle_action::dead_letter:
      return operation::dead_letter;
  }
  return operation::complete;
}

// Records one settle call's outcomes. A receipt that is settled, or whose lock is gone, no
// longer counts as in flight. Locks that expire without a settle call stay counted: a client
// cannot see them go (queue_depth{state="in_flight"} from stats() is the provider's view).
void record_settlements(series_table& table, const std::vector<settlement>& settlements,
                        const std::vector<result<void>>& results, const call_timer& timer) {
  const auto end = steady::now();
  for (std::size_t i = 0; i < settlements.size(); ++i) {
    auto& q = table.for_receipt(settlements[i].receipt);
    const auto op = settle_operation(settlements[i].action);
    q.latency[op_index(op)]->observe(end - timer.start);
    q.calls[op_index(op)]->inc();
    const bool ok = i < results.size() && results[i].has_value();
    if (ok) {
      q.in_flight->dec();
      if (op == operation::dead_letter) q.dead_lettered->inc();
    } else if (i < results.size()) {
      const auto& e = results[i].error();
      // The lock ran out: the message is no longer ours. (invalid_receipt, e.g. a second
      // settlement, was already counted when the first one succeeded.)
      if (e.code == errc::receipt_expired) q.in_flight->dec();
      table.count_error(q, op, e);
    }
  }
}

class instrumented_session final : public session_receiver {
 public:
  instrumented_session(std::shared_ptr<session_receiver> inner, series_table& table,
                       queue_series& q)
      : inner_(std::move(inner)), table_(table), q_(q) {}

  const session_id& id() const noexcept override { return inner_->id(); }
  time_point locked_until() const noexcept override { return inner_->locked_until(); }

  awaitable<result<std::vector<received_message>>> receive(std::size_t max_messages,
                                                           milliseconds wait) override {
    call_timer t;
    auto r = co_await inner_->receive(max_messages, wait);
    t.record(q_, operation::receive);
    table_.count_receive(q_, r);
    co_return r;
  }
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements) override {
    call_timer t;
    auto results = co_await inner_->settle(settlements);
    record_settlements(table_, settlements, results, t);
    co_return results;
  }
  awaitable<result<time_point>> renew_session_lock() override {
    call_timer t;
    auto r = co_await inner_->renew_session_lock();
    t.record(q_, operation::renew);
    if (!r) table_.count_error(q_, operation::renew, r.error());
    co_return r;
  }
  awaitable<result<std::string>> get_state() override { return inner_->get_state(); }
  awaitable<result<void>> set_state(std::string state) override {
    return inner_->set_state(std::move(state));
  }
  awaitable<result<void>> close() override { return inner_->close(); }

 private:
  std::shared_ptr<session_receiver> inner_;
  series_table& table_;
  queue_series& q_;
};

// Mirrors a provider's connection_stats (counts the provider keeps as it does I/O) into the
// connection series whenever the registry exposes them. Series appear once the provider has
// connected or failed to, so a provider without connections adds none.
class connection_series {
 public:
  connection_series(runtime_metrics& m, std::string provider)
      : m_(m), provider_(std::move(provider)) {}

  void update(const connection_stats& now) {
    if (!sent_) {
      if (now.connections_opened == 0 && now.connection_failures == 0) return;
      sent_ = &m_.connection_bytes.with({provider_, "sent"});
      received_ = &m_.connection_bytes.with({provider_, "received"});
      opened_ = &m_.connections_opened.with({provider_});
      failures_ = &m_.connection_failures.with({provider_});
      recovery_ = &m_.connection_recovery.with({provider_});
    }
    sent_->inc(grown(seen_.bytes_sent, now.bytes_sent));
    received_->inc(grown(seen_.bytes_received, now.bytes_received));
    opened_->inc(grown(seen_.connections_opened, now.connections_opened));
    failures_->inc(grown(seen_.connection_failures, now.connection_failures));
    if (const auto recoveries = grown(seen_.recoveries, now.recoveries); recoveries > 0) {
      // One observation per recovery. Several since the last exposition share their summed
      // time evenly (the provider keeps the sum, not each one); scraped every few seconds,
      // that is one at a time in practice.
      const auto took = now.recovery_time_total - seen_.recovery_time_total;
      const auto each = took / static_cast<std::int64_t>(recoveries);
      for (std::uint64_t i = 0; i < recoveries; ++i) recovery_->observe(each);
    }
    seen_ = now;
  }

 private:
  static std::uint64_t grown(std::uint64_t before, std::uint64_t now) {
    return now > before ? now - before : 0;
  }

  runtime_metrics& m_;
  std::string provider_;
  connection_stats seen_;
  counter* sent_ = nullptr;
  counter* received_ = nullptr;
  counter* opened_ = nullptr;
  counter* failures_ = nullptr;
  histogram* recovery_ = nullptr;
};

class instrumented_provider final : public provider {
 public:
  instrumented_provider(provider_ptr inner, runtime_metrics& m)
      : inner_(std::move(inner)),
        table_(m, std::string(inner_->name())),
        registry_(m.owner),
        connections_(m, std::string(inner_->name())) {
    collector_ = registry_.add_collector([this, &m, provider = std::string(inner_->name())] {
      connections_.update(inner_->connections());
      // Memory pressure: how close the provider is to refusing sends for its budget.
      if (const auto held = inner_->memory()) {
        m.memory_held.with({provider}).set(static_cast<double>(held->held_bytes));
        if (held->limit_bytes != 0)
          m.memory_limit.with({provider}).set(static_cast<double>(held->limit_bytes));
      }
    });
  }
  ~instrumented_provider() override { registry_.remove_collector(collector_); }
  instrumented_provider(const instrumented_provider&) = delete;
  instrumented_provider& operator=(const instrumented_provider&) = delete;

  std::string_view name() const noexcept override { return inner_->name(); }
  const capabilities& caps() const noexcept override { return inner_->caps(); }
  connection_stats connections() const noexcept override { return inner_->connections(); }
  std::optional<memory_stats> memory() const override { return inner_->memory(); }

  awaitable<result<void>> create_queue(const queue_name& queue,
                                       const queue_options& options) override {
    return inner_->create_queue(queue, options);
  }
  awaitable<result<void>> delete_queue(const queue_name& queue) override {
    return inner_->delete_queue(queue);
  }

  awaitable<result<queue_stats>> stats(const queue_name& queue) override {
    auto& q = table_.for_queue(queue);
    call_timer t;
    auto r = co_await inner_->stats(queue);
    t.record(q, operation::stats);
    if (r) {
      auto set_known = [](gauge* g, std::int64_t v) {
        if (v >= 0) g->set(static_cast<double>(v));
      };
      set_known(q.depth_active, r->active);
      set_known(q.depth_in_flight, r->in_flight);
      set_known(q.depth_scheduled, r->scheduled);
      set_known(q.depth_dead_lettered, r->dead_lettered);
    } else {
      table_.count_error(q, operation::stats, r.error());
    }
    co_return r;
  }

  awaitable<result<std::vector<send_outcome>>> send(const queue_name& queue,
                                                    std::vector<message> messages,
                                                    milliseconds timeout) override {
    auto& q = table_.for_queue(queue);
    const auto batch = messages.size();
    call_timer t;
    auto r = co_await inner_->send(queue, std::move(messages), timeout);
    record_sent(q, operation::send, q.send_batch, batch, t, r);
    co_return r;
  }

  // A publish is counted as a send is, under the topic: its latency, batch size
  // (operation="publish"), messages accepted and errors. What each subscription then hands out
  // is counted by receive under the subscription's name.
  awaitable<result<std::vector<send_outcome>>> publish(const topic_name& topic,
                                                       std::vector<message> messages,
                                                       milliseconds timeout) override {
    auto& q = table_.for_topic(topic);
    const auto batch = messages.size();
    call_timer t;
    auto r = co_await inner_->publish(topic, std::move(messages), timeout);
    record_sent(q, operation::publish, q.publish_batch, batch, t, r);
    co_return r;
  }

  awaitable<result<void>> create_topic(const topic_name& topic) override {
    return inner_->create_topic(topic);
  }
  awaitable<result<void>> delete_topic(const topic_name& topic) override {
    return inner_->delete_topic(topic);
  }
  awaitable<result<void>> create_subscription(const queue_name& subscription,
                                              const subscription_options& options) override {
    return inner_->create_subscription(subscription, options);
  }
  awaitable<result<void>> delete_subscription(const queue_name& subscription) override {
    return inner_->delete_subscription(subscription);
  }
  awaitable<result<std::vector<subscription_info>>> list_subscriptions(
      const topic_name& topic) override {
    return inner_->list_subscriptions(topic);
  }

  awaitable<result<std::vector<received_message>>> receive(const queue_name& queue,
                                                           std::size_t max_messages,
                                                           milliseconds wait) override {
    auto& q = table_.for_queue(queue);
    call_timer t;
    auto r = co_await inner_->receive(queue, max_messages, wait);
    t.record(q, operation::receive);
    table_.count_receive(q, r);
    co_return r;
  }

  awaitable<result<std::vector<received_message>>> peek(const queue_name& queue,
                                                        std::size_t max_messages,
                                                        std::int64_t from_sequence) override {
    auto& q = table_.for_queue(queue);
    call_timer t;
    auto r = co_await inner_->peek(queue, max_messages, from_sequence);
    t.record(q, operation::peek);
    if (!r) table_.count_error(q, operation::peek, r.error());
    co_return r;
  }

  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements) override {
    call_timer t;
    auto results = co_await inner_->settle(settlements);
    record_settlements(table_, settlements, results, t);
    co_return results;
  }

  awaitable<result<time_point>> renew_lock(const receipt_handle& receipt) override {
    auto& q = table_.for_receipt(receipt);
    call_timer t;
    auto r = co_await inner_->renew_lock(receipt);
    t.record(q, operation::renew);
    if (!r) table_.count_error(q, operation::renew, r.error());
    co_return r;
  }

  awaitable<result<std::shared_ptr<session_receiver>>> accept_session(
      const queue_name& queue, std::optional<session_id> session, milliseconds wait) override {
    auto& q = table_.for_queue(queue);
    auto r = co_await inner_->accept_session(queue, std::move(session), wait);
    if (!r) {
      if (r.error().code != errc::timeout) {
        table_.count_error(q, operation::receive, r.error());
      }
      co_return r;
    }
    co_return std::shared_ptr<session_receiver>(
        std::make_shared<instrumented_session>(std::move(*r), table_, q));
  }

  awaitable<void> close() override { return inner_->close(); }

 private:
  void record_sent(queue_series& q, operation op, histogram* batch_sizes, std::size_t batch,
                   const call_timer& t, const result<std::vector<send_outcome>>& r) {
    t.record(q, op);
    batch_sizes->observe(static_cast<double>(batch));
    if (r) {
      std::uint64_t ok = 0;
      for (const auto& outcome : *r) {
        if (outcome) {
          ++ok;
        } else {
          table_.count_error(q, op, outcome.error());
        }
      }
      q.sent->inc(ok);
    } else {
      table_.count_error(q, op, r.error());
    }
  }

  provider_ptr inner_;
  series_table table_;
  registry& registry_;
  connection_series connections_;  // updated only by the collector, one exposition at a time
  std::uint64_t collector_ = 0;
};

}  // namespace

provider_ptr instrument(provider_ptr inner, runtime_metrics& metrics) {
  return std::make_shared<instrumented_provider>(std::move(inner), metrics);
}

}  // namespace qrt::metrics
