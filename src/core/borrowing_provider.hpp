// A private extension of qrt::provider for the retrying layer: calls that borrow the caller's
// vectors instead of taking them by value.
//
// provider::send(), publish() and settle() take their arguments by value, so a decorator that may
// have to make a call again (make_retrying_provider) hands every attempt a copy: for a send, one
// allocation and one copy of each body per message on the hot path, only for the rare failure
// that is retried. A provider that implements this interface is lent the vectors instead. A send
// that fails as a whole has sent nothing (docs/contract.md), so it need not have consumed
// anything either. Not public: the promises below are about this library's own providers.
#pragma once

#include <qrt/provider.hpp>
#include <vector>

namespace qrt::detail {

class borrowing_provider {
 public:
  /// As provider::send(), reading `messages` from the caller. After a whole failure every
  /// message is as it was (except that one the provider gave an id may keep it, so that a retry
  /// sends it under the same id), and the caller can send them again; otherwise messages may
  /// have been moved from. `messages` must outlive the call.
  virtual awaitable<result<std::vector<send_outcome>>> send_from(const queue_name& queue,
                                                                 std::vector<message>& messages,
                                                                 milliseconds timeout) = 0;
  /// As provider::publish(), reading `messages` from the caller, on the terms of send_from(): a
  /// publish that failed as a whole published nothing and left every message as it was.
  virtual awaitable<result<std::vector<send_outcome>>> publish_from(const topic_name& topic,
                                                                    std::vector<message>& messages,
                                                                    milliseconds timeout) = 0;
  /// As provider::settle(), reading `settlements` (unchanged) from the caller, which must keep
  /// them alive until the call completes.
  virtual awaitable<std::vector<result<void>>> settle_from(
      const std::vector<settlement>& settlements) = 0;

 protected:
  ~borrowing_provider() = default;
};

/// A provider that borrows: its send(), publish() and settle() are its send_from(),
/// publish_from() and settle_from() on the vectors they were given, forwarded here once for
/// every such provider.
class provider_that_borrows : public provider, public borrowing_provider {
 public:
  awaitable<result<std::vector<send_outcome>>> send(const queue_name& queue,
                                                    std::vector<message> messages,
                                                    milliseconds timeout) final;
  awaitable<result<std::vector<send_outcome>>> publish(const topic_name& topic,
                                                       std::vector<message> messages,
                                                       milliseconds timeout) final;
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements) final;
};

}  // namespace qrt::detail
