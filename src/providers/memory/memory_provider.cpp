// The embedded provider: queue_state (the rules) plus waiting and Asio glue.
#include "memory_provider.hpp"

#include <algorithm>
#include <atomic>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/defer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cassert>
#include <map>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <span>
#include <unordered_map>
#include <utility>

#include "core/abandon_on_shutdown.hpp"
#include "core/borrowing_provider.hpp"
#include "core/deadline.hpp"
#include "core/message_checks.hpp"
#include "core/name_checks.hpp"
#include "core/peek_checks.hpp"
#include "core/random_id.hpp"
#include "queue_borrow.hpp"
#include "queue_state.hpp"
#ifdef QRT_WITH_PERSISTENCE
#include "log/persistent_log.hpp"
#endif

namespace qrt::memory {
namespace detail {
namespace {

namespace asio = boost::asio;
using queue_ptr = std::shared_ptr<queue_state>;

constexpr std::uint64_t dead_letter_bit = std::uint64_t{1} << 63;

std::atomic<std::uint64_t> next_owner_id{1};

delivery_key key_of(const receipt_handle& r) {
  return {(r.item & dead_letter_bit) != 0, r.item & ~dead_letter_bit, r.lock};
}

/// Wakes parked waiters whose time has come (their deadline, or the queue's next timed event),
/// with one timer for the whole provider. A timer per waiter was armed and cancelled on every
/// park, and arming the earliest timer of the reactor reprograms the kernel's timer (a syscall,
/// and in a virtual machine an exit to the hypervisor) once per batch; this one is re-armed
/// only when a waiter's time is earlier than the one it is set for. A waiter woken by a state
/// change takes its entry with it. When the last one leaves, the timer is not cancelled but
/// brought forward to at most `linger` from now: a receiver that parks again within that time
/// (a consumer between batches) finds it armed and leaves it alone. An armed timer keeps its
/// io_context's run() from returning, so run() returns at most `linger` after the last waiter
/// left; closing the provider cancels it.
///
/// Setting the timer is never done by the receive or send that asked for it: it is posted to
/// the timer's executor (apply()). Setting or cancelling an Asio timer takes the reactor's lock,
/// and beside a thread that works timers all the time (a paced producer) that lock is held
/// most of the time and is not fair: a consumer that set the timer itself waited there for
/// 50 µs to over a millisecond in a third of the attempts.
///
/// It also lets go of waiters whose coroutines' context shuts down while they are parked
/// (abandon(), through core/abandon_on_shutdown.hpp): with persistence, a provider kept alive
/// by such a coroutine would never release its directory.
class wake_timer final : public std::enable_shared_from_this<wake_timer>,
                         public qrt::detail::holds_handlers {
 public:
  explicit wake_timer(asio::any_io_executor ex) : timer_(std::move(ex)) {}

  /// `w` (parked on `q`, its coroutine running on `ctx`) is woken at `at` unless it leaves
  /// first (remove()).
  void add(const std::shared_ptr<queue_state>& q, const waiter_ptr& w, time_point at,
           asio::execution_context& ctx) {
    std::lock_guard lock(mutex_);
    due_.emplace(at, parked{q, w, w.get()});
    if (!armed_ || at < *armed_) set(at);
    contexts_.watch(ctx, weak_from_this());
  }

  /// `ctx` is shutting down (its threads have stopped): every waiter whose coroutine runs there
  /// is taken out of the wait, its handler destroyed unrun, so Asio destroys the coroutine as
  /// it does the work the context had queued. The waiter stays in its queue's wait list until
  /// a notify passes over it (waiter::abandoned) and wakes the next one instead.
  void abandon(const asio::execution_context& ctx) override {
    std::vector<parked> all;
    {
      std::lock_guard lock(mutex_);
      contexts_.forget(ctx);
      for (const auto& [at, p] : due_) all.push_back(p);
    }
    std::vector<asio::any_completion_handler<void()>> let_go;
    std::vector<const waiter*> gone;
    for (const auto& p : all) {
      auto q = p.queue.lock();
      auto w = p.w.lock();
      if (!q || !w) continue;
      std::lock_guard lock(q->mutex);
      if (!w->handler || &asio::query(w->handler_executor, asio::execution::context) != &ctx)
        continue;
      let_go.push_back(std::move(*w->handler));
      w->handler.reset();
      w->handler_executor = {};
      w->abandoned = true;
      gone.push_back(w.get());
    }
    {
      std::lock_guard lock(mutex_);
      std::erase_if(due_, [&](const auto& entry) {
        return std::find(gone.begin(), gone.end(), entry.second.id) != gone.end();
      });
      if (due_.empty()) nothing_waits();
    }
    // Destroyed here, no lock held: each posts its coroutine's unwinding to `ctx`, which
    // destroys it unrun, releasing what the coroutine held.
    let_go.clear();
  }
  /// `w`, added for `at`, was woken (or fired): forget it, if fire() has not already.
  void remove(const waiter* w, time_point at) {
    std::lock_guard lock(mutex_);
    auto [first, last] = due_.equal_range(at);
    for (auto it = first; it != last; ++it) {
      if (it->second.id == w) {
        due_.erase(it);
        break;
      }
    }
    if (due_.empty()) nothing_waits();
  }

  /// The provider closed: nothing parks any more, so the timer stops as soon as no waiter is
  /// left (now, or when the last one leaves).
  void close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    if (due_.empty()) nothing_waits();
  }

  /// How many waiters are parked (for tests).
  std::size_t parked_count() {
    std::lock_guard lock(mutex_);
    return due_.size();
  }

  static constexpr auto linger = std::chrono::milliseconds(20);

 private:
  /// No waiter is left (mutex_ held): the timer fires no later than `linger` from now (see the
  /// class comment), or not at all once the provider is closed.
  void nothing_waits() {
    if (!armed_) return;
    if (closed_) {
      set(std::nullopt);
      return;
    }
    const auto latest = clock::now() + linger;
    if (*armed_ > latest) set(latest);
  }

  /// Makes `at` the time the timer fires (none: cancelled), by apply() (mutex_ held).
  void set(std::optional<time_point> at) {
    armed_ = at;
    if (applying_) return;  // the apply() under way (or posted) picks it up
    applying_ = true;
    asio::post(timer_.get_executor(), [self = shared_from_this()] { self->apply(); });
  }

  /// Brings the timer in line with armed_, without mutex_ held while the timer is touched (only
  /// one apply() runs at a time: applying_), until armed_ stops changing meanwhile.
  void apply() {
    std::unique_lock lock(mutex_);
    for (;;) {
      const std::optional<time_point> wanted = armed_;
      lock.unlock();
      if (wanted) {
        timer_.expires_at(*wanted);  // cancels the pending wait, whose handler then does nothing
        timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
          if (ec != asio::error::operation_aborted) self->fire();
        });
      } else {
        timer_.cancel();
      }
      lock.lock();
      if (armed_ == wanted) break;
    }
    applying_ = false;
  }

  void fire() {
    std::vector<std::pair<std::shared_ptr<queue_state>, waiter_ptr>> woken;
    {
      std::lock_guard lock(mutex_);
      const auto now = clock::now();
      // A wait that fired just before apply() set a later time: that later wait stands.
      if (armed_ && *armed_ > now) return;
      armed_.reset();
      while (!due_.empty() && due_.begin()->first <= now) {
        auto q = due_.begin()->second.queue.lock();
        auto w = due_.begin()->second.w.lock();
        if (q && w) woken.emplace_back(std::move(q), std::move(w));
        due_.erase(due_.begin());
      }
      if (!due_.empty()) set(due_.begin()->first);
    }
    for (auto& [q, w] : woken) {
      std::lock_guard lock(q->mutex);
      wake(w);
    }
  }

  struct parked {
    std::weak_ptr<queue_state> queue;
    std::weak_ptr<waiter> w;
    const waiter* id;
  };
  std::mutex mutex_;
  std::multimap<time_point, parked> due_;
  std::optional<time_point> armed_;  ///< when the timer fires next (once apply() ran); none: idle
  bool applying_ = false;            ///< an apply() is posted or running
  bool closed_ = false;
  qrt::detail::watched_contexts contexts_;  ///< of the parked waiters' coroutines
  asio::system_timer timer_;                ///< touched by apply() only
};

/// Suspends until `w` is woken (by a state change) or `wake_at` passes. `q->mutex` must not be
/// held. A wake that happens before we suspend is kept in w->notified, so none is lost.
/// The caller keeps q and w alive until this returns.
awaitable<void> wait_for_change(wake_timer& timer, const queue_ptr& q, const waiter_ptr& w,
                                time_point wake_at) {
  bool added = false;
  // Captures raw pointers: GCC 12 destroys the captures of a lambda that is a temporary inside a
  // co_await expression twice, so shared_ptr captures there lose a reference. The caller keeps
  // q and w alive until we resume.
  auto initiation = [tp = &timer, qp = q.get(), wp = w.get(), ap = &added, wake_at](auto handler) {
    auto ex = asio::get_associated_executor(handler);
    std::lock_guard lock(qp->mutex);
    if (wp->notified) {
      asio::post(ex, std::move(handler));
      return;
    }
    wp->handler.emplace(std::move(handler));
    wp->handler_executor = ex;
    tp->add(qp->shared_from_this(), wp->shared_from_this(), wake_at,
            asio::query(ex, asio::execution::context));
    *ap = true;
  };
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(initiation,
                                                                       asio::use_awaitable);
  if (added) timer.remove(w.get(), wake_at);
}

