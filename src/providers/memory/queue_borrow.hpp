// Finding a queue's state on the hot path (send, receive, settle) without writing a cache line
// that another thread writes too: no registry lock, no reference count. See
// docs/adr/0004-embedded-provider.md, "Looking a queue up".
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <qrt/names.hpp>
#include <utility>

namespace qrt::memory::detail {

class queue_state;

/// One thread's announcement of the queue state it is using (a hazard pointer): a provider that
/// deletes a queue keeps its state alive while any thread announces it. On its own cache line,
/// written only by its thread.
struct alignas(64) borrow_slot {
  std::atomic<const queue_state*> in_use{nullptr};
};

/// A thread's last lookup of a queue by `Key`: used only for the provider it was made in and
/// while that provider's registry generation is the one it was made at.
template <class Key>
struct cached_lookup {
  std::uint64_t provider = 0;
  std::uint64_t generation = 0;
  std::optional<Key> key;
  queue_state* state = nullptr;
};

/// This thread's slot and the last lookups it made, one by name and one by queue id.
struct borrow_cache {
  borrow_slot* slot = nullptr;  ///< registered for as long as the thread lives
  cached_lookup<queue_name> by_name;
  cached_lookup<std::uint64_t> by_id;
};

/// The calling thread's cache, its slot registered on first use.
borrow_cache& this_threads_borrows();

/// True while any thread announces `state`. Deleters call it with their registry's lock held,
/// after they made the queue unreachable and moved the registry's generation on.
bool anyone_borrows(const queue_state* state);

/// A queue state announced as in use by this thread, for the part of a call that does not
/// suspend. Released by release() or its destructor. Before a coroutine suspends, it takes a
/// counted reference (the state's shared_from_this()) and releases the borrow: the slot is this
/// thread's, and the coroutine may resume on another.
class queue_borrow {
 public:
  queue_borrow() = default;
  queue_borrow(queue_state* state, borrow_slot* slot) noexcept : state_(state), slot_(slot) {}
  ~queue_borrow() { release(); }
  queue_borrow(const queue_borrow&) = delete;
  queue_borrow& operator=(const queue_borrow&) = delete;
  queue_borrow(queue_borrow&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)), slot_(std::exchange(other.slot_, nullptr)) {}
  queue_borrow& operator=(queue_borrow&&) = delete;

  queue_state* get() const noexcept { return state_; }
  queue_state* operator->() const noexcept { return state_; }
  explicit operator bool() const noexcept { return state_ != nullptr; }

  /// Ends the announcement; every use of the state before it happens before a deleter that sees
  /// the slot empty frees the state.
  void release() noexcept {
    if (slot_) slot_->in_use.store(nullptr, std::memory_order_release);
    slot_ = nullptr;
    state_ = nullptr;
  }

 private:
  queue_state* state_ = nullptr;
  borrow_slot* slot_ = nullptr;
};

}  // namespace qrt::memory::detail
