// A provider that records what it was asked to send and fails the entries a test scripts, for
// the partial-failure cases a real provider cannot be made to produce on demand.
#pragma once

#include <functional>
#include <mutex>
#include <qrt/provider.hpp>
#include <string>
#include <vector>

namespace qrt::test {

class recording_provider final : public provider {
 public:
  /// (call index from 0, entry index within the call, the message) -> an error to report for
  /// that entry, or nullopt to accept it.
  using script = std::function<std::optional<error>(std::size_t, std::size_t, const message&)>;

  explicit recording_provider(script s = {}) : script_(std::move(s)) {
    caps_.max_batch_messages = 10;
    caps_.max_batch_bytes = 256 * 1024;
    caps_.max_message_bytes = 256 * 1024;
  }

  /// Bodies of each send call, in order.
  std::vector<std::vector<std::string>> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }

  std::string_view name() const noexcept override { return "recording"; }
  const capabilities& caps() const noexcept override { return caps_; }
  awaitable<result<void>> create_queue(const queue_name&, const queue_options&) override {
    co_return result<void>{};
  }
  awaitable<result<void>> delete_queue(const queue_name&) override { co_return unsupported(); }
  awaitable<result<queue_stats>> stats(const queue_name&) override { co_return unsupported(); }
  awaitable<result<std::vector<send_outcome>>> send(const queue_name&,
                                                    std::vector<message> messages,
                                                    milliseconds) override {
    std::lock_guard lock(mutex_);
    const std::size_t call = calls_.size();
    calls_.emplace_back();
    std::vector<send_outcome> out;
    for (std::size_t i = 0; i < messages.size(); ++i) {
      calls_.back().push_back(messages[i].body);
      auto failure = script_ ? script_(call, i, messages[i]) : std::nullopt;
      if (failure) {
        out.emplace_back(*failure);
      } else {
        out.emplace_back("id-" + messages[i].body + "-call" + std::to_string(call));
      }
    }
    co_return out;
  }
  awaitable<result<std::vector<received_message>>> receive(const queue_name&, std::size_t,
                                                           milliseconds) override {
    co_return unsupported();
  }
  awaitable<result<std::vector<received_message>>> peek(const queue_name&, std::size_t,
                                                        std::int64_t) override {
    co_return unsupported();
  }
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> s) override {
    co_return std::vector<result<void>>(s.size(), result<void>{unsupported()});
  }
  awaitable<result<time_point>> renew_lock(const receipt_handle&) override {
    co_return unsupported();
  }
  awaitable<result<std::shared_ptr<session_receiver>>> accept_session(const queue_name&,
                                                                      std::optional<session_id>,
                                                                      milliseconds) override {
    co_return unsupported();
  }
  awaitable<void> close() override { co_return; }

 private:
  static error unsupported() { return fail(errc::unsupported, "recording provider"); }

  capabilities caps_;
  script script_;
  mutable std::mutex mutex_;
  std::vector<std::vector<std::string>> calls_;
};

}  // namespace qrt::test