/// Yields this thread (to whatever else it has queued) until `counter` moves on from `seen` or
/// `for_at_most` has passed (on the steady clock: a step of the system clock must not stretch
/// a spin). Each yield is a continuation, queued on this thread: it wakes no other one.
awaitable<void> spin_for_change(const std::atomic<std::uint64_t>& counter, std::uint64_t seen,
                                std::chrono::nanoseconds for_at_most,
                                const asio::any_io_executor& ex) {
  const auto until = std::chrono::steady_clock::now() + for_at_most;
  do {
    co_await asio::defer(ex, asio::use_awaitable);
  } while (counter.load(std::memory_order_relaxed) == seen &&
           std::chrono::steady_clock::now() < until);
}

/// A send (or publish) that has waited for room in `q` counts among its waiting senders
/// (queue_state::park_sender) until it ends: newer ones store a bounded number of messages past
/// it (queue_state::may_store). release() takes the queue's lock, so not while it is held.
struct send_wait_registration {
  queue_ptr q;
  void release() {
    if (!q) return;
    std::lock_guard lock(q->mutex);
    std::exchange(q, nullptr)->end_send_wait();
  }
  ~send_wait_registration() { release(); }
};

/// The log could not make these operations durable: every one that had succeeded reports it.
template <class Results>
void fail_acknowledged(Results& results, const error& e) {
  for (auto& r : results) {
    if (r) r = e;
  }
}

error queue_missing(const queue_name& q) {
  return fail(errc::queue_not_found, "queue '" + q.str() + "' does not exist");
}
error provider_closed() {
  return fail(errc::closed, "the memory provider is closed");
}
error topic_missing(const std::string& topic) {
  return fail(errc::topic_not_found, "topic '" + topic + "' does not exist");
}
/// A receive of no messages could only wait out its wait and return nothing (contract C8).
error no_messages_asked() {
  return fail(errc::invalid_argument, "max_messages must be at least 1");
}
error subscription_expected(const queue_name& q) {
  return fail(errc::invalid_argument,
              "'" + q.to_string() + "' is not a subscription (queue_name::subscription)");
}

/// What the embedded provider refuses in a queue's options (before anything is stored: the
/// log keeps only what it can replay).
std::optional<error> invalid_queue_options(const queue_options& o) {
  if (o.lock_duration.count() <= 0 || o.lock_duration > longest_duration) {
    return fail(errc::invalid_argument, "lock_duration must be positive and at most 100 years");
  }
  if (o.default_time_to_live &&
      (o.default_time_to_live->count() < 0 || *o.default_time_to_live > longest_duration)) {
    return fail(errc::invalid_argument, "default_time_to_live must be between 0 and 100 years");
  }
  return std::nullopt;
}

class memory_provider;

class memory_session final : public session_receiver {
 public:
  memory_session(std::shared_ptr<memory_provider> owner, queue_ptr q, session_id id,
                 std::uint64_t lock, time_point locked_until)
      : owner_(std::move(owner)),
        q_(std::move(q)),
        id_(std::move(id)),
        lock_(lock),
        locked_until_(locked_until) {}
  ~memory_session() override { release(); }

  const session_id& id() const noexcept override { return id_; }
  time_point locked_until() const noexcept override { return locked_until_; }

  awaitable<result<std::vector<received_message>>> receive(std::size_t max_messages,
                                                           milliseconds wait) override;
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements) override;
  awaitable<result<time_point>> renew_session_lock() override;
  awaitable<result<std::string>> get_state() override;
  awaitable<result<void>> set_state(std::string state) override;
  awaitable<result<void>> close() override {
    release();
    co_return result<void>{};
  }

 private:
  void release() {
    std::lock_guard lock(q_->mutex);
    if (closed_) return;
    closed_ = true;
    auto slot = q_->find_locked_session(id_, lock_, clock::now());
    if (slot) q_->release_session(**slot, clock::now());
  }
  result<session_slot*> locked_slot(time_point now);

  std::shared_ptr<memory_provider> owner_;
  queue_ptr q_;
  session_id id_;
  std::uint64_t lock_;
  time_point locked_until_;
  bool closed_ = false;  // guarded by q_->mutex
};

