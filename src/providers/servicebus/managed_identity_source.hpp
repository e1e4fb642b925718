// Azure AD tokens from a managed identity, fetched over HTTP (src/net) on the caller's executor
// (no Asio thread blocks) and cached: one token serves every audience of the namespace, and it is
// fetched again once 80% of its life has passed.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <qrt/servicebus.hpp>
#include <vector>

#include "managed_identity.hpp"

namespace qrt::servicebus::detail {

class managed_identity_source {
 public:
  managed_identity_source(identity_endpoint endpoint, std::string client_id,
                          std::chrono::milliseconds timeout);
  ~managed_identity_source();

  /// The cached token while it is in the first 80% of its life, else a fresh one. Callers that
  /// arrive while a fetch is running wait for its outcome instead of asking again (IMDS allows
  /// 5 concurrent calls and answers more with 429). Errors name the identity and the endpoint,
  /// never the token.
  boost::asio::awaitable<result<access_token>> token();

  /// How many times the endpoint was asked (for tests and diagnostics).
  std::uint64_t fetches() const noexcept { return fetches_; }

 private:
  using outcome_channel = boost::asio::experimental::concurrent_channel<void(
      boost::system::error_code, result<access_token>)>;
  class fetch_guard;

  boost::asio::awaitable<result<access_token>> fetch();
  /// Caches a token, ends the running fetch and hands its outcome to everyone who waited.
  void publish(const result<access_token>& outcome, std::chrono::system_clock::time_point obtained);

  identity_endpoint endpoint_;
  std::string client_id_;
  std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  std::optional<access_token> cached_;
  std::chrono::system_clock::time_point refresh_at_{};
  bool fetching_ = false;
  std::vector<std::shared_ptr<outcome_channel>> waiters_;
  std::atomic<std::uint64_t> fetches_{0};
};

}  // namespace qrt::servicebus::detail
