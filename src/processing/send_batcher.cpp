#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <map>
#include <mutex>
#include <qrt/send_batcher.hpp>

#include "event.hpp"

namespace qrt {

namespace asio = boost::asio;

namespace {

struct entry {
  entry(const asio::any_io_executor& ex, message m)
      : msg(std::move(m)), bytes(msg.wire_size()), done(ex) {}
  message msg;
  std::size_t bytes;
  std::optional<result<message_id>> outcome;
  detail::event done;
};

struct pending_queue {
  std::vector<std::shared_ptr<entry>> entries;
  std::size_t bytes = 0;
  std::uint64_t generation = 0;  ///< bumped at every flush, so a stale delay timer does nothing
};

enum class flush_reason { count, bytes, delay, explicit_call };

}  // namespace

// Everything but `stats` lives on `strand`.
struct send_batcher::impl : std::enable_shared_from_this<impl> {
  impl(queue_client c, asio::any_io_executor ex, send_batcher_options o)
      : client(std::move(c)), strand(asio::make_strand(ex)), options(std::move(o)), idle(strand) {
    options.max_batch_messages = std::max<std::size_t>(1, options.max_batch_messages);
    options.max_batch_bytes = std::max<std::size_t>(1, options.max_batch_bytes);
  }

  queue_client client;
  asio::strand<asio::any_io_executor> strand;
  send_batcher_options options;
  std::map<queue_name, pending_queue> pending;
  std::size_t flushes_in_flight = 0;
  detail::event idle;  // notified when flushes_in_flight drops to 0

  mutable std::mutex stats_mutex;
  send_batcher_stats stats;

  void count(std::uint64_t send_batcher_stats::*field, std::uint64_t n = 1) {
    std::lock_guard lock(stats_mutex);
    stats.*field += n;
  }

  void start_flush(const queue_name& queue, flush_reason why) {
    auto& pq = pending[queue];
    if (pq.entries.empty()) return;
    auto entries = std::move(pq.entries);
    pq.entries.clear();
    pq.bytes = 0;
    ++pq.generation;
    switch (why) {
      case flush_reason::count:
        count(&send_batcher_stats::flushes_by_count);
        break;
      case flush_reason::bytes:
        count(&send_batcher_stats::flushes_by_bytes);
        break;
      case flush_reason::delay:
        count(&send_batcher_stats::flushes_by_delay);
        break;
      case flush_reason::explicit_call:
        count(&send_batcher_stats::flushes_explicit);
        break;
    }
    ++flushes_in_flight;
    asio::co_spawn(strand, send_entries(queue, std::move(entries)), asio::detached);
  }

  awaitable<void> flush_after_delay(queue_name queue, std::uint64_t generation) {
    auto self = shared_from_this();
    asio::steady_timer timer(strand, options.max_delay);
    boost::system::error_code ignored;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    auto it = pending.find(queue);
    if (it != pending.end() && it->second.generation == generation) {
      start_flush(queue, flush_reason::delay);
    }
  }

  awaitable<void> pause(milliseconds d) {
    if (options.sleeper) {
      co_await options.sleeper(d);
    } else {
      co_await sleep_for(d);
    }
  }

  // A provider that throws instead of returning an error (a bug, memory running out) must not
  // end send_entries: spawned detached, its exception would vanish, and every send of the batch
  // (and flush()) would wait for ever. The batch fails with what was thrown instead.
  awaitable<result<std::vector<send_outcome>>> send_batch_caught(const queue_name& queue,
                                                                 std::vector<message> batch) {
    try {
      co_return co_await client.send_batch(queue, std::move(batch));
    } catch (const std::exception& e) {
      co_return fail(errc::provider_error, std::string("send_batch threw: ") + e.what());
    } catch (...) {
      co_return fail(errc::provider_error,
                     "send_batch threw an exception not derived from std::exception");
    }
  }

