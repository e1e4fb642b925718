#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>
#include <mutex>
#include <qrt/session_processor.hpp>
#include <vector>

#include "core/deadline.hpp"
#include "event.hpp"
#include "failure_policy.hpp"

namespace qrt {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;

namespace {

// One held session. Fields other than the atomics belong to its worker's strand.
struct held_session {
  held_session(const asio::any_io_executor& ex, session r, std::shared_ptr<detail::event> stop)
      : receiver(std::move(r)), stop_wake(std::move(stop)), renewer_wake(ex), renewer_exited(ex) {}
  session receiver;
  std::shared_ptr<detail::event> stop_wake;  ///< its worker's: ends a pause when stop() begins
  milliseconds lock_duration{0};
  time_point locked_until{};
  bool renewal_done = false;
  bool renewer_running = false;
  bool lock_lost = false;
  /// What ended the session early (lock lost, receive or settlement failed): the worker backs
  /// off by it before taking a session again.
  std::optional<error> failure;
  /// Its worker leaves once the session is closed: the session limit was lowered below the
  /// sessions held, and this worker is one that goes.
  bool worker_retires = false;
  std::atomic<bool> busy{false};      ///< a handler is running on one of its messages
  std::atomic<bool> released{false};  ///< shutdown closed it; outcomes are ignored
  detail::event renewer_wake;
  detail::event renewer_exited;
};

// Each session held has a worker (a coroutine frame, its buffers): a limit of millions would
// take the memory of as many before the first session is asked for.
void check_session_limit(std::size_t sessions) {
  if (sessions <= session_processor_options::most_concurrent_sessions) return;
  throw qrt::exception(fail(
      errc::invalid_argument,
      "session_processor: max_concurrent_sessions is " + std::to_string(sessions) +
          ", more than the " + std::to_string(session_processor_options::most_concurrent_sessions) +
          " a session processor holds (one worker per session)"));
}

}  // namespace

struct session_processor::impl : std::enable_shared_from_this<impl> {
  impl(queue_client c, queue_name q, message_handler h, session_processor_options o)
      : client(std::move(c)), queue(std::move(q)), handler(std::move(h)), options(std::move(o)) {
    check_session_limit(options.max_concurrent_sessions);
    if (options.max_session_hold.count() < 0) {
      throw qrt::exception(
          fail(errc::invalid_argument, "session_processor: max_session_hold is " +
                                           std::to_string(options.max_session_hold.count()) +
                                           " ms; it must be 0 (no bound) or more"));
    }
    options.max_concurrent_sessions = std::max<std::size_t>(1, options.max_concurrent_sessions);
    max_sessions = options.max_concurrent_sessions;
    stats.max_concurrent_sessions = options.max_concurrent_sessions;
    options.max_messages_per_receive = std::max<std::size_t>(1, options.max_messages_per_receive);
    // A wait of zero would make the worker's accept (or a held session's receive) loop a busy
    // poll that, answered without suspending, never gives its thread to stop(): at least 1 ms.
    options.accept_wait = std::max(options.accept_wait, milliseconds{1});
    options.session_idle_timeout = std::max(options.session_idle_timeout, milliseconds{1});
  }

  queue_client client;
  queue_name queue;
  message_handler handler;
  session_processor_options options;
  // The executor-bound objects the impl owns (`control` and its events, the workers' wake-ups,
  // the held sessions' timers) last from start() until the first stop() has finished: it
  // destroys them or lets go of them then, while the executor is alive, so that a processor that
  // outlives its executor (stop(), then the io_context destroyed, then the processor) touches
  // nothing of it. The workers and handlers own what they still use after that.
  std::optional<asio::strand<asio::any_io_executor>> control;  // stop() runs here; calls_mutex
  std::optional<detail::event> drained;                        // on `control`
  std::optional<detail::event> stop_finished;  // on `control`: later stop() calls wait on it
  bool stop_begun = false;                     // on `control`
  std::atomic<bool> stopping{false};
  // stop() was called: set_max_concurrent_sessions() is ignored from then on (`stopping` is set
  // only once the shutdown runs on `control`).
  std::atomic<bool> stop_called{false};
  std::atomic<std::size_t> workers_running{0};
  // One worker holds at most one session, so the session limit is the number of workers: a
  // raised limit starts more of them, a lowered one lets the surplus leave, each once its
  // session's batch is handled and settled (none is interrupted). workers_mutex orders those
  // decisions against each other and against set_max_concurrent_sessions().
  std::mutex workers_mutex;
  std::atomic<std::size_t> max_sessions{1};
  // Where new workers and their handlers run: from start() until the first stop() seals (then
  // nothing is started any more). Under workers_mutex.
  std::optional<asio::any_io_executor> workers_executor;
  bool started = false;
  std::atomic<bool> sealed{false};  // the first stop() has let go of the executor-bound objects