class memory_provider final : public qrt::detail::provider_that_borrows,
                              public std::enable_shared_from_this<memory_provider> {
 public:
  memory_provider(const options& opts, asio::any_io_executor ex, std::shared_ptr<event_sink> sink)
      : opts_(opts),
        executor_(std::move(ex)),
        sink_(std::move(sink)),
        budget_(opts.max_memory_bytes != 0 ? std::make_shared<byte_budget>(opts.max_memory_bytes)
                                           : nullptr),
        spare_blocks_(
            std::make_shared<spare_block_allowance>(spare_blocks_for(opts.max_memory_bytes))),
        owner_(next_owner_id.fetch_add(1)),
        wake_timer_(std::make_shared<wake_timer>(executor_)) {
    caps_.sessions = session_support::native;
    caps_.max_batch_messages = opts_.channel_buffer_size;
    caps_.max_batch_bytes = 0;
    caps_.max_message_bytes = opts_.max_message_bytes;
    caps_.peek = true;
    caps_.scheduling = true;
    caps_.time_to_live = true;
    caps_.abandon = true;
    caps_.lock_renewal = true;
    caps_.dead_letter_queue = true;
    caps_.max_delivery_count = true;
    caps_.session_state = true;
    caps_.queue_management = true;
    // Topics fan out into ordinary queue states, so every queue feature holds per
    // subscription. A subscription lives as long as the provider (and, persisted, on disk):
    // nothing ties it to a connection.
    const bool topics = !sink_ || sink_->stores_topics();
    caps_.topics = topics;
    caps_.subscription_filters = topics;
    caps_.durable_subscriptions = topics;
    caps_.subscription_sessions = topics;
    id_prefix_ = qrt::detail::random_u64() & 0xfffffffffULL;
  }

  ~memory_provider() override {
    if (sink_) sink_->set_space_listener(nullptr);
  }

  /// The queues registered now, held so that each can be locked once the registry's lock is let
  /// go: a call that visits every queue then never holds the registry while it waits for one.
  std::vector<queue_ptr> registered_queues() const {
    std::shared_lock lock(registry_mutex_);
    std::vector<queue_ptr> queues;
    queues.reserve(by_id_.size());
    for (const auto& [id, q] : by_id_) queues.push_back(q);
    return queues;
  }

  /// The log freed disk space, or the byte budget freed bytes: every send waiting for room looks
  /// again.
  void wake_senders() {
    for (auto& q : registered_queues()) {
      std::lock_guard lock(q->mutex);
      q->senders().notify_all();
    }
  }

  std::string_view name() const noexcept override { return "memory"; }
  const capabilities& caps() const noexcept override { return caps_; }
  std::uint64_t owner() const noexcept { return owner_; }
  event_sink* sink() const noexcept { return sink_.get(); }
  byte_budget* budget() const noexcept { return budget_.get(); }

  std::optional<memory_stats> memory() const override {
    // With a budget its count is the total; without one nothing counts on the send's path, so
    // the queues are asked in turn (a scrape's cost, not a send's).
    if (budget_) return memory_stats{budget_->used(), budget_->limit()};
    memory_stats held;
    for (const auto& q : registered_queues()) {
      std::lock_guard lock(q->mutex);
      held.held_bytes += q->held_bytes();
    }
    return held;
  }

  const asio::any_io_executor& executor() const noexcept { return executor_; }
  std::size_t parked_waiters() const { return wake_timer_->parked_count(); }

  result<void> add_queue(const queue_name& name, const queue_options& o, bool log) {
    if (name.is_subscription()) {
      return fail(errc::invalid_argument, "cannot create '" + name.to_string() +
                                              "' as a queue: it names a subscription "
                                              "(create_subscription)");
    }
    if (auto invalid = check_options(name, o)) return *invalid;
    std::lock_guard lock(registry_mutex_);
    if (closed_) return provider_closed();
    if (by_name_.count(name)) return {};  // idempotent
    if (auto failed = log_failure()) return *failed;
    auto q = make_queue_locked(name, o);
    if (sink_ && log) {
      std::lock_guard qlock(q->mutex);
      sink_->queue_created(name, o);
    }
    return {};
  }

  /// A subscription the log replayed, under its topic (made if the log lost it: a damaged log
  /// must still give the subscription's messages back).
  void restore_subscription(const queue_name& name, const recovered_queue& recovered) {
    std::lock_guard lock(registry_mutex_);
    if (by_name_.count(name)) return;
    auto q = make_queue_locked(name, recovered.options);
    topics_[name.topic()].subscriptions[std::string(name.subscription_name())] = {
        recovered.filter.value_or(subscription_filter{}), q};
  }

  /// A queue the log replayed. Not add_queue(): rebuilding logs nothing, so a log that has
  /// already failed (its writer starts with the open and may meet a full disk before this runs)
  /// must not refuse it; the provider then refuses every call with the log's error.
  void restore_queue(const queue_name& name, const queue_options& options) {
    std::lock_guard lock(registry_mutex_);
    if (by_name_.count(name)) return;
    make_queue_locked(name, options);
  }

  std::optional<error> check_options(const queue_name& name, const queue_options& o) const {
    // Before anything is stored: the log keeps only names that parse, and would refuse to
    // reopen a directory holding an empty one.
    if (auto refused = qrt::detail::unnamed(name, "queue name")) return refused;
    if (name.is_dead_letter()) {
      return fail(errc::invalid_argument, "cannot create '" + name.to_string() +
                                              "': dead-letter queues come with their queue");
    }
    return invalid_queue_options(o);
  }

  /// A new queue state registered under `name`; registry_mutex_ held.
  queue_ptr make_queue_locked(const queue_name& name, const queue_options& o) {
    auto q = std::make_shared<queue_state>(next_queue_id_++, name, o, opts_.max_queue_size,
                                           opts_.max_dead_letter_queue_size, opts_.max_queue_bytes,
                                           budget_, spare_blocks_, sink_.get());
    by_id_[q->id()] = q;
    by_name_[name] = q;
    return q;
  }

  /// Marks removed queues deleted (their waiters wake to queue_not_found), logs each deletion
  /// and frees their messages; the registry no longer holds them. Returns the last lsn.
  lsn retire(std::span<const queue_ptr> queues) {
    lsn last = 0;
    for (const auto& q : queues) {
      std::lock_guard lock(q->mutex);
      q->deleted = true;
      q->release_bytes();
      if (sink_) last = std::max(last, sink_->queue_deleted(q->name()));
      q->wake_everyone();
      q->drop_contents();
    }
    return last;
  }

  void restore(recovered_state&& state) {
    {
      std::lock_guard lock(registry_mutex_);
      for (const auto& topic : state.topics) topics_[topic.str()];
    }
    for (auto& [name, recovered] : state) {
      if (name.is_subscription()) {
        restore_subscription(name, recovered);
      } else {
        restore_queue(name, recovered.options);
      }
      auto q = find(name);
      std::lock_guard lock(q->mutex);
      q->restore(std::move(recovered), clock::now());
    }
  }

  awaitable<result<void>> create_queue(const queue_name& queue, const queue_options& o) override {
    auto r = add_queue(queue, o, true);
    if (!r) co_return r;
    co_return co_await flushed(sink_ ? current_lsn_hint() : 0);
  }

  awaitable<result<void>> delete_queue(const queue_name& queue) override {
    if (queue.is_subscription()) {
      co_return fail(errc::invalid_argument,
                     "'" + queue.to_string() + "' is a subscription: delete_subscription");
    }
    if (queue.is_dead_letter()) co_return qrt::detail::dead_letter_queue_not_deletable(queue);
    if (auto failed = log_failure()) co_return *failed;
    queue_ptr q;
    std::vector<queue_ptr> unused;  // dropped after the registry's lock
    {
      std::lock_guard lock(registry_mutex_);
      if (closed_) co_return provider_closed();
      auto it = by_name_.find(queue);
      if (it == by_name_.end()) co_return queue_missing(queue);
      q = it->second;
      by_name_.erase(it);
      by_id_.erase(q->id());
      unused = retire_from_lookups_locked({&q, 1});
    }
    const lsn last = retire({&q, 1});
    co_return co_await flushed(last);
  }

  awaitable<result<queue_stats>> stats(const queue_name& queue) override {
    auto q = find(queue);
    if (!q) co_return closed_flag() ? provider_closed() : queue_missing(queue);
    if (auto failed = log_failure()) co_return *failed;
    std::lock_guard lock(q->mutex);
    if (q->closed) co_return provider_closed();
    q->sweep(clock::now());
    co_return queue.is_dead_letter() ? q->dead_letter_stats() : q->stats();
  }

  // Moves a message out of `messages` only when it stores it, and fails as a whole only while
  // it has stored none: after a whole failure the caller still holds every message.
  awaitable<result<std::vector<send_outcome>>> send_from(const queue_name& queue,
                                                         std::vector<message>& messages,
                                                         milliseconds timeout) override {
    if (queue.is_dead_letter()) {
      co_return fail(errc::invalid_argument,
                     "cannot send to '" + queue.to_string() + "': it is a dead-letter queue");
    }
    if (queue.is_subscription()) {
      co_return fail(errc::invalid_argument, "cannot send to '" + queue.to_string() +
                                                 "': it is a subscription; publish to its topic " +
                                                 queue.topic());
    }
    auto borrowed = borrow(queue);
    if (!borrowed) co_return closed_flag() ? provider_closed() : queue_missing(queue);
    // Valid while borrowed, and once this send first waits for room, while `owned` holds it: a
    // borrow does not outlive a suspension (the queue may be deleted while the send waits).
    queue_state* const q = borrowed.get();
    queue_ptr owned;

    const std::size_t n = messages.size();
    std::vector<send_outcome> outcomes(n, send_outcome{message_id{}});
    std::size_t pending = 0;
    std::size_t unnamed = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (auto invalid = validate(*q, messages[i])) {
        outcomes[i] = std::move(*invalid);
      } else {
        ++pending;
        if (messages[i].id.empty()) ++unnamed;
      }
    }
    // Each valid message's outcome holds its id before the queue's lock is taken (an id the
    // provider gives is formatted here, a long one the sender chose is copied here), so that
    // storing it under the lock costs no formatting or allocation. A message stored takes its
    // id from there; one that is not keeps the caller's (empty) id.
    std::uint64_t next_id = unnamed ? reserve_message_ids(unnamed) : 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (!outcomes[i].has_error())
        outcomes[i] = messages[i].id.empty() ? message_id_for(next_id++) : messages[i].id;
    }
    // Messages are stored in order, so every one before `next` is done; from `next` on, the
    // done ones are those that failed validation, the only outcomes that are errors there.
    const auto done = [&outcomes](std::size_t i) { return outcomes[i].has_error(); };

    const auto deadline = qrt::detail::deadline_after(clock::now(), timeout);
    auto ex = co_await asio::this_coro::executor;
    lsn last = 0;
    std::size_t next = 0;
    // A send that waits for room enqueues in several holds of the queue's lock, and each hold is
    // its own operation for the log: (last lsn, end of its messages) per hold, so that a failed
    // later hold does not fail messages an earlier one already made durable.
    std::vector<std::pair<lsn, std::size_t>> holds;
    waiter_ptr w;
    // Registered with the byte budget once it was found exhausted; unregistered on return.
    struct budget_registration {
      byte_budget* budget = nullptr;
      ~budget_registration() {
        if (budget) budget->remove_waiter();
      }
    } registered;
    // Once this send has waited for room, it counts among the queue's waiting senders until the
    // loop ends (or the call ends early): newcomers queue behind it.
    send_wait_registration waiting;
    enum class limit { queue, budget, disk } blocked_by = limit::queue;
    while (pending > 0) {
      time_point wake_at{};
      {
        std::lock_guard lock(q->mutex);
        if (w) {
          q->senders().remove(w);
          w.reset();
        }
        if (q->deleted || q->closed) {
          const error gone = q->deleted ? queue_missing(queue) : provider_closed();
          if (pending == n) co_return gone;
          for (std::size_t i = next; i < n; ++i) {
            if (!done(i)) outcomes[i] = gone;
          }
          break;
        }
        if (auto failed = log_failure()) {
          if (pending == n) co_return *failed;
          for (std::size_t i = next; i < n; ++i) {
            if (!done(i)) outcomes[i] = *failed;
          }
          break;
        }
        const auto now = clock::now();
        q->sweep(now);
        q->mutex.free_retired_bodies();  // on this thread, which most likely allocated them
        const bool disk_room = !sink_ || sink_->has_room();
        if (!disk_room) blocked_by = limit::disk;
        for (; next < n && disk_room; ++next) {
          if (done(next)) continue;
          message& m = messages[next];
          const std::uint64_t bytes = accounted_bytes(m);
          if (!q->has_room(bytes) || !q->may_store(waiting.q != nullptr)) {
            blocked_by = limit::queue;
            break;
          }
          if (!reserve(bytes, registered.budget)) {
            blocked_by = limit::budget;
            break;
          }
          q->stored_by_send(waiting.q != nullptr);
          if (m.id.empty()) m.id = *outcomes[next];
          q->enqueue(std::move(m), bytes, now, last);
          --pending;
        }
        while (next < n && done(next)) ++next;
        if (last != 0 && (holds.empty() || holds.back().first != last))
          holds.emplace_back(last, next);
        if (pending == 0) {
          // Room is left: pass the wake on, since the bytes freed may fit another waiting send.
          if (waiting.q) {
            std::exchange(waiting.q, nullptr)->end_send_wait();
          } else if (q->has_room(0)) {
            q->senders().notify(1);
          }
          break;
        }
        if (now >= deadline) {
          const error full = queue_full_error(*q, blocked_by);
          for (std::size_t i = next; i < n; ++i) {
            if (!done(i)) outcomes[i] = full;
          }
          break;
        }
        // No spin here (unlike receive()): a sender that found no room can go no faster than
        // the consumers that free it, so spinning would only burn a core beside them.
        w = std::make_shared<waiter>();
        q->park_sender(w, waiting.q != nullptr);
        if (!owned) owned = q->shared_from_this();
        waiting.q = owned;
        wake_at = deadline;
        if (auto event = q->next_event()) wake_at = std::min(wake_at, *event);
        // Without disk room, the log's space listener wakes us when it deletes a segment.
      }
      borrowed.release();
      co_await wait_for_change(*wake_timer_, owned, w, wake_at);
    }
    borrowed.release();
    waiting.release();  // before waiting for the log: the next sender may store meanwhile
    std::size_t unacknowledged_from = 0;
    for (const auto& [upto, end] : holds) {
      if (auto r = co_await flushed(upto); !r) {
        auto unacknowledged = std::span(outcomes).subspan(unacknowledged_from);
        fail_acknowledged(unacknowledged, r.error());
        break;
      }
      unacknowledged_from = end;
    }
    co_return outcomes;
  }

  awaitable<result<std::vector<received_message>>> receive(const queue_name& queue,
                                                           std::size_t max_messages,
                                                           milliseconds wait) override {
    if (max_messages == 0) co_return no_messages_asked();
    auto borrowed = borrow(queue);
    if (!borrowed) co_return closed_flag() ? provider_closed() : queue_missing(queue);
    queue_state* const q = borrowed.get();  // held by the borrow, then by long_poll()'s argument
    const bool dead_letter = queue.is_dead_letter();
    if (!dead_letter && q->options().requires_session) {
      co_return fail(errc::invalid_argument,
                     "queue '" + queue.str() + "' requires sessions: use accept_session");
    }
    const std::size_t max = std::min(max_messages, opts_.channel_buffer_size);
    const auto started = clock::now();
    const auto deadline = qrt::detail::deadline_after(started, wait);
    auto look = [&](time_point now, std::vector<received_message>& out) -> result<void> {
      if (q->deleted) return queue_missing(queue);
      if (q->closed) return provider_closed();
      if (auto failed = log_failure()) return *failed;
      q->sweep(now);
      lsn ignored = 0;  // a receive does not wait for its delivery count to be durable
      q->take(dead_letter, max, now, out, owner_, ignored);
      return {};
    };
    {
      // What is ready already (the usual case while a queue is busy) is taken here, without
      // the long poll's coroutine frame; so is the empty answer of a receive that does not wait.
      std::vector<received_message> out;
      std::lock_guard lock(q->mutex);
      if (auto looked = look(started, out); !looked) co_return looked.error();
      if (!out.empty() || started >= deadline) co_return out;
    }
    auto park = [&](const waiter_ptr& w) { q->core(dead_letter).receivers.add(w); };
    auto unpark = [&](const waiter_ptr& w) { q->core(dead_letter).receivers.remove(w); };
    queue_ptr owned = q->shared_from_this();
    borrowed.release();
    co_return co_await long_poll(std::move(owned), deadline, opts_.receive_spin, look, park,
                                 unpark);
  }

  awaitable<result<std::vector<received_message>>> peek(const queue_name& queue,
                                                        std::size_t max_messages,
                                                        std::int64_t from_sequence) override {
    if (auto refused = qrt::detail::peek_refusal(max_messages, from_sequence)) co_return *refused;
    auto q = find(queue);
    if (!q) co_return closed_flag() ? provider_closed() : queue_missing(queue);
    if (auto failed = log_failure()) co_return *failed;
    std::vector<received_message> out;
    std::lock_guard lock(q->mutex);
    if (q->closed) co_return provider_closed();
    q->sweep(clock::now());
    q->peek(queue.is_dead_letter(), max_messages, static_cast<std::uint64_t>(from_sequence), out);
    co_return out;
  }

  awaitable<std::vector<result<void>>> settle_from(
      const std::vector<settlement>& settlements) override {
    std::vector<result<void>> results(settlements.size());
    lsn last = 0;
    std::size_t i = 0;
    while (i < settlements.size()) {
      // Consecutive settlements of one queue share one lock.
      const auto queue_key = settlements[i].receipt.queue;
      const auto q = borrow_by_id(queue_key);  // released at the end of the group, after the lock
      std::unique_lock<queue_mutex> lock;
      if (q) lock = std::unique_lock(q->mutex);
      const auto now = clock::now();
      if (q) q->sweep(now);
      for (; i < settlements.size() && settlements[i].receipt.queue == queue_key; ++i) {
        results[i] = settle_locked(q.get(), settlements[i], now, last);
      }
    }
    if (waits_for_log(last)) {
      if (auto r = co_await flushed(last); !r) fail_acknowledged(results, r.error());
    }
    co_return results;
  }

  result<void> settle_locked(queue_state* q, const settlement& s, time_point now, lsn& last) {
    if (auto e = check_receipt(q, s.receipt)) return *e;
    if (q->closed) return provider_closed();
    if (auto failed = log_failure()) return *failed;
    return q->settle(key_of(s.receipt), s, now, last);
  }

  std::optional<error> check_receipt(queue_state* q, const receipt_handle& r) const {
    if (!r.valid() || r.owner != owner_) {
      return fail(errc::invalid_receipt, r.valid() ? "receipt was issued by another provider"
                                                   : "empty receipt (peeked messages have none)");
    }
    if (!q || q->deleted) return fail(errc::invalid_receipt, "receipt's queue no longer exists");
    return std::nullopt;
  }

  awaitable<result<time_point>> renew_lock(const receipt_handle& receipt) override {
    queue_ptr q = find_by_id(receipt.queue);
    if (auto e = check_receipt(q.get(), receipt)) co_return *e;
    if (auto failed = log_failure()) co_return *failed;
    std::lock_guard lock(q->mutex);
    if (q->closed) co_return provider_closed();
    const auto now = clock::now();
    q->sweep(now);
    co_return q->renew(key_of(receipt), now);
  }

  awaitable<result<std::shared_ptr<session_receiver>>> accept_session(
      const queue_name& queue, std::optional<session_id> which, milliseconds wait) override {
    auto q = find(queue);
    if (!q) co_return closed_flag() ? provider_closed() : queue_missing(queue);
    if (queue.is_dead_letter()) {
      // Its messages keep their session ids, but it hands them out without session locks.
      co_return fail(errc::invalid_argument, "'" + queue.to_string() +
                                                 "' is a dead-letter queue, which has no "
                                                 "sessions: receive from it instead");
    }
    if (!q->options().requires_session) {
      co_return fail(errc::invalid_argument,
                     "queue '" + queue.str() + "' was not created with requires_session");
    }
    if (which) {
      if (auto refused = qrt::detail::unnamed(*which, "session id")) co_return *refused;
    }
    const auto deadline = qrt::detail::deadline_after(clock::now(), wait);
    auto ex = co_await asio::this_coro::executor;
    waiter_ptr w;
    for (;;) {
      time_point wake_at{};
      {
        std::lock_guard lock(q->mutex);
        if (w) {
          q->session_acceptors().remove(w);
          w.reset();
        }
        if (q->deleted) co_return queue_missing(queue);
        if (q->closed) co_return provider_closed();
        if (auto failed = log_failure()) co_return *failed;
        const auto now = clock::now();
        q->sweep(now);
        if (which) {
          auto slot = q->lock_session(*which, now);
          if (!slot) co_return slot.error();
          co_return make_session(q, **slot);
        }
        if (auto* slot = q->lock_next_session(now)) co_return make_session(q, *slot);
        if (now >= deadline) {
          co_return fail(errc::timeout, "no unlocked session with messages in '" + queue.str() +
                                            "' within " + std::to_string(wait.count()) + " ms");
        }
        w = std::make_shared<waiter>();
        q->session_acceptors().add(w);
        wake_at = deadline;
        if (auto event = q->next_event()) wake_at = std::min(wake_at, *event);
      }
      co_await wait_for_change(*wake_timer_, q, w, wake_at);
    }
  }

  // ---- topics (docs/adr/0050-topics-and-subscriptions.md) ----
  //
  // A topic is a list of subscriptions under registry_mutex_; each subscription is an ordinary
  // queue state registered under its queue_name, so receive, settle, sessions, the dead-letter
  // queue, scheduling and TTL hold per subscription unchanged.

  awaitable<result<void>> create_topic(const topic_name& topic) override {
    if (!caps_.topics) co_return topics_unsupported();
    if (auto refused = qrt::detail::unnamed(topic, "topic name")) co_return *refused;
    lsn last = 0;
    {
      std::lock_guard lock(registry_mutex_);
      if (closed_) co_return provider_closed();
      if (topics_.count(topic.str())) co_return result<void>{};  // idempotent, as create_queue
      if (auto failed = log_failure()) co_return *failed;
      topics_[topic.str()];
      if (sink_) last = sink_->topic_created(topic);
    }
    co_return co_await flushed(last);
  }

  awaitable<result<void>> delete_topic(const topic_name& topic) override {
    if (!caps_.topics) co_return topics_unsupported();
    if (auto failed = log_failure()) co_return *failed;
    std::vector<queue_ptr> gone;
    std::vector<queue_ptr> unused;  // dropped after the registry's lock
    {
      std::lock_guard lock(registry_mutex_);
      if (closed_) co_return provider_closed();
      auto it = topics_.find(topic.str());
      if (it == topics_.end()) co_return topic_missing(topic.str());
      for (auto& [name, sub] : it->second.subscriptions) {
        by_name_.erase(sub.queue->name());
        by_id_.erase(sub.queue->id());
        gone.push_back(sub.queue);
      }
      unused = retire_from_lookups_locked(gone);
      topics_.erase(it);
    }
    // Subscriptions first: a replay that saw the topic gone but a subscription left would
    // have nowhere to put it.
    lsn last = retire(gone);
    if (sink_) last = std::max(last, sink_->topic_deleted(topic));  // after its subscriptions
    co_return co_await flushed(last);
  }

  awaitable<result<void>> create_subscription(const queue_name& subscription,
                                              const subscription_options& o) override {
    if (!caps_.topics) co_return topics_unsupported();
    if (!subscription.is_subscription()) co_return subscription_expected(subscription);
    if (auto invalid = check_options(subscription, o.queue)) co_return *invalid;
    lsn last = 0;
    {
      std::lock_guard lock(registry_mutex_);
      if (closed_) co_return provider_closed();
      auto it = topics_.find(subscription.topic());
      if (it == topics_.end()) co_return topic_missing(subscription.topic());
      // Idempotent as create_queue is: an existing subscription keeps its filter and options.
      if (by_name_.count(subscription)) co_return result<void>{};
      if (auto failed = log_failure()) co_return *failed;
      auto q = make_queue_locked(subscription, o.queue);
      it->second.subscriptions[std::string(subscription.subscription_name())] = {o.filter, q};
      if (sink_) {
        std::lock_guard qlock(q->mutex);
        last = sink_->subscription_created(subscription, o);
      }
    }
    co_return co_await flushed(last);
  }

  awaitable<result<void>> delete_subscription(const queue_name& subscription) override {
    if (!caps_.topics) co_return topics_unsupported();
    if (!subscription.is_subscription() || subscription.is_dead_letter()) {
      co_return subscription_expected(subscription);
    }
    if (auto failed = log_failure()) co_return *failed;
    queue_ptr q;
    std::vector<queue_ptr> unused;  // dropped after the registry's lock
    {
      std::lock_guard lock(registry_mutex_);
      if (closed_) co_return provider_closed();
      auto topic = topics_.find(subscription.topic());
      if (topic == topics_.end()) co_return topic_missing(subscription.topic());
      auto it = topic->second.subscriptions.find(std::string(subscription.subscription_name()));
      if (it == topic->second.subscriptions.end()) co_return queue_missing(subscription);
      q = it->second.queue;
      topic->second.subscriptions.erase(it);
      by_name_.erase(subscription);
      by_id_.erase(q->id());
      unused = retire_from_lookups_locked({&q, 1});
    }
    const lsn last = retire({&q, 1});
    co_return co_await flushed(last);
  }

  awaitable<result<std::vector<subscription_info>>> list_subscriptions(
      const topic_name& topic) override {
    if (!caps_.topics) co_return topics_unsupported();
    std::lock_guard lock(registry_mutex_);
    if (closed_) co_return provider_closed();
    auto it = topics_.find(topic.str());
    if (it == topics_.end()) co_return topic_missing(topic.str());
    std::vector<subscription_info> out;
    out.reserve(it->second.subscriptions.size());
    for (const auto& [name, sub] : it->second.subscriptions) {
      out.push_back({sub.queue->name(), sub.filter});
    }
    co_return out;
  }

  // Each message goes to every subscription whose filter it matches when it is published, all
  // of them or none: the copies are enqueued under all their queues' locks at once (taken in
  // id order, so two publishes cannot deadlock), in one operation for the log. A message one of
  // its subscriptions refuses (too large for its own limit, no session id where sessions are
  // required) fails alone and goes nowhere. A full subscription holds the message back until
  // `timeout` (as a full queue holds a send); then it and the messages after it fail with
  // queue_full and go nowhere, so no subscription sees a later message without an earlier one
  // (docs/contract.md, topics). A message no subscription matches is accepted and kept nowhere.
  //
  // As send_from: a message is moved from `messages` only once it is stored, and the call fails
  // as a whole only before it stored any, so a retry can publish the same vector again.
  awaitable<result<std::vector<send_outcome>>> publish_from(const topic_name& topic,
                                                            std::vector<message>& messages,
                                                            milliseconds timeout) override {
    if (!caps_.topics) co_return topics_unsupported();
    {
      std::lock_guard lock(registry_mutex_);
      if (closed_) co_return provider_closed();
      if (!topics_.count(topic.str())) co_return topic_missing(topic.str());
    }
    if (auto failed = log_failure()) co_return *failed;
    const std::size_t n = messages.size();
    std::vector<send_outcome> outcomes(n, send_outcome{message_id{}});
    const auto deadline = qrt::detail::deadline_after(clock::now(), timeout);
    auto ex = co_await asio::this_coro::executor;
    std::vector<lsn> durable_at(n, 0);
    std::optional<error> rest;  // once set, every later message fails with it
    struct budget_registration {
      byte_budget* budget = nullptr;
      ~budget_registration() {
        if (budget) budget->remove_waiter();
      }
    } registered;
    // As a send: once this publish has waited for room in a subscription, it counts there among
    // the waiting senders until the call ends. It waits in one subscription at a time.
    send_wait_registration waiting;
    for (std::size_t i = 0; i < n; ++i) {
      if (rest) {
        outcomes[i] = *rest;
        continue;
      }
      message& m = messages[i];
      if (auto invalid = validate_message(m)) {
        outcomes[i] = std::move(*invalid);
        continue;
      }
      for (;;) {
        auto targets = subscribers(topic, m);
        if (!targets) {
          rest = targets.error();
          outcomes[i] = *rest;
          break;
        }
        std::optional<error> refused;
        for (const auto& q : *targets) {
          if (auto invalid = validate(*q, m)) {
            refused = std::move(invalid);
            break;
          }
        }
        if (!refused) refused = validate_copies(m, targets->size());
        if (!refused && sink_ && !targets->empty()) {
          std::vector<queue_name> names;
          names.reserve(targets->size());
          for (const auto& q : *targets) names.push_back(q->name());
          refused = sink_->refuse_publish(topic, m, names);
        }
        if (refused) {
          outcomes[i] = std::move(*refused);
          break;
        }
        const std::uint64_t bytes = accounted_bytes(m);
        std::vector<std::unique_lock<queue_mutex>> locks;
        locks.reserve(targets->size());
        for (const auto& q : *targets) locks.emplace_back(q->mutex);
        // A subscription deleted since the snapshot no longer matches: look again.
        bool stale = false;
        for (const auto& q : *targets) stale = stale || q->deleted;
        if (stale) continue;
        if (std::any_of(targets->begin(), targets->end(),
                        [](const queue_ptr& q) { return q->closed; })) {
          rest = provider_closed();
          outcomes[i] = *rest;
          break;
        }
        if (auto failed = log_failure()) {
          rest = *failed;
          outcomes[i] = *rest;
          break;
        }
        const auto now = clock::now();
        enum class limit { queue, budget, disk } blocked_by = limit::queue;
        queue_state* full = nullptr;
        for (const auto& q : *targets) {
          q->sweep(now);
          q->mutex.free_retired_bodies();
          if (!full && (!q->has_room(bytes) || !q->may_store(q == waiting.q))) full = q.get();
        }
        bool room = full == nullptr;
        if (room && !targets->empty() && sink_ && !sink_->has_room()) {
          room = false;
          blocked_by = limit::disk;
        }
        if (room && !targets->empty() && !reserve(bytes * targets->size(), registered.budget)) {
          room = false;
          blocked_by = limit::budget;
        }
        if (room) {
          if (m.id.empty()) m.id = message_id_for(reserve_message_ids(1));
          outcomes[i] = m.id;
          lsn last = 0;
          // Persisted, one event carries the message and every copy's sequence.
          std::optional<stored_message> logged;
          if (sink_ && !targets->empty()) logged = stored_message{0, m, now, 0, std::nullopt};
          std::vector<std::pair<queue_name, std::uint64_t>> copies;
          copies.reserve(targets->size());
          for (std::size_t k = 0; k < targets->size(); ++k) {
            message copy = k + 1 == targets->size() ? std::move(m) : m;
            const auto& q = (*targets)[k];
            copies.emplace_back(q->name(), q->enqueue(std::move(copy), bytes, now, last, !logged));
          }
          if (logged) last = sink_->published(topic, *logged, copies);
          durable_at[i] = last;
          // Pass a wake on where room is left, as send does: the bytes freed for us may fit
          // another waiting sender.
          for (const auto& q : *targets) {
            q->stored_by_send(q == waiting.q);
            if (q->has_room(0)) q->senders().notify(1);
          }
          break;
        }
        if (now >= deadline) {
          rest = queue_full_error(full ? *full : *targets->front(), blocked_by);
          outcomes[i] = *rest;
          break;
        }
        // Wait on the subscription that has no room (any of them when the budget or the disk
        // is what is short: wake_senders() wakes every queue's senders).
        queue_ptr park_on = full ? full->shared_from_this() : targets->front();
        auto w = std::make_shared<waiter>();
        const bool waited_here = park_on == waiting.q;
        park_on->park_sender(w, waited_here);
        time_point wake_at = deadline;
        if (auto event = park_on->next_event()) wake_at = std::min(wake_at, *event);
        locks.clear();
        if (!waited_here) {  // it now waits here, and no longer where it waited before
          waiting.release();
          waiting.q = park_on;
        }
        co_await wait_for_change(*wake_timer_, park_on, w, wake_at);
        std::lock_guard relock(park_on->mutex);
        park_on->senders().remove(w);
      }
    }
    waiting.release();  // before waiting for the log: the next sender may store meanwhile
    // Durable in every subscription before its outcome says so.
    for (std::size_t i = 0; i < n; ++i) {
      if (durable_at[i] == 0) continue;
      if (auto r = co_await flushed(durable_at[i]); !r) {
        auto unacknowledged = std::span(outcomes).subspan(i);
        fail_acknowledged(unacknowledged, r.error());
        break;
      }
    }
    co_return outcomes;
  }

  awaitable<void> close() override {
    std::vector<queue_ptr> queues;
    {
      std::lock_guard lock(registry_mutex_);
      closed_ = true;
      for (auto& [name, q] : by_name_) queues.push_back(q);
    }
    for (auto& q : queues) {
      std::lock_guard lock(q->mutex);
      q->closed = true;
      q->wake_everyone();
    }
    wake_timer_->close();
    // Writes what was appended and lets go of the persistence directory (a sync's wait on this
    // thread, once): a new provider of this process may open it as soon as close() returns.
    if (sink_) sink_->close();
    co_return;
  }

  /// Whether flushed(upto) has anything to wait for. Hot paths ask first: awaiting flushed()
  /// costs a coroutine frame even when it returns at once.
  bool waits_for_log(lsn upto) const noexcept { return sink_ && upto != 0; }
  awaitable<result<void>> flushed(lsn upto) {
    if (!waits_for_log(upto)) co_return result<void>{};
    co_return co_await sink_->flushed(upto);
  }

 private:
  friend class memory_session;

  /// The long poll of a receive, a queue's or a session's. Under the queue's lock, `look(now,
  /// out)` checks the queue and takes what is ready into `out` (an error ends the poll). With
  /// nothing taken before `deadline`, the receive parks (`park(w)` puts the waiter on its list,
  /// `unpark(w)` takes it off when it looks again) until a change or the queue's next timed
  /// event. For up to `spin` (options::receive_spin), an empty queue is looked at again before
  /// the receive parks: each look yields this thread to whatever else it has queued (a sender on
  /// it, first of all), and a sender on another thread usually delivers within microseconds.
  /// Parking instead costs a waiter and a cross-thread wake-up (a syscall on each side) per batch.
  /// Where the spins stopped paying (messages come further apart than the spin), receives park at
  /// once (spin_score). The callables are the caller's named locals, alive until this returns.
  template <class Look, class Park, class Unpark>
  awaitable<result<std::vector<received_message>>> long_poll(queue_ptr q, time_point deadline,
                                                             std::chrono::microseconds spin,
                                                             Look& look, Park& park,
                                                             Unpark& unpark) {
    std::optional<time_point> spin_until;  // set when the receive first finds the queue empty
    bool spun = false;                     // spinning since it last looked
    std::vector<received_message> out;
    auto ex = co_await asio::this_coro::executor;
    waiter_ptr w;
    for (;;) {
      time_point wake_at{};
      std::chrono::nanoseconds spin_left{0};  // > 0: spin this long (at most) before looking again
      std::uint64_t seen = 0;
      {
        std::lock_guard lock(q->mutex);
        if (w) {
          unpark(w);
          w.reset();
        }
        const auto now = clock::now();
        if (auto looked = look(now, out); !looked) co_return looked.error();
        if (!out.empty() || now >= deadline) {
          if (spun && !out.empty()) q->receive_spins.record(true);
          break;
        }
        if (!spin_until) {
          spin_until = spin.count() > 0 && q->receive_spins.worth_trying()
                           ? std::min(now + spin, deadline)
                           : now;
        }
        // The second test ends the spin if the (system) clock stepped back.
        if (now < *spin_until && now + spin >= *spin_until) {
          spin_left = *spin_until - now;
          spun = true;
          seen = q->readied.load(std::memory_order_relaxed);
        } else {
          if (std::exchange(spun, false)) q->receive_spins.record(false);
          w = std::make_shared<waiter>();
          park(w);
          wake_at = deadline;
          if (auto event = q->next_event()) wake_at = std::min(wake_at, *event);
        }
      }
      if (spin_left.count() > 0) {
        co_await spin_for_change(q->readied, seen, spin_left, ex);
        continue;
      }
      co_await wait_for_change(*wake_timer_, q, w, wake_at);
    }
    co_return out;
  }

  /// Reserves a message's bytes in the provider's budget. The first time it is found exhausted
  /// the send registers as waiting (`registered`) and looks once more, so a release between the
  /// two is never missed: either it sees the bytes, or the release sees it waiting.
  bool reserve(std::uint64_t bytes, byte_budget*& registered) {
    if (!budget_ || budget_->try_reserve(bytes)) return true;
    if (registered) return false;
    budget_->add_waiter();
    registered = budget_.get();
    return budget_->try_reserve(bytes);
  }

  /// The error a send reports at its deadline, naming the limit that held it back.
  template <class Limit>
  error queue_full_error(const queue_state& q, Limit blocked_by) const {
    switch (blocked_by) {
      case Limit::disk:
        return fail(errc::queue_full, "the persistence log stayed at its disk limit (" +
                                          std::to_string(opts_.max_disk_bytes) +
                                          " bytes) until the send deadline");
      case Limit::budget:
        return fail(errc::queue_full, "the memory provider's byte budget stayed used up (" +
                                          std::to_string(opts_.max_memory_bytes) +
                                          " bytes, max_memory_bytes) until the send deadline");
      case Limit::queue:
        break;
    }
    if (q.full_by_count()) {
      const char* setting =
          q.options().max_size != 0 ? "the queue's own max_size" : "max_queue_size";
      return fail(errc::queue_full, "queue '" + q.name().str() + "' stayed full (" +
                                        std::to_string(q.max_size()) + " messages, " + setting +
                                        ") until the send deadline");
    }
    return fail(errc::queue_full, "queue '" + q.name().str() + "' stayed full (" +
                                      std::to_string(q.max_bytes()) +
                                      " bytes, max_queue_bytes) until the send deadline");
  }

  std::shared_ptr<session_receiver> make_session(const queue_ptr& q, session_slot& slot) {
    return std::make_shared<memory_session>(shared_from_this(), q, slot.id, slot.lock,
                                            slot.locked_until);
  }

  /// The refusal of topic calls by a provider whose log does not store topics.
  error topics_unsupported() const {
    return fail(errc::unsupported, "this memory provider's persistence log does not store topics");
  }

  /// The subscriptions of `topic` that `m` matches now, in queue id order (the order publish
  /// locks them in).
  result<std::vector<queue_ptr>> subscribers(const topic_name& topic, const message& m) {
    std::lock_guard lock(registry_mutex_);
    if (closed_) return provider_closed();
    auto it = topics_.find(topic.str());
    if (it == topics_.end()) return topic_missing(topic.str());
    std::vector<queue_ptr> out;
    for (const auto& [name, sub] : it->second.subscriptions) {
      if (sub.filter.matches(m)) out.push_back(sub.queue);
    }
    std::sort(out.begin(), out.end(),
              [](const queue_ptr& a, const queue_ptr& b) { return a->id() < b->id(); });
    return out;
  }

  /// What a message must be whichever queue it goes to (or none: a publish that no subscription
  /// takes is still checked, so that a bad message fails the same way whoever listens).
  std::optional<error> validate_message(const message& m) const {
    if (m.wire_size() > opts_.max_message_bytes) {
      return fail(errc::message_too_large, "message of " + std::to_string(m.wire_size()) +
                                               " bytes exceeds the limit of " +
                                               std::to_string(opts_.max_message_bytes) + " bytes");
    }
    if (auto refused = qrt::detail::non_positive_time_to_live(m)) return refused;
    if (m.time_to_live && *m.time_to_live > longest_duration) {
      return fail(errc::invalid_argument, "time_to_live must be at most 100 years");
    }
    if (m.session) {
      if (auto refused = qrt::detail::unnamed(*m.session, "message's session id")) return refused;
    }
    return std::nullopt;
  }

  /// A publish stores one copy per matching subscription, each counted in max_memory_bytes: a
  /// message whose copies together exceed it would wait for room that can never come.
  std::optional<error> validate_copies(const message& m, std::size_t copies) const {
    if (!budget_ || copies < 2) return std::nullopt;  // one copy: validate() checked it
    const std::uint64_t bytes = accounted_bytes(m);
    if (bytes == 0 || copies <= budget_->limit() / bytes) return std::nullopt;
    return fail(errc::message_too_large,
                "message of " + std::to_string(m.wire_size()) + " bytes (" + std::to_string(bytes) +
                    " with qrt's bookkeeping) goes to " + std::to_string(copies) +
                    " subscriptions, whose copies together exceed max_memory_bytes (" +
                    std::to_string(budget_->limit()) + " bytes)");
  }

  std::optional<error> validate(const queue_state& q, const message& m) const {
    if (auto invalid = validate_message(m)) return invalid;
    if (const auto own = q.options().max_message_bytes; own != 0 && m.wire_size() > own) {
      return fail(errc::message_too_large, "message of " + std::to_string(m.wire_size()) +
                                               " bytes exceeds the max_message_bytes of queue '" +
                                               q.name().str() + "' (" + std::to_string(own) +
                                               " bytes)");
    }
    // A message bigger than a byte limit would wait for room that can never come.
    for (const auto& [limit, field] : {std::pair{opts_.max_queue_bytes, "max_queue_bytes"},
                                       std::pair{opts_.max_memory_bytes, "max_memory_bytes"}}) {
      if (limit != 0 && accounted_bytes(m) > limit) {
        return fail(errc::message_too_large, "message of " + std::to_string(m.wire_size()) +
                                                 " bytes (" + std::to_string(accounted_bytes(m)) +
                                                 " with qrt's bookkeeping) exceeds " + field +
                                                 " (" + std::to_string(limit) + " bytes)");
      }
    }
    if (q.options().requires_session && !m.session) {
      return fail(errc::invalid_argument, "queue '" + q.name().str() +
                                              "' requires sessions: the message has no session id");
    }
    if (sink_) return sink_->refuse(q.name(), m);
    return std::nullopt;
  }

  /// The first of `count` fresh message ids (message_id_for()): one atomic step per send call
  /// rather than per message, since concurrent senders share the counter. Ids reserved and then
  /// not used (a message that could not be stored) are skipped: ids need not be dense.
  std::uint64_t reserve_message_ids(std::size_t count) {
    return id_counter_.fetch_add(count, std::memory_order_relaxed);
  }

  /// The id the provider gives the `n`th message it names: fifteen hex digits, 36 random bits
  /// of this provider followed by 24 counting bits, unique per provider instance and short
  /// enough for std::string's inline storage (no allocation per message).
  message_id message_id_for(std::uint64_t n) const {
    const std::uint64_t v = (id_prefix_ << 24) ^ n;
    static constexpr char hex[] = "0123456789abcdef";
    message_id id(15, '0');
    for (int i = 14; i >= 0; --i)
      id[static_cast<std::size_t>(i)] = hex[(v >> (4 * (14 - i))) & 0xf];
    return id;
  }

  // Creating a queue logs one event; its lsn is not returned by add_queue, so wait for all.
  lsn current_lsn_hint() const { return std::numeric_limits<lsn>::max(); }

  /// Set once the persistence log could not store an event: memory may hold changes the disk
  /// lacks, so every operation is refused (before it changes anything) until reopened.
  std::optional<error> log_failure() const { return sink_ ? sink_->failure() : std::nullopt; }

  // Every send, receive and settle looks its queue up here: shared, so that the lookups of
  // several threads do not wait for one another (an exclusive lock made a seventh of the futex
  // calls at 4 producers and 4 consumers). Changes to the registry take it exclusively.
  bool closed_flag() {
    std::shared_lock lock(registry_mutex_);
    return closed_;
  }

  queue_ptr find(const queue_name& queue) {
    std::shared_lock lock(registry_mutex_);
    auto it = by_name_.find(queue.parent());
    return it == by_name_.end() ? nullptr : it->second;
  }
  queue_ptr find_by_id(std::uint64_t id) {
    std::shared_lock lock(registry_mutex_);
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : it->second;
  }

  /// `queue`'s state for the part of a send, receive or settle that does not suspend (see
  /// queue_borrow); empty when the queue does not exist. find() takes the registry's shared lock
  /// and copies a shared_ptr: four atomic writes a call to two cache lines that every calling
  /// thread writes. A borrow writes only this thread's slot when the thread found the same
  /// queue last time and no queue has left the registry since.
  queue_borrow borrow(const queue_name& queue) {
    auto& mine = this_threads_borrows();
    return borrow_through(mine, mine.by_name, queue, [&]() -> queue_state* {
      auto it = by_name_.find(queue.parent());
      return it == by_name_.end() ? nullptr : it->second.get();
    });
  }
  queue_borrow borrow_by_id(std::uint64_t id) {
    auto& mine = this_threads_borrows();
    return borrow_through(mine, mine.by_id, id, [&]() -> queue_state* {
      auto it = by_id_.find(id);
      return it == by_id_.end() ? nullptr : it->second.get();
    });
  }
  /// The thread's `cached` lookup of `key` when it is still good, else `lookup_locked()` under
  /// the registry's shared lock (remembered for next time); then announced.
  template <class Key, class Lookup>
  queue_borrow borrow_through(borrow_cache& mine, cached_lookup<Key>& cached, const Key& key,
                              Lookup lookup_locked) {
    for (;;) {
      auto generation = registry_generation_.load(std::memory_order_acquire);
      queue_state* state = nullptr;
      if (cached.provider == owner_ && cached.generation == generation && cached.key == key) {
        state = cached.state;
      } else {
        std::shared_lock lock(registry_mutex_);
        state = lookup_locked();
        if (!state) return {};
        generation = registry_generation_.load(std::memory_order_relaxed);  // moves under the lock
        cached = {owner_, generation, key, state};
      }
      if (auto b = announce(mine, state, generation)) return b;
    }
  }
  /// Announces `state`, found reachable at `generation`, as in use by this thread. Empty when a
  /// queue left the registry meanwhile (the state may be gone): the caller looks again. Once the
  /// announcement is seen with the generation unchanged, a deleter (which moves the generation
  /// on before it looks at the slots) finds it and keeps the state.
  queue_borrow announce(borrow_cache& mine, queue_state* state, std::uint64_t generation) {
    assert(mine.slot->in_use.load(std::memory_order_relaxed) == nullptr &&
           "a thread holds one borrow at a time");
    mine.slot->in_use.store(state, std::memory_order_seq_cst);
    if (registry_generation_.load(std::memory_order_seq_cst) == generation) {
      return {state, mine.slot};
    }
    mine.slot->in_use.store(nullptr, std::memory_order_relaxed);
    return {};
  }
  /// With registry_mutex_ held exclusively, once `gone` are out of the maps: borrows found
  /// before now fail their check, and each state is kept until no thread announces it. Returns
  /// the states retired earlier that no thread uses any more, for the caller to drop after the
  /// lock.
  [[nodiscard]] std::vector<queue_ptr> retire_from_lookups_locked(std::span<const queue_ptr> gone) {
    registry_generation_.fetch_add(1, std::memory_order_seq_cst);
    retired_states_.insert(retired_states_.end(), gone.begin(), gone.end());
    std::vector<queue_ptr> unused;
    std::vector<queue_ptr> kept;
    for (auto& r : retired_states_)
      (anyone_borrows(r.get()) ? kept : unused).push_back(std::move(r));
    retired_states_ = std::move(kept);
    return unused;
  }

  options opts_;
  asio::any_io_executor executor_;
  std::shared_ptr<event_sink> sink_;
  std::shared_ptr<byte_budget> budget_;  ///< null without max_memory_bytes
  /// Spare item blocks kept beyond each queue's own few, for all of this provider's queues.
  std::shared_ptr<spare_block_allowance> spare_blocks_;
  std::uint64_t owner_;
  std::shared_ptr<wake_timer> wake_timer_;
  capabilities caps_;
  std::uint64_t id_prefix_;  // random per provider, so ids differ across processes
  std::atomic<std::uint64_t> id_counter_{1};

  mutable std::shared_mutex registry_mutex_;
  std::unordered_map<queue_name, queue_ptr> by_name_;
  std::unordered_map<std::uint64_t, queue_ptr> by_id_;
  /// Moves on (under registry_mutex_ held exclusively) whenever a queue leaves the maps: a
  /// borrow found at an older generation is looked up again (see borrow()).
  std::atomic<std::uint64_t> registry_generation_{1};
  /// Queues taken out of the maps whose state a thread may still have borrowed; under
  /// registry_mutex_. Dropped once no thread announces them.
  std::vector<queue_ptr> retired_states_;
  struct subscription_entry {
    subscription_filter filter;
    queue_ptr queue;
  };
  struct topic_state {
    std::map<std::string, subscription_entry> subscriptions;  ///< by subscription name
  };
  std::map<std::string, topic_state> topics_;  ///< by topic name; guarded by registry_mutex_
  std::uint64_t next_queue_id_ = 1;
  bool closed_ = false;
};

