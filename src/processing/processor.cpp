#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <map>
#include <mutex>
#include <qrt/processor.hpp>
#include <set>

#include "core/deadline.hpp"
#include "event.hpp"
#include "failure_policy.hpp"

namespace qrt {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;

processor_options processor_options::for_high_throughput() {
  return {.max_concurrent_calls = 32,
          .prefetch_count = 50,
          .max_auto_lock_renewal_duration = milliseconds{600'000},
          .retry = retry_policy::exponential_backoff(milliseconds{100}, milliseconds{30'000}, 3.0)};
}

processor_options processor_options::for_low_latency() {
  return {.max_concurrent_calls = 4,
          .prefetch_count = 1,
          .max_auto_lock_renewal_duration = milliseconds{60'000},
          .retry = retry_policy::fixed_interval(milliseconds{50})};
}

result<processor_options> processor_options::from_config(const config& cfg) {
  processor_options o;
  auto preset = cfg.get_string("preset", std::string());
  if (!preset) return preset.error();
  if (*preset == "high_throughput") o = for_high_throughput();
  if (*preset == "low_latency") o = for_low_latency();
  auto calls = cfg.get_uint("max_concurrent_calls", o.max_concurrent_calls, 1, 10'000);
  if (!calls) return calls.error();
  o.max_concurrent_calls = *calls;
  auto prefetch = cfg.get_uint("prefetch_count", o.prefetch_count, 0, 100'000);
  if (!prefetch) return prefetch.error();
  o.prefetch_count = *prefetch;
  auto renewal =
      cfg.get_duration("max_auto_lock_renewal_duration", o.max_auto_lock_renewal_duration);
  if (!renewal) return renewal.error();
  o.max_auto_lock_renewal_duration = *renewal;
  return o;
}

namespace {

// The part of a lock that must be left for a message to be handed to a handler, and the point
// at which a running handler's lock is renewed: half of the lock's length.
constexpr int lock_margin_divisor = 2;

struct task {
  task(const asio::any_io_executor& ex, received_message m, milliseconds lock)
      : msg(std::move(m)),
        lock_duration(lock),
        locked_until(msg.locked_until),
        wake(ex),
        renewer_wake(ex),
        renewer_exited(ex) {}

  // The handler reads `msg` on another thread while it runs, so the processor never writes it
  // then; the renewed expiry lives in `locked_until`.
  received_message msg;
  milliseconds lock_duration;
  time_point locked_until;
  bool renewal_done = false;
  bool renewer_running = false;
  bool lock_lost = false;
  /// Its handler returned: it is settled by that result (once a renewal in flight is back), so
  /// shutdown leaves it alone and waits for it.
  bool handler_done = false;
  bool settling = false;  ///< the processor settles it; shutdown leaves it alone
  bool released = false;  ///< shutdown abandoned it; its handler's outcome is ignored
  detail::event wake;     ///< interrupts the abandon delay at shutdown
  detail::event renewer_wake;
  detail::event renewer_exited;
};

}  // namespace

struct processor::impl : std::enable_shared_from_this<impl> {
  impl(queue_client c, queue_name q, message_handler h, processor_options o)
      : client(std::move(c)), queue(std::move(q)), handler(std::move(h)), options(std::move(o)) {
    options.max_concurrent_calls = std::max<std::size_t>(1, options.max_concurrent_calls);
    max_calls = options.max_concurrent_calls;
    stats.max_concurrent_calls = options.max_concurrent_calls;
    // A wait of zero would make the receive loop a busy poll of an empty queue that, answered
    // without suspending, never gives its strand to stop(): at least 1 ms.
    options.receive_wait = std::max(options.receive_wait, milliseconds{1});
  }

  queue_client client;
  queue_name queue;
  message_handler handler;
  processor_options options;
  // The handler limit in force: options.max_concurrent_calls until set_max_concurrent_calls()
  // changes it from any thread (written under stats_mutex, with the stats that report it).
  std::atomic<std::size_t> max_calls{1};
  // An apply_limit() is posted and has not begun: further changes need no post of their own (it
  // reads the limit when it runs), so a caller changing the limit in a tight loop cannot flood
  // the strand.
  std::atomic<bool> limit_change_posted{false};

  // Everything below is touched only on `strand`, except `stats` (under its own mutex) and
  // what is marked otherwise.
  //
  // The executor-bound objects: engaged from start() until the first stop() has finished, then
  // destroyed by it on the strand, so that a processor that outlives its executor (stop(), then
  // the io_context destroyed, then the processor) touches nothing of it. Whatever may still run
  // after that (handlers finishing unobserved, later stop() calls) looks whether they are there.
  asio::any_io_executor pool;
  std::optional<asio::strand<asio::any_io_executor>> strand;  // also read by stop(): stop_mutex
  std::optional<detail::event> capacity_changed;              // the receive loop waits on it
  std::optional<detail::event> drained;                       // stop() waits on it
  std::optional<detail::event> stop_finished;  // later stop() calls wait on it for the first's
  /// How often a processor whose messages the breaker holds back looks whether it closed.
  static constexpr milliseconds breaker_recheck{50};
  bool stop_begun = false;
  // Set once by the first stop() as it ends; kept outside any timer, so that later stop() calls
  // read it after the executor-bound objects are gone.
  std::mutex stop_mutex;
  std::optional<shutdown_report> final_report;  // under stop_mutex
  std::atomic<bool> stop_called{false};  // stop() ran: the destructor leaves the strand alone
  std::deque<std::pair<received_message, milliseconds>> buffer;  // prefetched, with lock length
  std::map<std::uint64_t, std::shared_ptr<task>> running;
  // Handlers still running when the first stop() ended: their tasks (and timers) were let go of
  // from `running` then and belong to their own coroutines; counted in stats until they end.
  std::size_t running_unobserved = 0;
  std::set<session_id> sessions_running;  // order_by_session: sessions with a running handler
  std::uint64_t next_task_id = 1;
  // Messages taken towards options.max_messages: buffered or started, not given back unstarted.
  std::uint64_t admitted = 0;
  bool started = false;
  bool stopping = false;
  bool loop_running = false;
  // Calls this processor made to the provider that have not returned yet (see shutdown()).
  std::size_t calls_in_provider = 0;
  double average_handler_ms = 0;
  bool have_average = false;
  milliseconds typical_lock{0};

  mutable std::mutex stats_mutex;
  processor_stats stats;

  void count(std::uint64_t processor_stats::*field, std::uint64_t n = 1) {
    std::lock_guard lock(stats_mutex);
    stats.*field += n;
  }
  void report(const error& e) { detail::report_to(options.on_error, e); }

  // Every call the processor itself makes to the provider is bracketed by these two, so that
  // stop() can wait until none is left inside it. Plain calls rather than a guard object: a
  // frame destroyed with its io_context must not notify anything.
  void enter_provider() { ++calls_in_provider; }
  void leave_provider() {
    if (--calls_in_provider == 0) notify_drained();
  }
  void notify_drained() {
    if (drained) drained->notify();
  }
  void notify_capacity_changed() {
    if (capacity_changed) capacity_changed->notify();
  }
  void note_in_flight() {
    std::lock_guard lock(stats_mutex);
    stats.in_flight = running.size() + running_unobserved;
    stats.max_in_flight = std::max(stats.max_in_flight, stats.in_flight);
  }

  // How many prefetched messages can wait for a slot and still start with enough lock left.
  std::size_t prefetch_allowance() const {
    std::size_t allowance = options.prefetch_count;
    if (have_average && typical_lock.count() > 0) {
      const double startable = static_cast<double>(max_calls.load()) *
                               static_cast<double>(typical_lock.count()) / lock_margin_divisor /
                               std::max(average_handler_ms, 0.001);
      allowance = std::min(allowance, static_cast<std::size_t>(startable));
    }
    return allowance;
  }

  awaitable<void> release(std::vector<receipt_handle> receipts) {
    if (receipts.empty()) co_return;
    std::vector<settlement> abandons;
    for (auto& r : receipts) abandons.push_back(settlement::abandon(std::move(r)));
    enter_provider();
    auto results = co_await client.settle(std::move(abandons));
    leave_provider();
    for (auto& r : results) {
      // A lock that already ran out returns the message by itself: nothing is lost.
      if (!r && r.error().code != errc::receipt_expired) report(r.error());
    }
  }

  awaitable<void> receive_loop() {
    auto self = shared_from_this();
    std::uint32_t failures = 0;
    while (!stopping) {
      if (options.breaker) {
        // Open: receive nothing, start nothing, until a probe may go.
        const auto closed_for = options.breaker->time_until_probe();
        if (closed_for.count() > 0) {
          co_await capacity_changed->wait_until(steady::now() + closed_for);
          continue;
        }
        dispatch();  // a probe may start now
      }
      const std::size_t calls = max_calls.load();
      // Saturated: a limit near SIZE_MAX (any value above 0 is accepted) must not wrap around
      // to a small one and stall the loop.
      const std::size_t allowance = prefetch_allowance();
      const std::size_t limit = calls > SIZE_MAX - allowance ? SIZE_MAX : calls + allowance;
      const std::size_t held = running.size() + buffer.size();
      if (held >= limit) {
        if (options.breaker && !buffer.empty() && running.size() < calls) {
          // Held back by the breaker alone: another caller's probe is in flight (a breaker can
          // be shared). Nothing of this processor would notify when that probe closes it, so
          // look again shortly rather than wait for a handler that is not running.
          co_await capacity_changed->wait_until(steady::now() + breaker_recheck);
        } else {
          co_await capacity_changed->wait();
        }
        continue;
      }
      std::size_t want = limit - held;
      if (options.max_messages > 0) {
        if (admitted >= options.max_messages) {  // until stop(), or a message given back unstarted
          co_await capacity_changed->wait();
          continue;
        }
        want = static_cast<std::size_t>(
            std::min<std::uint64_t>(want, options.max_messages - admitted));
      }
      if (client.caps().max_batch_messages > 0) {
        want = std::min(want, client.caps().max_batch_messages);
      }
      enter_provider();
      auto received = co_await client.receive(queue, want, options.receive_wait);
      leave_provider();
      if (!received) {
        if (received.error().code == errc::closed) break;
        report(received.error());
        ++failures;
        const auto delay = options.retry.delay_after(received.error(), failures);
        // The back-off lasts as long as the retry policy says: a handler that finishes
        // notifies capacity_changed too, and during an outage with handlers still finishing
        // each of them would end it early. Only stop() (or the destructor), which sets
        // `stopping`, cuts it short. At least one wait even for a delay of zero, so a receive
        // that fails without suspending still gives the strand to stop().
        const auto retry_at = detail::deadline_after(steady::now(), delay);
        while (!stopping) {
          co_await capacity_changed->wait_until(retry_at);
          if (steady::now() >= retry_at) break;
        }
        continue;
      }
      failures = 0;
      const auto now = clock::now();
      count(&processor_stats::received, received->size());
      std::vector<receipt_handle> late;
      std::uint64_t over_budget_count = 0;
      for (auto& m : *received) {
        auto lock =
            std::chrono::duration_cast<milliseconds>(detail::remaining(m.locked_until, now));
        lock = std::max(lock, milliseconds{1});
        typical_lock = lock;
        // A provider that returned more than asked for: never past max_messages.
        const bool over_budget = options.max_messages > 0 && admitted >= options.max_messages;
        if (stopping || over_budget) {
          if (!stopping) ++over_budget_count;
          late.push_back(m.receipt);
        } else {
          buffer.emplace_back(std::move(m), lock);
          ++admitted;
        }
      }
      if (over_budget_count > 0) count(&processor_stats::released_unstarted, over_budget_count);
      co_await release(std::move(late));
      dispatch();
    }
    loop_running = false;
    notify_drained();
  }

  void dispatch() {
    // Handlers above a lowered limit run on; none starts until fewer than the limit run.
    while (!stopping && running.size() < max_calls.load() && !buffer.empty()) {
      auto next = next_startable();
      if (next == buffer.end()) break;  // every buffered message waits for its session
      if (options.breaker && !options.breaker->allow()) {
        capacity_changed->notify();  // the receive loop waits for the next probe
        break;
      }
      auto [msg, lock] = std::move(*next);
      buffer.erase(next);
      if (options.order_by_session && msg.session) sessions_running.insert(*msg.session);
      auto t = std::make_shared<task>(*strand, std::move(msg), lock);
      const auto id = next_task_id++;
      running.emplace(id, t);
      note_in_flight();
      asio::co_spawn(*strand, run_task(id, std::move(t)), asio::detached);
    }
  }

  // The first buffered message no running handler's session holds back.
  std::deque<std::pair<received_message, milliseconds>>::iterator next_startable() {
    if (!options.order_by_session) return buffer.begin();
    return std::find_if(buffer.begin(), buffer.end(), [&](const auto& entry) {
      return !entry.first.session || !sessions_running.contains(*entry.first.session);
    });
  }

  // order_by_session: a message that goes back to the queue takes the later messages of its
  // session that this processor holds with it, so none of them is handled before it comes
  // back. Runs while its session still counts as running, so dispatch starts none of them.
  awaitable<void> release_rest_of_session(const received_message& gone_back) {
    if (!options.order_by_session || !gone_back.session) co_return;
    for (;;) {  // the receive loop may buffer more of the session while a release is under way
      std::vector<receipt_handle> rest;
      for (auto it = buffer.begin(); it != buffer.end();) {
        if (it->first.session == gone_back.session) {
          rest.push_back(std::move(it->first.receipt));
          it = buffer.erase(it);
        } else {
          ++it;
        }
      }
      if (rest.empty()) co_return;
      admitted -= rest.size();
      count(&processor_stats::released_unstarted, rest.size());
      co_await release(std::move(rest));
    }
  }

  // On the strand, after set_max_concurrent_calls(). A raised limit starts buffered messages now
  // and lets the receive loop ask for more. A lowered one interrupts no running handler
  // (dispatch() starts none until fewer than the limit run), and gives back at once the
  // prefetched messages beyond what the new limit can start while their locks last: the
  // read-ahead was sized for more handlers, so kept, they would wait longer for a slot than
  // their locks allow, and another consumer can take them now instead.
  awaitable<void> apply_limit() {
    auto self = shared_from_this();
    limit_change_posted = false;  // a change from now on posts again
    if (stopping) co_return;
    co_await give_back_beyond_allowance();
    if (stopping) co_return;
    notify_capacity_changed();
    dispatch();
  }

  // Releases the newest buffered messages until no more than prefetch_allowance() wait. Not
  // with order_by_session: a message of a session given back here could be overtaken by a later
  // one of its session that the receive loop takes meanwhile, so those are kept; each one is
  // still renewed, or released with the rest of its session, before a handler gets it.
  awaitable<void> give_back_beyond_allowance() {
    if (options.order_by_session) co_return;
    // A receive that returns while the release is under way may fill the buffer again.
    while (!stopping && buffer.size() > prefetch_allowance()) {
      std::vector<receipt_handle> extra;
      while (buffer.size() > prefetch_allowance()) {
        extra.push_back(std::move(buffer.back().first.receipt));
        buffer.pop_back();
      }
      admitted -= extra.size();
      count(&processor_stats::released_unstarted, extra.size());
      co_await release(std::move(extra));
    }
  }

  void finish(std::uint64_t id) {
    if (auto it = running.find(id);
        it != running.end() && options.order_by_session && it->second->msg.session) {
      sessions_running.erase(*it->second->msg.session);
    }
    if (running.erase(id) == 0 && running_unobserved > 0) --running_unobserved;
    note_in_flight();
    // A handler that finishes unobserved after stop() ends here: nobody is waiting any more.
    notify_capacity_changed();
    if (running.empty() || stopping) notify_drained();  // stop() may wait for this one
    dispatch();
  }

  // Never hand a handler a message whose lock is gone or about to go: renew it first, and if
  // that fails release it (it was never started, so nothing is lost; it is redelivered).
  awaitable<bool> ensure_startable(task& t) {
    const auto left = detail::remaining(t.locked_until, clock::now());
    if (left >= t.lock_duration / lock_margin_divisor) co_return true;
    if (client.caps().lock_renewal) {
      enter_provider();
      auto renewed = co_await client.renew_lock(t.msg.receipt);
      leave_provider();
      if (renewed && *renewed - clock::now() >= t.lock_duration / lock_margin_divisor) {
        t.locked_until = *renewed;
        t.msg.locked_until = *renewed;  // not yet shared with the handler
        count(&processor_stats::lock_renewals);
        co_return true;
      }
    }
    std::vector<receipt_handle> one(1, t.msg.receipt);
    co_await release(std::move(one));
    --admitted;
    count(&processor_stats::released_unstarted);
    co_return false;
  }

  awaitable<void> keep_renewed(std::shared_ptr<task> t) {
    auto self = shared_from_this();
    const auto give_up_at =
        detail::deadline_after(steady::now(), options.max_auto_lock_renewal_duration);
    auto next = steady::now() + std::chrono::duration_cast<steady::duration>(
                                    detail::remaining(t->locked_until, clock::now()) -
                                    t->lock_duration / lock_margin_divisor);
    while (!t->renewal_done) {
      if (t->lock_lost || next >= give_up_at) {
        co_await t->renewer_wake.wait();
        continue;
      }
      if (steady::now() < next) {
        co_await t->renewer_wake.wait_until(next);
        continue;
      }
      enter_provider();
      auto renewed = co_await client.renew_lock(t->msg.receipt);
      leave_provider();
      if (t->renewal_done) break;
      if (renewed) {
        t->locked_until = *renewed;
        count(&processor_stats::lock_renewals);
        next =
            steady::now() + std::chrono::duration_cast<steady::duration>(
                                (*renewed - clock::now()) - t->lock_duration / lock_margin_divisor);
      } else {
        report(renewed.error());
        if (renewed.error().kind == error_kind::permanent) {
          t->lock_lost = true;
          count(&processor_stats::locks_lost);
        } else {
          next = steady::now() + t->lock_duration / 10;
        }
      }
    }
    t->renewer_running = false;
    t->renewer_exited.notify();
  }

  awaitable<result<void>> call_handler(const received_message& msg) {
    try {
      co_return co_await asio::co_spawn(
          pool,
          // Its own copy of the executor: stop() lets go of `pool` while a handler may still be
          // on its way there.
          [this, &msg, pool = pool]() -> awaitable<result<void>> {
            // co_spawn starts inline when it can; hop off the strand first, so a handler's
            // synchronous work never holds up the processor (or the other handlers).
            co_await asio::post(pool, asio::use_awaitable);
            co_return co_await handler(msg);
          },
          asio::use_awaitable);
    } catch (...) {
      co_return detail::handler_failure(std::current_exception());
    }
  }

  awaitable<void> run_task(std::uint64_t id, std::shared_ptr<task> t) {
    auto self = shared_from_this();
    if (!co_await ensure_startable(*t)) {
      if (options.breaker) options.breaker->cancel();
      co_await release_rest_of_session(t->msg);
      finish(id);
      co_return;
    }
    if (t->released) {  // shutdown gave it back while its lock was being renewed: not started
      finish(id);
      co_return;
    }
    t->renewer_running = true;
    asio::co_spawn(co_await asio::this_coro::executor, keep_renewed(t), asio::detached);

    count(&processor_stats::handler_calls);
    const auto started_at = steady::now();
    auto outcome = co_await call_handler(t->msg);
    t->handler_done = true;
    const auto handler_duration = steady::now() - started_at;
    const double took = std::chrono::duration<double, std::milli>(handler_duration).count();
    average_handler_ms = have_average ? 0.8 * average_handler_ms + 0.2 * took : took;
    have_average = true;
    if (options.breaker) {
      if (!outcome && outcome.error().kind != error_kind::permanent) {
        options.breaker->record_failure();
      } else {
        options.breaker->record_success();
      }
    }

    std::string dead_letter_reason;
    if (!outcome) {
      count(&processor_stats::handler_failures);
      dead_letter_reason =
          detail::failure_reason(t->msg, outcome.error(), options.max_delivery_count,
                                 options.on_failure, options.dead_letter_on_permanent_error);
      if (dead_letter_reason.empty() && options.abandon_delay.count() > 0 && !stopping &&
          !t->released) {
        co_await t->wake.wait_until(detail::deadline_after(steady::now(), options.abandon_delay));
      }
    }

    t->renewal_done = true;
    t->renewer_wake.notify();
    while (t->renewer_running) co_await t->renewer_exited.wait();

    if (t->released) {  // shutdown gave up on it and abandoned it already
      processed(processing_outcome::abandoned, handler_duration, outcome, t->msg);
      finish(id);
      co_return;
    }
    t->settling = true;
    result<void> settled;
    processing_outcome done_as;
    enter_provider();
    if (outcome) {
      settled = co_await client.complete(t->msg.receipt);
      done_as = processing_outcome::completed;
    } else if (!dead_letter_reason.empty()) {
      settled = co_await client.dead_letter(t->msg.receipt, dead_letter_reason,
                                            outcome.error().to_string());
      done_as = processing_outcome::dead_lettered;
    } else {
      settled = co_await client.abandon(t->msg.receipt);
      done_as = processing_outcome::abandoned;
    }
    leave_provider();
    if (settled) {
      count(done_as == processing_outcome::completed       ? &processor_stats::completed
            : done_as == processing_outcome::dead_lettered ? &processor_stats::dead_lettered
                                                           : &processor_stats::abandoned);
    } else {
      done_as = processing_outcome::settle_failed;
      count(&processor_stats::settle_failures);
      report(settled.error());
      // A complete or dead-letter that failed while the lock may still be held: give the
      // message back now. Where locks expire it would come back anyway, later; on a provider
      // whose deliveries stay locked while the link lives (AMQP) it would be held until the
      // link closed. A lost lock needs nothing: the message is already back.
      if ((outcome || !dead_letter_reason.empty()) && still_locked_after(settled.error())) {
        enter_provider();
        const auto abandoned = co_await client.abandon(t->msg.receipt);
        leave_provider();
        if (abandoned) count(&processor_stats::abandoned);
      }
    }
    processed(done_as, handler_duration, outcome, t->msg);
    if (done_as == processing_outcome::abandoned || done_as == processing_outcome::settle_failed) {
      co_await release_rest_of_session(t->msg);
    }
    finish(id);
  }

  void processed(processing_outcome how, std::chrono::steady_clock::duration handler_duration,
                 const result<void>& handler_outcome, const received_message& msg) {
    detail::tell_processed(options.on_processed, queue, how, handler_duration, handler_outcome,
                           msg.enqueued_time);
  }

  bool settling_after_handler() const {
    return std::any_of(running.begin(), running.end(),
                       [](const auto& entry) { return entry.second->handler_done; });
  }

  static bool still_locked_after(const error& e) {
    return e.code != errc::receipt_expired && e.code != errc::invalid_receipt &&
           e.code != errc::session_lock_lost && e.code != errc::closed;
  }

  awaitable<shutdown_report> shutdown(milliseconds deadline) {
    auto self = shared_from_this();
    shutdown_report out;
    if (!started) co_return out;
    if (stop_begun) {
      // Another stop() runs (or ran): it alone waits on `drained` with a deadline, so this one
      // waits for its report instead of re-arming that timer against it.
      while (!final_report) co_await stop_finished->wait();
      co_return *final_report;
    }
    stop_begun = true;
    stop_finished.emplace(*strand);
    stopping = true;
    capacity_changed->notify();
    const std::size_t running_at_stop = running.size();
    for (auto& [id, t] : running) t->wake.notify();

    std::vector<receipt_handle> buffered;
    for (auto& [m, lock] : buffer) buffered.push_back(m.receipt);
    buffer.clear();
    out.abandoned_buffered = buffered.size();
    count(&processor_stats::abandoned_at_shutdown, buffered.size());
    co_await release(std::move(buffered));

    const auto until = detail::deadline_after(steady::now(), deadline);
    while ((loop_running || !running.empty()) && steady::now() < until) {
      co_await drained->wait_until(until);
    }

    std::vector<receipt_handle> still_running;
    for (auto& [id, t] : running) {
      if (t->handler_done || t->settling || t->released) continue;
      t->released = true;
      t->renewal_done = true;
      t->renewer_wake.notify();
      still_running.push_back(t->msg.receipt);
    }
    out.abandoned_running = still_running.size();
    out.finished_in_time =
        running_at_stop > out.abandoned_running ? running_at_stop - out.abandoned_running : 0;
    count(&processor_stats::abandoned_at_shutdown, still_running.size());
    co_await release(std::move(still_running));
    // Nothing of the processor is left inside the provider when stop() returns: the caller may
    // destroy the executor it ran on at once, and a call that returned later would resume on
    // it. The receive in flight returns within receive_wait; a renewal or settlement under way
    // within the provider's own time limits. Handlers still running are not waited for.
    // A handler that finished in time is settled by its result (its settlement may wait for a
    // renewal still inside the provider): waited for too, or stop() would return before that
    // settlement is made.
    while (loop_running || calls_in_provider > 0 || settling_after_handler()) {
      co_await drained->wait();
    }
    seal(out);
    co_return out;
  }

  // The end of the first stop(), on the strand. What is left running now (handlers finishing
  // unobserved, released tasks) never waits on these objects again, so they go while the
  // executor is alive; the caller may destroy it next, and the processor after it.
  void seal(const shutdown_report& out) {
    // The stop() calls waiting here resume after this returns and read final_report, not the
    // timer, which is gone by then.
    stop_finished->notify();
    stop_finished.reset();
    capacity_changed.reset();
    drained.reset();
    // What is left running was released by this stop(): only its own coroutines use it now.
    running_unobserved += running.size();
    running.clear();
    sessions_running.clear();
    pool = asio::any_io_executor();
    // The strand's implementation lives on while a handler or frame holds a copy of it (this
    // one among them); only this handle goes.
    std::lock_guard lock(stop_mutex);
    final_report = out;
    strand.reset();
  }
};

processor::processor(queue_client client, queue_name queue, message_handler handler,
                     processor_options options)
    : impl_(std::make_shared<impl>(std::move(client), std::move(queue),
                                   detail::require_handler(std::move(handler), "processor"),
                                   std::move(options))) {}

processor::~processor() {
  // Without stop() the loop is told to end; prefetched messages come back when locks expire. A
  // failed message waiting its abandon_delay is abandoned now, as at stop(): waited out, the
  // delay would keep the processor (and its client) alive for its whole length after this.
  // After stop() there is nothing to tell (it did all this), and its executor may be gone:
  // nothing is posted. stop() never resets the strand unless stop_called was set first.
  if (impl_->stop_called) return;
  if (impl_->strand) {
    asio::post(*impl_->strand, [p = impl_] {
      p->stopping = true;
      p->notify_capacity_changed();
      for (auto& [id, t] : p->running) t->wake.notify();
    });
  }
}

void processor::start(asio::any_io_executor executor) {
  if (impl_->started) return;
  impl_->pool = executor;
  auto strand = asio::make_strand(executor);
  impl_->capacity_changed.emplace(strand);
  impl_->drained.emplace(strand);
  impl_->started = true;
  impl_->loop_running = true;
  {
    // Published last, under the mutex: set_max_concurrent_calls() may post to it from another
    // thread at once, and what runs there must find the rest set.
    std::lock_guard lock(impl_->stop_mutex);
    impl_->strand.emplace(strand);
  }
  asio::co_spawn(*impl_->strand, impl_->receive_loop(), asio::detached);
}

awaitable<shutdown_report> processor::stop(milliseconds deadline) {
  impl_->stop_called = true;
  co_return co_await detail::stop_through(impl_->stop_mutex, impl_->final_report, impl_->strand,
                                          impl_->shutdown(deadline));
}

void processor::set_max_concurrent_calls(std::size_t calls) {
  if (calls == 0) {
    throw qrt::exception(fail(errc::invalid_argument,
                              "processor: max_concurrent_calls must be at least 1 (0 would start "
                              "no handler and leave every message waiting)"));
  }
  if (impl_->stop_called) return;
  {
    std::lock_guard lock(impl_->stats_mutex);
    impl_->max_calls = calls;
    impl_->stats.max_concurrent_calls = calls;
  }
  // The strand applies whatever limit is in force when it runs, so calls racing from several
  // threads end with the last one written, however their posts are ordered.
  std::lock_guard lock(impl_->stop_mutex);
  if (!impl_->strand) return;  // not started (start() spawns with the limit above), or stopped
  if (impl_->limit_change_posted.exchange(true)) return;
  asio::co_spawn(
      *impl_->strand, [p = impl_]() -> awaitable<void> { co_await p->apply_limit(); },
      asio::detached);
}

processor_stats processor::stats() const {
  std::lock_guard lock(impl_->stats_mutex);
  return impl_->stats;
}

}  // namespace qrt
