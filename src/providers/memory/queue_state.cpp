#include "queue_state.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <memory>
#include <qrt/memory.hpp>
#include <utility>

#include "core/post_releasing.hpp"

namespace qrt::memory::detail {
namespace {

constexpr std::uint64_t dead_letter_bit = std::uint64_t{1} << 63;

std::uint64_t heap_key(bool dead_letter, std::uint64_t seq) {
  return dead_letter ? (seq | dead_letter_bit) : seq;
}

/// At most `limit` bytes of `text`, cut at a UTF-8 character boundary.
std::string bounded(const std::string& text, std::size_t limit) {
  if (text.size() <= limit) return text;
  std::size_t end = limit;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

}  // namespace

// ---- spin_then_park_mutex ----

void spin_then_park_mutex::lock_contended() {
  // About a microsecond or two of spinning: longer than a typical hold, shorter than a futex
  // round trip. A holder that was preempted is waited for in the kernel, not by burning a core.
  constexpr int spins = 128;
  for (int i = 0; i < spins; ++i) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
    std::uint32_t expected = state_.load(std::memory_order_relaxed);
    if (expected == free &&
        state_.compare_exchange_weak(expected, locked, std::memory_order_acquire,
                                     std::memory_order_relaxed)) {
      return;
    }
  }
  // Park: mark the lock contended so that its holder's unlock wakes one waiter.
  while (state_.exchange(contended, std::memory_order_acquire) != free) {
    state_.wait(contended, std::memory_order_relaxed);
  }
}

// ---- item_table ----

item* item_table::find(std::uint64_t seq) noexcept {
  if (seq >= first_) {
    const std::uint64_t offset = seq - first_;
    const std::uint64_t k = offset / block_items;
    if (k >= blocks_.size()) return nullptr;
    block& b = *blocks_[static_cast<std::size_t>(k)];
    const auto bit = static_cast<unsigned>(offset % block_items);
    return (b.used >> bit) & 1u ? &b.items[bit] : nullptr;
  }
  auto it = old_.find(seq);
  return it == old_.end() ? nullptr : &it->second;
}

void item_table::block_ring::push_back(std::unique_ptr<block> b) {
  if (count_ == ring_.size()) {
    std::vector<std::unique_ptr<block>> bigger(std::max<std::size_t>(8, 2 * ring_.size()));
    for (std::size_t k = 0; k < count_; ++k) bigger[k] = std::move((*this)[k]);
    ring_ = std::move(bigger);
    head_ = 0;
  }
  (*this)[count_++] = std::move(b);
}

namespace {
// An emptied slot becomes a default item again, as `slot = item{}` would make it, but without
// building a second item and moving a dozen empty members across one by one: the old one is
// destroyed and a new one made in its place. Making a default item allocates nothing; were it
// ever to throw, noexcept ends the process rather than leave a destroyed item in the block.
void start_afresh(item& slot) noexcept {
  std::destroy_at(&slot);
  std::construct_at(&slot);
}
}  // namespace

std::size_t spare_blocks_for(std::uint64_t max_memory_bytes) noexcept {
  std::uint64_t bytes = std::uint64_t{8} << 20;
  if (max_memory_bytes != 0) bytes = std::min(bytes, max_memory_bytes / 16);
  return static_cast<std::size_t>(bytes / item_table::block_bytes());
}

bool spare_block_allowance::try_take() noexcept {
  std::size_t taken = taken_.load(std::memory_order_relaxed);
  do {
    if (taken >= max_) return false;
  } while (!taken_.compare_exchange_weak(taken, taken + 1, std::memory_order_relaxed));
  return true;
}

item_table::~item_table() {
  if (shared_spares_ && spares_.size() > own_spare_blocks) {
    shared_spares_->give_back(spares_.size() - own_spare_blocks);
  }
}

void item_table::clear() noexcept {
  if (shared_spares_ && spares_.size() > own_spare_blocks) {
    shared_spares_->give_back(spares_.size() - own_spare_blocks);
  }
  std::vector<std::unique_ptr<block>>().swap(spares_);
  blocks_ = block_ring();
  old_.clear();
  first_ = 0;
  in_blocks_ = 0;
}

std::size_t item_table::block_bytes() noexcept {
  return sizeof(block);
}

void item_table::keep_spare(std::unique_ptr<block> b) {
  if (spares_.size() < own_spare_blocks || (shared_spares_ && shared_spares_->try_take())) {
    spares_.push_back(std::move(b));
  }
}  // beyond what may be kept, the block is freed here

std::unique_ptr<item_table::block> item_table::new_block() {
  if (!spares_.empty()) {
    if (spares_.size() > own_spare_blocks) shared_spares_->give_back(1);
    auto b = std::move(spares_.back());
    spares_.pop_back();
    return b;
  }
  // Not make_unique: value-initialising would zero the whole block before the items' constructors
  // write every byte of it that they use.
  return std::unique_ptr<block>(new block);
}

item& item_table::emplace(std::uint64_t seq) {
  const std::uint64_t aligned = seq - seq % block_items;
  // Emptied blocks leave first_ past the block the next sequence belongs in (a queue that
  // drains between batches empties its only block every time): start the blocks again at `seq`
  // unless an old message is at or after it, or every message until the next block boundary
  // would go to the ordered map, a node each.
  if (blocks_.empty() && (old_.empty() || old_.rbegin()->first < aligned)) first_ = aligned;
  if (seq < first_) return old_.try_emplace(seq).first->second;
  if (!blocks_.empty() && seq >= end() &&
      (aligned - end()) / block_items > std::max<std::size_t>(blocks_.size(), 4)) {
    // Far ahead of the blocks (a dead-letter queue sees only some of the sequences): what they
    // hold moves to the ordered map and the blocks start again at `seq`.
    while (!blocks_.empty()) retire_front();
    first_ = aligned;
  }
  while (seq >= end()) blocks_.push_back(new_block());
  const std::uint64_t offset = seq - first_;
  block& b = *blocks_[static_cast<std::size_t>(offset / block_items)];
  const auto bit = static_cast<unsigned>(offset % block_items);
  b.used |= std::uint32_t{1} << bit;
  ++in_blocks_;
  return b.items[bit];
}

void item_table::erase(std::uint64_t seq) {
  if (seq < first_) {
    old_.erase(seq);
    return;
  }
  const std::uint64_t offset = seq - first_;
  const std::uint64_t k = offset / block_items;
  if (k >= blocks_.size()) return;
  block& b = *blocks_[static_cast<std::size_t>(k)];
  const auto bit = static_cast<unsigned>(offset % block_items);
  if (!((b.used >> bit) & 1u)) return;
  start_afresh(b.items[bit]);
  b.used &= ~(std::uint32_t{1} << bit);
  --in_blocks_;
  trim_front();
}

void item_table::retire_front() {
  block& b = *blocks_.front();
  for (std::size_t i = 0; i < block_items; ++i) {
    if ((b.used >> i) & 1u) {
      old_.emplace_hint(old_.end(), first_ + i, std::move(b.items[i]));
      start_afresh(b.items[i]);
      --in_blocks_;
    }
  }
  b.used = 0;
  keep_spare(std::move(blocks_.front()));
  blocks_.pop_front();
  first_ += block_items;
}

void item_table::trim_front() {
  for (;;) {
    while (!blocks_.empty() && blocks_.front()->used == 0) {
      keep_spare(std::move(blocks_.front()));
      blocks_.pop_front();
      first_ += block_items;
    }
    // Mostly empty: a few old messages keep the front while newer ones come and go. Their
    // blocks retire until at least a quarter of the room is used again.
    if (blocks_.size() <= 4 || ring_slots() <= 4 * in_blocks_ + block_items) return;
    retire_front();
  }
}

// ---- waiting ----

void wake(const waiter_ptr& w) {
  if (w->handler) {
    auto h = std::move(*w->handler);
    w->handler.reset();
    // The waker may run on another context's thread: it lets go of the waiting coroutine's
    // executor before that coroutine resumes, and the waiter (whose flag that is) is released
    // on the coroutine's side.
    w->released.store(false, std::memory_order_relaxed);
    qrt::detail::post_releasing(
        std::move(w->handler_executor), [h = std::move(h), keep = w]() mutable { std::move(h)(); },
        w->released);
  } else {
    w->notified = true;
  }
}

void wait_list::remove(const waiter_ptr& w) {
  auto it = std::find(waiters_.begin(), waiters_.end(), w);
  if (it != waiters_.end()) waiters_.erase(it);
}

void wait_list::notify(std::size_t n) {
  while (n > 0 && !waiters_.empty()) {
    auto w = std::move(waiters_.front());
    waiters_.pop_front();
    if (w->abandoned) continue;  // nobody to wake: the next one is
    wake(w);
    --n;
  }
}

// ---- byte_budget ----

bool byte_budget::try_reserve(std::uint64_t n) {
  std::uint64_t cur = used_.load();
  do {
    if (limit_ != 0 && (n > limit_ || cur > limit_ - n)) return false;
  } while (!used_.compare_exchange_weak(cur, cur + n));
  std::uint64_t peak = peak_.load();
  while (cur + n > peak && !peak_.compare_exchange_weak(peak, cur + n)) {
  }
  return true;
}

void byte_budget::force_reserve(std::uint64_t n) {
  const std::uint64_t now = used_.fetch_add(n) + n;
  std::uint64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
}

void byte_budget::release(std::uint64_t n) {
  used_.fetch_sub(n);
  // Pairs with add_waiter() then try_reserve() in the sender (both sequentially consistent):
  // either the sender sees these bytes free, or this sees the sender waiting.
  if (waiting_.load() != 0 && wake_ && !wake_pending_.exchange(true)) wake_();
}

// ---- ready_list ----

void ready_list::push(std::uint64_t seq) {
  if (seqs_.empty() || seqs_.back() < seq) {
    seqs_.push_back(seq);  // the common case: a new message
  } else {
    // A returning message goes back to its place, so order by sequence survives abandon.
    seqs_.insert(std::upper_bound(seqs_.begin(), seqs_.end(), seq), seq);
  }
}

void ready_list::erase(std::uint64_t seq) {
  auto it = std::lower_bound(seqs_.begin(), seqs_.end(), seq);
  if (it != seqs_.end() && *it == seq) seqs_.erase(it);
}

// ---- queue_state ----

queue_state::queue_state(std::uint64_t id, queue_name name, queue_options options,
                         std::size_t max_size, std::size_t max_dead_letters,
                         std::uint64_t max_bytes, std::shared_ptr<byte_budget> budget,
                         const std::shared_ptr<spare_block_allowance>& spare_blocks,
                         event_sink* sink)
    : mutex(sink),
      id_(id),
      name_(std::move(name)),
      options_(options),
      max_size_(options.max_size != 0 ? options.max_size : max_size),
      max_dead_letters_(max_dead_letters),
      max_bytes_(max_bytes),
      budget_(std::move(budget)),
      sink_(sink) {
  main_.items.share_spares(spare_blocks);
  dlq_.items.share_spares(spare_blocks);
}

void queue_state::release_bytes() {
  if (budget_) budget_->release(bytes_ + dlq_bytes_);
  budget_.reset();
}

void queue_state::drop_contents() {
  for (queue_core* c : {&main_, &dlq_}) {
    c->items.clear();
    c->ready.clear();
  }
  sessions_.clear();
  scheduled_ = {};
  lock_fifo_.clear();
  lock_expiry_ = {};
  ttl_expiry_ = {};
  session_expiry_ = {};
  lapsed_.clear();
  lapsed_order_.clear();
  bytes_ = 0;
  dlq_bytes_ = 0;
}

std::optional<time_point> queue_state::next_event() const {
  std::optional<time_point> next;
  auto consider = [&](time_point t) {
    if (!next || t < *next) next = t;
  };
  if (!scheduled_.empty()) consider(scheduled_.top().first);
  if (!lock_expiry_.empty()) consider(lock_expiry_.top().first);
  if (!lock_fifo_.empty()) consider(lock_fifo_.front().until);
  if (!ttl_expiry_.empty()) consider(ttl_expiry_.top().first);
  if (!session_expiry_.empty()) consider(session_expiry_.top().at);
  return next;
}

void queue_state::schedule_lock_expiry(const item& it, std::uint64_t key) {
  if (lock_fifo_.empty() || lock_fifo_.back().until <= it.locked_until) {
    lock_fifo_.push_back({it.locked_until, key, it.lock});
  } else {
    lock_expiry_.emplace(it.locked_until, key);
    if (lock_expiry_.size() > 2 * (main_.items.size() + dlq_.items.size()) + 64) {
      compact_lock_expiry();
    }
  }
}

void queue_state::compact_lock_expiry() {
  std::vector<timed> held;
  held.reserve(main_.items.size() + dlq_.items.size());
  while (!lock_expiry_.empty()) {
    const auto [until, key] = lock_expiry_.top();
    lock_expiry_.pop();
    const item* it = core((key & dead_letter_bit) != 0).items.find(key & ~dead_letter_bit);
    // Every change of a lock's end scheduled an entry for it: one for the end it has now is
    // enough, and one for any other end is stale.
    if (it && it->state == item_state::locked && it->locked_until == until &&
        (held.empty() || held.back() != timed{until, key})) {
      held.emplace_back(until, key);
    }
  }
  lock_expiry_ = decltype(lock_expiry_)(std::greater<>{}, std::move(held));
}

bool queue_state::holds(const lock_entry& e) {
  const item* it = core((e.key & dead_letter_bit) != 0).items.find(e.key & ~dead_letter_bit);
  return it && it->state == item_state::locked && it->lock == e.lock && it->locked_until == e.until;
}

void queue_state::sweep(time_point now) {
  lsn ignored = 0;
  while (!scheduled_.empty() && scheduled_.top().first <= now) {
    auto seq = scheduled_.top().second;
    scheduled_.pop();
    item* it = main_.items.find(seq);
    if (it && it->state == item_state::scheduled) make_ready(*it, now);
  }
  while (!session_expiry_.empty() && session_expiry_.top().at <= now) {
    auto id = session_expiry_.top().id;
    session_expiry_.pop();
    auto it = sessions_.find(id);
    if (it != sessions_.end() && it->second.lock != 0 && it->second.locked_until <= now) {
      release_session(it->second, now);
    }
  }
  for (;;) {
    while (!lock_fifo_.empty() && !holds(lock_fifo_.front())) lock_fifo_.pop_front();
    const bool heap_due = !lock_expiry_.empty() && lock_expiry_.top().first <= now;
    const bool fifo_due = !lock_fifo_.empty() && lock_fifo_.front().until <= now;
    if (!heap_due && !fifo_due) break;
    std::uint64_t key = 0;
    // Earliest first, as one heap would: (time, key).
    if (fifo_due && (!heap_due || timed{lock_fifo_.front().until, lock_fifo_.front().key} <
                                      lock_expiry_.top())) {
      key = lock_fifo_.front().key;
      lock_fifo_.pop_front();
    } else {
      key = lock_expiry_.top().second;
      lock_expiry_.pop();
    }
    const bool dead_letter = (key & dead_letter_bit) != 0;
    auto& items = core(dead_letter).items;
    item* it = items.find(key & ~dead_letter_bit);
    if (it && it->state == item_state::locked && it->locked_until <= now) {
      release(*it, now, ignored);
      if (!items.find(key & ~dead_letter_bit)) remember_lapsed(key);
    }
  }
  while (!ttl_expiry_.empty() && ttl_expiry_.top().first <= now) {
    auto seq = ttl_expiry_.top().second;
    ttl_expiry_.pop();
    item* it = main_.items.find(seq);
    // A locked message may finish its processing; it expires if it comes back.
    if (it && it->state != item_state::locked && it->expires_at && *it->expires_at <= now) {
      (void)expire(*it, now, ignored);  // with a full DLQ it stays, ready
    }
  }
}

namespace {
// fill_fresh() copies or moves qrt::message field by field: a field added there must be added
// here too.
struct message_fields {
  std::string body;
  std::map<std::string, std::string> attributes;
  std::optional<session_id> session;
  std::string correlation_id;
  std::string content_type;
  std::string subject;
  message_id id;
  std::optional<milliseconds> time_to_live;
  std::optional<time_point> scheduled_enqueue_time;
};
static_assert(sizeof(message_fields) == sizeof(message),
              "qrt::message changed: copy its new field in fill_fresh()");

/// Fills `to`, a default message, from `from`, copying or moving each field as `from` is
/// passed. Field by field because `to` is fresh: the fields a message leaves empty (most of
/// them, usually) need no call. A stored message is moved in on every send and copied out on
/// every delivery, so this is on the hot path of both.
template <class Message>
void fill_fresh(message& to, Message&& from) {
  to.body = std::forward<Message>(from).body;
  if (!from.attributes.empty()) to.attributes = std::forward<Message>(from).attributes;
  if (from.session) to.session = std::forward<Message>(from).session;
  if (!from.correlation_id.empty()) to.correlation_id = std::forward<Message>(from).correlation_id;
  if (!from.content_type.empty()) to.content_type = std::forward<Message>(from).content_type;
  if (!from.subject.empty()) to.subject = std::forward<Message>(from).subject;
  to.id = std::forward<Message>(from).id;
  to.time_to_live = from.time_to_live;
  to.scheduled_enqueue_time = from.scheduled_enqueue_time;
}
/// `t + d`, held at the ends of the clock's range. A message may be scheduled for any time
/// (time_point::max() reads as "not before the end of time"), and a log read back carries any
/// time it holds; adding a time to live past the range would be signed overflow.
time_point plus_clamped(time_point t, milliseconds d) noexcept {
  const auto step = std::chrono::duration_cast<clock::duration>(d);  // |d| <= 100 years fits
  if (step.count() > 0 && t > time_point::max() - step) return time_point::max();
  if (step.count() < 0 && t < time_point::min() - step) return time_point::min();
  return t + step;
}
bool sets_rare_fields(const message& m) noexcept {
  return !m.attributes.empty() || m.session || !m.correlation_id.empty() ||
         !m.content_type.empty() || !m.subject.empty() || m.time_to_live ||
         m.scheduled_enqueue_time;
}
}  // namespace

// ---- kept_message ----

void kept_message::take_content(message&& m) {
  if (sets_rare_fields(m)) {
    rarely = std::make_unique<rarely_set>();
    fill_fresh(rarely->fields, std::move(m));
    body = std::exchange(rarely->fields.body, {});  // the body and the id are kept inline
    id = std::exchange(rarely->fields.id, {});
  } else {
    body = std::move(m.body);
    id = std::move(m.id);
  }
}

void kept_message::copy_content_to(message& to) const {
  if (rarely) fill_fresh(to, rarely->fields);  // first: it copies an empty body and id too
  to.body = body;
  to.id = id;
}

void kept_message::set_dead_letter(dead_letter_info info) {
  if (!rarely) rarely = std::make_unique<rarely_set>();
  rarely->dead_letter = std::move(info);
}

stored_message kept_message::release() && {
  stored_message m;
  m.sequence = sequence;
  m.enqueued_time = enqueued_time;
  m.delivery_count = delivery_count;
  if (rarely) {
    fill_fresh(m.content, std::move(rarely->fields));  // an empty body and id, replaced below
    m.dead_letter = std::move(rarely->dead_letter);
    rarely.reset();
  }
  m.content.body = std::move(body);
  m.content.id = std::move(id);
  return m;
}

kept_message kept_message::from(stored_message&& m) {
  kept_message k;
  k.sequence = m.sequence;
  k.enqueued_time = m.enqueued_time;
  k.delivery_count = m.delivery_count;
  k.take_content(std::move(m.content));
  if (m.dead_letter) k.set_dead_letter(std::move(*m.dead_letter));
  return k;
}

// ---- queue_state ----

std::uint64_t queue_state::enqueue(message&& msg, std::uint64_t bytes, time_point now, lsn& last,
                                   bool logged) {
  const std::uint64_t seq = next_sequence_++;
  item& it = main_.items.emplace(seq);
  it.bytes = bytes;
  bytes_ += bytes;
  if (sink_ && logged) {
    // The log records the message whole; the item then keeps it in its own form.
    stored_message whole;
    whole.sequence = seq;
    whole.enqueued_time = now;
    fill_fresh(whole.content, std::move(msg));
    last = std::max(last, sink_->enqueued(name_, whole));
    it.stored = kept_message::from(std::move(whole));
  } else {
    it.stored.sequence = seq;
    it.stored.enqueued_time = now;
    it.stored.take_content(std::move(msg));
  }
  admit(it, now);
  return seq;
}

void queue_state::admit(item& it, time_point now) {
  static const message none;  // a message that sets none of the rare fields
  const message& m = it.stored.rare_fields() ? *it.stored.rare_fields() : none;
  const time_point enqueued = it.stored.enqueued_time;
  it.visible_at = m.scheduled_enqueue_time && *m.scheduled_enqueue_time > enqueued
                      ? *m.scheduled_enqueue_time
                      : enqueued;
  if (auto ttl = m.time_to_live ? m.time_to_live : options_.default_time_to_live) {
    it.expires_at = plus_clamped(it.visible_at, *ttl);
    ttl_expiry_.emplace(*it.expires_at, it.stored.sequence);
    if (ttl_expiry_.size() > 2 * main_.items.size() + 64) compact_ttl_expiry();
  }
  if (options_.requires_session && m.session) {
    session_slot& slot = session_for(*m.session);
    ++slot.messages;
    it.session = &slot;
  }
  if (it.visible_at > now) {
    it.state = item_state::scheduled;
    scheduled_.emplace(it.visible_at, it.stored.sequence);
  } else {
    make_ready(it, now);
  }
}

void queue_state::compact_ttl_expiry() {
  std::vector<timed> live;
  live.reserve(main_.items.size());
  main_.items.for_each_from(0, [&](const item& i) {
    if (i.expires_at) live.emplace_back(*i.expires_at, i.stored.sequence);
    return true;
  });
  ttl_expiry_ = decltype(ttl_expiry_)(std::greater<>{}, std::move(live));
}

void queue_state::make_ready(item& it, time_point /*now*/) {
  readied.fetch_add(1, std::memory_order_relaxed);
  it.state = item_state::ready;
  it.lock = 0;
  const bool dead_letter = it.stored.is_dead_letter();
  if (it.session) {
    it.session->ready.push(it.stored.sequence);
    it.session->receivers.notify_all();
    if (it.session->lock == 0) session_acceptors_.notify(1);
  } else {
    auto& c = core(dead_letter);
    c.ready.push(it.stored.sequence);
    c.receivers.notify(1);
  }
}

void queue_state::deliver(item& it, bool dead_letter, time_point now, std::uint64_t owner,
                          lsn& last, std::vector<received_message>& out) {
  it.state = item_state::locked;
  it.lock = next_lock_++;
  it.locked_until = it.session ? it.session->locked_until : now + options_.lock_duration;
  schedule_lock_expiry(it, heap_key(dead_letter, it.stored.sequence));
  ++it.stored.delivery_count;
  if (sink_) {
    last = std::max(last, sink_->delivered(dead_letter ? name_.dead_letter() : name_,
                                           it.stored.sequence, it.stored.delivery_count));
  }
  // Built in place: a received_message is large, and this is the hot path of every receive.
  // The body's copy is allocated on the receiving thread, which is the one that will most
  // likely free it (see queue_mutex::discard()).
  received_message& r = out.emplace_back();
  it.stored.copy_content_to(r);
  r.receipt = receipt_handle{owner, id_, heap_key(dead_letter, it.stored.sequence), it.lock, {}};
  r.delivery_count = it.stored.delivery_count;
  r.enqueued_time = it.stored.enqueued_time;
  r.locked_until = it.locked_until;
  r.sequence_number = static_cast<std::int64_t>(it.stored.sequence);
  if (const auto* info = it.stored.dead_letter()) r.dead_letter = *info;
}

void queue_state::take(bool dead_letter, std::size_t max, time_point now,
                       std::vector<received_message>& out, std::uint64_t owner, lsn& last) {
  queue_core& c = core(dead_letter);
  out.reserve(out.size() + std::min(max - out.size(), c.ready.size()));
  while (out.size() < max && !c.ready.empty()) {
    const auto seq = c.ready.front();
    c.ready.pop_front();
    item* found = c.items.find(seq);
    if (!found) continue;
    item& it = *found;
    if (!dead_letter && it.expires_at && *it.expires_at <= now && expire(it, now, last)) continue;
    deliver(it, dead_letter, now, owner, last, out);
  }
}

void queue_state::peek(bool dead_letter, std::size_t max, std::uint64_t from,
                       std::vector<received_message>& out) const {
  const queue_core& c = dead_letter ? dlq_ : main_;
  if (out.size() >= max) return;
  c.items.for_each_from(from, [&](const item& i) {
    received_message r;
    i.stored.copy_content_to(r);
    r.delivery_count = i.stored.delivery_count;
    r.enqueued_time = i.stored.enqueued_time;
    r.sequence_number = static_cast<std::int64_t>(i.stored.sequence);
    if (const auto* info = i.stored.dead_letter()) r.dead_letter = *info;
    out.push_back(std::move(r));
    return out.size() < max;
  });
}

void queue_state::release(item& it, time_point now, lsn& last) {
  const bool dead_letter = it.stored.is_dead_letter();
  if (it.session) it.session->locked.erase(it.stored.sequence);
  if (!dead_letter && options_.max_delivery_count != 0 &&
      it.stored.delivery_count >= options_.max_delivery_count && dead_letter_has_room()) {
    move_to_dead_letter(
        it,
        {"MaxDeliveryCountExceeded", "delivered " + std::to_string(it.stored.delivery_count) +
                                         " times without being completed"},
        now, last);
    return;
  }
  if (!dead_letter && it.expires_at && *it.expires_at <= now && expire(it, now, last)) return;
  make_ready(it, now);
}

bool queue_state::expire(item& it, time_point now, lsn& last) {
  if (options_.dead_letter_on_expiration) {
    if (!dead_letter_has_room()) return false;
    ++expired_;
    move_to_dead_letter(it, {"TTLExpiredException", "the message's time to live expired"}, now,
                        last);
  } else {
    ++expired_;
    erase_item(it.stored.sequence, last);
  }
  return true;
}

void queue_state::move_to_dead_letter(item& it, dead_letter_info info, time_point now, lsn& last) {
  const std::uint64_t dlq_seq = next_sequence_++;
  item& moved = dlq_.items.emplace(dlq_seq);
  moved.bytes = it.bytes;
  dlq_bytes_ += it.bytes;
  stored_message whole = std::move(it.stored).release();
  whole.sequence = dlq_seq;
  whole.dead_letter = std::move(info);
  if (sink_) last = std::max(last, sink_->enqueued(name_.dead_letter(), whole));
  moved.stored = kept_message::from(std::move(whole));
  moved.visible_at = now;
  erase_item(it.stored.sequence, last, /*leaves_memory=*/false);  // its content went to `whole`
  make_ready(moved, now);
}

void queue_state::erase_item(std::uint64_t seq, lsn& last, bool leaves_memory) {
  item* pos = main_.items.find(seq);
  if (!pos) {
    pos = dlq_.items.find(seq);
    if (!pos) return;
    if (pos->state == item_state::ready) dlq_.ready.erase(seq);
    if (sink_) last = std::max(last, sink_->removed(name_.dead_letter(), seq));
    dlq_bytes_ -= pos->bytes;
    if (budget_) budget_->release(pos->bytes);
    mutex.discard(std::move(pos->stored.body));
    mutex.discard(std::move(pos->stored.id));  // allocated by its sender too
    dlq_.items.erase(seq);
    return;
  }
  item& it = *pos;
  bytes_ -= it.bytes;
  if (leaves_memory && budget_) budget_->release(it.bytes);
  if (it.state == item_state::ready) {
    if (it.session)
      it.session->ready.erase(seq);
    else
      main_.ready.erase(seq);
  }
  session_slot* slot = it.session;
  if (sink_) last = std::max(last, sink_->removed(name_, seq));
  mutex.discard(std::move(it.stored.body));
  mutex.discard(std::move(it.stored.id));  // allocated by its sender too
  main_.items.erase(seq);
  if (slot) {
    slot->locked.erase(seq);
    --slot->messages;
    forget_session_if_idle(*slot);
  }
  senders_.notify(1);
}

result<void> queue_state::settle(const delivery_key& key, const settlement& s, time_point now,
                                 lsn& last) {
  queue_core& c = core(key.dead_letter);
  item* pos = c.items.find(key.sequence);
  if (!pos) {
    if (lapsed(heap_key(key.dead_letter, key.sequence))) {
      return fail(errc::receipt_expired, "the lock on message " + std::to_string(key.sequence) +
                                             " in '" + name_.to_string() +
                                             "' expired and the message has left the queue");
    }
    return fail(errc::invalid_receipt, "message " + std::to_string(key.sequence) + " in '" +
                                           name_.to_string() + "' was already settled");
  }
  item& it = *pos;
  if (it.state != item_state::locked || it.lock != key.lock) {
    if (key.lock == it.abandoned_lock) {
      return fail(errc::invalid_receipt, "message " + std::to_string(key.sequence) + " in '" +
                                             name_.to_string() +
                                             "' was already abandoned with this receipt");
    }
    if (!issued(key.lock)) {
      return fail(errc::invalid_receipt,
                  "no lock " + std::to_string(key.lock) + " was ever issued on message " +
                      std::to_string(key.sequence) + " in '" + name_.to_string() + "'");
    }
    if (it.session) {
      return fail(errc::session_lock_lost,
                  "the session lock of '" + it.session->id.str() + "' expired or was released");
    }
    return fail(errc::receipt_expired, "the lock on message " + std::to_string(key.sequence) +
                                           " in '" + name_.to_string() + "' expired");
  }
  switch (s.action) {
    case settle_action::complete:
      erase_item(key.sequence, last);
      break;
    case settle_action::abandon:
      it.abandoned_lock = it.lock;
      release(it, now, last);
      break;
    case settle_action::dead_letter:
      if (key.dead_letter) {
        return fail(errc::invalid_argument, "message " + std::to_string(key.sequence) +
                                                " is already in a dead-letter queue");
      }
      if (!dead_letter_has_room()) {
        return fail(errc::queue_full,
                    "the dead-letter queue of '" + name_.str() + "' is full (" +
                        std::to_string(max_dead_letters_) + " messages): message " +
                        std::to_string(key.sequence) +
                        " stays locked in the queue; complete or abandon it, or make room");
      }
      if (it.session) it.session->locked.erase(key.sequence);
      // Free text, often an error message: bounded so one settlement cannot make a stored
      // message (and its log record) arbitrarily large.
      move_to_dead_letter(it,
                          {bounded(s.reason, max_dead_letter_reason_bytes),
                           bounded(s.description, max_dead_letter_description_bytes)},
                          now, last);
      break;
  }
  return {};
}

result<time_point> queue_state::renew(const delivery_key& key, time_point now) {
  queue_core& c = core(key.dead_letter);
  item* pos = c.items.find(key.sequence);
  if (!pos) {
    if (lapsed(heap_key(key.dead_letter, key.sequence))) {
      return fail(errc::receipt_expired, "the lock on message " + std::to_string(key.sequence) +
                                             " expired and the message has left the queue");
    }
    return fail(errc::invalid_receipt,
                "message " + std::to_string(key.sequence) + " was already settled");
  }
  item& it = *pos;
  if (it.state != item_state::locked || it.lock != key.lock) {
    if (key.lock == it.abandoned_lock) {
      return fail(errc::invalid_receipt, "message " + std::to_string(key.sequence) +
                                             " was already abandoned with this receipt");
    }
    if (!issued(key.lock)) {
      return fail(errc::invalid_receipt, "no lock " + std::to_string(key.lock) +
                                             " was ever issued on message " +
                                             std::to_string(key.sequence));
    }
    return fail(it.session ? errc::session_lock_lost : errc::receipt_expired,
                "the lock on message " + std::to_string(key.sequence) + " expired");
  }
  if (it.session) return renew_session(*it.session, now);
  it.locked_until = now + options_.lock_duration;
  schedule_lock_expiry(it, heap_key(key.dead_letter, key.sequence));
  return it.locked_until;
}

session_slot& queue_state::session_for(const session_id& id) {
  auto [pos, inserted] = sessions_.try_emplace(id);
  if (inserted) pos->second.id = id;
  return pos->second;
}

void queue_state::forget_session_if_idle(session_slot& slot) {
  if (slot.lock == 0 && slot.messages == 0 && slot.state.empty() && slot.receivers.empty()) {
    sessions_.erase(slot.id);
  }
}

result<session_slot*> queue_state::lock_session(const session_id& id, time_point now) {
  session_slot& slot = session_for(id);
  if (slot.lock != 0) {
    return fail(errc::session_locked,
                "session '" + id.str() + "' of '" + name_.str() + "' is held by another receiver");
  }
  slot.lock = next_lock_++;
  slot.locked_until = now + options_.lock_duration;
  session_expiry_.push({slot.locked_until, id});
  return &slot;
}

session_slot* queue_state::lock_next_session(time_point now) {
  // The free session whose first ready message is the oldest, so sessions take turns in the
  // order their messages arrived: taking the first by id would hand a just-released low id back
  // ahead of sessions that have waited longer. A ready list is in sequence order, so its front
  // is its oldest message; the scan is the one the first-by-id search already made.
  session_slot* oldest = nullptr;
  for (auto& [id, slot] : sessions_) {
    if (slot.lock == 0 && !slot.ready.empty() &&
        (!oldest || slot.ready.front() < oldest->ready.front())) {
      oldest = &slot;
    }
  }
  if (!oldest) return nullptr;
  auto r = lock_session(oldest->id, now);
  return r ? *r : nullptr;
}

result<session_slot*> queue_state::find_locked_session(const session_id& id, std::uint64_t lock,
                                                       time_point /*now*/) {
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.lock != lock) {
    return fail(errc::session_lock_lost,
                "the lock on session '" + id.str() + "' expired or was released");
  }
  return &it->second;
}

