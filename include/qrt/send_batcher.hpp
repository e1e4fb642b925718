// Accumulates single sends into batches per queue, so many small sends cost few round trips.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <memory>
#include <qrt/client.hpp>
#include <qrt/retry.hpp>

namespace qrt {

/// When a send_batcher flushes, and how it resends failed entries.
struct send_batcher_options {
  std::size_t max_batch_messages = 10;       ///< flush when this many are waiting
  std::size_t max_batch_bytes = 256 * 1024;  ///< flush before the waiting bytes would exceed this
  milliseconds max_delay{10};                ///< flush this long after the first waiting message
  /// Entries that failed transiently inside a batch are resent (only they) by this policy.
  retry_policy retry = retry_policy::exponential_backoff(milliseconds{50}, milliseconds{2'000}, 2);
  retry_sleeper sleeper;  ///< tests record delays instead of sleeping
};

/// What a send_batcher did, for tests and monitoring.
struct send_batcher_stats {
  std::uint64_t flushes_by_count = 0;  ///< batches sent because max_batch_messages were waiting
  std::uint64_t flushes_by_bytes =
      0;  ///< batches sent because max_batch_bytes would have been exceeded
  std::uint64_t flushes_by_delay = 0;  ///< batches sent because max_delay passed
  std::uint64_t flushes_explicit = 0;  ///< batches sent by flush()
  std::uint64_t send_calls = 0;        ///< queue_client::send_batch calls
  std::uint64_t resent_entries = 0;    ///< entries sent again after a failure
};

/// Thread-safe: send() may be called from any coroutine. A resent entry can land after entries
/// queued later (it is retried on its own), so use one send per message where the order within
/// a session matters. It owns a strand and timers of `executor` from construction on and has
/// no stop(): like an Asio I/O object, destroy it before that executor (its io_context, or the
/// qrt::runtime), never after.
class send_batcher {
 public:
  /// Batches sends through `client`; its delay timers run on `executor`.
  send_batcher(queue_client client, boost::asio::any_io_executor executor,
               send_batcher_options options = {});
  ~send_batcher();
  send_batcher(const send_batcher&) = delete;
  send_batcher& operator=(const send_batcher&) = delete;

  /// Completes when this message's batch was sent: its id, or its own error (a message too
  /// large, a permanent failure, or a transient one the retry policy gave up on). Cancelled
  /// while the message still waits for its batch, the message is taken out and never sent (the
  /// send ends with errc::timeout); once its batch went out, the send waits for its outcome.
  awaitable<result<message_id>> send(queue_name queue, message msg);
  /// Sends everything waiting now and returns when every batch in flight is done.
  awaitable<void> flush();

  /// What it did so far.
  send_batcher_stats stats() const;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace qrt