// ---- memory_session ----

result<session_slot*> memory_session::locked_slot(time_point now) {
  if (closed_) return fail(errc::closed, "session '" + id_.str() + "' was closed");
  if (q_->closed) return provider_closed();
  if (q_->deleted) return queue_missing(q_->name());
  if (auto failed = owner_->log_failure()) return *failed;
  q_->sweep(now);
  return q_->find_locked_session(id_, lock_, now);
}

awaitable<result<std::vector<received_message>>> memory_session::receive(std::size_t max_messages,
                                                                         milliseconds wait) {
  if (max_messages == 0) co_return no_messages_asked();
  const std::size_t max = std::min(max_messages, owner_->opts_.channel_buffer_size);
  const auto deadline = qrt::detail::deadline_after(clock::now(), wait);
  session_slot* slot = nullptr;  // where the last look found the session, parked on
  auto look = [&](time_point now, std::vector<received_message>& out) -> result<void> {
    if (q_->closed) return provider_closed();
    auto locked = locked_slot(now);
    if (!locked) return locked.error();
    slot = *locked;
    lsn ignored = 0;
    q_->take_from_session(*slot, max, now, out, owner_->owner(), ignored);
    return {};
  };
  auto park = [&](const waiter_ptr& w) { slot->receivers.add(w); };
  auto unpark = [&](const waiter_ptr& w) {
    // The slot may be gone (its lock expired and it emptied); its waiters went with it.
    if (auto* found = q_->find_session(id_)) found->receivers.remove(w);
  };
  // No spin: spin_score is kept per queue, and a session's receive is not what it measures.
  co_return co_await owner_->long_poll(q_, deadline, std::chrono::microseconds{0}, look, park,
                                       unpark);
}

