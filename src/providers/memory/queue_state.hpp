// The embedded provider's state machine for one queue and its dead-letter queue.
//
// Pure state: no I/O, no waiting. Every method is called with `mutex` held and takes `now`, so
// the rules (locks, expiry, delivery counts, sessions, scheduling, TTL) are exercised directly by
// tests. memory_provider.cpp adds the waiting and the Asio glue.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <deque>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "events.hpp"

namespace qrt::memory::detail {

/// One suspended receive/send/accept, woken by a state change or by its timer.
/// It holds the waiting coroutine's executor only while it waits: wake() hands that copy on
/// with the handler, and the thread that wakes it may belong to another execution context.
struct waiter : std::enable_shared_from_this<waiter> {
  // Guarded by the owning queue's mutex.
  std::optional<boost::asio::any_completion_handler<void()>> handler;
  boost::asio::any_io_executor handler_executor;
  bool notified = false;
  /// Its coroutine was destroyed unrun (its execution context shut down while it waited): a
  /// notify passes over it.
  bool abandoned = false;
  std::atomic<bool> released{false};  ///< for post_releasing in wake()
};
using waiter_ptr = std::shared_ptr<waiter>;

/// Waiters of one kind; notify hands each woken waiter's handler to its executor.
class wait_list {
 public:
  void add(waiter_ptr w) { waiters_.push_back(std::move(w)); }
  /// For a waiter that waited before: it keeps its place ahead of those that came after it.
  void add_first(waiter_ptr w) { waiters_.push_front(std::move(w)); }
  void remove(const waiter_ptr& w);
  void notify(std::size_t n);
  void notify_all() { notify(waiters_.size()); }
  bool empty() const noexcept { return waiters_.empty(); }

 private:
  std::deque<waiter_ptr> waiters_;
};

/// Wakes one waiter (mutex held): completes its handler, or marks it so it won't sleep.
void wake(const waiter_ptr& w);

/// Whether spinning briefly before parking (memory_provider.cpp) pays on one queue: a spin that
/// saw what it waited for scores +1, one that ran out -4. At zero the waiters park at once,
/// except every 32nd, which spins so that the score can recover when the traffic changes. Where
/// messages arrive further apart than the spin, it then costs almost no CPU.
class spin_score {
 public:
  bool worth_trying() noexcept {
    if (score_.load(std::memory_order_relaxed) > 0) return true;
    return (probes_.fetch_add(1, std::memory_order_relaxed) & 31u) == 0;
  }
  void record(bool paid_off) noexcept {
    const int s = score_.load(std::memory_order_relaxed);
    score_.store(paid_off ? std::min(s + 1, 16) : std::max(s - 4, 0), std::memory_order_relaxed);
  }

 private:
  std::atomic<int> score_{4};
  std::atomic<std::uint32_t> probes_{0};
};

/// Ready messages in sequence order (abandoned ones return to their place).
class ready_list {
 public:
  void push(std::uint64_t seq);
  bool empty() const noexcept { return seqs_.empty(); }
  std::size_t size() const noexcept { return seqs_.size(); }
  std::uint64_t front() const { return seqs_.front(); }
  void pop_front() { seqs_.pop_front(); }
  void erase(std::uint64_t seq);
  void clear() noexcept { seqs_.clear(); }

 private:
  std::deque<std::uint64_t> seqs_;
};

/// The provider-wide byte budget (max_memory_bytes), shared by every queue of one provider.
/// A send reserves a message's bytes before storing it; they return when the message leaves
/// memory (completed, dropped on expiry, its queue deleted). A move to the dead-letter queue
/// keeps them. Lock-free: queues reserve and release under their own mutexes.
class byte_budget {
 public:
  explicit byte_budget(std::uint64_t limit) : limit_(limit) {}

  std::uint64_t limit() const noexcept { return limit_; }
  std::uint64_t used() const noexcept { return used_.load(); }
  /// The most ever reserved at once.
  std::uint64_t peak() const noexcept { return peak_.load(); }

