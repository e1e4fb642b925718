#include "queue_borrow.hpp"

#include <algorithm>
#include <mutex>
#include <vector>

namespace qrt::memory::detail {
namespace {

// Every live thread's slot. Never destroyed: a thread may end (and unregister) after static
// destructors have run.
struct slot_registry {
  std::mutex mutex;
  std::vector<borrow_slot*> slots;
};

slot_registry& registry() {
  static auto* r = new slot_registry;
  return *r;
}

// Registers the thread's slot when the thread first borrows, unregisters it when the thread
// ends. A thread ends outside any call, so its slot is empty by then.
struct thread_borrows {
  borrow_slot slot;
  borrow_cache cache;
  thread_borrows() {
    cache.slot = &slot;
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    r.slots.push_back(&slot);
  }
  ~thread_borrows() {
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    std::erase(r.slots, &slot);
  }
  thread_borrows(const thread_borrows&) = delete;
  thread_borrows& operator=(const thread_borrows&) = delete;
};

}  // namespace

borrow_cache& this_threads_borrows() {
  thread_local thread_borrows mine;
  return mine.cache;
}

bool anyone_borrows(const queue_state* state) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  return std::ranges::any_of(r.slots, [state](const borrow_slot* s) {
    return s->in_use.load(std::memory_order_seq_cst) == state;
  });
}

}  // namespace qrt::memory::detail
