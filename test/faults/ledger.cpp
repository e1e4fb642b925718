#include "ledger.hpp"

namespace qrt::faults {
namespace {

std::string key_of(const receipt_handle& r) {
  return std::to_string(r.owner) + '/' + std::to_string(r.queue) + '/' + std::to_string(r.item) +
         '/' + std::to_string(r.lock) + '/' + r.token;
}

class completion_recorder final : public provider {
 public:
  completion_recorder(provider_ptr inner,
                      std::function<void(const std::string&, const std::string&)> on_completed,
                      std::function<void(const std::string&)> on_received)
      : inner_(std::move(inner)),
        on_completed_(std::move(on_completed)),
        on_received_(std::move(on_received)) {}

  std::string_view name() const noexcept override { return inner_->name(); }
  const capabilities& caps() const noexcept override { return inner_->caps(); }
  // A scenario reads reconnects through the decorators it stacks on the provider.
  connection_stats connections() const noexcept override { return inner_->connections(); }
  std::optional<memory_stats> memory() const override { return inner_->memory(); }
  awaitable<result<void>> create_queue(const queue_name& q, const queue_options& o) override {
    co_return co_await inner_->create_queue(q, o);
  }
  awaitable<result<void>> delete_queue(const queue_name& q) override {
    co_return co_await inner_->delete_queue(q);
  }
  awaitable<result<queue_stats>> stats(const queue_name& q) override {
    co_return co_await inner_->stats(q);
  }
  awaitable<result<std::vector<send_outcome>>> send(const queue_name& q, std::vector<message> m,
                                                    milliseconds timeout) override {
    co_return co_await inner_->send(q, std::move(m), timeout);
  }
  awaitable<result<std::vector<received_message>>> receive(const queue_name& q, std::size_t max,
                                                           milliseconds wait) override {
    auto got = co_await inner_->receive(q, max, wait);
    if (got) {
      std::lock_guard lock(mutex_);
      for (const auto& m : *got) ids_[key_of(m.receipt)] = {m.body, m.id};
    }
    if (got && on_received_) {
      for (const auto& m : *got) on_received_(m.body);
    }
    co_return got;
  }
  awaitable<result<std::vector<received_message>>> peek(const queue_name& q, std::size_t max,
                                                        std::int64_t from) override {
    co_return co_await inner_->peek(q, max, from);
  }
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements) override {
    std::vector<std::pair<std::string, bool>> keys;  // receipt key, is a complete
    for (const auto& s : settlements)
      keys.emplace_back(key_of(s.receipt), s.action == settle_action::complete);
    auto results = co_await inner_->settle(std::move(settlements));
    std::vector<std::pair<std::string, std::string>> completed;
    {
      std::lock_guard lock(mutex_);
      for (std::size_t i = 0; i < keys.size() && i < results.size(); ++i) {
        auto it = ids_.find(keys[i].first);
        // A failed settlement keeps the entry: a retry of it uses the same receipt.
        if (it == ids_.end() || !results[i]) continue;
        if (keys[i].second) completed.push_back(it->second);
        ids_.erase(it);
      }
    }
    for (const auto& [id, message_id] : completed) on_completed_(id, message_id);
    co_return results;
  }
  awaitable<result<time_point>> renew_lock(const receipt_handle& r) override {
    co_return co_await inner_->renew_lock(r);
  }
  awaitable<result<std::shared_ptr<session_receiver>>> accept_session(const queue_name& q,
                                                                      std::optional<session_id> s,
                                                                      milliseconds wait) override {
    co_return co_await inner_->accept_session(q, std::move(s), wait);
  }
  awaitable<void> close() override { co_await inner_->close(); }
  // Topic calls pass through; what a subscription delivers is recorded by receive and settle.
  awaitable<result<void>> create_topic(const topic_name& t) override {
    co_return co_await inner_->create_topic(t);
  }
  awaitable<result<void>> delete_topic(const topic_name& t) override {
    co_return co_await inner_->delete_topic(t);
  }
  awaitable<result<std::vector<send_outcome>>> publish(const topic_name& t, std::vector<message> m,
                                                       milliseconds timeout) override {
    co_return co_await inner_->publish(t, std::move(m), timeout);
  }
  awaitable<result<void>> create_subscription(const queue_name& s,
                                              const subscription_options& o) override {
    co_return co_await inner_->create_subscription(s, o);
  }
  awaitable<result<void>> delete_subscription(const queue_name& s) override {
    co_return co_await inner_->delete_subscription(s);
  }
  awaitable<result<std::vector<subscription_info>>> list_subscriptions(
      const topic_name& t) override {
    co_return co_await inner_->list_subscriptions(t);
  }

 private:
  provider_ptr inner_;
  std::function<void(const std::string&, const std::string&)> on_completed_;
  std::function<void(const std::string&)> on_received_;
  std::mutex mutex_;
  // receipt -> (message id as sent, the provider's message id)
  std::unordered_map<std::string, std::pair<std::string, std::string>> ids_;
};

}  // namespace

provider_ptr record_completions(
    provider_ptr inner,
    std::function<void(const std::string& id, const std::string& message_id)> on_completed,
    std::function<void(const std::string& id)> on_received) {
  return std::make_shared<completion_recorder>(std::move(inner), std::move(on_completed),
                                               std::move(on_received));
}

}  // namespace qrt::faults
