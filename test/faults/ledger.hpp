// The fault suite's ledger: every message carries a unique id (its body); the producer records
// the sends the provider acknowledged, the handler records each time it starts on a message,
// and a provider decorator records each complete the provider acknowledged. At the end the
// test counts: every acknowledged send handled at least once, nothing handled again after its
// complete was acknowledged, duplicates counted.
#pragma once

#include <dirent.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <optional>
#include <qrt/provider.hpp>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace qrt::faults {

struct ledger_counts {
  std::size_t sent = 0;          ///< send attempts
  std::size_t acknowledged = 0;  ///< sends the provider acknowledged
  std::size_t handled = 0;       ///< distinct ids a handler started on
  std::size_t handler_calls = 0;
  std::size_t completed = 0;       ///< distinct ids whose complete was acknowledged
  std::size_t duplicated = 0;      ///< ids handled more than once
  std::size_t lost = 0;            ///< acknowledged, never handled (and not forgotten)
  std::size_t lost_by_server = 0;  ///< acknowledged, never handled, forgotten by a server restart
  std::size_t resurrected = 0;     ///< handler starts after an acknowledged complete
  std::size_t handled_unacknowledged = 0;  ///< handled, but the send's ack never reached us
};

class ledger {
 public:
  void sent() {
    std::lock_guard lock(mutex_);
    ++sent_;
  }
  void acknowledged(const std::string& id) {
    std::lock_guard lock(mutex_);
    acknowledged_.insert(id);
    changed_.notify_all();
  }
  /// A handler started on message `id`. `message_id` is the provider's id of the stored
  /// message, where the test knows it: a send retried after a timeout can store a second copy
  /// under the same `id` (at-least-once on send), and handling that copy is a duplicate, not a
  /// resurrection of the completed first copy.
  void handled(const std::string& id, const std::string& message_id = {}) {
    std::lock_guard lock(mutex_);
    ++handled_[id];
    ++handler_calls_;
    if (message_id.empty() ? completed_.count(id) != 0
                           : completed_messages_.count(message_id) != 0) {
      ++resurrected_;
      resurrections_.push_back({id, completed_at_[id]});
    }
    if (recovery_mark_ && !recovered_at_) {
      auto r = received_at_.find(id);
      if (r != received_at_.end() && r->second >= *recovery_mark_) {
        recovered_at_ = std::chrono::steady_clock::now();
      }
    }
    changed_.notify_all();
  }
  /// A receive handed out `id` (recovery is measured from receives after the server is back,
  /// not from messages a processor had buffered before the fault).
  void received(const std::string& id) {
    std::lock_guard lock(mutex_);
    if (recovery_mark_) received_at_[id] = std::chrono::steady_clock::now();
  }
  /// The server is back: recovery_ms() will be the time from now to the first handler start on
  /// a message received after now.
  void mark_recovery_start() {
    std::lock_guard lock(mutex_);
    recovery_mark_ = std::chrono::steady_clock::now();
    recovered_at_.reset();
    received_at_.clear();
  }
  /// Milliseconds from mark_recovery_start() to the first handled message after it; -1 if none.
  double recovery_ms() const {
    std::lock_guard lock(mutex_);
    if (!recovery_mark_ || !recovered_at_) return -1;
    return std::chrono::duration<double, std::milli>(*recovered_at_ - *recovery_mark_).count();
  }
  std::size_t handler_calls() const {
    std::lock_guard lock(mutex_);
    return handler_calls_;
  }
  /// The provider acknowledged a complete of message `id` (stored as `message_id`, if known).
  void completed(const std::string& id, const std::string& message_id = {}) {
    std::lock_guard lock(mutex_);
    completed_.insert(id);
    completed_at_.emplace(id, std::chrono::steady_clock::now());
    if (!message_id.empty()) completed_messages_.insert(message_id);
    changed_.notify_all();
  }

  /// A server that keeps its queues in memory only was killed: every id acknowledged so far and
  /// not yet handled is gone with it. Such an id, if never handled, counts as lost_by_server,
  /// not lost. Call it once the old server is dead and before the new one starts, so that every
  /// acknowledgement it covers came from the old server.
  void server_forgot_unhandled() {
    std::lock_guard lock(mutex_);
    for (const auto& id : acknowledged_)
      if (!handled_.count(id)) forgotten_.insert(id);
  }

