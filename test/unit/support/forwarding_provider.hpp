// A provider (and a session receiver) that forwards every call to another one, for test
// decorators: a decorator derives from it and overrides only the calls it records or changes.
#pragma once

#include <memory>
#include <qrt/provider.hpp>
#include <string>
#include <utility>
#include <vector>

namespace qrt::test {

class forwarding_provider : public qrt::provider {
 public:
  explicit forwarding_provider(qrt::provider_ptr inner) : inner_(std::move(inner)) {}

  std::string_view name() const noexcept override { return inner_->name(); }
  const qrt::capabilities& caps() const noexcept override { return inner_->caps(); }
  qrt::connection_stats connections() const noexcept override { return inner_->connections(); }
  std::optional<qrt::memory_stats> memory() const override { return inner_->memory(); }
  qrt::awaitable<qrt::result<void>> create_queue(const qrt::queue_name& q,
                                                 const qrt::queue_options& o) override {
    return inner_->create_queue(q, o);
  }
  qrt::awaitable<qrt::result<void>> delete_queue(const qrt::queue_name& q) override {
    return inner_->delete_queue(q);
  }
  qrt::awaitable<qrt::result<qrt::queue_stats>> stats(const qrt::queue_name& q) override {
    return inner_->stats(q);
  }
  qrt::awaitable<qrt::result<std::vector<qrt::send_outcome>>> send(
      const qrt::queue_name& q, std::vector<qrt::message> messages,
      qrt::milliseconds timeout) override {
    return inner_->send(q, std::move(messages), timeout);
  }
  qrt::awaitable<qrt::result<std::vector<qrt::received_message>>> receive(
      const qrt::queue_name& q, std::size_t max, qrt::milliseconds wait) override {
    return inner_->receive(q, max, wait);
  }
  qrt::awaitable<qrt::result<std::vector<qrt::received_message>>> peek(const qrt::queue_name& q,
                                                                       std::size_t max,
                                                                       std::int64_t from) override {
    return inner_->peek(q, max, from);
  }
  qrt::awaitable<std::vector<qrt::result<void>>> settle(
      std::vector<qrt::settlement> settlements) override {
    return inner_->settle(std::move(settlements));
  }
  qrt::awaitable<qrt::result<qrt::time_point>> renew_lock(
      const qrt::receipt_handle& receipt) override {
    return inner_->renew_lock(receipt);
  }
  qrt::awaitable<qrt::result<std::shared_ptr<qrt::session_receiver>>> accept_session(
      const qrt::queue_name& q, std::optional<qrt::session_id> session,
      qrt::milliseconds wait) override {
    return inner_->accept_session(q, std::move(session), wait);
  }
  qrt::awaitable<void> close() override { return inner_->close(); }
  qrt::awaitable<qrt::result<void>> create_topic(const qrt::topic_name& t) override {
    return inner_->create_topic(t);
  }
  qrt::awaitable<qrt::result<void>> delete_topic(const qrt::topic_name& t) override {
    return inner_->delete_topic(t);
  }
  qrt::awaitable<qrt::result<std::vector<qrt::send_outcome>>> publish(
      const qrt::topic_name& t, std::vector<qrt::message> messages,
      qrt::milliseconds timeout) override {
    return inner_->publish(t, std::move(messages), timeout);
  }
  qrt::awaitable<qrt::result<void>> create_subscription(
      const qrt::queue_name& s, const qrt::subscription_options& o) override {
    return inner_->create_subscription(s, o);
  }
  qrt::awaitable<qrt::result<void>> delete_subscription(const qrt::queue_name& s) override {
    return inner_->delete_subscription(s);
  }
  qrt::awaitable<qrt::result<std::vector<qrt::subscription_info>>> list_subscriptions(
      const qrt::topic_name& t) override {
    return inner_->list_subscriptions(t);
  }

 protected:
  qrt::provider_ptr inner_;  ///< where every call goes
};

class forwarding_session : public qrt::session_receiver {
 public:
  explicit forwarding_session(std::shared_ptr<qrt::session_receiver> inner)
      : inner_(std::move(inner)) {}

  const qrt::session_id& id() const noexcept override { return inner_->id(); }
  qrt::time_point locked_until() const noexcept override { return inner_->locked_until(); }
  qrt::awaitable<qrt::result<std::vector<qrt::received_message>>> receive(
      std::size_t max, qrt::milliseconds wait) override {
    return inner_->receive(max, wait);
  }
  qrt::awaitable<std::vector<qrt::result<void>>> settle(
      std::vector<qrt::settlement> settlements) override {
    return inner_->settle(std::move(settlements));
  }
  qrt::awaitable<qrt::result<qrt::time_point>> renew_session_lock() override {
    return inner_->renew_session_lock();
  }
  qrt::awaitable<qrt::result<std::string>> get_state() override { return inner_->get_state(); }
  qrt::awaitable<qrt::result<void>> set_state(std::string state) override {
    return inner_->set_state(std::move(state));
  }
  qrt::awaitable<qrt::result<void>> close() override { return inner_->close(); }

 protected:
  std::shared_ptr<qrt::session_receiver> inner_;  ///< where every call goes
};

}  // namespace qrt::test