void queue_state::take_from_session(session_slot& slot, std::size_t max, time_point now,
                                    std::vector<received_message>& out, std::uint64_t owner,
                                    lsn& last) {
  out.reserve(out.size() + std::min(max - out.size(), slot.ready.size()));
  while (out.size() < max && !slot.ready.empty()) {
    const auto seq = slot.ready.front();
    slot.ready.pop_front();
    item* pos = main_.items.find(seq);
    if (!pos) continue;
    item& it = *pos;
    if (it.expires_at && *it.expires_at <= now && expire(it, now, last)) continue;
    slot.locked.insert(seq);
    deliver(it, false, now, owner, last, out);
  }
}

time_point queue_state::renew_session(session_slot& slot, time_point now) {
  slot.locked_until = now + options_.lock_duration;
  session_expiry_.push({slot.locked_until, slot.id});
  for (auto seq : slot.locked) {
    item* pos = main_.items.find(seq);
    if (!pos) continue;
    pos->locked_until = slot.locked_until;
    schedule_lock_expiry(*pos, seq);
  }
  return slot.locked_until;
}

void queue_state::release_session(session_slot& slot, time_point now) {
  lsn ignored = 0;
  const auto locked = slot.locked;  // release() edits the set
  // The messages go back first, while the slot is still locked, so no acceptor races ahead.
  for (auto seq : locked) {
    item* pos = main_.items.find(seq);
    if (pos && pos->state == item_state::locked) {
      release(*pos, now, ignored);
      if (!main_.items.find(seq)) remember_lapsed(seq);
    }
  }
  slot.locked.clear();
  slot.lock = 0;
  slot.receivers.notify_all();
  if (!slot.ready.empty()) session_acceptors_.notify(1);
  forget_session_if_idle(slot);
}

