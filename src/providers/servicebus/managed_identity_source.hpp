// Azure AD tokens from a managed identity, fetched over HTTP (src/net) on the caller's executor
// (no Asio thread blocks) and cached: one token serves every audience of the namespace, and it is
// fetched again once 80% of its life has passed.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <mutex>
#include <optional>
#include <qrt/servicebus.hpp>

#include "managed_identity.hpp"

namespace qrt::servicebus::detail {

class managed_identity_source {
 public:
  managed_identity_source(identity_endpoint endpoint, std::string client_id,
                          std::chrono::milliseconds timeout);

  /// The cached token while it is in the first 80% of its life, else a fresh one. Errors name
  /// the identity and the endpoint, never the token. Concurrent callers that find no fresh
  /// token each ask the endpoint (first use only; IMDS allows several calls a second).
  boost::asio::awaitable<result<access_token>> token();

  /// How many times the endpoint answered with a token (for tests and diagnostics).
  std::uint64_t fetches() const noexcept { return fetches_; }

 private:
  boost::asio::awaitable<result<access_token>> fetch();

  identity_endpoint endpoint_;
  std::string client_id_;
  std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  std::optional<access_token> cached_;
  std::chrono::system_clock::time_point refresh_at_{};
  std::atomic<std::uint64_t> fetches_{0};
};

}  // namespace qrt::servicebus::detail
