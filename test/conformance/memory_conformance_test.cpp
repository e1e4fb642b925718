// The conformance suite on the embedded provider. In process, so the knobs are short: the suite
// runs in seconds. Nothing here may be tuned to make a failing test pass.
#include <qrt/memory.hpp>

#include "conformance/suite.hpp"

namespace {

using namespace std::chrono_literals;

qrt::conformance::target memory_target() {
  return {
      .name = "memory",
      .make_provider =
          [](boost::asio::any_io_executor ex) {
            return qrt::memory::make_provider(qrt::memory::options::for_testing(), std::move(ex));
          },
      .short_lock = 500ms,  // renewals every ~170 ms tolerate a loaded CI machine
      .empty_wait = 150ms,
      .schedule_delay = 300ms,
      .event_timeout = 5s,
      .operation_timeout = 60s,
      .clock_tolerance = 20ms,
  };
}

}  // namespace

QRT_INSTANTIATE_CONFORMANCE(memory, memory_target());