awaitable<std::vector<result<void>>> memory_session::settle(std::vector<settlement> settlements) {
  std::vector<result<void>> results(settlements.size());
  lsn last = 0;
  {
    std::lock_guard lock(q_->mutex);
    const auto now = clock::now();
    auto slot = locked_slot(now);
    for (std::size_t i = 0; i < settlements.size(); ++i) {
      const auto& s = settlements[i];
      if (!slot) {
        results[i] = slot.error();
      } else if (s.receipt.queue != q_->id()) {
        results[i] = fail(errc::invalid_receipt, "receipt belongs to another queue");
      } else if (!(*slot)->locked.count(key_of(s.receipt).sequence)) {
        results[i] = fail(errc::invalid_receipt,
                          "receipt is not for a message locked by session '" + id_.str() + "'");
      } else {
        results[i] = owner_->settle_locked(q_.get(), s, now, last);
      }
    }
  }
  if (owner_->waits_for_log(last)) {
    if (auto r = co_await owner_->flushed(last); !r) fail_acknowledged(results, r.error());
  }
  co_return results;
}

awaitable<result<time_point>> memory_session::renew_session_lock() {
  std::lock_guard lock(q_->mutex);
  const auto now = clock::now();
  auto slot = locked_slot(now);
  if (!slot) co_return slot.error();
  locked_until_ = q_->renew_session(**slot, now);
  co_return locked_until_;
}

