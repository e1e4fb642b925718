// A blocking facade for code that does not use Asio: runs its own io_context on one thread.
#pragma once

#include <functional>
#include <memory>
#include <qrt/client.hpp>
#include <qrt/registry.hpp>

namespace qrt::sync {

class session;

class queue_client {
 public:
  /// Builds the provider named by cfg["provider"] from `registry` on the facade's own thread.
  static result<queue_client> open(const config& cfg, const provider_registry& registry,
                                   client_options options = {});
  ~queue_client();
  queue_client(queue_client&&) noexcept;
  queue_client& operator=(queue_client&&) noexcept;

  const capabilities& caps() const noexcept;
  qrt::queue_client& async_client() noexcept;

  result<void> create_queue(const queue_name& queue, const queue_options& options = {});
  result<void> delete_queue(const queue_name& queue);
  result<queue_stats> stats(const queue_name& queue);
  result<message_id> send(const queue_name& queue, message msg);
  result<std::vector<send_outcome>> send_batch(const queue_name& queue, std::vector<message> msgs);
  result<std::vector<received_message>> receive(const queue_name& queue, std::size_t max_messages,
                                                milliseconds wait);
  result<std::vector<received_message>> peek(const queue_name& queue, std::size_t max_messages,
                                             std::int64_t from_sequence = 0);
  result<void> complete(const receipt_handle& receipt);
  result<void> abandon(const receipt_handle& receipt);
  result<void> dead_letter(const receipt_handle& receipt, std::string reason,
                           std::string description = {});
  std::vector<result<void>> settle(std::vector<settlement> settlements);
  result<time_point> renew_lock(const receipt_handle& receipt);
  result<session> accept_session(const queue_name& queue, std::optional<session_id> which,
                                 milliseconds wait);
  void close();

  struct impl;

 private:
  explicit queue_client(std::shared_ptr<impl> p);
  std::shared_ptr<impl> impl_;
};

class session {
 public:
  const session_id& id() const noexcept;
  time_point locked_until() const noexcept;
  result<std::vector<received_message>> receive(std::size_t max_messages, milliseconds wait);
  result<void> complete(const receipt_handle& receipt);
  result<void> abandon(const receipt_handle& receipt);
  result<void> dead_letter(const receipt_handle& receipt, std::string reason,
                           std::string description = {});
  result<time_point> renew_lock();
  result<std::string> get_state();
  result<void> set_state(std::string state);
  result<void> close();

 private:
  friend class queue_client;
  session(std::shared_ptr<queue_client::impl> owner, qrt::session s);
  std::shared_ptr<queue_client::impl> owner_;
  qrt::session session_;
};

}  // namespace qrt::sync