  /// Reserves `n` bytes if they fit under the limit (always, without a limit).
  bool try_reserve(std::uint64_t n);
  /// Replay: what the log recovered is kept even above the limit; sends then wait.
  void force_reserve(std::uint64_t n);
  /// Returns `n` bytes; wakes waiting senders (through `wake`) if any are registered.
  void release(std::uint64_t n);

  /// A sender that found the budget exhausted registers before it looks once more, so a release
  /// in between is never missed; it unregisters when its send returns.
  void add_waiter() { waiting_.fetch_add(1); }
  void remove_waiter() { waiting_.fetch_sub(1); }

  /// How to wake waiting senders: called with a queue mutex held, so it must only schedule the
  /// wake (the provider posts it). At most one wake is outstanding; wake_done() re-arms.
  void set_wake(std::function<void()> wake) { wake_ = std::move(wake); }
  void wake_done() { wake_pending_.store(false); }

 private:
  const std::uint64_t limit_;
  std::atomic<std::uint64_t> used_{0};
  std::atomic<std::uint64_t> peak_{0};
  std::atomic<std::uint64_t> waiting_{0};
  std::atomic<bool> wake_pending_{false};
  std::function<void()> wake_;
};

/// Emptied item blocks kept for reuse beyond the few every queue keeps, counted for all the
/// queues of one provider. A queue whose depth swings (filled to its limit, drained, filled
/// again) would otherwise free its blocks on the way down and allocate them again on the way
/// up; freed together at the top of the heap they go back to the system and return as fresh
/// pages to fault in, zero and construct. Counted per provider so that what is kept stays
/// bounded however many queues there are; a table hands its share back when it is destroyed.
class spare_block_allowance {
 public:
  explicit spare_block_allowance(std::size_t max_blocks) noexcept : max_(max_blocks) {}
  spare_block_allowance(const spare_block_allowance&) = delete;
  spare_block_allowance& operator=(const spare_block_allowance&) = delete;

  /// Blocks kept against the allowance now.
  std::size_t taken() const noexcept { return taken_.load(std::memory_order_relaxed); }
  /// Counts one more kept block if the allowance has room for it.
  bool try_take() noexcept;
  void give_back(std::size_t blocks) noexcept {
    taken_.fetch_sub(blocks, std::memory_order_relaxed);
  }

 private:
  const std::size_t max_;
  std::atomic<std::size_t> taken_{0};
};

/// The spare blocks one provider keeps at most: 8 MiB of them (the slots of about 18,000
/// messages), or a sixteenth of `max_memory_bytes` when one is set and that is less.
std::size_t spare_blocks_for(std::uint64_t max_memory_bytes) noexcept;

enum class item_state : std::uint8_t { scheduled, ready, locked };

struct session_slot;

/// What an item keeps of its message. The sending thread writes an item and the receiving one
/// reads it, so every cache line of it crosses between their CPUs once each way per message
/// (docs/performance.md, "Twelfth round"): what every message has is inline, and the fields
/// most messages leave empty, with a dead letter's reason, are one block allocated only for a
/// message that sets any of them. stored_message is the same message as the log records it.
struct kept_message {
  struct rarely_set {
    message fields;  ///< qrt::message's fields but the body and the id (left empty here)
    std::optional<dead_letter_info> dead_letter;  ///< set for messages in a DLQ
  };
  std::uint64_t sequence = 0;  ///< unique and increasing within its queue (or DLQ)
  std::string body;
  message_id id;
  time_point enqueued_time{};
  std::uint32_t delivery_count = 0;    ///< deliveries so far
  std::unique_ptr<rarely_set> rarely;  ///< null while all of it is empty

