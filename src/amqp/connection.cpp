// The connection's awaitable front end (connection.hpp): each call hops onto the transport's
// strand, hands its work to the engine (engine.hpp) with the current time, lets the transport
// act on what the engine produced (asio_transport.hpp), and resumes the caller on its own
// executor with the engine's answer. What the calls decide lives in the engine; what they wait
// on (bytes, the time) in the transport; here only the hop there and back.
#include "amqp/connection.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <iostream>
#include <mutex>
#include <set>

#include "amqp/asio_transport.hpp"
#include "core/post_releasing.hpp"

namespace asio = boost::asio;

namespace qrt::amqp::detail {

std::string endpoint::display() const {
  return std::string(tls ? "amqps://" : "amqp://") + host + ":" + std::to_string(port);
}

struct connection::impl : asio_transport {
  using asio_transport::asio_transport;
  std::atomic<bool> closed{false};  ///< read from any thread: close() or the destructor ran
};

namespace {

error closed_error() {
  return fail(errc::closed, "the AMQP connection has been closed");
}

/// A one-shot completion that can be copied into the engine's callbacks (std::function needs
/// copies). The result is posted to the awaiting coroutine's executor, never run inline: the
/// strand must not run user code (a coroutine resumed there could re-enter the engine mid-call).
/// If every copy is dropped without completing (the engine was destroyed with the call pending,
/// or the executor shut down with the work still queued), it completes with errc::closed, so no
/// coroutine is left waiting forever.
template <class T>
class completer {
 public:
  using handler_type = asio::any_completion_handler<void(T)>;

  /// `ex` is the awaiting coroutine's executor (the handler's associated one, as an executor
  /// that can promise not to run the handler inline).
  completer(handler_type h, asio::any_io_executor ex)
      : state_(std::make_shared<state>(std::move(h), std::move(ex))) {}

  void operator()(T value) const { state_->complete(std::move(value)); }

