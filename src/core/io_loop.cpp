#include "io_loop.hpp"

#include <exception>
#include <iostream>
#include <string>

namespace qrt::detail {

void run_io_loop(boost::asio::io_context& io, std::string_view who) noexcept {
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