  /// Moves a message's content in (this one's is empty).
  void take_content(message&& m);
  /// Copies the content into `to`, a default-constructed message.
  void copy_content_to(message& to) const;
  /// qrt::message's fields but the body and the id; null when all are empty.
  const message* rare_fields() const noexcept { return rarely ? &rarely->fields : nullptr; }
  bool is_dead_letter() const noexcept { return rarely && rarely->dead_letter; }
  const dead_letter_info* dead_letter() const noexcept {
    return is_dead_letter() ? &*rarely->dead_letter : nullptr;
  }
  void set_dead_letter(dead_letter_info info);
  /// The message as the log records it; this one is left empty.
  stored_message release() &&;
  static kept_message from(stored_message&& m);
};

struct item {
  kept_message stored;
  item_state state = item_state::ready;
  time_point visible_at{};
  std::optional<time_point> expires_at;
  std::uint64_t lock = 0;            ///< generation of the current lock; 0 when not locked
  std::uint64_t abandoned_lock = 0;  ///< the last lock its holder gave back with abandon
  std::uint64_t bytes = 0;           ///< memory::accounted_bytes() of the message
  time_point locked_until{};
  session_slot* session = nullptr;  ///< requires_session queues only
};

struct session_slot {
  session_id id;
  ready_list ready;
  std::set<std::uint64_t> locked;  ///< sequences delivered under the current session lock
  std::uint64_t lock = 0;          ///< 0: free
  time_point locked_until{};
  std::string state;
  std::size_t messages = 0;  ///< stored (any state) messages of this session
  wait_list receivers;
};

/// A queue's (or a dead-letter queue's) messages by sequence.
///
/// Sequences are handed out in increasing order and most messages leave in about the order they
/// came, so the table is a run of fixed blocks of items indexed by sequence - first: finding,
/// adding and removing a message is O(1), items are stored in place (one allocation per block
/// of `block_items` messages, not one per message), and an emptied block is kept for reuse. A
/// message that stays while many newer ones come and go (a scheduled one, one whose lock is
/// kept) would keep every block after it alive, so when the blocks hold far fewer messages than
/// they have room for, the oldest messages move to an ordered map (`old_`, every key below
/// `first_`). A pointer to an item is valid until the next emplace or erase on the table.
class item_table {
 public:
  static constexpr std::size_t block_items = 32;

  item_table() = default;
  item_table(const item_table&) = delete;
  item_table& operator=(const item_table&) = delete;
  ~item_table();

  /// Bytes one block of `block_items` items takes (what a spare block keeps allocated).
  static std::size_t block_bytes() noexcept;
  /// Lets the table keep more than its own few emptied blocks, as far as `shared` allows.
  /// Called before the table holds anything.
  void share_spares(std::shared_ptr<spare_block_allowance> shared) noexcept {
    shared_spares_ = std::move(shared);
  }
  /// Emptied blocks kept for reuse.
  std::size_t spare_blocks() const noexcept { return spares_.size(); }

  std::size_t size() const noexcept { return in_blocks_ + old_.size(); }
  bool empty() const noexcept { return size() == 0; }
  /// Item slots the blocks hold (what the table's memory is proportional to).
  std::size_t ring_slots() const noexcept { return blocks_.size() * block_items; }
  /// Messages kept in the ordered map rather than in blocks.
  std::size_t ordered_items() const noexcept { return old_.size(); }

  item* find(std::uint64_t seq) noexcept;
  const item* find(std::uint64_t seq) const noexcept {
    return const_cast<item_table*>(this)->find(seq);
  }
  /// A fresh (default) item for `seq`, which must not be present.
  item& emplace(std::uint64_t seq);
  /// Removes `seq` (no-op when absent). Move out what should outlive the lock first: the rest of
  /// the item is reset here.
  void erase(std::uint64_t seq);
  /// Removes every message and frees the blocks, spares too (their allowance goes back).
  void clear() noexcept;

  /// Calls `f(const item&)` in sequence order from `from` on, while it returns true.
  template <class F>
  void for_each_from(std::uint64_t from, F&& f) const {
    for (auto it = old_.lower_bound(from); it != old_.end(); ++it) {
      if (!f(it->second)) return;
    }
    for (std::uint64_t seq = std::max(from, first_); seq < end(); ++seq) {
      if (const item* i = find(seq); i && !f(*i)) return;
    }
  }

