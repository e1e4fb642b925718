// Dropping the handlers of coroutines whose execution context shuts down while they wait.
#pragma once

#include <algorithm>
#include <boost/asio/execution_context.hpp>
#include <memory>
#include <mutex>
#include <vector>

namespace qrt::detail {

/// Something that keeps completion handlers of coroutines running on other execution contexts
/// (a provider's parked calls, the log's calls waiting for a sync). When one of those contexts
/// shuts down with calls still waiting, Asio destroys what the context had queued, but not these:
/// each would keep its coroutine (and what it holds, often the holder itself) alive, and
/// completing one later would post to a context that is gone. abandon() destroys the handlers
/// of `ctx`'s coroutines unrun, and Asio then destroys the coroutines.
class holds_handlers {
 public:
  virtual void abandon(const boost::asio::execution_context& ctx) = 0;

 protected:
  ~holds_handlers() = default;
};

/// One per execution context: calls abandon() on every live holder watching it at shutdown.
class abandon_on_shutdown : public boost::asio::execution_context::service {
 public:
  static inline boost::asio::execution_context::id id;
  explicit abandon_on_shutdown(boost::asio::execution_context& ctx) : service(ctx) {}

  void watch(std::weak_ptr<holds_handlers> holder) {
    std::lock_guard lock(mutex_);
    std::erase_if(holders_, [](const auto& h) { return h.expired(); });
    holders_.push_back(std::move(holder));
  }

 private:
  void shutdown() override {
    std::vector<std::weak_ptr<holds_handlers>> holders;
    {
      std::lock_guard lock(mutex_);
      holders.swap(holders_);
    }
    for (const auto& h : holders) {
      if (auto holder = h.lock()) holder->abandon(context());
    }
  }

  std::mutex mutex_;
  std::vector<std::weak_ptr<holds_handlers>> holders_;
};

/// The contexts a holder watches, so that it registers with each one's service once. Guarded by
/// the holder's own lock.
class watched_contexts {
 public:
  /// Registers `holder` with `ctx`'s abandon_on_shutdown the first time `ctx` is seen.
  void watch(boost::asio::execution_context& ctx, std::weak_ptr<holds_handlers> holder) {
    if (std::find(contexts_.begin(), contexts_.end(), &ctx) != contexts_.end()) return;
    contexts_.push_back(&ctx);
    boost::asio::use_service<abandon_on_shutdown>(ctx).watch(std::move(holder));
  }
  /// `ctx` shut down: a new context may later live at its address.
  void forget(const boost::asio::execution_context& ctx) { std::erase(contexts_, &ctx); }

 private:
  std::vector<const boost::asio::execution_context*> contexts_;
};

}  // namespace qrt::detail
