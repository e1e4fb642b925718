// A FIFO of large elements that are added at the back and taken from the front, kept in one
// vector: a receiver link's buffered deliveries (engine_core.hpp). std::deque gives an element
// of more than 512 bytes a heap block of its own, one allocation and one free per delivery; here
// the taken elements stay in place (moved from) until the queue drains or they outnumber the
// held, and the vector's storage is reused. Pure: no Proton, no I/O.
#pragma once

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <vector>

namespace qrt::amqp::detail {

template <class T>
class front_queue {
 public:
  bool empty() const noexcept { return head_ == items_.size(); }
  std::size_t size() const noexcept { return items_.size() - head_; }

  /// A new element at the back, value-initialised; a reference to it until the next change.
  T& emplace_back() {
    if (head_ > 0 && head_ == items_.size()) {
      items_.clear();  // drained: reuse the storage from its start
      head_ = 0;
    }
    return items_.emplace_back();
  }
  void pop_back() { items_.pop_back(); }

  T& front() { return items_[head_]; }
  /// Drops the front element (its moved-from shell stays until the storage is reused).
  void pop_front() {
    ++head_;
    if (head_ == items_.size()) {
      items_.clear();
      head_ = 0;
    } else if (head_ >= 64 && head_ > items_.size() / 2) {
      // Taken ones outnumber the held: move the held to the start, so the vector stays
      // within twice what it holds.
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

  /// Removes the held elements for which `pred` is true, keeping the order of the rest.
  template <class Pred>
  std::size_t erase_if(Pred pred) {
    const auto first = items_.begin() + static_cast<std::ptrdiff_t>(head_);
    const auto kept = std::remove_if(first, items_.end(), pred);
    const auto removed = static_cast<std::size_t>(std::distance(kept, items_.end()));
    items_.erase(kept, items_.end());
    if (head_ == items_.size()) {
      items_.clear();
      head_ = 0;
    }
    return removed;
  }

 private:
  std::vector<T> items_;
  std::size_t head_ = 0;  ///< items_[0, head_) are taken
};

}  // namespace qrt::amqp::detail