 private:
  struct block {
    std::array<item, block_items> items;
    std::uint32_t used = 0;  ///< bit i: items[i] holds a message
  };
  static_assert(block_items == 32, "block::used has one bit per item");

  std::uint64_t end() const noexcept { return first_ + blocks_.size() * block_items; }
  std::unique_ptr<block> new_block();
  /// Moves the messages of the first block to old_ and drops the block.
  void retire_front();
  /// Drops emptied blocks at the front; retires blocks while they are mostly empty.
  void trim_front();

  /// The blocks in sequence order: a ring of pointers (one index computation per lookup).
  class block_ring {
   public:
    std::size_t size() const noexcept { return count_; }
    bool empty() const noexcept { return count_ == 0; }
    std::unique_ptr<block>& operator[](std::size_t k) noexcept {
      return ring_[(head_ + k) & (ring_.size() - 1)];
    }
    const std::unique_ptr<block>& operator[](std::size_t k) const noexcept {
      return ring_[(head_ + k) & (ring_.size() - 1)];
    }
    std::unique_ptr<block>& front() noexcept { return ring_[head_]; }
    void push_back(std::unique_ptr<block> b);
    void pop_front() noexcept {
      head_ = (head_ + 1) & (ring_.size() - 1);
      --count_;
    }

   private:
    std::vector<std::unique_ptr<block>> ring_;  ///< size 0 or a power of two
    std::size_t head_ = 0;
    std::size_t count_ = 0;
  };

  block_ring blocks_;                  ///< blocks_[k] holds first_ + k * block_items...
  std::uint64_t first_ = 0;            ///< a multiple of block_items
  std::size_t in_blocks_ = 0;          ///< messages held in blocks_
  std::map<std::uint64_t, item> old_;  ///< keys below first_
  /// Emptied blocks kept for reuse. The sender fills blocks at the back while the consumer
  /// empties them at the front, each in batches, so the two rarely alternate exactly: with a
  /// single spare, the one side freed a block (of 32 items, about 5 KB) that the other
  /// allocated again shortly after, under the queue's lock and often in another thread's
  /// malloc arena. The first `own_spare_blocks` are the table's own; those after them are
  /// counted against `shared_spares_`.
  std::vector<std::unique_ptr<block>> spares_;
  static constexpr std::size_t own_spare_blocks = 4;
  std::shared_ptr<spare_block_allowance> shared_spares_;
  void keep_spare(std::unique_ptr<block> b);
};

/// A queue or a dead-letter queue: its messages and who is waiting for them.
struct queue_core {
  item_table items;  ///< by sequence; ordered for peek
  ready_list ready;
  wait_list receivers;
};

/// Identifies a delivery inside one queue family.
struct delivery_key {
  bool dead_letter = false;
  std::uint64_t sequence = 0;
  std::uint64_t lock = 0;
};

/// A mutex for short critical sections between a few threads: a waiter spins briefly before it
/// parks in the kernel. A queue's lock is held for microseconds at a time while the sender and
/// the receiver of one queue contend for it all the time; parking at once (std::mutex) cost a
/// futex sleep and wake-up, and two context switches, per contended hold.
class spin_then_park_mutex {
 public:
  void lock() {
    std::uint32_t expected = free;
    if (!state_.compare_exchange_strong(expected, locked, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
      lock_contended();
    }
  }
  void unlock() {
    if (state_.exchange(free, std::memory_order_release) == contended) state_.notify_one();
  }

 private:
  void lock_contended();

  static constexpr std::uint32_t free = 0;
  static constexpr std::uint32_t locked = 1;
  static constexpr std::uint32_t contended = 2;  ///< locked, and a waiter may be parked
  std::atomic<std::uint32_t> state_{free};
};

/// A queue's lock. One hold of it is one operation for the persistence log: everything the
/// holder appends reaches the disk in one write batch (event_sink::begin_operation).
class queue_mutex {
 public:
  explicit queue_mutex(event_sink* sink) : sink_(sink) {}
  queue_mutex(const queue_mutex&) = delete;
  queue_mutex& operator=(const queue_mutex&) = delete;