  // Calls the workers have made to the provider that have not returned yet; once stop() has
  // seen none left it seals them off (see shutdown()).
  std::mutex calls_mutex;
  std::size_t calls_in_provider = 0;
  bool calls_sealed = false;
  // The first stop()'s report, for the later ones: outside any timer, which is gone by then.
  std::optional<shutdown_report> final_report;  // under calls_mutex

  // Every call a worker makes to the provider is bracketed by these two. False once stop() has
  // returned: the call is not made (its session was closed by then, or the worker is ending).
  // Plain calls rather than a guard object: a frame destroyed with its io_context must not
  // notify anything.
  bool enter_provider() {
    std::lock_guard lock(calls_mutex);
    if (calls_sealed) return false;
    ++calls_in_provider;
    return true;
  }
  void leave_provider() {
    std::lock_guard lock(calls_mutex);
    if (--calls_in_provider == 0) post_drained();
  }
  // Tells stop() (on `control`) to look again. Under calls_mutex: once sealed, `control` is gone
  // and nothing waits any more. A notification already posted then finds `drained` gone too.
  void post_drained() {
    if (calls_sealed) return;
    asio::post(*control, [self = shared_from_this()] {
      if (self->drained) self->drained->notify();
    });
  }

  // Under workers_mutex: starts workers until there are max_sessions of them, unless stopping or
  // not started (start() starts them) or sealed (`workers_executor` is gone).
  void start_missing_workers() {
    while (workers_executor && !stopping && workers_running < max_sessions) {
      ++workers_running;
      asio::co_spawn(asio::make_strand(*workers_executor), worker(*workers_executor),
                     asio::detached);
    }
  }

  void set_session_limit(std::size_t sessions) {
    std::lock_guard lock(workers_mutex);
    max_sessions = sessions;
    {
      std::lock_guard slock(stats_mutex);
      stats.max_concurrent_sessions = sessions;
    }
    start_missing_workers();
  }

  // True for as many workers as the limit was lowered by: each of them is counted out here, at
  // once, so no two of them decide to leave for the same surplus.
  bool worker_leaves_for_lower_limit() {
    // Every worker asks between batches: the common answer (no surplus) without the lock they
    // share. A limit lowered just after this read is seen at the next batch.
    if (workers_running.load() <= max_sessions.load()) return false;
    std::lock_guard lock(workers_mutex);
    if (workers_running <= max_sessions) return false;
    --workers_running;
    return true;
  }

  std::mutex held_mutex;
  std::map<std::uint64_t, std::shared_ptr<held_session>> held;
  std::uint64_t next_id = 1;

  mutable std::mutex stats_mutex;
  session_processor_stats stats;

  void count(std::uint64_t session_processor_stats::*field, std::uint64_t n = 1) {
    std::lock_guard lock(stats_mutex);
    stats.*field += n;
  }
  void report(const error& e) { detail::report_to(options.on_error, e); }

  // Registers a session for stop() to close; the ids start at 1.
  std::uint64_t hold(std::shared_ptr<held_session> s) {
    std::lock_guard lock(held_mutex);
    const auto id = next_id++;
    // Once sealed, stop() looks at `held` no more, and its timers must not outlive the worker.
    if (!sealed) held.emplace(id, std::move(s));
    std::lock_guard slock(stats_mutex);
    stats.max_sessions_held = std::max(stats.max_sessions_held, held.size());
    return id;
  }
  void unhold(std::uint64_t id) {
    std::lock_guard lock(held_mutex);
    held.erase(id);
  }

