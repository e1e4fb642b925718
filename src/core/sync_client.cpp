#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <qrt/sync_client.hpp>
#include <thread>
#include <type_traits>

#include "io_loop.hpp"

namespace qrt::sync {

namespace asio = boost::asio;

struct queue_client::impl {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  /// Set on the facade's own thread when its last owner went away there (see release()): the
  /// thread then deletes the facade once its loop has run out.
  bool delete_when_run_ends = false;
  std::thread thread{[this] {
    qrt::detail::run_io_loop(io, "blocking client", "qrt-blocking");
    if (delete_when_run_ends) delete this;
  }};
  std::optional<qrt::queue_client> client;
  std::atomic<bool> closed{false};  ///< close() may be called from several threads at once

  ~impl() {
    shutdown();
    guard.reset();
    if (thread.joinable()) thread.join();
  }

  /// How an owner lets go of the facade (the shared_ptr's deleter). On any thread but its own,
  /// the facade closes and waits for its thread. On its own thread (the last owner went away
  /// in one of its callbacks) nothing can be waited for, and the io_context that runs the
  /// caller cannot be destroyed under it: the close is started, the thread let go, and the
  /// thread deletes the facade itself once the close and the provider's pending work are done.
  static void release(impl* p) noexcept {
    if (!p->on_own_thread()) {
      delete p;
      return;
    }
    p->shutdown();
    p->guard.reset();
    p->thread.detach();
    p->delete_when_run_ends = true;
  }

  /// True on the facade's own thread, where its callbacks (client_options::on_retry) run: a
  /// blocking call from there would wait for an operation that only this thread can run, and
  /// this thread would be waiting in the call, for ever.
  bool on_own_thread() { return io.get_executor().running_in_this_thread(); }

  static error own_thread_call() {
    return fail(errc::invalid_argument,
                "a blocking call made on the blocking client's own thread (from one of its "
                "callbacks) would wait for itself; call the asynchronous client instead");
  }

  template <class T>
  T run(awaitable<T> op) {
    if constexpr (std::is_constructible_v<T, error>) {
      if (on_own_thread()) return own_thread_call();
    }
    return asio::co_spawn(io, std::move(op), asio::use_future).get();
  }

