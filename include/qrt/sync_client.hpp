// A blocking facade for code that does not use Asio: runs its own io_context on one thread.
#pragma once

#include <functional>
#include <memory>
#include <qrt/client.hpp>
#include <qrt/registry.hpp>

namespace qrt::sync {

class session;

/// The blocking twin of qrt::queue_client: each call waits for the asynchronous one on the facade's
/// own io_context thread. For scripts, tools and tests; not the fast path. Its callbacks
/// (client_options::on_retry) run on that thread, where a blocking call would wait for itself:
/// such a call fails with errc::invalid_argument instead (close() returns, closing afterwards).
/// Destroyed there (its last owner, or a session's, let go in a callback), it cannot wait for
/// its thread either: the close starts, and the thread ends on its own once the callback has
/// returned and the close and the provider's pending work are done.
class queue_client {
 public:
  /// Builds the provider named by cfg["provider"] from `registry` on the facade's own thread.
  static result<queue_client> open(const config& cfg, const provider_registry& registry,
                                   client_options options = {});
  ~queue_client();
  /// Movable, not copyable.
  queue_client(queue_client&&) noexcept;
  /// Movable, not copyable.
  queue_client& operator=(queue_client&&) noexcept;

  /// What the provider can do.
  const capabilities& caps() const noexcept;
  /// The asynchronous client underneath (runs on the facade's thread).
  qrt::queue_client& async_client() noexcept;

  /// As qrt::queue_client::create_queue.
  result<void> create_queue(const queue_name& queue, const queue_options& options = {});
  /// As qrt::queue_client::delete_queue.
  result<void> delete_queue(const queue_name& queue);
  /// As qrt::queue_client::stats.
  result<queue_stats> stats(const queue_name& queue);
  /// As qrt::queue_client::send.
  result<message_id> send(const queue_name& queue, message msg);
  /// As qrt::queue_client::send_batch.
  result<std::vector<send_outcome>> send_batch(const queue_name& queue, std::vector<message> msgs);
  /// As qrt::queue_client::receive.
  result<std::vector<received_message>> receive(const queue_name& queue, std::size_t max_messages,
                                                milliseconds wait);
  /// As qrt::queue_client::peek.
  result<std::vector<received_message>> peek(const queue_name& queue, std::size_t max_messages,
                                             std::int64_t from_sequence = 0);
  /// As qrt::queue_client::complete.
  result<void> complete(const receipt_handle& receipt);
  /// As qrt::queue_client::abandon.
  result<void> abandon(const receipt_handle& receipt);
  /// As qrt::queue_client::dead_letter.
  result<void> dead_letter(const receipt_handle& receipt, std::string reason,
                           std::string description = {});
  /// As qrt::queue_client::settle.
  std::vector<result<void>> settle(std::vector<settlement> settlements);
  /// As qrt::queue_client::renew_lock.
  result<time_point> renew_lock(const receipt_handle& receipt);
  /// As qrt::queue_client::accept_session.
  result<session> accept_session(const queue_name& queue, std::optional<session_id> which,
                                 milliseconds wait);
  /// As qrt::queue_client::create_topic.
  result<void> create_topic(const topic_name& topic);
  /// As qrt::queue_client::delete_topic.
  result<void> delete_topic(const topic_name& topic);
  /// As qrt::queue_client::publish.
  result<message_id> publish(const topic_name& topic, message msg);
  /// As qrt::queue_client::publish_batch.
  result<std::vector<send_outcome>> publish_batch(const topic_name& topic,
                                                  std::vector<message> msgs);
  /// As qrt::queue_client::create_subscription.
  result<void> create_subscription(const queue_name& subscription,
                                   const subscription_options& options = {});
  /// As qrt::queue_client::delete_subscription.
  result<void> delete_subscription(const queue_name& subscription);
  /// As qrt::queue_client::list_subscriptions.
  result<std::vector<subscription_info>> list_subscriptions(const topic_name& topic);
  /// As qrt::queue_client::close. The facade's thread stops when the client is destroyed, once
  /// the provider's pending work (a timer of a served long poll, say) has run out.
  void close();

  struct impl;

 private:
  explicit queue_client(std::shared_ptr<impl> p);
  std::shared_ptr<impl> impl_;
};

/// The blocking twin of qrt::session, from sync::queue_client::accept_session.
class session {
 public:
  /// The session this lock is for.
  const session_id& id() const noexcept;
  /// When the session lock runs out unless renewed.
  time_point locked_until() const noexcept;
  /// As qrt::session::receive.
  result<std::vector<received_message>> receive(std::size_t max_messages, milliseconds wait);
  /// As qrt::session::complete.
  result<void> complete(const receipt_handle& receipt);
  /// As qrt::session::abandon.
  result<void> abandon(const receipt_handle& receipt);
  /// As qrt::session::dead_letter.
  result<void> dead_letter(const receipt_handle& receipt, std::string reason,
                           std::string description = {});
  /// As qrt::session::renew_lock.
  result<time_point> renew_lock();
  /// As qrt::session::get_state.
  result<std::string> get_state();
  /// As qrt::session::set_state.
  result<void> set_state(std::string state);
  /// As qrt::session::close.
  result<void> close();

 private:
  friend class queue_client;
  session(std::shared_ptr<queue_client::impl> owner, qrt::session s);
  std::shared_ptr<queue_client::impl> owner_;
  qrt::session session_;
};

}  // namespace qrt::sync