  // Each worker's wake-up for stop(), with the strand it runs on: a back-off or an
  // abandon_delay is waited out only until stop() begins (nothing is gained by waiting longer,
  // and stop() would wait for it until its deadline).
  std::mutex wakers_mutex;
  std::vector<std::pair<asio::any_io_executor, std::shared_ptr<detail::event>>> wakers;

  std::shared_ptr<detail::event> add_waker(const asio::any_io_executor& worker_strand) {
    auto wake = std::make_shared<detail::event>(worker_strand);
    std::lock_guard lock(wakers_mutex);
    if (!sealed) wakers.emplace_back(worker_strand, wake);  // else stop() woke all it will
    return wake;
  }
  // A worker that ends before stop() (the session limit was lowered) takes its wake-up away, or
  // a processor whose limit goes up and down would collect one per worker it ever ran.
  void remove_waker(const std::shared_ptr<detail::event>& wake) {
    std::lock_guard lock(wakers_mutex);
    std::erase_if(wakers, [&](const auto& entry) { return entry.second == wake; });
  }
  void wake_workers() {
    std::lock_guard lock(wakers_mutex);
    for (auto& [strand, wake] : wakers) asio::post(strand, [wake] { wake->notify(); });
  }

  // Waits `d` on the worker's strand, or until stop() begins. stop() sets `stopping` before it
  // posts the wake-up to this strand, so a pause that begins after it returns at once.
  awaitable<void> pause(detail::event& stop_wake, milliseconds d) {
    if (stopping) co_return;
    co_await stop_wake.wait_until(detail::deadline_after(steady::now(), d));
  }

  awaitable<void> keep_session_renewed(std::shared_ptr<held_session> s) {
    auto self = shared_from_this();
    const auto give_up_at =
        detail::deadline_after(steady::now(), options.max_auto_lock_renewal_duration);
    auto due = [&] {
      return steady::now() +
             std::chrono::duration_cast<steady::duration>(
                 detail::remaining(s->locked_until, clock::now()) - s->lock_duration / 2);
    };
    auto next = due();
    while (!s->renewal_done) {
      if (s->lock_lost || next >= give_up_at) {
        co_await s->renewer_wake.wait();
        continue;
      }
      if (steady::now() < next) {
        co_await s->renewer_wake.wait_until(next);
        continue;
      }
      if (!enter_provider()) break;
      auto renewed = co_await s->receiver.renew_lock();
      leave_provider();
      if (s->renewal_done) break;
      if (renewed) {
        s->locked_until = *renewed;
        count(&session_processor_stats::session_lock_renewals);
        detail::tell_session(options.on_session, queue, session_event_kind::lock_renewed);
        next = due();
      } else {
        report(renewed.error());
        if (renewed.error().kind == error_kind::permanent) {
          s->lock_lost = true;
          s->failure = renewed.error();
        } else {
          next = steady::now() + s->lock_duration / 10;
        }
      }
    }
    s->renewer_running = false;
    s->renewer_exited.notify();
  }

  awaitable<result<void>> call_handler(const asio::any_io_executor& pool,
                                       const received_message& msg) {
    try {
      co_return co_await asio::co_spawn(
          pool,
          [this, &msg, pool]() -> awaitable<result<void>> {
            co_await asio::post(pool, asio::use_awaitable);  // off the worker's strand
            co_return co_await handler(msg);
          },
          asio::use_awaitable);
    } catch (...) {
      co_return detail::handler_failure(std::current_exception());
    }
  }

  // Settlements decided but not yet sent. `handled[k]` describes `settlements[k]`; abandons
  // of messages no handler ran on follow the handled ones and have no entry.
  struct pending_settlements {
    struct handled_message {
      processing_outcome outcome;
      steady::duration handler_duration;
      result<void> handler_outcome;
      time_point enqueued_time;
    };
    std::vector<settlement> settlements;
    std::vector<handled_message> handled;