void queue_state::remember_lapsed(std::uint64_t key) {
  constexpr std::size_t capacity = 8192;
  if (!lapsed_.insert(key).second) return;
  lapsed_order_.push_back(key);
  if (lapsed_order_.size() > capacity) {
    lapsed_.erase(lapsed_order_.front());
    lapsed_order_.pop_front();
  }
}

lsn queue_state::set_session_state(session_slot& slot, std::string state) {
  slot.state = std::move(state);
  return sink_ ? sink_->session_state_set(name_, slot.id, slot.state) : 0;
}

queue_stats queue_state::stats() const {
  queue_stats s;
  s.active = s.in_flight = s.scheduled = 0;
  main_.items.for_each_from(0, [&](const item& it) {
    switch (it.state) {
      case item_state::ready:
        ++s.active;
        break;
      case item_state::locked:
        ++s.in_flight;
        break;
      case item_state::scheduled:
        ++s.scheduled;
        break;
    }
    return true;
  });
  s.dead_lettered = static_cast<std::int64_t>(dlq_.items.size());
  s.expired = expired_;
  return s;
}

queue_stats queue_state::dead_letter_stats() const {
  queue_stats s;
  s.active = s.in_flight = s.scheduled = s.dead_lettered = 0;
  dlq_.items.for_each_from(0, [&](const item& it) {
    ++(it.state == item_state::locked ? s.in_flight : s.active);
    return true;
  });
  return s;
}