  void lock() {
    mutex_.lock();
    if (sink_) sink_->begin_operation();
  }
  void unlock() {
    if (sink_) sink_->end_operation();
    if (graveyard_.empty()) {
      mutex_.unlock();
      return;
    }
    // The strings are freed after the lock is released. The vector that carries them out is
    // kept per thread and swapped back in as the next graveyard, and the retired list is
    // swapped with that one (free_retired_bodies()), so in a steady flow these vectors keep
    // their storage instead of growing from nothing for every send. Used only inside this call:
    // no coroutine suspends while it holds anything.
    thread_local std::vector<std::string> dead;
    dead.swap(graveyard_);
    mutex_.unlock();
    dead.clear();
    if (dead.capacity() > max_kept_graveyard) dead = {};  // after a purge: not kept for ever
  }

  /// Takes a string of a message that left the queue (its body, its id; the lock held). Its
  /// storage is kept until the next send to this queue (free_retired_bodies()), which frees it
  /// on the sender's thread after the lock is released. Such a string was most often allocated
  /// by a sender, and glibc returns a block freed on another thread to the arena of the thread
  /// that allocated it, under that arena's lock, against the sender's own allocations: when a
  /// consumer freed the bodies, that lock was the consumer's most frequent sleep. (The ids the
  /// provider assigns are stored inline and never get here; a sender's longer ones do.) Beyond
  /// the bounds below the string is freed here once the lock is released.
  void discard(std::string&& text) {
    const std::size_t capacity = text.capacity();
    if (capacity <= std::string().capacity()) return;
    if (capacity <= max_retired_body && retired_bytes_ + capacity <= max_retired_bytes) {
      retired_bytes_ += capacity;
      retired_.push_back(std::move(text));
      return;
    }
    graveyard_.push_back(std::move(text));
  }

  /// Called by a send (the lock held): the retired bodies are freed on its thread once the
  /// lock is released.
  void free_retired_bodies() {
    if (retired_.empty()) return;
    if (graveyard_.empty()) {
      graveyard_.swap(retired_);
    } else {
      std::move(retired_.begin(), retired_.end(), std::back_inserter(graveyard_));
      retired_.clear();
    }
    retired_bytes_ = 0;
  }

  /// Bytes of storage the retired bodies hold (what they cost until the next send).
  std::size_t retired_bytes() const noexcept { return retired_bytes_; }

  /// Bounds on the retired bodies kept for the next send, per queue: outside max_memory_bytes,
  /// so small (a few batches of typical bodies).
  static constexpr std::size_t max_retired_body = 4096;
  static constexpr std::size_t max_retired_bytes = 32 * 1024;
  /// The most strings a thread's spare graveyard vector keeps room for between unlocks.
  static constexpr std::size_t max_kept_graveyard = 1024;

 private:
  spin_then_park_mutex mutex_;
  event_sink* const sink_;
  std::vector<std::string> graveyard_;  ///< guarded by mutex_; freed at unlock
  std::vector<std::string> retired_;    ///< guarded by mutex_; freed by the next send
  std::size_t retired_bytes_ = 0;       ///< their capacities, summed
};

/// A queue, its dead-letter queue and its sessions, all under one mutex.
class queue_state : public std::enable_shared_from_this<queue_state> {
 public:
  queue_state(std::uint64_t id, queue_name name, queue_options options, std::size_t max_size,
              std::size_t max_dead_letters, std::uint64_t max_bytes,
              std::shared_ptr<byte_budget> budget,
              const std::shared_ptr<spare_block_allowance>& spare_blocks, event_sink* sink);

  queue_mutex mutex;
  /// Bumped (under `mutex`) whenever a message becomes ready. A receive that found nothing
  /// watches it without the lock while it spins briefly before parking, and takes the lock
  /// again only once it moves.
  std::atomic<std::uint64_t> readied{0};
  spin_score receive_spins;  ///< receives waiting for `readied`

