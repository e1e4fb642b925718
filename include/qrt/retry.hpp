// Retry policies: when to try a failed operation again, and how long to wait first.
// See docs/adr/0060-resilience-layering.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <qrt/error.hpp>
#include <qrt/provider.hpp>

namespace qrt {

/// The longest a service's retry_after is honoured: a longer one waits this long, a negative
/// one not at all (a hostile or broken server cannot park a client for days).
inline constexpr milliseconds max_retry_after{300'000};

/// How long to wait between attempts. Transient and throttled errors are retried; permanent
/// errors never are. A throttled error's retry_after replaces the computed delay (the service
/// knows better), and is the only delay allowed to exceed max_delay (up to max_retry_after).
struct retry_policy {
  /// How the delay grows from one retry to the next.
  enum class backoff {
    exponential,  ///< initial * multiplier^(n-1)
    linear,       ///< initial + increment * (n-1)
    fixed,        ///< initial every time
  };

  backoff kind = backoff::exponential;  ///< how delays grow
  milliseconds initial_delay{100};      ///< the delay before the first retry
  /// Cap on one computed delay. Computed delays never exceed a hundred years, whatever this
  /// says (milliseconds::max() reads as "no cap").
  milliseconds max_delay{30'000};
  double multiplier = 2.0;    ///< exponential only
  milliseconds increment{0};  ///< linear only
  /// Total attempts including the first; 1 disables retrying.
  std::uint32_t max_attempts = 4;
  /// Share of each delay that is randomised: the delay is drawn from [d * (1 - jitter), d].
  /// 0 gives exact delays; spreading retries avoids every client hammering a service in step.
  double jitter = 0.2;

  /// Delays initial, initial * multiplier, initial * multiplier^2, ..., each at most `max`.
  static retry_policy exponential_backoff(milliseconds initial, milliseconds max,
                                          double multiplier);
  /// Delays initial, initial + increment, initial + 2 * increment, ..., each at most `max`.
  static retry_policy linear(milliseconds initial, milliseconds increment, milliseconds max);
  /// The same delay before every retry.
  static retry_policy fixed_interval(milliseconds interval);
  /// One attempt only.
  static retry_policy none();
  /// What queue_client uses unless told otherwise: exponential 100 ms .. 10 s, x2, 4 attempts.
  static retry_policy client_default();

  /// The delay before retry number `retry` (1 = the first retry), before jitter and
  /// retry_after. Pure.
  milliseconds base_delay(std::uint32_t retry) const noexcept;

  /// How long a loop that never gives up (a processor's receive or accept loop) waits after its
  /// `failures`-th failure in a row ended in `e`: the service's retry_after, clamped to
  /// [0, max_retry_after], else base_delay(failures). Pure.
  milliseconds delay_after(const error& e, std::uint32_t failures) const noexcept;

  /// Whether to retry after `attempts_made` attempts ended in `e`, and after how long.
  /// `unit_random` is a number in [0, 1) used for jitter (tests pass a fixed one).
  std::optional<milliseconds> next_delay(const error& e, std::uint32_t attempts_made,
                                         double unit_random) const noexcept;
};

namespace detail {
/// A number in [0, 1) from a per-thread generator (a function, so coroutines never cache a
/// thread_local's address across a suspension that may resume on another thread).
double unit_random() noexcept;
/// Whether a retry layer retries `e` at all, whatever its kind: not queue_full (the send already
/// waited out its deadline for room, and another attempt would only wait again) nor
/// session_locked (an answer, not a failure). Shared by the client's retrying provider and
/// qrt::send_batcher.
bool worth_retrying(const error& e) noexcept;
/// `e`, the failure of the last of `attempts` attempts, saying so when there was more than one:
/// each attempt's own words ("no answer within 60 s") would otherwise read as the whole wait.
error after_attempts(error e, std::uint32_t attempts);
}  // namespace detail

/// Waits between attempts. The default sleeps on an Asio timer; tests record the delays.
using retry_sleeper = std::function<awaitable<void>(milliseconds)>;

/// Sleeps on a steady_timer of the calling coroutine's executor.
awaitable<void> sleep_for(milliseconds delay);

/// Runs `attempt` (a callable returning awaitable<result<T>>) until it succeeds, fails
/// permanently, or the policy gives up; returns the last result. `retryable` can narrow which
/// errors are retried (it is asked only about errors the policy would retry). `give_up_at` is
/// the caller's deadline for the whole call: no pause starts that would end at or past it (the
/// attempt after it would have no time left).
template <class Attempt>
auto retry(const retry_policy& policy, Attempt attempt, retry_sleeper sleeper = {},
           std::function<bool(const error&)> retryable = {},
           std::chrono::steady_clock::time_point give_up_at =
               std::chrono::steady_clock::time_point::max()) -> decltype(attempt()) {
  std::uint32_t attempts = 0;
  for (;;) {
    auto r = co_await attempt();
    ++attempts;
    if (r) co_return r;
    if (retryable && !retryable(r.error())) co_return detail::after_attempts(r.error(), attempts);
    auto delay = policy.next_delay(r.error(), attempts, detail::unit_random());
    if (!delay) co_return detail::after_attempts(r.error(), attempts);
    if (give_up_at != std::chrono::steady_clock::time_point::max() &&
        *delay >= give_up_at - std::chrono::steady_clock::now()) {
      co_return detail::after_attempts(r.error(), attempts);
    }
    if (sleeper) {
      co_await sleeper(*delay);
    } else {
      co_await sleep_for(*delay);
    }
  }
}

/// Told of every retry a retrying provider is about to make: the operation, named as the
/// metrics name it ("send", "receive", "complete", "abandon", "dead_letter", "renew", "peek",
/// "stats", "create_queue", "delete_queue", "accept_session"), its queue (null where the call
/// names none, as settlements), and the failure being retried. qrt::metrics::count_retries
/// feeds queue_runtime_retries_total with it.
using retry_observer =
    std::function<void(std::string_view operation, const queue_name* queue, const error& cause)>;

/// Wraps `inner` so its transient and throttled failures are retried by `policy`.
/// Backpressure (queue_full: the send already waited its deadline) and session_locked (an
/// answer, not a failure) are returned at once. Settlement retries only the entries that failed.
provider_ptr make_retrying_provider(provider_ptr inner, retry_policy policy,
                                    retry_sleeper sleeper = {}, retry_observer observer = {});

}  // namespace qrt