void queue_state::restore(recovered_queue&& recovered, time_point now) {
  next_sequence_ = std::max(next_sequence_, recovered.next_sequence);
  event_sink* sink = sink_;
  sink_ = nullptr;  // replaying must not log again
  for (auto& m : recovered.messages) {
    const std::uint64_t seq = m.sequence;
    item& it = main_.items.emplace(seq);
    it.bytes = accounted_bytes(m.content);
    it.stored = kept_message::from(std::move(m));
    bytes_ += it.bytes;
    if (budget_) budget_->force_reserve(it.bytes);
    admit(it, now);
    next_sequence_ = std::max(next_sequence_, seq + 1);
  }
  for (auto& m : recovered.dead_letters) {
    const std::uint64_t seq = m.sequence;
    item& it = dlq_.items.emplace(seq);
    it.bytes = accounted_bytes(m.content);
    if (!m.dead_letter) m.dead_letter = dead_letter_info{};
    it.stored = kept_message::from(std::move(m));
    dlq_bytes_ += it.bytes;
    if (budget_) budget_->force_reserve(it.bytes);
    it.visible_at = now;
    make_ready(it, now);
    next_sequence_ = std::max(next_sequence_, seq + 1);
  }
  for (auto& [id, state] : recovered.session_states) session_for(id).state = std::move(state);
  sink_ = sink;
}

void queue_state::wake_everyone() {
  main_.receivers.notify_all();
  dlq_.receivers.notify_all();
  senders_.notify_all();
  session_acceptors_.notify_all();
  for (auto& [id, slot] : sessions_) slot.receivers.notify_all();
}

}  // namespace qrt::memory::detail