  std::uint64_t id() const noexcept { return id_; }
  const queue_name& name() const noexcept { return name_; }
  const queue_options& options() const noexcept { return options_; }
  bool deleted = false;
  bool closed = false;

  /// Applies everything whose time has come: scheduled messages, lock and TTL expiry.
  void sweep(time_point now);
  /// The next time sweep() would change something, if any.
  std::optional<time_point> next_event() const;

  /// Room in the active queue for one more message of `bytes` (max_queue_size and
  /// max_queue_bytes; the provider's budget is checked separately).
  bool has_room(std::uint64_t bytes) const noexcept {
    return main_.items.size() < max_size_ && (max_bytes_ == 0 || bytes_ + bytes <= max_bytes_);
  }
  /// Which limit has_room() is short of: the count when it is reached, else the bytes.
  bool full_by_count() const noexcept { return main_.items.size() >= max_size_; }
  std::uint64_t max_bytes() const noexcept { return max_bytes_; }
  /// What its messages and its dead-letter queue's count against the byte budget (mutex held).
  std::uint64_t held_bytes() const noexcept { return bytes_ + dlq_bytes_; }
  /// The count limit in force: the queue's own max_size, else the provider's max_queue_size.
  std::size_t max_size() const noexcept { return max_size_; }
  /// Room for one more message in the dead-letter queue. Without it nothing moves there: an
  /// explicit dead_letter fails with queue_full, and a message due to move by itself (max
  /// deliveries, expiry) stays in its queue and is delivered again. Nothing is ever dropped.
  bool dead_letter_has_room() const noexcept { return dlq_.items.size() < max_dead_letters_; }
  /// Stores one message; the caller has checked room, reserved its bytes in the budget and
  /// validated it. Returns the sequence. `logged` false: the caller reports it to the sink
  /// itself (a publish logs all its copies in one event).
  std::uint64_t enqueue(message&& msg, std::uint64_t bytes, time_point now, lsn& last,
                        bool logged = true);
  /// The queue was deleted: its bytes go back to the budget.
  void release_bytes();
  /// Once the queue is deleted (the lock held, its waiters woken): frees its messages, its
  /// dead-letter queue's and its sessions', with their bookkeeping. Whatever keeps the state
  /// alive after the deletion (a call on another thread that found it just before, a parked
  /// call until it wakes, a session handle the application still holds) keeps an empty shell,
  /// not the messages. Nothing is logged: the deletion's record stands for all of them.
  void drop_contents();
  /// Item slots the queue and its dead-letter queue hold, spares included: what their memory is
  /// proportional to.
  std::size_t item_slots() const noexcept {
    return main_.items.ring_slots() + main_.items.spare_blocks() * item_table::block_items +
           dlq_.items.ring_slots() + dlq_.items.spare_blocks() * item_table::block_items;
  }
  /// Sessions the queue keeps a record of (with messages, a lock or a state).
  std::size_t session_records() const noexcept { return sessions_.size(); }

  /// Locks up to `max` ready messages of the active queue or the DLQ.
  void take(bool dead_letter, std::size_t max, time_point now, std::vector<received_message>& out,
            std::uint64_t owner, lsn& last);
  /// Copies up to `max` messages of the active queue or the DLQ, from sequence `from` on,
  /// without locking them (the provider refuses a negative start before it gets here).
  void peek(bool dead_letter, std::size_t max, std::uint64_t from,
            std::vector<received_message>& out) const;

  result<void> settle(const delivery_key& key, const settlement& s, time_point now, lsn& last);
  result<time_point> renew(const delivery_key& key, time_point now);