awaitable<result<std::string>> memory_session::get_state() {
  std::lock_guard lock(q_->mutex);
  auto slot = locked_slot(clock::now());
  if (!slot) co_return slot.error();
  co_return (*slot)->state;
}

awaitable<result<void>> memory_session::set_state(std::string state) {
  if (state.size() > owner_->opts_.max_message_bytes) {
    co_return fail(errc::message_too_large, "session state of " + std::to_string(state.size()) +
                                                " bytes exceeds the limit of " +
                                                std::to_string(owner_->opts_.max_message_bytes) +
                                                " bytes (max_message_bytes)");
  }
  lsn last = 0;
  {
    std::lock_guard lock(q_->mutex);
    auto slot = locked_slot(clock::now());
    if (!slot) co_return slot.error();
    last = q_->set_session_state(**slot, std::move(state));
  }
  co_return co_await owner_->flushed(last);
}

}  // namespace

byte_usage memory_byte_usage(provider& p) {
  auto* memory = dynamic_cast<memory_provider*>(&p);
  if (!memory || !memory->budget()) return {};
  const auto* b = memory->budget();
  return {b->used(), b->peak(), b->limit()};
}

std::size_t parked_waiters(provider& p) {
  auto* memory = dynamic_cast<memory_provider*>(&p);
  return memory ? memory->parked_waiters() : 0;
}

