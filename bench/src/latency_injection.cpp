#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <qrt/bench/latency_injection.hpp>

namespace qrt::bench {
namespace {

awaitable<void> pause(milliseconds delay) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, delay);
  co_await timer.async_wait(boost::asio::use_awaitable);
}

class delayed_session final : public session_receiver {
 public:
  delayed_session(std::shared_ptr<session_receiver> inner, milliseconds d)
      : inner_(std::move(inner)), delay_(d) {}
  const session_id& id() const noexcept override { return inner_->id(); }
  time_point locked_until() const noexcept override { return inner_->locked_until(); }
  awaitable<result<std::vector<received_message>>> receive(std::size_t n,
                                                           milliseconds wait) override {
    co_await pause(delay_);
    co_return co_await inner_->receive(n, wait);
  }
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> s) override {
    co_await pause(delay_);
    co_return co_await inner_->settle(std::move(s));
  }
  awaitable<result<time_point>> renew_session_lock() override {
    co_await pause(delay_);
    co_return co_await inner_->renew_session_lock();
  }
  awaitable<result<std::string>> get_state() override {
    co_await pause(delay_);
    co_return co_await inner_->get_state();
  }
  awaitable<result<void>> set_state(std::string state) override {
    co_await pause(delay_);
    co_return co_await inner_->set_state(std::move(state));
  }
  awaitable<result<void>> close() override { return inner_->close(); }

 private:
  std::shared_ptr<session_receiver> inner_;
  milliseconds delay_;
};

class delayed_provider final : public provider {
 public:
  delayed_provider(provider_ptr inner, milliseconds d) : inner_(std::move(inner)), delay_(d) {}
  std::string_view name() const noexcept override { return inner_->name(); }
  const capabilities& caps() const noexcept override { return inner_->caps(); }
  awaitable<result<void>> create_queue(const queue_name& q, const queue_options& o) override {
    co_await pause(delay_);
    co_return co_await inner_->create_queue(q, o);
  }
  awaitable<result<void>> delete_queue(const queue_name& q) override {
    co_await pause(delay_);
    co_return co_await inner_->delete_queue(q);
  }
  awaitable<result<queue_stats>> stats(const queue_name& q) override {
    co_await pause(delay_);
    co_return co_await inner_->stats(q);
  }
  awaitable<result<std::vector<send_outcome>>> send(const queue_name& q, std::vector<message> m,
                                                    milliseconds timeout) override {
    co_await pause(delay_);
    co_return co_await inner_->send(q, std::move(m), timeout);
  }
  awaitable<result<std::vector<received_message>>> receive(const queue_name& q, std::size_t n,
                                                           milliseconds wait) override {
    co_await pause(delay_);
    co_return co_await inner_->receive(q, n, wait);
  }
  awaitable<result<std::vector<received_message>>> peek(const queue_name& q, std::size_t n,
                                                        std::int64_t from) override {
    co_await pause(delay_);
    co_return co_await inner_->peek(q, n, from);
  }
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> s) override {
    co_await pause(delay_);
    co_return co_await inner_->settle(std::move(s));
  }
  awaitable<result<time_point>> renew_lock(const receipt_handle& r) override {
    co_await pause(delay_);
    co_return co_await inner_->renew_lock(r);
  }
  awaitable<result<std::shared_ptr<session_receiver>>> accept_session(const queue_name& q,
                                                                      std::optional<session_id> s,
                                                                      milliseconds wait) override {
    co_await pause(delay_);
    auto r = co_await inner_->accept_session(q, std::move(s), wait);
    if (!r) co_return r;
    co_return std::shared_ptr<session_receiver>(std::make_shared<delayed_session>(*r, delay_));
  }
  awaitable<void> close() override { return inner_->close(); }

 private:
  provider_ptr inner_;
  milliseconds delay_;
};

}  // namespace

provider_ptr with_latency(provider_ptr inner, milliseconds delay) {
  return std::make_shared<delayed_provider>(std::move(inner), delay);
}

}  // namespace qrt::bench
