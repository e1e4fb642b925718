#include "io_loop.hpp"

#include <pthread.h>

#include <exception>
#include <iostream>
#include <string>

namespace qrt::detail {

void run_io_loop(boost::asio::io_context& io, std::string_view who,
                 const char* thread_name) noexcept {
  // A name the kernel refuses (longer than 15 characters) leaves the thread's old one: naming
  // is for people reading tools' output and is never worth failing over.
  (void)::pthread_setname_np(::pthread_self(), thread_name);
  for (;;) {
    std::string what;
    try {
      io.run();
      return;
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
      what = "an exception that is not a std::exception";
    }
    // One line, written at once, so concurrent workers' reports don't interleave.
    try {
      std::cerr << ("qrt: " + std::string(who) + ": a handler threw (" + what +
                    "); the I/O thread carries on\n")
                << std::flush;
    } catch (...) {  // nothing left to report with; keep running
    }
  }
}

}  // namespace qrt::detail