 private:
  struct state {
    state(handler_type h, asio::any_io_executor ex) : handler(std::move(h)), ex(std::move(ex)) {}
    ~state() {
      if (!done) complete(T(closed_error()));
    }
    void complete(T value) {
      if (done) return;
      done = true;
      // Called on the connection's thread: the caller's executor is let go of there before
      // the caller can resume (see post_releasing).
      qrt::detail::post_releasing(
          std::move(ex),
          [h = std::move(handler), v = std::move(value)]() mutable { std::move(h)(std::move(v)); });
    }
    handler_type handler;
    asio::any_io_executor ex;
    bool done = false;
  };
  std::shared_ptr<state> state_;
};

/// Runs `fn(engine&, completer<T>)` on the connection's strand, then lets the transport act on
/// what the engine produced; the awaitable yields what it completes with. Once the connection
/// is closed, work fails with errc::closed without running — except the shutdown itself
/// (`after_close`). Not a coroutine itself, and callers keep the function object in a named
/// variable: GCC 12 destroys temporaries inside a co_await expression twice.
enum class after_close { refuse, run };

template <class T, class Fn>
asio::awaitable<T> on_strand(std::shared_ptr<connection::impl> impl, Fn fn,
                             after_close when_closed = after_close::refuse) {
  auto initiation = [impl = std::move(impl), fn = std::move(fn),
                     when_closed](auto handler) mutable {
    asio::any_io_executor ex = asio::get_associated_executor(handler);
    completer<T> done{typename completer<T>::handler_type(std::move(handler)), std::move(ex)};
    if (when_closed == after_close::refuse && impl->closed.load()) {
      done(T(closed_error()));
      return;
    }
    auto* raw = impl.get();
    asio::dispatch(raw->strand, [impl, fn = std::move(fn), done]() mutable {
      fn(impl->protocol, done);
      impl->service();
    });
  };
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(T)>(std::move(initiation),
                                                                       asio::use_awaitable);
}

engine::time_point now() {
  return asio_transport::now();
}

/// Writes `line` to stderr the first time this process sees `key`.
void warn_once(const std::string& key, const std::string& line) {
  static std::mutex mutex;
  static std::set<std::string> warned;
  {
    std::lock_guard lock(mutex);
    if (!warned.insert(key).second) return;
  }
  std::cerr << ("qrt: warning: " + line + "\n") << std::flush;
}

}  // namespace

connection::connection(std::shared_ptr<impl> i) : impl_(std::move(i)) {}

void warn_if_insecure(const endpoint& where) {
  const std::string shown = where.display();  // never the user or password
  if (where.tls && !where.tls_verify) {
    warn_once("tls_verify=false " + shown,
              "TLS certificate and host name verification is off for " + shown +
                  " (tls_verify=false): anyone on the network path can pose as the broker and "
                  "read the credentials and messages");
  }
  if (!where.tls && !where.password.empty()) {
    warn_once("plaintext password " + shown,
              "the password for " + shown +
                  " goes over the network unencrypted (amqp:// without TLS); use amqps:// "
                  "outside a local test setup");
  }
}

std::shared_ptr<connection> connection::create(endpoint where, asio::any_io_executor executor,
                                               stream_factory streams) {
  warn_if_insecure(where);
  auto i = std::make_shared<impl>(std::move(where), std::move(executor), std::move(streams));
  return std::shared_ptr<connection>(new connection(std::move(i)));
}

connection::~connection() {
  // Without close(): shut down on the strand when it next runs (the handler keeps impl alive).
  if (!impl_->closed.exchange(true)) {
    auto* raw = impl_.get();
    asio::post(raw->strand, [i = impl_] {
      i->protocol.shutdown(now());
      i->service();
    });
  }
}

asio::awaitable<void> connection::close() {
  using T = result<void>;
  impl_->closed.store(true);  // later calls are refused from here on
  // Completes once the broker has answered the close frame (or close_timeout passed), so
  // that what was settled before close() has reached it; a second close() waits as long.
  auto fn = [](engine& e, completer<T> done) {
    e.shutdown(now(), [done] { done(result<void>{}); });
  };
  auto op = on_strand<T>(impl_, std::move(fn), after_close::run);
  (void)co_await std::move(op);
}

std::uint64_t connection::generation() const noexcept {
  return impl_->protocol.generation();
}
connection_stats connection::traffic() const noexcept {
  return impl_->meter.read();
}
const endpoint& connection::where() const noexcept {
  return impl_->protocol.where();
}

asio::awaitable<result<std::vector<result<void>>>> connection::send(
    std::string address, std::vector<outgoing_delivery> deliveries, milliseconds timeout) {
  using T = result<std::vector<result<void>>>;
  if (deliveries.empty()) co_return std::vector<result<void>>{};
  auto payload = std::make_shared<std::vector<outgoing_delivery>>(std::move(deliveries));
  auto fn = [address = std::move(address), payload, timeout](engine& e, completer<T> done) {
    e.send(address, std::move(*payload), timeout, now(), std::move(done));
  };
  auto op = on_strand<T>(impl_, std::move(fn));
  co_return co_await std::move(op);
}

asio::awaitable<result<link_info>> connection::open_receiver(std::string link_id,
                                                             receiver_spec spec,
                                                             milliseconds timeout) {
  using T = result<link_info>;
  auto fn = [id = std::move(link_id), spec = std::move(spec), timeout](engine& e,
                                                                       completer<T> done) {
    e.open_receiver(id, spec, timeout, now(), std::move(done));
  };
  auto op = on_strand<T>(impl_, std::move(fn));
  co_return co_await std::move(op);
}

asio::awaitable<result<void>> connection::probe(std::string address, milliseconds timeout) {
  using T = result<void>;
  auto fn = [address = std::move(address), timeout](engine& e, completer<T> done) {
    e.probe(address, timeout, now(), std::move(done));
  };
  auto op = on_strand<T>(impl_, std::move(fn));
  co_return co_await std::move(op);
}

asio::awaitable<result<std::vector<inbound>>> connection::receive(std::string link_id,
                                                                  receiver_spec spec,
                                                                  std::size_t max,
                                                                  milliseconds wait) {
  using T = result<std::vector<inbound>>;
  if (max == 0) co_return std::vector<inbound>{};
  auto fn = [id = std::move(link_id), spec = std::move(spec), max, wait](engine& e,
                                                                         completer<T> done) {
    e.receive(id, spec, max, wait, now(), std::move(done));
  };
  auto op = on_strand<T>(impl_, std::move(fn));
  co_return co_await std::move(op);
}

asio::awaitable<std::vector<result<void>>> connection::settle(
    std::vector<std::pair<delivery_ref, outcome>> items, milliseconds timeout) {
  using T = result<std::vector<result<void>>>;
  const std::size_t count = items.size();
  auto payload = std::make_shared<std::vector<std::pair<delivery_ref, outcome>>>(std::move(items));
  auto fn = [payload, timeout](engine& e, completer<T> done) {
    e.settle(std::move(*payload), timeout, now(), std::move(done));
  };
  auto op = on_strand<T>(impl_, std::move(fn));
  T all = co_await std::move(op);
  if (all) co_return std::move(*all);
  co_return std::vector<result<void>>(count, result<void>(all.error()));
}

asio::awaitable<result<void>> connection::close_receiver(std::string link_id) {
  using T = result<void>;
  auto fn = [id = std::move(link_id)](engine& e, completer<T> done) {
    e.close_receiver(id, now());
    done(result<void>{});
  };
  auto op = on_strand<T>(impl_, std::move(fn));
  co_return co_await std::move(op);
}

asio::awaitable<result<proton::message>> connection::request(std::string node,
                                                             proton::message request,
                                                             milliseconds timeout) {
  // Not a coroutine, and no default argument on the one below: GCC 12 mishandles a coroutine's
  // defaulted parameter of class type (the frame's copy frees memory it does not own).
  return this->request(std::move(node), std::move(request), timeout, request_kind{});
}

asio::awaitable<result<proton::message>> connection::request(std::string node,
                                                             proton::message request,
                                                             milliseconds timeout,
                                                             request_kind kind) {
  using T = result<proton::message>;
  auto payload = std::make_shared<proton::message>(std::move(request));
  auto fn = [node = std::move(node), payload, timeout, kind = std::move(kind)](engine& e,
                                                                               completer<T> done) {
    e.request(node, std::move(*payload), timeout, now(), std::move(done), kind);
  };
  auto op = on_strand<T>(impl_, std::move(fn));
  co_return co_await std::move(op);
}

asio::awaitable<result<connection::usage>> connection::current_usage() {
  using T = result<usage>;
  auto fn = [](engine& e, completer<T> done) {
    const engine::usage held = e.current_usage();
    usage u;
    u.links = held.links;
    u.peak_links = held.peak_links;
    u.prefetched_bytes = held.prefetched_bytes;
    u.peak_committed_bytes = held.peak_committed_bytes;
    done(u);
  };
  auto op = on_strand<T>(impl_, std::move(fn));
  co_return co_await std::move(op);
}

asio::awaitable<result<void>> connection::connect(milliseconds timeout) {
  using T = result<void>;
  auto fn = [timeout](engine& e, completer<T> done) { e.connect(timeout, now(), std::move(done)); };
  auto op = on_strand<T>(impl_, std::move(fn));
  co_return co_await std::move(op);
}

}  // namespace qrt::amqp::detail