  // Sessions (requires_session queues).
  /// Locks a named session, creating it if needed.
  result<session_slot*> lock_session(const session_id& id, time_point now);
  /// Locks the free session whose oldest ready message came first, or nullptr if no free
  /// session has a ready message.
  session_slot* lock_next_session(time_point now);
  session_slot* find_session(const session_id& id) {
    auto it = sessions_.find(id);
    return it == sessions_.end() ? nullptr : &it->second;
  }
  result<session_slot*> find_locked_session(const session_id& id, std::uint64_t lock,
                                            time_point now);
  void take_from_session(session_slot& slot, std::size_t max, time_point now,
                         std::vector<received_message>& out, std::uint64_t owner, lsn& last);
  time_point renew_session(session_slot& slot, time_point now);
  void release_session(session_slot& slot, time_point now);
  lsn set_session_state(session_slot& slot, std::string state);

  /// The queue's figures: its messages by state, what its dead-letter queue holds and how many
  /// expired.
  queue_stats stats() const;
  /// The dead-letter queue's own figures: its ready and locked messages. Nothing in it is
  /// scheduled or expires, and it has no dead-letter queue of its own: those are 0.
  queue_stats dead_letter_stats() const;
  /// Lock expiries still remembered (what their memory is proportional to).
  std::size_t lock_entries() const noexcept { return lock_fifo_.size() + lock_expiry_.size(); }
  /// Time-to-live expiries still remembered (what their memory is proportional to).
  std::size_t expiry_entries() const noexcept { return ttl_expiry_.size(); }
  queue_core& core(bool dead_letter) noexcept { return dead_letter ? dlq_ : main_; }
  wait_list& senders() noexcept { return senders_; }
  /// How many messages sends that have not waited may store while others wait for room. Room
  /// that settlements free goes to whichever send looks first, usually one already running
  /// rather than the woken waiting one; past this many, newcomers wait behind the waiting
  /// senders until one of them stores (contract C6).
  static constexpr std::size_t max_overtaking_messages = 512;
  /// Whether a send may store now, given the senders that wait; `has_waited`: it is one of them.
  bool may_store(bool has_waited) const noexcept {
    return has_waited || waiting_senders_ == 0 || overtaking_messages_ < max_overtaking_messages;
  }
  /// A send stored a message.
  void stored_by_send(bool has_waited) noexcept {
    if (has_waited) {
      overtaking_messages_ = 0;
    } else if (waiting_senders_ > 0) {
      ++overtaking_messages_;
    }
  }
  /// A send found no room and parks `w`: behind the others the first time, and at the front
  /// again when it waited before (it keeps its place ahead of those that came after it).
  void park_sender(waiter_ptr w, bool has_waited) {
    if (has_waited) {
      senders_.add_first(std::move(w));
    } else {
      senders_.add(std::move(w));
      ++waiting_senders_;
    }
  }
  /// A send that parked returns: where room is left, the next waiting sender is woken for it.
  void end_send_wait() {
    if (--waiting_senders_ == 0) overtaking_messages_ = 0;
    if (has_room(0)) senders_.notify(1);
  }
  wait_list& session_acceptors() noexcept { return session_acceptors_; }

  /// Rebuilds state from a replayed log.
  void restore(recovered_queue&& recovered, time_point now);

  /// Wakes every waiter (delete / close).
  void wake_everyone();

 private:
  /// Locks `it` and appends its delivery to `out`.
  void deliver(item& it, bool dead_letter, time_point now, std::uint64_t owner, lsn& last,
               std::vector<received_message>& out);
  /// Places a stored message (new or replayed): schedule, TTL, session, ready list.
  void admit(item& it, time_point now);
  void make_ready(item& it, time_point now);
  /// Lock expired or abandoned: back to ready, or to the DLQ past max deliveries.
  void release(item& it, time_point now, lsn& last);
  /// The caller has checked dead_letter_has_room().
  void move_to_dead_letter(item& it, dead_letter_info info, time_point now, lsn& last);
  /// Removes a message. `leaves_memory` is false for a move to the DLQ, which keeps its bytes.
  void erase_item(std::uint64_t seq, lsn& last, bool leaves_memory = true);
  /// Drops or dead-letters an expired message; false (and nothing changed) when it should go to
  /// a full dead-letter queue: it then stays, and is delivered as if it had not expired.
  bool expire(item& it, time_point now, lsn& last);
  session_slot& session_for(const session_id& id);
  void forget_session_if_idle(session_slot& slot);