  // Sends one batch; entries that failed transiently are resent, and only they.
  awaitable<void> send_entries(queue_name queue, std::vector<std::shared_ptr<entry>> entries) {
    auto self = shared_from_this();
    std::vector<std::size_t> todo(entries.size());
    for (std::size_t i = 0; i < todo.size(); ++i) todo[i] = i;
    for (std::uint32_t attempt = 1; !todo.empty(); ++attempt) {
      std::vector<message> batch;
      batch.reserve(todo.size());
      for (auto i : todo) batch.push_back(entries[i]->msg);
      count(&send_batcher_stats::send_calls);
      auto sent = co_await send_batch_caught(queue, std::move(batch));

      std::vector<std::size_t> again;
      std::optional<milliseconds> delay;
      auto settle_entry = [&](std::size_t i, result<message_id> outcome) {
        if (!outcome && detail::worth_retrying(outcome.error())) {
          auto d = options.retry.next_delay(outcome.error(), attempt, detail::unit_random());
          if (d) {
            again.push_back(i);
            delay = delay ? std::max(*delay, *d) : *d;
            return;
          }
        }
        entries[i]->outcome = std::move(outcome);
        entries[i]->done.notify();
      };
      for (std::size_t k = 0; k < todo.size(); ++k) {
        if (!sent) {
          settle_entry(todo[k], sent.error());
        } else if (k < sent->size()) {
          settle_entry(todo[k], std::move((*sent)[k]));
        } else {
          settle_entry(todo[k], fail(errc::protocol_error, "too few send outcomes"));
        }
      }
      todo = std::move(again);
      if (!todo.empty()) {
        count(&send_batcher_stats::resent_entries, todo.size());
        co_await pause(*delay);
      }
    }
    if (--flushes_in_flight == 0) idle.notify();
  }

  awaitable<result<message_id>> enqueue(queue_name queue, message msg) {
    auto self = shared_from_this();
    auto e = std::make_shared<entry>(strand, std::move(msg));
    auto& pq = pending[queue];
    if (!pq.entries.empty() && pq.bytes + e->bytes > options.max_batch_bytes) {
      start_flush(queue, flush_reason::bytes);
    }
    pq.entries.push_back(e);
    pq.bytes += e->bytes;
    if (pq.entries.size() >= options.max_batch_messages) {
      start_flush(queue, flush_reason::count);
    } else if (pq.bytes >= options.max_batch_bytes) {
      start_flush(queue, flush_reason::bytes);
    } else if (pq.entries.size() == 1) {
      asio::co_spawn(strand, flush_after_delay(queue, pq.generation), asio::detached);
    }
    // A caller that gives up (cancels the send) gets the message back while it still waits
    // for its batch; once in a batch its outcome is waited for, as nothing can recall it.
    // Looked at before each wait too: a cancellation that came before the wait began cancelled
    // nothing, but is in the state.
    co_await asio::this_coro::throw_if_cancelled(false);
    while (!e->outcome) {
      const auto state = co_await asio::this_coro::cancellation_state;
      if (state.cancelled() != asio::cancellation_type::none && withdraw(queue, *e)) {
        co_return fail(errc::timeout,
                       "send given up by its caller before its batch went out: not sent");
      }
      co_await e->done.wait();
    }
    co_return std::move(*e->outcome);
  }

  // Takes a waiting entry out of its queue's next batch; false once it is in a batch.
  bool withdraw(const queue_name& queue, const entry& e) {
    auto it = pending.find(queue);
    if (it == pending.end()) return false;
    auto& pq = it->second;
    auto found = std::find_if(pq.entries.begin(), pq.entries.end(),
                              [&](const auto& waiting) { return waiting.get() == &e; });
    if (found == pq.entries.end()) return false;
    pq.entries.erase(found);
    pq.bytes -= e.bytes;
    // Its delay timer would flush nothing; the next send starts its own.
    if (pq.entries.empty()) ++pq.generation;
    return true;
  }

  awaitable<void> flush_all() {
    auto self = shared_from_this();
    for (auto& [queue, pq] : pending) {
      if (!pq.entries.empty()) start_flush(queue, flush_reason::explicit_call);
    }
    while (flushes_in_flight > 0) co_await idle.wait();
  }
};

send_batcher::send_batcher(queue_client client, asio::any_io_executor executor,
                           send_batcher_options options)
    : impl_(std::make_shared<impl>(std::move(client), std::move(executor), std::move(options))) {}

send_batcher::~send_batcher() = default;

awaitable<result<message_id>> send_batcher::send(queue_name queue, message msg) {
  co_return co_await asio::co_spawn(impl_->strand, impl_->enqueue(std::move(queue), std::move(msg)),
                                    asio::use_awaitable);
}

awaitable<void> send_batcher::flush() {
  co_await asio::co_spawn(impl_->strand, impl_->flush_all(), asio::use_awaitable);
}

send_batcher_stats send_batcher::stats() const {
  std::lock_guard lock(impl_->stats_mutex);
  return impl_->stats;
}

}  // namespace qrt
