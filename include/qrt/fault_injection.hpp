// A provider decorator that makes any provider slow or unreliable on purpose: for tests of the
// layers above (retry, breaker, processors) and for benchmarks that model a remote service.
#pragma once

#include <cstdint>
#include <memory>
#include <qrt/provider.hpp>

namespace qrt {

/// qrt's internals (not part of the API).
namespace detail {
/// The session wrapper of fault_injecting_provider (src/resilience).
class faulty_session;
}  // namespace detail

/// Which calls a fault applies to (bit mask).
enum class fault_ops : std::uint32_t {
  none = 0,
  send = 1u << 0,        ///< send and publish
  receive = 1u << 1,     ///< provider and session receives
  settle = 1u << 2,      ///< provider and session settlements
  renew_lock = 1u << 3,  ///< message and session lock renewal
  accept_session = 1u << 4,
  /// create_queue, delete_queue, stats, peek, and the topic and subscription calls other than
  /// publish
  management = 1u << 5,
  all = (1u << 6) - 1,
};
/// Both sets of operations.
constexpr fault_ops operator|(fault_ops a, fault_ops b) noexcept {
  return static_cast<fault_ops>(static_cast<std::uint32_t>(a) | static_cast<std::uint32_t>(b));
}
/// Whether `set` contains `op`.
constexpr bool has(fault_ops set, fault_ops op) noexcept {
  return (static_cast<std::uint32_t>(set) & static_cast<std::uint32_t>(op)) != 0;
}

/// What to inject. Rates are probabilities per call in [0, 1], drawn once per call: together
/// they are at most 1. No duration is negative. Errors are injected before the inner provider
/// is called, so a failed call had no effect (as the provider contract says of a call that
/// fails as a whole).
struct fault_options {
  milliseconds latency{0};                 ///< added before every call
  fault_ops latency_ops = fault_ops::all;  ///< which calls the latency is added to
  double transient_error_rate = 0;         ///< errc::connection_failed (transient)
  double throttle_rate = 0;  ///< errc::throttled with retry_after = throttle_retry_after
  milliseconds throttle_retry_after{100};  ///< the retry_after of injected throttles
  fault_ops error_ops = fault_ops::all;    ///< which calls the error rates apply to
  /// Scheduled disconnects: every `disconnect_every` (counted from when the decorator was made),
  /// all calls fail with errc::connection_failed for the first `disconnect_duration`.
  milliseconds disconnect_every{0};
  milliseconds disconnect_duration{0};  ///< how long each scheduled disconnect lasts
  std::uint64_t seed = 1;               ///< the error draws are reproducible for a given seed
};

/// Counters of what was injected, for assertions.
struct fault_stats {
  std::uint64_t calls = 0;               ///< calls seen
  std::uint64_t transient_errors = 0;    ///< calls failed by transient_error_rate
  std::uint64_t throttles = 0;           ///< calls failed by throttle_rate
  std::uint64_t disconnected_calls = 0;  ///< calls failed during a disconnect
  std::uint64_t scheduled_failures = 0;  ///< calls failed by fail_next()
};

/// A provider decorator that injects latency, errors and disconnects into another provider's calls,
/// for tests and resilience drills (docs/adr/0060-resilience-layering.md).
class fault_injecting_provider final
    : public provider,
      public std::enable_shared_from_this<fault_injecting_provider> {
 public:
  /// Decorates `inner` with `options`. Throws qrt::exception (invalid_argument) naming the field
  /// when `options` break the rules above (a rate that is NaN or outside [0, 1], rates that sum
  /// past 1, a negative duration).
  fault_injecting_provider(provider_ptr inner, fault_options options);
  /// Out of line: the state it owns is defined in the source file.
  ~fault_injecting_provider() override;

  /// Replace the options (rates, latency) from now on. Throws as the constructor does, keeping
  /// the options in force.
  void set_options(const fault_options& options);
  /// The next `count` calls matching `ops` fail with `failure` (a schedule for exact tests).
  void fail_next(fault_ops ops, std::uint32_t count, error failure);
  /// Every call fails with errc::connection_failed until `duration` has passed (a disconnect).
  void disconnect_for(milliseconds duration);
  /// Ends a disconnect early.
  void reconnect();
  /// What was injected so far.
  fault_stats stats() const;
  /// The decorated provider.
  const provider_ptr& inner() const noexcept { return inner_; }

  std::string_view name() const noexcept override;
  const capabilities& caps() const noexcept override;
  connection_stats connections() const noexcept override { return inner_->connections(); }
  std::optional<memory_stats> memory() const override { return inner_->memory(); }
  awaitable<result<void>> create_queue(const queue_name& queue,
                                       const queue_options& options) override;
  awaitable<result<void>> delete_queue(const queue_name& queue) override;
  awaitable<result<queue_stats>> stats(const queue_name& queue) override;
  awaitable<result<std::vector<send_outcome>>> send(const queue_name& queue,
                                                    std::vector<message> messages,
                                                    milliseconds timeout) override;
  awaitable<result<std::vector<received_message>>> receive(const queue_name& queue,
                                                           std::size_t max_messages,
                                                           milliseconds wait) override;
  awaitable<result<std::vector<received_message>>> peek(const queue_name& queue,
                                                        std::size_t max_messages,
                                                        std::int64_t from_sequence) override;
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements) override;
  awaitable<result<time_point>> renew_lock(const receipt_handle& receipt) override;
  awaitable<result<std::shared_ptr<session_receiver>>> accept_session(
      const queue_name& queue, std::optional<session_id> session, milliseconds wait) override;
  awaitable<void> close() override;
  awaitable<result<void>> create_topic(const topic_name& topic) override;
  awaitable<result<void>> delete_topic(const topic_name& topic) override;
  awaitable<result<std::vector<send_outcome>>> publish(const topic_name& topic,
                                                       std::vector<message> messages,
                                                       milliseconds timeout) override;
  awaitable<result<void>> create_subscription(const queue_name& subscription,
                                              const subscription_options& options) override;
  awaitable<result<void>> delete_subscription(const queue_name& subscription) override;
  awaitable<result<std::vector<subscription_info>>> list_subscriptions(
      const topic_name& topic) override;

 private:
  friend class detail::faulty_session;
  /// Applies latency and decides whether this call fails (the session wrapper's calls too).
  awaitable<std::optional<error>> before_call(fault_ops op);

  struct state;  ///< options, counters, schedule and draws (src/resilience/fault_injection.cpp)
  provider_ptr inner_;
  std::unique_ptr<state> state_;
};

/// Wraps `inner`; the returned pointer keeps the controls (set_options, fail_next, ...). Throws
/// as the constructor does.
std::shared_ptr<fault_injecting_provider> make_fault_injecting_provider(provider_ptr inner,
                                                                        fault_options options = {});

}  // namespace qrt