  std::uint64_t id_;
  queue_name name_;
  queue_options options_;
  std::size_t max_size_;
  std::size_t max_dead_letters_;
  std::uint64_t max_bytes_;              ///< 0: no limit
  std::shared_ptr<byte_budget> budget_;  ///< null once the queue is deleted
  std::uint64_t bytes_ = 0;              ///< active queue (what max_bytes_ bounds)
  std::uint64_t dlq_bytes_ = 0;
  event_sink* sink_;

  queue_core main_;
  queue_core dlq_;
  std::map<session_id, session_slot> sessions_;
  wait_list senders_;
  std::size_t waiting_senders_ = 0;      ///< sends that parked and have not returned
  std::size_t overtaking_messages_ = 0;  ///< stored by sends that had not, since one that had
  wait_list session_acceptors_;

  std::uint64_t next_sequence_ = 1;
  std::uint64_t next_lock_ = 1;
  /// Whether `lock` is a lock generation this queue handed out (a receipt with any other one
  /// was made up, not issued: invalid_receipt rather than receipt_expired).
  bool issued(std::uint64_t lock) const noexcept { return lock != 0 && lock < next_lock_; }
  std::uint64_t expired_ = 0;

  /// Messages that left the queue because their lock lapsed (moved to the DLQ or dropped as
  /// expired): a later use of the lapsed receipt reports receipt_expired rather than "already
  /// settled". Bounded; the oldest are forgotten first.
  void remember_lapsed(std::uint64_t key);
  bool lapsed(std::uint64_t key) const { return lapsed_.count(key) != 0; }
  std::unordered_set<std::uint64_t> lapsed_;
  std::deque<std::uint64_t> lapsed_order_;

  using timed = std::pair<time_point, std::uint64_t>;
  std::priority_queue<timed, std::vector<timed>, std::greater<>> scheduled_;  // (visible_at, seq)
  /// Lock expiries. Most locks are taken for the queue's lock_duration from now, so they expire
  /// in the order they were taken: those go to `lock_fifo_` (O(1), and an entry whose message was
  /// settled leaves as soon as it reaches the front instead of staying until its time, so the
  /// memory follows the locks actually held, not the throughput times lock_duration). The rest
  /// (session locks, a clock that stepped back) go to the heap; sweep() merges the two.
  struct lock_entry {
    time_point until;
    std::uint64_t key;   ///< heap_key(): sequence plus the dead-letter bit
    std::uint64_t lock;  ///< the lock generation it was taken with
  };
  std::deque<lock_entry> lock_fifo_;
  /// An entry whose lock was settled stays until its time (as in `ttl_expiry_`, the heap is
  /// rebuilt with only the locks still held once it outgrows the messages stored).
  std::priority_queue<timed, std::vector<timed>, std::greater<>> lock_expiry_;  // (until, key)
  void schedule_lock_expiry(const item& it, std::uint64_t key);
  void compact_lock_expiry();
  /// False once the lock `e` was taken with is gone (settled, expired, renewed).
  bool holds(const lock_entry& e);
  /// Time-to-live expiries (expires, seq). A message that leaves the queue leaves its entry
  /// behind until its time; so that the entries follow the messages stored rather than the
  /// throughput times the time to live, the heap is rebuilt from the stored messages whenever it
  /// holds more than twice as many entries (at most one rebuild per as many sends as it keeps).
  std::priority_queue<timed, std::vector<timed>, std::greater<>> ttl_expiry_;
  void compact_ttl_expiry();
  struct session_timed {
    time_point at;
    session_id id;
    friend bool operator>(const session_timed& a, const session_timed& b) { return a.at > b.at; }
  };
  std::priority_queue<session_timed, std::vector<session_timed>, std::greater<>> session_expiry_;
};

}  // namespace qrt::memory::detail
