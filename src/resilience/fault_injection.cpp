#include <mutex>
#include <optional>
#include <qrt/fault_injection.hpp>
#include <qrt/retry.hpp>
#include <random>

#include "../core/deadline.hpp"

namespace qrt {
namespace detail {

// A session of a fault_injecting_provider: its calls draw faults as the provider's do.
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

}  // namespace detail

namespace {

/// What is wrong with `o`, naming the field: a rate is a probability (NaN is none), the two
/// rates share one draw, and no duration is negative. nullopt when nothing is.
std::optional<error> invalid_options(const fault_options& o) {
  for (const auto& [rate, field] : {std::pair{o.transient_error_rate, "transient_error_rate"},
                                    std::pair{o.throttle_rate, "throttle_rate"}}) {
    if (!(rate >= 0.0 && rate <= 1.0)) {  // false for NaN too
      return fail(errc::invalid_argument, std::string("fault_options::") + field +
                                              " must be a probability in [0, 1]; it is " +
                                              std::to_string(rate));
    }
  }
  if (o.transient_error_rate + o.throttle_rate > 1.0) {
    return fail(errc::invalid_argument,
                "fault_options::transient_error_rate + throttle_rate must be at most 1 (one draw "
                "decides between them); they are " +
                    std::to_string(o.transient_error_rate) + " + " +
                    std::to_string(o.throttle_rate));
  }
  for (const auto& [duration, field] :
       {std::pair{o.latency, "latency"}, std::pair{o.throttle_retry_after, "throttle_retry_after"},
        std::pair{o.disconnect_every, "disconnect_every"},
        std::pair{o.disconnect_duration, "disconnect_duration"}}) {
    if (duration.count() < 0) {
      return fail(errc::invalid_argument, std::string("fault_options::") + field +
                                              " must not be negative; it is " +
                                              std::to_string(duration.count()) + " ms");
    }
  }
  return std::nullopt;
}

const fault_options& checked(const fault_options& o) {
  if (auto e = invalid_options(o)) throw qrt::exception(std::move(*e));
  return o;
}

}  // namespace

/// What the decorator decides from: kept here, out of the public header.
struct fault_injecting_provider::state {
  explicit state(const fault_options& o) : options(o), random(static_cast<std::uint32_t>(o.seed)) {}

  std::optional<error> draw(fault_ops op);

