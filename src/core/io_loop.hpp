// The loop every thread that runs one of qrt's io_contexts runs (the runtime's workers, the
// blocking client's thread, the metrics server's thread).
#pragma once

#include <boost/asio/io_context.hpp>
#include <string_view>

namespace qrt::detail {

/// Runs `io` until it is stopped or runs out of work. An exception escaping a handler (a bug,
/// or something hostile input provoked that a handler failed to catch) must not terminate the
/// process and take every queue with it: it is reported on stderr ("qrt: <who>: ...") and the
/// loop carries on with the next handler. The handler that threw has ended; what it was doing
/// fails or times out the way its caller sees any lost operation.
///
/// The calling thread is first named `thread_name` (at most 15 characters, the kernel's limit),
/// so that `top -H`, `perf` and a debugger tell qrt's threads from the application's.
void run_io_loop(boost::asio::io_context& io, std::string_view who,
                 const char* thread_name) noexcept;

}  // namespace qrt::detail