    void add(settlement what, processing_outcome outcome, steady::duration took,
             result<void> handler_outcome, const received_message& msg) {
      settlements.push_back(std::move(what));
      handled.push_back({outcome, took, std::move(handler_outcome), msg.enqueued_time});
    }
    // Abandons `batch[from..]`: the session hands them out again, first, in order.
    void abandon_unhandled(const std::vector<received_message>& batch, std::size_t from) {
      for (std::size_t i = from; i < batch.size(); ++i) {
        settlements.push_back(settlement::abandon(batch[i].receipt));
      }
    }
  };

  enum class batch_end { done, failed, lost, stopping };

  void processed(processing_outcome how, std::chrono::steady_clock::duration handler_duration,
                 const result<void>& handler_outcome, time_point enqueued_time) {
    detail::tell_processed(options.on_processed, queue, how, handler_duration, handler_outcome,
                           enqueued_time);
  }

  // Sends the pending settlements in one call and counts each handled message's outcome. False
  // when a handled message's settlement failed: it stays locked to us with an unknown outcome,
  // and releasing the session is the only way to keep the order (it comes back first to
  // whoever takes the session next).
  awaitable<bool> flush(held_session& s, pending_settlements& pending) {
    if (pending.settlements.empty()) co_return true;
    if (!enter_provider()) co_return false;  // stop() closed the session: the messages went back
    auto results = co_await s.receiver.settle(std::move(pending.settlements));
    leave_provider();
    bool all_settled = true;
    for (std::size_t k = 0; k < results.size(); ++k) {
      if (!results[k]) {
        report(results[k].error());
        if (!s.failure) s.failure = results[k].error();
      }
      if (k >= pending.handled.size()) continue;  // an abandon of an unhandled message
      auto& h = pending.handled[k];
      if (!results[k]) {
        all_settled = false;
        processed(processing_outcome::settle_failed, h.handler_duration, h.handler_outcome,
                  h.enqueued_time);
        continue;
      }
      count(h.outcome == processing_outcome::completed ? &session_processor_stats::completed
            : h.outcome == processing_outcome::dead_lettered
                ? &session_processor_stats::dead_lettered
                : &session_processor_stats::abandoned);
      processed(h.outcome, h.handler_duration, h.handler_outcome, h.enqueued_time);
    }
    if (results.size() < pending.handled.size()) {  // a broken provider
      all_settled = false;
      if (!s.failure) s.failure = fail(errc::protocol_error, "too few settlement outcomes");
    }
    pending.settlements.clear();
    pending.handled.clear();
    co_return all_settled;
  }

  // The session was closed under us (shutdown): nothing pending can be settled any more; the
  // handled messages among it are delivered again to whoever takes the session.
  void drop(pending_settlements& pending) {
    for (auto& h : pending.handled) {
      processed(processing_outcome::settle_failed, h.handler_duration, h.handler_outcome,
                h.enqueued_time);
    }
    pending.settlements.clear();
    pending.handled.clear();
  }

