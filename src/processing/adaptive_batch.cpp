#include <algorithm>
#include <qrt/adaptive_batch.hpp>

#include "failure_policy.hpp"

namespace qrt {

adaptive_batch_sizer::adaptive_batch_sizer(adaptive_batch_options options)
    : options_(std::move(options)) {
  options_.min_batch_size = std::max<std::size_t>(1, options_.min_batch_size);
  options_.max_batch_size = std::max(options_.max_batch_size, options_.min_batch_size);
  options_.window = std::max<std::size_t>(1, options_.window);
  options_.max_history = std::max(options_.max_history, options_.window);
  // A negative target would make the size negative, and converting that to size_t is undefined
  // (in practice a huge value, clamped to the largest batch: the opposite of what was asked).
  options_.target_batch_duration = std::max(options_.target_batch_duration, milliseconds{0});
}

std::chrono::steady_clock::time_point adaptive_batch_sizer::now() const {
  return options_.now ? options_.now() : std::chrono::steady_clock::now();
}

std::size_t adaptive_batch_sizer::next_batch_size() const {
  if (history_.empty()) return options_.min_batch_size;
  const std::size_t n = std::min(options_.window, history_.size());
  double per_message_ms = 0;
  for (auto it = history_.rbegin(); it != history_.rbegin() + static_cast<std::ptrdiff_t>(n);
       ++it) {
    per_message_ms += std::chrono::duration<double, std::milli>(it->total_duration).count() /
                      static_cast<double>(it->message_count);
  }
  per_message_ms /= static_cast<double>(n);
  const double target_ms = static_cast<double>(options_.target_batch_duration.count());
  // A batch that took no measurable time at all: as large as allowed.
  if (per_message_ms <= 0) return options_.max_batch_size;
  const double size = target_ms / per_message_ms;
  if (size >= static_cast<double>(options_.max_batch_size)) return options_.max_batch_size;
  return std::clamp(static_cast<std::size_t>(size), options_.min_batch_size,
                    options_.max_batch_size);
}

void adaptive_batch_sizer::record(const batch_metrics& batch) {
  if (batch.message_count == 0) return;
  history_.push_back(batch);
  while (history_.size() > options_.max_history) history_.pop_front();
}

adaptive_batch_processor::adaptive_batch_processor(queue_client client, queue_name queue,
                                                   message_handler handler,
                                                   adaptive_batch_options options,
                                                   milliseconds receive_wait)
    : client_(std::move(client)),
      queue_(std::move(queue)),
      handler_(detail::require_handler(std::move(handler), "adaptive_batch_processor")),
      sizer_(std::move(options)),
      receive_wait_(receive_wait) {}

awaitable<result<std::size_t>> adaptive_batch_processor::process_batch() {
  const auto size = sizer_.next_batch_size();
  const auto start = sizer_.now();
  auto received = co_await client_.receive(queue_, size, receive_wait_);
  if (!received) co_return received.error();
  if (received->empty()) co_return std::size_t{0};

  const auto processing_start = sizer_.now();
  std::vector<settlement> settlements;
  settlements.reserve(received->size());
  std::size_t succeeded = 0;
  for (const auto& msg : *received) {
    result<void> outcome;
    try {
      outcome = co_await handler_(msg);
    } catch (...) {
      outcome = detail::handler_failure(std::current_exception());
    }
    if (outcome) {
      ++succeeded;
      settlements.push_back(settlement::complete(msg.receipt));
    } else {
      settlements.push_back(settlement::abandon(msg.receipt));
    }
  }
  auto settled = co_await client_.settle(std::move(settlements));
  const auto end = sizer_.now();
  sizer_.record({.message_count = received->size(),
                 .total_duration = end - start,
                 .processing_duration = end - processing_start,
                 .success_count = succeeded});
  for (auto& r : settled) {
    if (!r) co_return r.error();
  }
  co_return received->size();
}

}  // namespace qrt
