// Handing a completion back to the caller's executor from a thread of another execution
// context (an AMQP connection's thread, an HTTP connection's strand on the provider's
// io_context), without that thread outliving the caller's context.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <memory>
#include <utility>

namespace qrt::detail {

/// Posts `fn` to `caller`, and `fn` does not run before this thread has let go of every copy
/// of `caller` it held (its own and Asio's temporaries inside `post`).
///
/// Why: a copy of an executor can keep its execution context's state alive (a strand's
/// implementation, which unlinks itself from the strand service when its last copy goes). A
/// plain post from another thread destroys its copies just after queueing `fn`; if `fn` resumes
/// a caller that then returns and destroys the context (a processor's stop() followed by the
/// runtime's destructor), that last copy is destroyed after the context and touches freed
/// memory. Here the queued function waits, by posting itself again, until this thread has set
/// a flag after its copies are gone. The wait is the few instructions between queueing and
/// returning, so it is rarely taken; when it is, `fn` is queued behind what was posted since.
///
/// Pass `caller` by value and move it in: a copy left with the calling thread defeats this.
/// The caller's context must not be destroyed while this runs, as for any operation in flight.
///
/// This form takes a flag the caller provides (no allocation): `released` is false on entry
/// and stays alive until `fn` has run or been destroyed unrun (`fn` owns what holds it).
template <class Fn>
void post_releasing(boost::asio::any_io_executor caller, Fn fn, std::atomic<bool>& released) {
  struct relay {
    Fn fn;
    std::atomic<bool>* released;
    boost::asio::any_io_executor again;  ///< destroyed on the caller's context, after fn
    void operator()() {
      if (!released->load(std::memory_order_acquire)) {
        auto ex = again;
        boost::asio::post(ex, std::move(*this));
        return;
      }
      std::move(fn)();
    }
  };
  {
    boost::asio::any_io_executor target = std::move(caller);
    auto again = target;
    boost::asio::post(target, relay{std::move(fn), &released, std::move(again)});
  }  // the last copy this thread held is gone here
  released.store(true, std::memory_order_release);
}

/// The same with a flag of its own.
template <class Fn>
void post_releasing(boost::asio::any_io_executor caller, Fn fn) {
  // This thread keeps a share of the flag until it has set it: the queued function may be
  // destroyed unrun (its context shut down) before then.
  auto released = std::make_shared<std::atomic<bool>>(false);
  post_releasing(
      std::move(caller), [fn = std::move(fn), keep = released]() mutable { std::move(fn)(); },
      *released);
}

}  // namespace qrt::detail