  // Handles one batch strictly in order. A failure that is abandoned ends the batch: the rest
  // is abandoned with it so nothing overtakes it. Settlements go out after each message, or
  // once for the whole batch (options.settle).
  awaitable<batch_end> handle_batch(const asio::any_io_executor& pool, held_session& s,
                                    std::vector<received_message>& batch) {
    const bool per_message = options.settle == batch_settlement::per_message;
    pending_settlements pending;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (stopping) {
        pending.abandon_unhandled(batch, i);
        co_await flush(s, pending);
        co_return batch_end::stopping;
      }
      if (s.lock_lost) {
        // The renewer found the lock gone: the rest is the next holder's, and handling it here
        // would run it beside that holder's handlers. What was handled is settled if the
        // session still takes it (else it comes back too), the rest given back, in order.
        pending.abandon_unhandled(batch, i);
        co_await flush(s, pending);
        co_return batch_end::lost;
      }
      const auto& msg = batch[i];
      count(&session_processor_stats::handler_calls);
      s.busy = true;
      const auto started_at = steady::now();
      auto outcome = co_await call_handler(pool, msg);
      const auto handler_duration = steady::now() - started_at;
      s.busy = false;
      if (s.released) {  // shutdown closed the session meanwhile: the messages went back
        drop(pending);
        processed(processing_outcome::abandoned, handler_duration, outcome, msg.enqueued_time);
        co_return batch_end::stopping;
      }

      bool ends_batch = false;
      if (outcome) {
        pending.add(settlement::complete(msg.receipt), processing_outcome::completed,
                    handler_duration, std::move(outcome), msg);
      } else {
        count(&session_processor_stats::handler_failures);
        auto reason =
            detail::failure_reason(msg, outcome.error(), options.max_delivery_count,
                                   options.on_failure, options.dead_letter_on_permanent_error);
        if (!reason.empty()) {
          auto description = outcome.error().to_string();
          pending.add(
              settlement::dead_letter(msg.receipt, std::move(reason), std::move(description)),
              processing_outcome::dead_lettered, handler_duration, std::move(outcome), msg);
        } else {
          if (options.abandon_delay.count() > 0) {
            co_await pause(*s.stop_wake, options.abandon_delay);
          }
          pending.add(settlement::abandon(msg.receipt), processing_outcome::abandoned,
                      handler_duration, std::move(outcome), msg);
          pending.abandon_unhandled(batch, i + 1);  // with the rest of the batch
          ends_batch = true;
        }
      }
      if (per_message || ends_batch || i + 1 == batch.size()) {
        if (!co_await flush(s, pending)) {
          if (!ends_batch) {  // else the rest was abandoned in the call that failed
            pending.abandon_unhandled(batch, i + 1);
            co_await flush(s, pending);
          }
          co_return batch_end::lost;
        }
      }
      if (ends_batch) co_return batch_end::failed;
    }
    co_return batch_end::done;
  }

  // Handles one session (registered as `id` by hold()) until it is idle, lost, stopped or held
  // for max_session_hold. Returns what ended it early, if anything did. `pool`: where handlers
  // run, the worker's own copy (the impl keeps none, see `control`).
  awaitable<std::optional<error>> run_session(asio::any_io_executor pool,
                                              std::shared_ptr<held_session> s, std::uint64_t id) {
    const auto held_since = steady::now();  // just accepted
    s->locked_until = s->receiver.locked_until();
    s->lock_duration = std::max(
        milliseconds{1},
        std::chrono::duration_cast<milliseconds>(detail::remaining(s->locked_until, clock::now())));
    s->renewer_running = true;
    asio::co_spawn(co_await asio::this_coro::executor, keep_session_renewed(s), asio::detached);

    bool lost = false;
    while (!stopping && !s->lock_lost && !s->released) {
      // Between batches, the last one settled: a lowered limit ends this session here.
      if (worker_leaves_for_lower_limit()) {
        s->worker_retires = true;
        break;
      }
      if (!enter_provider()) break;
      auto batch = co_await s->receiver.receive(options.max_messages_per_receive,
                                                options.session_idle_timeout);
      leave_provider();
      if (!batch) {
        report(batch.error());
        s->failure = batch.error();
        lost = true;
        break;
      }
      if (batch->empty()) {
        count(&session_processor_stats::sessions_released_idle);
        break;
      }
      const auto end = co_await handle_batch(pool, *s, *batch);
      if (end == batch_end::lost) {
        lost = true;
        break;
      }
      // The batch is handled and settled (or given back, in order): a session held past its
      // bound is released here so that sessions waiting for a worker get a turn; a busy session
      // is never idle and would otherwise be held until the processor stops.
      if (options.max_session_hold.count() > 0 &&
          steady::now() - held_since >= options.max_session_hold) {
        count(&session_processor_stats::sessions_released_hold);
        break;
      }
    }
    if (lost || s->lock_lost) count(&session_processor_stats::sessions_lost);

    s->renewal_done = true;
    s->renewer_wake.notify();
    while (s->renewer_running) co_await s->renewer_exited.wait();
    unhold(id);
    if (!s->released.exchange(true) && enter_provider()) {
      auto closed = co_await s->receiver.close();
      leave_provider();
      if (!closed) report(closed.error());
    }
    detail::tell_session(options.on_session, queue, session_event_kind::released,
                         steady::duration{}, steady::now() - held_since);
    if (!lost && !s->lock_lost) co_return std::nullopt;
    if (!s->failure) s->failure = fail(errc::session_lock_lost, "session released early");
    co_return s->failure;
  }