std::optional<std::uint64_t> persistence_syncs(provider& p) {
#ifdef QRT_WITH_PERSISTENCE
  auto* memory = dynamic_cast<memory_provider*>(&p);
  if (!memory) return std::nullopt;
  if (const auto* log = dynamic_cast<const log::persistent_log*>(memory->sink()))
    return log->fdatasync_count();
#else
  (void)p;
#endif
  return std::nullopt;
}

provider_ptr make_memory_provider(const options& opts, boost::asio::any_io_executor executor,
                                  std::shared_ptr<event_sink> sink, recovered_state recovered) {
  auto p = std::make_shared<memory_provider>(opts, std::move(executor), sink);
  // The provider outlives the listener: its destructor removes it before the sink can go.
  if (sink) sink->set_space_listener([raw = p.get()] { raw->wake_senders(); });
  if (auto* budget = p->budget()) {
    // Called under a queue mutex: the wake is posted so it can take every queue's mutex.
    budget->set_wake([weak = std::weak_ptr(p), budget, ex = p->executor()] {
      asio::post(ex, [weak, budget] {
        auto provider = weak.lock();
        if (!provider) return;
        budget->wake_done();
        provider->wake_senders();
      });
    });
  }
  p->restore(std::move(recovered));
  for (const auto& name : opts.queues) {
    (void)p->add_queue(queue_name::from(name), opts.queue_defaults, true);
  }
  return p;
}

}  // namespace detail

