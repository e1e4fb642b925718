// depth_watch: reads queue depths on a schedule so the instrumented provider's gauge stays
// current (include/qrt/instrumented_provider.hpp).
#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <optional>
#include <qrt/instrumented_provider.hpp>

namespace qrt::metrics {

namespace asio = boost::asio;

struct depth_watch::impl {
  impl(queue_client c, std::vector<queue_name> q, depth_watch_options o)
      : client(std::move(c)), queues(std::move(q)), options(std::move(o)) {}

  queue_client client;
  std::vector<queue_name> queues;
  depth_watch_options options;

  // Set by start(); everything below it is touched only on `strand`, but the counters.
  std::optional<asio::strand<asio::any_io_executor>> strand;
  std::optional<asio::steady_timer> pause;     // between rounds; stopping cancels it
  std::optional<asio::steady_timer> finished;  // never expires; the loop cancels it when it ends
  bool stopping = false;
  bool loop_ended = false;
  // Set when stop() begins, on its caller's thread: from then on only the shutdown touches the
  // strand and the timers, and it destroys them before it returns.
  std::atomic<bool> stop_called{false};

  std::atomic<std::uint64_t> readings{0};
  std::atomic<std::uint64_t> failures{0};

  void report(const queue_name& queue, const error& e) noexcept {
    if (!options.on_error) return;
    try {
      options.on_error(queue, e);
    } catch (...) {  // NOLINT(bugprone-empty-catch): the watch must go on, and has nobody to tell
    }
  }

  // The wait after `failed_rounds` rounds in a row with a failed reading.
  milliseconds wait_after(std::uint32_t failed_rounds) const {
    const milliseconds ceiling = std::max(options.interval, options.max_backoff);
    milliseconds wait = options.interval;
    for (std::uint32_t i = 0; i < failed_rounds && wait < ceiling; ++i) {
      wait = wait > ceiling / 2 ? ceiling : wait * 2;
    }
    return std::min(wait, ceiling);
  }

  awaitable<result<queue_stats>> read(const queue_name& queue) {
    try {
      co_return co_await client.stats(queue);
    } catch (const std::exception& e) {
      co_return fail(errc::provider_error, std::string("stats() threw: ") + e.what());
    }
  }

  awaitable<void> loop() {
    std::uint32_t failed_rounds = 0;
    while (!stopping) {
      bool round_failed = false;
      for (const auto& queue : queues) {
        if (stopping) break;
        // The instrumented provider under the client sets the gauge from this reading, or
        // counts its error; a failure leaves the last value in place.
        auto r = co_await read(queue);
        if (r) {
          readings.fetch_add(1, std::memory_order_relaxed);
        } else {
          failures.fetch_add(1, std::memory_order_relaxed);
          round_failed = true;
          report(queue, r.error());
        }
      }
      if (stopping) break;
      failed_rounds = round_failed ? failed_rounds + 1 : 0;
      pause->expires_after(wait_after(failed_rounds));
      boost::system::error_code ignored;
      co_await pause->async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
    loop_ended = true;
    finished->cancel();
  }

  awaitable<void> shutdown() {
    stopping = true;
    pause->cancel();
    while (!loop_ended) {
      boost::system::error_code ignored;
      co_await finished->async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
    // Nothing of the watch runs on the executor any more, and stop()'s caller may destroy it
    // once this returns: its Asio objects belong to that executor's services and must go
    // first, not when the watch itself is destroyed, perhaps after them. (This coroutine runs
    // on a copy of the strand.)
    pause.reset();
    finished.reset();
    strand.reset();
  }
};

depth_watch::depth_watch(queue_client client, std::vector<queue_name> queues,
                         depth_watch_options options) {
  if (queues.empty()) {
    throw qrt::exception(fail(errc::invalid_argument, "depth_watch needs at least one queue"));
  }
  if (options.interval < milliseconds{1}) {
    // A shorter interval would call the provider in a loop that never waits.
    throw qrt::exception(
        fail(errc::invalid_argument, "depth_watch interval must be at least 1 ms, got " +
                                         std::to_string(options.interval.count()) + " ms"));
  }
  impl_ = std::make_shared<impl>(std::move(client), std::move(queues), std::move(options));
}

depth_watch::~depth_watch() {
  // After stop() the strand is gone, and perhaps the executor too.
  if (!impl_->stop_called.load() && impl_->strand) {
    asio::post(*impl_->strand, [p = impl_] {
      p->stopping = true;
      p->pause->cancel();
    });
  }
}

void depth_watch::start(asio::any_io_executor executor) {
  if (impl_->strand) return;
  impl_->strand.emplace(asio::make_strand(executor));
  impl_->pause.emplace(*impl_->strand);
  impl_->finished.emplace(*impl_->strand, std::chrono::steady_clock::time_point::max());
  // The loop holds the state, so a watch destroyed without stop() leaves nothing dangling.
  asio::co_spawn(
      *impl_->strand, [p = impl_]() { return p->loop(); }, asio::detached);
}

awaitable<void> depth_watch::stop() {
  // Only the first call shuts down: the shutdown destroys the strand a later call would read.
  if (!impl_->strand || impl_->stop_called.exchange(true)) co_return;
  // A named copy rather than a lambda capture in the co_await expression: GCC 12 destroys
  // such temporaries twice.
  const std::shared_ptr<impl> p = impl_;
  const auto on = *p->strand;
  co_await asio::co_spawn(on, p->shutdown(), asio::use_awaitable);
}

depth_watch_stats depth_watch::stats() const {
  return depth_watch_stats{impl_->readings.load(std::memory_order_relaxed),
                           impl_->failures.load(std::memory_order_relaxed)};
}

}  // namespace qrt::metrics
