// Handing a completion back to the caller's executor from a thread of another execution
// context (an AMQP connection's thread, an HTTP connection's strand on the provider's
// io_context), without that thread outliving the caller's context.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <memory>
#include <thread>
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
/// memory. Here the queued function, when it finds the flag not yet set, waits for it on the
/// caller's thread, handing that thread's CPU back to the operating system at each look. The
/// wait is the few instructions between queueing and returning, so it is rarely taken; but it
/// is taken exactly when this thread was preempted there, often by the very thread its post
/// woke on the same CPU. A wait that kept its CPU (an earlier version posted itself again until
/// the flag was set) then held that CPU for a whole scheduler time slice, 4 ms on a 2-CPU
/// machine, while the thread it waited for could not run. A futex wait would need a wake after
/// the store, and by then the flag's owner may already be gone. While it waits, the caller's
/// thread runs nothing else; only a poster preempted by another process inside those few
/// instructions makes that wait long, and the function it resumes would wait as long anyway.
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
    void operator()() {
      while (!released->load(std::memory_order_acquire)) std::this_thread::yield();
      std::move(fn)();
    }
  };
  {
    boost::asio::any_io_executor target = std::move(caller);
    boost::asio::post(target, relay{std::move(fn), &released});
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
