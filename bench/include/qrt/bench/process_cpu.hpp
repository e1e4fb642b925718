// CPU time for the side-by-side client benchmarks (bench/amqp, bench/servicebus, bench/sqs):
// this process's user and system time apart (getrusage counts every thread), and that of a
// server the benchmark started, from /proc. Microseconds throughout. Header-only: the
// benchmarks that use it link no harness.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace qrt::bench {

/// User and system CPU time, in microseconds.
struct cpu_time {
  double user_us = 0;    ///< in user space
  double system_us = 0;  ///< in the kernel on the process's behalf
  /// User plus system.
  double total_us() const noexcept { return user_us + system_us; }
  /// The time spent since `earlier`.
  cpu_time operator-(const cpu_time& earlier) const noexcept {
    return {user_us - earlier.user_us, system_us - earlier.system_us};
  }
};

/// This process's CPU time so far, every thread counted.
inline cpu_time self_cpu_time() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return {static_cast<double>(u.ru_utime.tv_sec) * 1e6 + static_cast<double>(u.ru_utime.tv_usec),
          static_cast<double>(u.ru_stime.tv_sec) * 1e6 + static_cast<double>(u.ru_stime.tv_usec)};
}

/// The CPU time process `pid` has used so far (utime and stime of /proc/PID/stat); zeros when
/// it cannot be read.
inline cpu_time process_cpu_time(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  const std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The fields after the command name, which may hold spaces: start after its closing ')'.
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 > stat.size()) return {};
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  double utime = 0;
  double stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  const double us_per_tick = 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
  return {utime * us_per_tick, stime * us_per_tick};
}

}  // namespace qrt::bench