  awaitable<void> worker(asio::any_io_executor pool) {
    auto self = shared_from_this();
    const auto stop_wake = add_waker(co_await asio::this_coro::executor);
    std::uint32_t failures = 0;
    bool counted_out = false;  // worker_leaves_for_lower_limit() took this worker off the count
    while (!stopping) {
      if (worker_leaves_for_lower_limit()) {
        counted_out = true;
        break;
      }
      const auto asked_at = steady::now();
      if (!enter_provider()) break;
      auto accepted = co_await client.accept_session(queue, std::nullopt, options.accept_wait);
      if (accepted && !stopping && worker_leaves_for_lower_limit()) counted_out = true;
      // The session is registered while its accept still counts as a call in the provider, and
      // `stopping` read after that: a stop() either finds it among the sessions it closes, or
      // began before it was registered and cannot seal provider calls until this worker has seen
      // `stopping` below and closed it. Registered after leave_provider(), a stop() whose deadline
      // had passed could seal in between, and the session stayed locked (on Service Bus until its
      // lock ran out).
      std::shared_ptr<held_session> held_one;
      std::uint64_t held_id = 0;
      if (accepted) {
        held_one = std::make_shared<held_session>(co_await asio::this_coro::executor,
                                                  std::move(*accepted), stop_wake);
        // One leaving for a lowered limit closes it below without counting it held: its
        // worker is inside the call until then, so no stop() can seal before.
        if (!counted_out) held_id = hold(held_one);
      }
      if (held_one && (stopping || counted_out)) {
        // Accepted while stop() waited for this call: given back at once, inside the same
        // call. So is one accepted while the limit was lowered: held, it would exceed the new
        // limit.
        if (held_id != 0) unhold(held_id);
        if (!held_one->released.exchange(true)) {
          auto closed = co_await held_one->receiver.close();
          if (!closed) report(closed.error());
        }
        leave_provider();
        break;
      }
      leave_provider();
      if (!accepted) {
        const auto& e = accepted.error();
        if (e.code == errc::closed) break;
        if (e.code == errc::timeout) continue;  // no session had messages within accept_wait
        report(e);
        ++failures;
        co_await pause(*stop_wake, options.retry.delay_after(e, failures));
        continue;
      }
      count(&session_processor_stats::sessions_accepted);
      detail::tell_session(options.on_session, queue, session_event_kind::accepted,
                           steady::now() - asked_at);
      const auto ended_by = co_await run_session(pool, held_one, held_id);
      if (held_one->worker_retires) {
        counted_out = true;
        break;
      }
      if (!ended_by) {
        failures = 0;
        continue;
      }
      // A session that failed (its receive refused, its settlement failing, its lock lost) is
      // likely to fail again at once when taken again: back off as after a failed accept,
      // rather than accept, fail and release in a loop as fast as the provider answers.
      ++failures;
      co_await pause(*stop_wake, options.retry.delay_after(*ended_by, failures));
    }
    remove_waker(stop_wake);
    if (!counted_out) {
      std::lock_guard lock(workers_mutex);
      --workers_running;
    }
    std::lock_guard lock(calls_mutex);
    post_drained();
  }