result<provider_ptr> make_provider(const options& opts, boost::asio::any_io_executor executor) {
  if (opts.max_queue_size == 0 || opts.channel_buffer_size == 0 || opts.max_message_bytes == 0 ||
      opts.max_dead_letter_queue_size == 0) {
    return fail(errc::configuration_error,
                "max_queue_size, max_dead_letter_queue_size, channel_buffer_size and "
                "max_message_bytes must be positive");
  }
#ifdef QRT_WITH_PERSISTENCE
  if (opts.enable_persistence && opts.max_message_bytes > log::max_persistable_message_bytes) {
    return fail(errc::configuration_error,
                "field 'max_message_bytes': " + std::to_string(opts.max_message_bytes) +
                    " bytes cannot be persisted; with enable_persistence a message must fit one "
                    "log record, so the limit is at most " +
                    std::to_string(log::max_persistable_message_bytes) + " bytes");
  }
#endif
  for (const auto& name : opts.queues) {
    auto q = queue_name::parse(name);
    if (!q) return fail(errc::configuration_error, "field 'queues': " + q.error().message);
  }
  // The queues made at start take these settings; refused there, a queue would be missing.
  if (auto invalid = detail::invalid_queue_options(opts.queue_defaults);
      invalid && !opts.queues.empty()) {
    return fail(errc::configuration_error,
                "the settings of the queues in 'queues': " + invalid->message);
  }
  if (opts.enable_persistence) {
#ifdef QRT_WITH_PERSISTENCE
    log::log_options lo;
    lo.directory = opts.persistence_path;
    lo.mode = opts.durability_mode;
    lo.sync_interval = opts.sync_interval;
    lo.max_disk_bytes = opts.max_disk_bytes;
    lo.open_timeout = opts.persistence_open_timeout;
    auto opened = log::persistent_log::open(std::move(lo));
    if (!opened) return opened.error();
    // A log that holds no message and is already at its limit (its segment header and the
    // checkpoint of the queues' definitions take it all) could never accept a send: refused now,
    // rather than every send waiting out its deadline.
    const bool holds_messages =
        std::any_of(opened->state.begin(), opened->state.end(), [](const auto& entry) {
          return !entry.second.messages.empty() || !entry.second.dead_letters.empty();
        });
    if (opts.max_disk_bytes != 0 && !holds_messages &&
        opened->log->disk_bytes() >= opts.max_disk_bytes) {
      return fail(errc::configuration_error,
                  "field 'max_disk_bytes': " + std::to_string(opts.max_disk_bytes) +
                      " bytes is no more than the empty log already takes (" +
                      std::to_string(opened->log->disk_bytes()) +
                      " bytes of segment header and queue definitions): no send could fit");
    }
    return detail::make_memory_provider(opts, std::move(executor), std::move(opened->log),
                                        std::move(opened->state));
#else
    return fail(errc::configuration_error,
                "field 'enable_persistence': this qrt was built without the persistence log "
                "(QRT_WITH_PERSISTENCE=OFF)");
#endif
  }
  return detail::make_memory_provider(opts, std::move(executor), nullptr, {});
}

}  // namespace qrt::memory