  mutable std::mutex mutex;
  fault_options options;
  std::minstd_rand random;
  fault_stats stats;
  fault_ops scheduled_ops = fault_ops::none;
  std::uint32_t scheduled_count = 0;
  error scheduled_error;
  std::chrono::steady_clock::time_point disconnected_until{};
  std::chrono::steady_clock::time_point created = std::chrono::steady_clock::now();
};

fault_injecting_provider::fault_injecting_provider(provider_ptr inner, fault_options options)
    : inner_(std::move(inner)), state_(std::make_unique<state>(checked(options))) {}

fault_injecting_provider::~fault_injecting_provider() = default;

void fault_injecting_provider::set_options(const fault_options& options) {
  checked(options);
  std::lock_guard lock(state_->mutex);
  state_->options = options;
}

void fault_injecting_provider::fail_next(fault_ops ops, std::uint32_t count, error failure) {
  std::lock_guard lock(state_->mutex);
  state_->scheduled_ops = ops;
  state_->scheduled_count = count;
  state_->scheduled_error = std::move(failure);
}

void fault_injecting_provider::disconnect_for(milliseconds duration) {
  std::lock_guard lock(state_->mutex);
  // Saturated: milliseconds::max() ("until reconnect()") must not wrap into the past.
  state_->disconnected_until = detail::deadline_after(std::chrono::steady_clock::now(), duration);
}

void fault_injecting_provider::reconnect() {
  std::lock_guard lock(state_->mutex);
  state_->disconnected_until = {};
}

fault_stats fault_injecting_provider::stats() const {
  std::lock_guard lock(state_->mutex);
  return state_->stats;
}

std::optional<error> fault_injecting_provider::state::draw(fault_ops op) {
  std::lock_guard lock(mutex);
  ++stats.calls;
  const auto now = std::chrono::steady_clock::now();
  bool scheduled_disconnect = false;
  if (options.disconnect_every.count() > 0 && options.disconnect_duration.count() > 0) {
    // In milliseconds, the options' unit: a period of up to milliseconds::max() in the clock's
    // nanoseconds would overflow.
    const auto elapsed = std::chrono::duration_cast<milliseconds>(now - created);
    scheduled_disconnect = elapsed % options.disconnect_every < options.disconnect_duration;
  }
  if (now < disconnected_until || scheduled_disconnect) {
    ++stats.disconnected_calls;
    return fail(errc::connection_failed, "injected fault: connection lost", "fault_injection");
  }
  if (scheduled_count > 0 && has(scheduled_ops, op)) {
    --scheduled_count;
    ++stats.scheduled_failures;
    return scheduled_error;
  }
  if (!has(options.error_ops, op)) return std::nullopt;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const double x = unit(random);
  if (x < options.transient_error_rate) {
    ++stats.transient_errors;
    return fail(errc::connection_failed, "injected fault: transient failure", "fault_injection");
  }
  if (x < options.transient_error_rate + options.throttle_rate) {
    ++stats.throttles;
    error e = fail(errc::throttled, "injected fault: throttled", "fault_injection");
    e.retry_after = options.throttle_retry_after;
    return e;
  }
  return std::nullopt;
}

awaitable<std::optional<error>> fault_injecting_provider::before_call(fault_ops op) {
  milliseconds latency{0};
  {
    std::lock_guard lock(state_->mutex);
    if (has(state_->options.latency_ops, op)) latency = state_->options.latency;
  }
  if (latency.count() > 0) co_await sleep_for(latency);
  co_return state_->draw(op);
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
      std::make_shared<detail::faulty_session>(std::move(*r), shared_from_this()));
}
awaitable<void> fault_injecting_provider::close() {
  co_await inner_->close();
}
awaitable<result<void>> fault_injecting_provider::create_topic(const topic_name& topic) {
  if (auto e = co_await before_call(fault_ops::management)) co_return *e;
  co_return co_await inner_->create_topic(topic);
}
awaitable<result<void>> fault_injecting_provider::delete_topic(const topic_name& topic) {
  if (auto e = co_await before_call(fault_ops::management)) co_return *e;
  co_return co_await inner_->delete_topic(topic);
}
// A publish is a send to many queues at once: the same faults apply to it.
awaitable<result<std::vector<send_outcome>>> fault_injecting_provider::publish(
    const topic_name& topic, std::vector<message> messages, milliseconds timeout) {
  if (auto e = co_await before_call(fault_ops::send)) co_return *e;
  co_return co_await inner_->publish(topic, std::move(messages), timeout);
}
awaitable<result<void>> fault_injecting_provider::create_subscription(
    const queue_name& subscription, const subscription_options& options) {
  if (auto e = co_await before_call(fault_ops::management)) co_return *e;
  co_return co_await inner_->create_subscription(subscription, options);
}
awaitable<result<void>> fault_injecting_provider::delete_subscription(
    const queue_name& subscription) {
  if (auto e = co_await before_call(fault_ops::management)) co_return *e;
  co_return co_await inner_->delete_subscription(subscription);
}
awaitable<result<std::vector<subscription_info>>> fault_injecting_provider::list_subscriptions(
    const topic_name& topic) {
  if (auto e = co_await before_call(fault_ops::management)) co_return *e;
  co_return co_await inner_->list_subscriptions(topic);
}

std::shared_ptr<fault_injecting_provider> make_fault_injecting_provider(provider_ptr inner,
                                                                        fault_options options) {
  return std::make_shared<fault_injecting_provider>(std::move(inner), options);
}

}  // namespace qrt
