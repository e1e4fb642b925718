#include <algorithm>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cmath>
#include <qrt/retry.hpp>
#include <random>
#include <string>

#include "../core/deadline.hpp"

namespace qrt {

namespace asio = boost::asio;

namespace {
/// The longest delay a policy computes: a hundred years. A policy without a practical cap
/// (max_delay = milliseconds::max()) would otherwise make delays that overflow on their way back
/// from double, or when added to a clock reading in nanoseconds.
constexpr double longest_delay_ms =
    static_cast<double>(std::chrono::duration_cast<milliseconds>(std::chrono::years(100)).count());
}  // namespace

retry_policy retry_policy::exponential_backoff(milliseconds initial, milliseconds max,
                                               double multiplier) {
  return {.kind = backoff::exponential,
          .initial_delay = initial,
          .max_delay = max,
          .multiplier = multiplier};
}

retry_policy retry_policy::linear(milliseconds initial, milliseconds increment, milliseconds max) {
  return {
      .kind = backoff::linear, .initial_delay = initial, .max_delay = max, .increment = increment};
}

retry_policy retry_policy::fixed_interval(milliseconds interval) {
  return {.kind = backoff::fixed, .initial_delay = interval, .max_delay = interval};
}

retry_policy retry_policy::none() {
  return {.max_attempts = 1};
}

retry_policy retry_policy::client_default() {
  auto p = exponential_backoff(milliseconds{100}, milliseconds{10'000}, 2.0);
  p.max_attempts = 4;
  return p;
}

milliseconds retry_policy::base_delay(std::uint32_t retry) const noexcept {
  const std::uint32_t n = std::max<std::uint32_t>(retry, 1);
  double ms = 0;
  switch (kind) {
    case backoff::exponential:
      ms = static_cast<double>(initial_delay.count()) * std::pow(multiplier, n - 1);
      break;
    case backoff::linear:
      ms = static_cast<double>(initial_delay.count()) +
           static_cast<double>(increment.count()) * static_cast<double>(n - 1);
      break;
    case backoff::fixed:
      ms = static_cast<double>(initial_delay.count());
      break;
  }
  const double cap = std::min(static_cast<double>(max_delay.count()), longest_delay_ms);
  if (!(ms < cap)) ms = cap;  // also catches inf/nan from a huge exponent
  return milliseconds{static_cast<milliseconds::rep>(std::max(ms, 0.0))};
}

milliseconds retry_policy::delay_after(const error& e, std::uint32_t failures) const noexcept {
  if (e.retry_after) return std::clamp(*e.retry_after, milliseconds::zero(), max_retry_after);
  return base_delay(failures);
}

std::optional<milliseconds> retry_policy::next_delay(const error& e, std::uint32_t attempts_made,
                                                     double unit_random) const noexcept {
  if (e.kind == error_kind::permanent) return std::nullopt;
  if (attempts_made >= max_attempts) return std::nullopt;
  if (e.kind == error_kind::throttled && e.retry_after) {
    return std::clamp(*e.retry_after, milliseconds::zero(), max_retry_after);
  }
  const auto base = base_delay(attempts_made);
  const double j = std::clamp(jitter, 0.0, 1.0);
  const double u = std::clamp(unit_random, 0.0, 1.0);
  const double ms = static_cast<double>(base.count()) * (1.0 - j * u);
  return milliseconds{static_cast<milliseconds::rep>(ms)};
}

namespace detail {
bool worth_retrying(const error& e) noexcept {
  return e.code != errc::queue_full && e.code != errc::session_locked;
}

error after_attempts(error e, std::uint32_t attempts) {
  if (attempts > 1) e.message += " (the last of " + std::to_string(attempts) + " attempts)";
  return e;
}

double unit_random() noexcept {
  thread_local std::minstd_rand generator{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(generator);
}
}  // namespace detail

awaitable<void> sleep_for(milliseconds delay) {
  // Saturated: a delay too long to add to the clock waits until its last time point.
  asio::steady_timer timer(co_await asio::this_coro::executor,
                           detail::deadline_after(std::chrono::steady_clock::now(), delay));
  boost::system::error_code ignored;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
}

}  // namespace qrt