  awaitable<shutdown_report> shutdown(milliseconds deadline) {
    auto self = shared_from_this();
    shutdown_report out;
    if (!started) co_return out;
    if (stop_begun) {
      // Another stop() runs (or ran): it alone waits on `drained` with a deadline, so this one
      // waits for its report instead of re-arming that timer against it.
      for (;;) {
        {
          std::lock_guard lock(calls_mutex);
          if (final_report) co_return *final_report;
        }
        co_await stop_finished->wait();
      }
    }
    stop_begun = true;
    stop_finished.emplace(*control);
    stopping = true;
    wake_workers();
    const auto until = detail::deadline_after(steady::now(), deadline);
    while (workers_running > 0 && steady::now() < until) co_await drained->wait_until(until);

    std::vector<std::shared_ptr<held_session>> left;
    {
      std::lock_guard lock(held_mutex);
      for (auto& [id, s] : held) left.push_back(s);
    }
    for (auto& s : left) {
      if (s->released.exchange(true)) continue;
      if (s->busy) ++out.abandoned_running;
      // Closing releases the lock: the session's unsettled messages are available again.
      auto closed = co_await s->receiver.close();
      if (!closed) report(closed.error());
    }
    // Nothing of the processor is left inside the provider when stop() returns: the caller may
    // destroy the executor it ran on at once, and a call that returned later would resume on
    // it. A worker waiting for a session returns within accept_wait, one in a session's receive
    // once the session is closed above; a renewal or settlement under way within the
    // provider's own time limits. Handlers still running are not waited for, and a worker makes
    // no call once sealed.
    for (;;) {
      {
        std::lock_guard lock(calls_mutex);
        if (calls_in_provider == 0) {
          calls_sealed = true;
          final_report = out;
          break;
        }
      }
      co_await drained->wait();
    }
    seal();
    co_return out;
  }

  // The end of the first stop(), on `control`, once calls are sealed (nothing posts to `control`
  // any more). What still runs (workers ending, handlers finishing unobserved) owns what it uses,
  // so the rest goes now, while the executor is alive: the caller may destroy it next, and the
  // processor after it.
  void seal() {
    sealed = true;
    {
      std::lock_guard lock(workers_mutex);
      workers_executor.reset();
    }
    stop_finished->notify();  // the stop() calls waiting read final_report, not the timer
    stop_finished.reset();
    drained.reset();
    {
      std::lock_guard lock(wakers_mutex);
      wakers.clear();
    }
    {
      std::lock_guard lock(held_mutex);
      held.clear();
    }
    // The strand's implementation lives on while a handler or frame holds a copy of it (this
    // one among them); only this handle goes.
    std::lock_guard lock(calls_mutex);
    control.reset();
  }
};

session_processor::session_processor(queue_client client, queue_name queue, message_handler handler,
                                     session_processor_options options)
    : impl_(std::make_shared<impl>(std::move(client), std::move(queue),
                                   detail::require_handler(std::move(handler), "session_processor"),
                                   std::move(options))) {}

session_processor::~session_processor() {
  // Without stop() the workers are told to end. A back-off or an abandon_delay under way ends
  // now, as at stop(): waited out, it would keep the workers (and with them the client) alive
  // for its whole length after the processor is gone. The workers own the impl, so the wake-ups
  // may run after this returns; before start() there is no worker to wake. After stop() there
  // is nothing to do (it woke them), and the executor may be gone already: nothing is posted.
  if (!impl_->stopping.exchange(true)) impl_->wake_workers();
}

void session_processor::start(asio::any_io_executor executor) {
  if (impl_->started) return;
  impl_->started = true;
  impl_->control.emplace(asio::make_strand(executor));
  impl_->drained.emplace(*impl_->control);
  std::lock_guard lock(impl_->workers_mutex);
  impl_->workers_executor = executor;
  impl_->start_missing_workers();
}

void session_processor::set_max_concurrent_sessions(std::size_t sessions) {
  if (sessions == 0) {
    throw qrt::exception(fail(errc::invalid_argument,
                              "session_processor: max_concurrent_sessions must be at least 1 (0 "
                              "would take no session and leave every message waiting)"));
  }
  check_session_limit(sessions);
  if (impl_->stop_called || impl_->stopping) return;
  impl_->set_session_limit(sessions);
}

awaitable<shutdown_report> session_processor::stop(milliseconds deadline) {
  impl_->stop_called = true;
  co_return co_await detail::stop_through(impl_->calls_mutex, impl_->final_report, impl_->control,
                                          impl_->shutdown(deadline));
}

session_processor_stats session_processor::stats() const {
  std::lock_guard lock(impl_->stats_mutex);
  return impl_->stats;
}

}  // namespace qrt