  void shutdown() {
    if (!client || closed.exchange(true)) return;
    if (on_own_thread()) {
      // Nothing can be waited for here (see on_own_thread): the close runs after the callback.
      asio::co_spawn(io, client->close(), asio::detached);
      return;
    }
    run(client->close());
  }
};

result<queue_client> queue_client::open(const config& cfg, const provider_registry& registry,
                                        client_options options) {
  std::shared_ptr<impl> p(new impl, &impl::release);
  auto made = asio::co_spawn(
                  p->io,
                  [&]() -> awaitable<result<provider_ptr>> {
                    co_return registry.make(cfg, co_await asio::this_coro::executor);
                  },
                  asio::use_future)
                  .get();
  if (!made) return made.error();
  p->client.emplace(std::move(*made), options);
  return queue_client(std::move(p));
}

queue_client::queue_client(std::shared_ptr<impl> p) : impl_(std::move(p)) {}
queue_client::~queue_client() = default;
queue_client::queue_client(queue_client&&) noexcept = default;
queue_client& queue_client::operator=(queue_client&&) noexcept = default;

const capabilities& queue_client::caps() const noexcept {
  return impl_->client->caps();
}
qrt::queue_client& queue_client::async_client() noexcept {
  return *impl_->client;
}

result<void> queue_client::create_queue(const queue_name& q, const queue_options& o) {
  return impl_->run(impl_->client->create_queue(q, o));
}
result<void> queue_client::delete_queue(const queue_name& q) {
  return impl_->run(impl_->client->delete_queue(q));
}
result<queue_stats> queue_client::stats(const queue_name& q) {
  return impl_->run(impl_->client->stats(q));
}
result<message_id> queue_client::send(const queue_name& q, message msg) {
  return impl_->run(impl_->client->send(q, std::move(msg)));
}
result<std::vector<send_outcome>> queue_client::send_batch(const queue_name& q,
                                                           std::vector<message> msgs) {
  return impl_->run(impl_->client->send_batch(q, std::move(msgs)));
}
result<std::vector<received_message>> queue_client::receive(const queue_name& q, std::size_t max,
                                                            milliseconds wait) {
  return impl_->run(impl_->client->receive(q, max, wait));
}
result<std::vector<received_message>> queue_client::peek(const queue_name& q, std::size_t max,
                                                         std::int64_t from) {
  return impl_->run(impl_->client->peek(q, max, from));
}
result<void> queue_client::complete(const receipt_handle& r) {
  return impl_->run(impl_->client->complete(r));
}
result<void> queue_client::abandon(const receipt_handle& r) {
  return impl_->run(impl_->client->abandon(r));
}
result<void> queue_client::dead_letter(const receipt_handle& r, std::string reason,
                                       std::string description) {
  return impl_->run(impl_->client->dead_letter(r, std::move(reason), std::move(description)));
}
std::vector<result<void>> queue_client::settle(std::vector<settlement> s) {
  if (impl_->on_own_thread()) {
    return std::vector<result<void>>(s.size(), result<void>(impl::own_thread_call()));
  }
  return impl_->run(impl_->client->settle(std::move(s)));
}
result<time_point> queue_client::renew_lock(const receipt_handle& r) {
  return impl_->run(impl_->client->renew_lock(r));
}
result<session> queue_client::accept_session(const queue_name& q, std::optional<session_id> which,
                                             milliseconds wait) {
  auto r = impl_->run(impl_->client->accept_session(q, std::move(which), wait));
  if (!r) return r.error();
  return session(impl_, std::move(*r));
}
result<void> queue_client::create_topic(const topic_name& t) {
  return impl_->run(impl_->client->create_topic(t));
}
result<void> queue_client::delete_topic(const topic_name& t) {
  return impl_->run(impl_->client->delete_topic(t));
}
result<message_id> queue_client::publish(const topic_name& t, message msg) {
  return impl_->run(impl_->client->publish(t, std::move(msg)));
}
result<std::vector<send_outcome>> queue_client::publish_batch(const topic_name& t,
                                                              std::vector<message> msgs) {
  return impl_->run(impl_->client->publish_batch(t, std::move(msgs)));
}
result<void> queue_client::create_subscription(const queue_name& s, const subscription_options& o) {
  return impl_->run(impl_->client->create_subscription(s, o));
}
result<void> queue_client::delete_subscription(const queue_name& s) {
  return impl_->run(impl_->client->delete_subscription(s));
}
result<std::vector<subscription_info>> queue_client::list_subscriptions(const topic_name& t) {
  return impl_->run(impl_->client->list_subscriptions(t));
}
void queue_client::close() {
  if (impl_) impl_->shutdown();
}

session::session(std::shared_ptr<queue_client::impl> owner, qrt::session s)
    : owner_(std::move(owner)), session_(std::move(s)) {}
const session_id& session::id() const noexcept {
  return session_.id();
}
time_point session::locked_until() const noexcept {
  return session_.locked_until();
}
result<std::vector<received_message>> session::receive(std::size_t max, milliseconds wait) {
  return owner_->run(session_.receive(max, wait));
}
result<void> session::complete(const receipt_handle& r) {
  return owner_->run(session_.complete(r));
}
result<void> session::abandon(const receipt_handle& r) {
  return owner_->run(session_.abandon(r));
}
result<void> session::dead_letter(const receipt_handle& r, std::string reason,
                                  std::string description) {
  return owner_->run(session_.dead_letter(r, std::move(reason), std::move(description)));
}
result<time_point> session::renew_lock() {
  return owner_->run(session_.renew_lock());
}
result<std::string> session::get_state() {
  return owner_->run(session_.get_state());
}
result<void> session::set_state(std::string state) {
  return owner_->run(session_.set_state(std::move(state)));
}
result<void> session::close() {
  return owner_->run(session_.close());
}

}  // namespace qrt::sync
