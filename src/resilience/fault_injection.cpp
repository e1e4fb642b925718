#include <qrt/fault_injection.hpp>
#include <qrt/retry.hpp>

namespace qrt {
namespace {

class faulty_session final : public session_receiver {
 public:
  faulty_session(std::shared_ptr<session_receiver> inner,
                 std::shared_ptr<fault_injecting_provider> owner)
      : inner_(std::move(inner)), owner_(std::move(owner)) {}

  const session_id& id() const noexcept override { return inner_->id(); }
  time_point locked_until() const noexcept override { return inner_->locked_until(); }

  awaitable<result<std::vector<received_message>>> receive(std::size_t max_messages,
                                                           milliseconds wait) override {
    if (auto e = co_await owner_->before_call(fault_ops::receive)) co_return *e;
    co_return co_await inner_->receive(max_messages, wait);
  }
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements) override {
    if (auto e = co_await owner_->before_call(fault_ops::settle)) {
      co_return std::vector<result<void>>(settlements.size(), result<void>{*e});
    }
    co_return co_await inner_->settle(std::move(settlements));
  }
  awaitable<result<time_point>> renew_session_lock() override {
    if (auto e = co_await owner_->before_call(fault_ops::renew_lock)) co_return *e;
    co_return co_await inner_->renew_session_lock();
  }
  awaitable<result<std::string>> get_state() override { co_return co_await inner_->get_state(); }
  awaitable<result<void>> set_state(std::string state) override {
    co_return co_await inner_->set_state(std::move(state));
  }
  awaitable<result<void>> close() override { co_return co_await inner_->close(); }

 private:
  std::shared_ptr<session_receiver> inner_;
  std::shared_ptr<fault_injecting_provider> owner_;
};

}  // namespace

fault_injecting_provider::fault_injecting_provider(provider_ptr inner, fault_options options)
    : inner_(std::move(inner)),
      options_(options),
      random_(static_cast<std::uint32_t>(options.seed)) {}

void fault_injecting_provider::set_options(const fault_options& options) {
  std::lock_guard lock(mutex_);
  options_ = options;
}

void fault_injecting_provider::fail_next(fault_ops ops, std::uint32_t count, error failure) {
  std::lock_guard lock(mutex_);
  scheduled_ops_ = ops;
  scheduled_count_ = count;
  scheduled_error_ = std::move(failure);
}

void fault_injecting_provider::disconnect_for(milliseconds duration) {
  std::lock_guard lock(mutex_);
  disconnected_until_ = std::chrono::steady_clock::now() + duration;
}

void fault_injecting_provider::reconnect() {
  std::lock_guard lock(mutex_);
  disconnected_until_ = {};
}

fault_stats fault_injecting_provider::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::optional<error> fault_injecting_provider::draw(fault_ops op) {
  std::lock_guard lock(mutex_);
  ++stats_.calls;
  const auto now = std::chrono::steady_clock::now();
  bool scheduled_disconnect = false;
  if (options_.disconnect_every.count() > 0 && options_.disconnect_duration.count() > 0) {
    scheduled_disconnect =
        (now - created_) % options_.disconnect_every < options_.disconnect_duration;
  }
  if (now < disconnected_until_ || scheduled_disconnect) {
    ++stats_.disconnected_calls;
    return fail(errc::connection_failed, "injected fault: connection lost", "fault_injection");
  }
  if (scheduled_count_ > 0 && has(scheduled_ops_, op)) {
    --scheduled_count_;
    ++stats_.scheduled_failures;
    return scheduled_error_;
  }
  if (!has(options_.error_ops, op)) return std::nullopt;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const double x = unit(random_);
  if (x < options_.transient_error_rate) {
    ++stats_.transient_errors;
    return fail(errc::connection_failed, "injected fault: transient failure", "fault_injection");
  }
  if (x < options_.transient_error_rate + options_.throttle_rate) {
    ++stats_.throttles;
    error e = fail(errc::throttled, "injected fault: throttled", "fault_injection");
    e.retry_after = options_.throttle_retry_after;
    return e;
  }
  return std::nullopt;
}

awaitable<std::optional<error>> fault_injecting_provider::before_call(fault_ops op) {
  milliseconds latency{0};
  {
    std::lock_guard lock(mutex_);
    if (has(options_.latency_ops, op)) latency = options_.latency;
  }
  if (latency.count() > 0) co_await sleep_for(latency);
  co_return draw(op);
}

std::string_view fault_injecting_provider::name() const noexcept {
  return inner_->name();
}
const capabilities& fault_injecting_provider::caps() const noexcept {
  return inner_->caps();
}

awaitable<result<void>> fault_injecting_provider::create_queue(const queue_name& queue,
                                                               const queue_options& options) {
  if (auto e = co_await before_call(fault_ops::management)) co_return *e;
  co_return co_await inner_->create_queue(queue, options);
}
awaitable<result<void>> fault_injecting_provider::delete_queue(const queue_name& queue) {
  if (auto e = co_await before_call(fault_ops::management)) co_return *e;
  co_return co_await inner_->delete_queue(queue);
}
awaitable<result<queue_stats>> fault_injecting_provider::stats(const queue_name& queue) {
  if (auto e = co_await before_call(fault_ops::management)) co_return *e;
  co_return co_await inner_->stats(queue);
}
awaitable<result<std::vector<send_outcome>>> fault_injecting_provider::send(
    const queue_name& queue, std::vector<message> messages, milliseconds timeout) {
  if (auto e = co_await before_call(fault_ops::send)) co_return *e;
  co_return co_await inner_->send(queue, std::move(messages), timeout);
}
awaitable<result<std::vector<received_message>>> fault_injecting_provider::receive(
    const queue_name& queue, std::size_t max_messages, milliseconds wait) {
  if (auto e = co_await before_call(fault_ops::receive)) co_return *e;
  co_return co_await inner_->receive(queue, max_messages, wait);
}
awaitable<result<std::vector<received_message>>> fault_injecting_provider::peek(
    const queue_name& queue, std::size_t max_messages, std::int64_t from_sequence) {
  if (auto e = co_await before_call(fault_ops::management)) co_return *e;
  co_return co_await inner_->peek(queue, max_messages, from_sequence);
}
awaitable<std::vector<result<void>>> fault_injecting_provider::settle(
    std::vector<settlement> settlements) {
  if (auto e = co_await before_call(fault_ops::settle)) {
    co_return std::vector<result<void>>(settlements.size(), result<void>{*e});
  }
  co_return co_await inner_->settle(std::move(settlements));
}
awaitable<result<time_point>> fault_injecting_provider::renew_lock(const receipt_handle& receipt) {
  if (auto e = co_await before_call(fault_ops::renew_lock)) co_return *e;
  co_return co_await inner_->renew_lock(receipt);
}
awaitable<result<std::shared_ptr<session_receiver>>> fault_injecting_provider::accept_session(
    const queue_name& queue, std::optional<session_id> session, milliseconds wait) {
  if (auto e = co_await before_call(fault_ops::accept_session)) co_return *e;
  auto r = co_await inner_->accept_session(queue, std::move(session), wait);
  if (!r) co_return r.error();
  co_return std::shared_ptr<session_receiver>(
      std::make_shared<faulty_session>(std::move(*r), shared_from_this()));
}
awaitable<void> fault_injecting_provider::close() {
  co_await inner_->close();
}

std::shared_ptr<fault_injecting_provider> make_fault_injecting_provider(provider_ptr inner,
                                                                        fault_options options) {
  return std::make_shared<fault_injecting_provider>(std::move(inner), options);
}

}  // namespace qrt
