// Adaptive batch sizing: pick the next receive size from
// how long recent messages took, aiming at a target batch duration.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <qrt/client.hpp>
#include <qrt/processor.hpp>

namespace qrt {

/// How adaptive_batch_sizer picks batch sizes.
struct adaptive_batch_options {
  std::size_t min_batch_size =
      1;  ///< never receive fewer (and the size until something was recorded)
  std::size_t max_batch_size = 32;            ///< never receive more
  milliseconds target_batch_duration{1'000};  ///< how long one batch should take
  std::size_t window = 10;                    ///< recent batches averaged
  std::size_t max_history = 50;               ///< batches kept
  /// The clock batches are timed with; tests pass a controllable one.
  std::function<std::chrono::steady_clock::time_point()> now;
};

/// What one batch took, recorded by the batch loop.
struct batch_metrics {
  std::size_t message_count = 0;                              ///< messages in the batch
  std::chrono::steady_clock::duration total_duration{};       ///< receive + processing
  std::chrono::steady_clock::duration processing_duration{};  ///< handlers + settlement
  std::size_t success_count = 0;                              ///< messages whose handler succeeded
};

/// Not thread-safe: one batch loop owns it.
class adaptive_batch_sizer {
 public:
  /// A sizer with `options` and no history.
  explicit adaptive_batch_sizer(adaptive_batch_options options = {});

  /// min_batch_size until something was recorded; then target / mean per-message time over the
  /// last `window` batches, clamped to [min_batch_size, max_batch_size].
  std::size_t next_batch_size() const;
  /// Empty batches are ignored (they say nothing about processing time).
  void record(const batch_metrics& batch);

  /// The current time on options().now, or the steady clock.
  std::chrono::steady_clock::time_point now() const;
  /// The recorded batches, oldest first (at most max_history).
  const std::deque<batch_metrics>& history() const noexcept { return history_; }
  /// The options it was made with.
  const adaptive_batch_options& options() const noexcept { return options_; }

 private:
  adaptive_batch_options options_;
  std::deque<batch_metrics> history_;
};

/// Receives a batch of the size the sizer picks, runs the handler on each message in order,
/// settles the batch in one call (complete on success, abandon on failure) and records it.
/// For long handlers, lock renewal and concurrency use qrt::processor instead.
class adaptive_batch_processor {
 public:
  /// Handles `queue` with `handler`; each receive waits at most `receive_wait`. Throws
  /// qrt::exception (invalid_argument) if `handler` is empty.
  adaptive_batch_processor(queue_client client, queue_name queue, message_handler handler,
                           adaptive_batch_options options = {},
                           milliseconds receive_wait = milliseconds{1'000});

  /// One round; returns how many messages were handled (0 when the receive timed out).
  awaitable<result<std::size_t>> process_batch();

  /// The sizer, with the batches recorded so far.
  const adaptive_batch_sizer& sizer() const noexcept { return sizer_; }

 private:
  queue_client client_;
  queue_name queue_;
  message_handler handler_;
  adaptive_batch_sizer sizer_;
  milliseconds receive_wait_;
};

}  // namespace qrt