  /// True once every acknowledged id has been completed (so nothing is left to handle);
  /// false if `timeout` passed first.
  bool wait_all_completed(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] {
      for (const auto& id : acknowledged_)
        if (!completed_.count(id)) return false;
      return true;
    });
  }
  /// True once every acknowledged id has been handled at least once; false if `timeout` passed
  /// first. (Not every one need be completed: a complete the provider could not vouch for, as
  /// one answered after its lock ran out, is reported failed although it may have taken effect.)
  bool wait_all_handled(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] {
      for (const auto& id : acknowledged_)
        if (!handled_.count(id) && !forgotten_.count(id)) return false;
      return true;
    });
  }
  /// True once `n` handler calls happened.
  bool wait_handler_calls(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return handler_calls_ >= n; });
  }
  std::size_t acknowledged_count() const {
    std::lock_guard lock(mutex_);
    return acknowledged_.size();
  }

  /// Each resurrection: the id, and when its (first) complete was acknowledged.
  struct resurrection {
    std::string id;
    std::chrono::steady_clock::time_point completed_at;
  };
  std::vector<resurrection> resurrections() const {
    std::lock_guard lock(mutex_);
    return resurrections_;
  }

  ledger_counts counts() const {
    std::lock_guard lock(mutex_);
    ledger_counts c;
    c.sent = sent_;
    c.acknowledged = acknowledged_.size();
    c.handled = handled_.size();
    c.handler_calls = handler_calls_;
    c.resurrected = resurrected_;
    c.completed = completed_.size();
    for (const auto& [id, n] : handled_) {
      if (n > 1) ++c.duplicated;
      if (!acknowledged_.count(id)) ++c.handled_unacknowledged;
    }
    for (const auto& id : acknowledged_)
      if (!handled_.count(id)) ++(forgotten_.count(id) ? c.lost_by_server : c.lost);
    return c;
  }

  /// One line for the log and docs/reliability.md.
  std::string summary(const std::string& scenario, double recovery_ms = -1) const {
    const auto c = counts();
    std::string s = "LEDGER " + scenario + ": sent=" + std::to_string(c.sent) +
                    " acknowledged=" + std::to_string(c.acknowledged) +
                    " handled=" + std::to_string(c.handled) +
                    " handler_calls=" + std::to_string(c.handler_calls) +
                    " completed=" + std::to_string(c.completed) +
                    " duplicated=" + std::to_string(c.duplicated) +
                    " lost=" + std::to_string(c.lost) +
                    " lost_by_server=" + std::to_string(c.lost_by_server) +
                    " resurrected=" + std::to_string(c.resurrected) +
                    " handled_unacknowledged=" + std::to_string(c.handled_unacknowledged);
    if (recovery_ms >= 0) s += " recovery_ms=" + std::to_string(static_cast<long>(recovery_ms));
    return s;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::size_t sent_ = 0;
  std::size_t handler_calls_ = 0;
  std::size_t resurrected_ = 0;
  std::unordered_set<std::string> acknowledged_;
  std::unordered_map<std::string, std::size_t> handled_;
  std::unordered_set<std::string> completed_;
  std::unordered_set<std::string> completed_messages_;  ///< provider message ids
  std::unordered_set<std::string> forgotten_;           ///< see server_forgot_unhandled()
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> completed_at_;
  std::vector<resurrection> resurrections_;
  std::optional<std::chrono::steady_clock::time_point> recovery_mark_, recovered_at_;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> received_at_;
};

/// Wraps the real provider (below retries and injected faults) and reports each complete the
/// provider acknowledged, by message id (the body) and the provider's message id, and (if
/// given) each message a receive handed out. Everything else passes through.
provider_ptr record_completions(
    provider_ptr inner,
    std::function<void(const std::string& id, const std::string& message_id)> on_completed,
    std::function<void(const std::string& id)> on_received = {});

/// Threads and open file descriptors of this process, for leak checks.
struct process_resources {
  std::size_t threads = 0;
  std::size_t fds = 0;
  /// The count to compare a later now() with. Sanitizers start a helper thread of their own
  /// with the first thread a process creates: one thread made and joined first makes sure it
  /// is there before the baseline is taken, not counted as a leak after.
  static process_resources baseline() {
    std::thread([] {}).join();
    return now();
  }
  static process_resources now() {
    auto count = [](const char* dir) {
      std::size_t n = 0;
      if (DIR* d = ::opendir(dir)) {
        while (auto* e = ::readdir(d))
          if (e->d_name[0] != '.') ++n;
        ::closedir(d);
      }
      return n;
    };
    // The directory stream itself holds one descriptor while counting: the same every time.
    return {count("/proc/self/task"), count("/proc/self/fd")};
  }
  /// The counts once they are back to `before`, or the last reading after five seconds. A
  /// thread that pthread_join has returned for leaves /proc/self/task a little later (the kernel
  /// wakes the joiner before it has reaped the thread), so one reading right after a runtime's
  /// destructor can count a thread that is already gone.
  static process_resources settled_to(const process_resources& before) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      const auto current = now();
      if ((current.threads <= before.threads && current.fds <= before.fds) ||
          std::chrono::steady_clock::now() >= deadline)
        return current;
      std::this_thread::yield();
    }
  }
  std::string to_string() const {
    return "threads=" + std::to_string(threads) + " fds=" + std::to_string(fds);
  }
};

}  // namespace qrt::faults
