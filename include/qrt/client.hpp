// The asynchronous client: what services hold. Every call is an Asio awaitable returning
// qrt::result; see docs/adr/0001-async-model.md and docs/adr/0002-errors.md.
#pragma once

#include <memory>
#include <optional>
#include <qrt/provider.hpp>
#include <qrt/retry.hpp>
#include <vector>

namespace qrt {

struct client_options {
  /// Bounds waits for room in a full queue and for the service on send.
  milliseconds send_timeout{30'000};
  /// Applied to transient and throttled provider errors (docs/adr/0060-resilience-layering.md).
  /// nullopt (or retry_policy::none()) turns retrying off.
  std::optional<retry_policy> retry = retry_policy::client_default();
  /// Told of each retry (for metrics: qrt::metrics::count_retries).
  retry_observer on_retry;
};

/// A locked session, from queue_client::accept_session. Closing (or destroying the last copy
/// without closing) releases the lock.
class session {
 public:
  session() = default;  // empty; only for containers and result<session>
  explicit session(std::shared_ptr<session_receiver> receiver) : receiver_(std::move(receiver)) {}

  const session_id& id() const noexcept { return receiver_->id(); }
  time_point locked_until() const noexcept { return receiver_->locked_until(); }

  awaitable<result<std::vector<received_message>>> receive(std::size_t max_messages,
                                                           milliseconds wait);
  awaitable<result<void>> complete(const receipt_handle& receipt);
  awaitable<result<void>> abandon(const receipt_handle& receipt);
  awaitable<result<void>> dead_letter(const receipt_handle& receipt, std::string reason,
                                      std::string description = {});
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements);
  awaitable<result<time_point>> renew_lock();
  awaitable<result<std::string>> get_state();
  awaitable<result<void>> set_state(std::string state);
  awaitable<result<void>> close();

  session_receiver& receiver() noexcept { return *receiver_; }

 private:
  std::shared_ptr<session_receiver> receiver_;
};

class queue_client {
 public:
  explicit queue_client(provider_ptr provider, client_options options = {});

  const capabilities& caps() const noexcept { return provider_->caps(); }
  std::string_view provider_name() const noexcept { return provider_->name(); }
  /// The provider as given, without the client's retry decorator.
  const provider_ptr& underlying() const noexcept { return given_; }

  awaitable<result<void>> create_queue(const queue_name& queue, const queue_options& options = {});
  awaitable<result<void>> delete_queue(const queue_name& queue);
  awaitable<result<queue_stats>> stats(const queue_name& queue);

  /// One message; errc::message_too_large or queue_not_found means nothing was sent.
  awaitable<result<message_id>> send(const queue_name& queue, message msg);
  /// Any number of messages: split into batches within the provider's limits, sent in order,
  /// one outcome per message. The whole call fails only if nothing could be attempted.
  awaitable<result<std::vector<send_outcome>>> send_batch(const queue_name& queue,
                                                          std::vector<message> messages);

  awaitable<result<std::vector<received_message>>> receive(const queue_name& queue,
                                                           std::size_t max_messages,
                                                           milliseconds wait);
  awaitable<result<std::vector<received_message>>> peek(const queue_name& queue,
                                                        std::size_t max_messages,
                                                        std::int64_t from_sequence = 0);

  awaitable<result<void>> complete(const receipt_handle& receipt);
  awaitable<result<void>> abandon(const receipt_handle& receipt);
  awaitable<result<void>> dead_letter(const receipt_handle& receipt, std::string reason,
                                      std::string description = {});
  /// Many settlements in one call (one lock / one round trip where the provider can).
  awaitable<std::vector<result<void>>> settle(std::vector<settlement> settlements);
  awaitable<result<time_point>> renew_lock(const receipt_handle& receipt);

  /// `which` names a session, or nullopt for the next available one.
  awaitable<result<session>> accept_session(const queue_name& queue,
                                            std::optional<session_id> which, milliseconds wait);

  awaitable<void> close();

 private:
  provider_ptr given_;
  provider_ptr provider_;  ///< given_, wrapped in the retry decorator when options_.retry is set
  client_options options_;
};

/// Splits `messages` into consecutive batches that respect `caps` (count and bytes). Messages
/// over max_message_bytes are reported separately by index. Pure; used by queue_client and
/// providers' own batchers.
struct batch_plan {
  std::vector<std::vector<std::size_t>> batches;  ///< indexes into the input, in order
  std::vector<std::size_t> oversized;             ///< indexes of messages too large to send
};
batch_plan plan_batches(const std::vector<message>& messages, const capabilities& caps);

}  // namespace qrt
