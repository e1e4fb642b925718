// A provider decorator that counts the waiting calls (receive, accept_session) made through it
// that have not returned yet, for tests of what a processor leaves inside the provider, and
// records the wait each was given and the messages the receives returned.
#pragma once

#include <atomic>
#include <mutex>
#include <qrt/client.hpp>
#include <qrt/memory.hpp>
#include <qrt/runtime.hpp>

#include "forwarding_provider.hpp"
#include "wait.hpp"

namespace qrt::test {

class calls_in_flight final : public forwarding_provider {
 public:
  using forwarding_provider::forwarding_provider;

  counter started;   ///< calls made so far
  counter received;  ///< messages the receives returned
  long in_flight() const { return in_flight_.load(); }
  /// The wait each call was given, in the order they were made.
  std::vector<qrt::milliseconds> waits() const {
    std::lock_guard lock(mutex_);
    return waits_;
  }

  qrt::awaitable<qrt::result<std::vector<qrt::received_message>>> receive(
      const qrt::queue_name& q, std::size_t max, qrt::milliseconds wait) override {
    const qrt::queue_name queue = q;  // the caller's reference may not outlive the first wait
    entered(wait);
    auto got = co_await inner_->receive(queue, max, wait);
    if (got) received.add(static_cast<long>(got->size()));
    --in_flight_;
    co_return got;
  }
  qrt::awaitable<qrt::result<std::shared_ptr<qrt::session_receiver>>> accept_session(
      const qrt::queue_name& q, std::optional<qrt::session_id> id,
      qrt::milliseconds wait) override {
    const qrt::queue_name queue = q;
    entered(wait);
    auto got = co_await inner_->accept_session(queue, std::move(id), wait);
    --in_flight_;
    co_return got;
  }

 private:
  void entered(qrt::milliseconds wait) {
    {
      std::lock_guard lock(mutex_);
      waits_.push_back(wait);
    }
    ++in_flight_;
    started.add();
  }
  std::atomic<long> in_flight_{0};
  mutable std::mutex mutex_;
  std::vector<qrt::milliseconds> waits_;
};

/// The embedded provider on a runtime of its own, behind calls_in_flight: a provider that
/// lives on another executor than the code calling it, as a synchronous client's or a network
/// provider's connection does.
struct counted_provider_elsewhere {
  qrt::runtime rt{{.worker_threads = 1}};
  std::shared_ptr<calls_in_flight> calls = std::make_shared<calls_in_flight>(
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value());
  qrt::queue_client client{calls};
};

}  // namespace qrt::test
