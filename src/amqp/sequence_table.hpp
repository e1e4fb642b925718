// Items numbered in increasing order and taken out in any order: the deliveries a sender link
// has handed to the broker and waits to hear about, and those a receiver link has handed to
// callers and waits to see settled (engine_core.hpp). Every message passes through one of them,
// and most leave in about the order they came, so they are kept in a deque in number order
// rather than a node-based map (a node allocation, a free and a rebalancing or a rehash per
// message). Pure: no Proton, no I/O.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

namespace qrt::amqp::detail {

template <class T>
class sequence_table {
 public:
  /// `seq` is larger than that of every item added before.
  void add(std::uint64_t seq, T item) {
    slots_.push_back(slot{seq, std::move(item)});
    ++live_;
  }

  /// Takes item `seq` out; nullopt when it is not held (never added, or already taken).
  std::optional<T> take(std::uint64_t seq) {
    return take(seq, [](const T&) { return true; });
  }
  /// Takes item `seq` out only if `accept(item)`; otherwise it stays, and nullopt.
  template <class Accept>
  std::optional<T> take(std::uint64_t seq, Accept accept) {
    const auto it = find(seq);
    if (it == slots_.end() || !it->item || !accept(*it->item)) return std::nullopt;
    std::optional<T> taken = std::move(it->item);
    it->item.reset();  // the hole
    --live_;
    while (!slots_.empty() && !slots_.front().item) slots_.pop_front();
    // An old item held for long keeps the holes behind it: they are swept once they outnumber
    // the held, which keeps the deque within a constant factor of what a map would hold.
    if (slots_.size() > 2 * live_ + 64) {
      std::erase_if(slots_, [](const slot& s) { return !s.item; });
    }
    return taken;
  }

  /// Takes out every item `pred` selects, in number order.
  template <class Pred>
  std::vector<T> take_if(Pred pred) {
    std::vector<T> taken;
    for (slot& s : slots_) {
      if (s.item && pred(std::as_const(*s.item))) {
        taken.push_back(std::move(*s.item));
        s.item.reset();
        --live_;
      }
    }
    std::erase_if(slots_, [](const slot& s) { return !s.item; });
    return taken;
  }

  /// Takes out every item, in number order.
  std::vector<T> take_all() {
    return take_if([](const T&) { return true; });
  }

  /// How many are held.
  std::size_t size() const noexcept { return live_; }
  bool empty() const noexcept { return live_ == 0; }
  /// Slots kept, holes included: at most 2 * size() + 64 once a take has swept.
  std::size_t slots() const noexcept { return slots_.size(); }

 private:
  struct slot {
    std::uint64_t seq;
    std::optional<T> item;  ///< empty: taken, a hole
  };

  typename std::deque<slot>::iterator find(std::uint64_t seq) {
    if (slots_.empty() || seq < slots_.front().seq) return slots_.end();
    // Numbers are usually consecutive and the holes few, so the slot is usually where its
    // distance from the front says; otherwise (after a sweep, or where numbers were skipped) a
    // binary search finds it.
    const std::uint64_t distance = seq - slots_.front().seq;
    if (distance < slots_.size()) {
      const auto guess = slots_.begin() + static_cast<std::ptrdiff_t>(distance);
      if (guess->seq == seq) return guess;
    }
    const auto it = std::lower_bound(slots_.begin(), slots_.end(), seq,
                                     [](const slot& s, std::uint64_t n) { return s.seq < n; });
    return it != slots_.end() && it->seq == seq ? it : slots_.end();
  }

  std::deque<slot> slots_;
  std::size_t live_ = 0;
};

}  // namespace qrt::amqp::detail
