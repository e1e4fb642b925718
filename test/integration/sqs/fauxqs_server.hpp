// Starts fauxqs (the SQS emulator) for a test process: installs the npm packages on first use
// (npm ci under a lock), spawns Node 22 on 127.0.0.1 with a kernel-chosen port, and stops it
// at the end. The server also exits when this process dies (its stdin closes), so a crashed
// test never leaks it.
#pragma once

#include <sys/types.h>

#include <string>

namespace qrt::test {

class fauxqs_server {
 public:
  /// `data_dir` non-empty: state persists there (for kill-and-restart tests).
  explicit fauxqs_server(std::string data_dir = {});
  ~fauxqs_server();
  fauxqs_server(const fauxqs_server&) = delete;
  fauxqs_server& operator=(const fauxqs_server&) = delete;

  unsigned short port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

  /// SIGKILL, as a crash would: no clean shutdown.
  void kill_hard();
  /// Starts again on the same port (and data dir).
  void restart();

  /// The Node 22 binary and the servers folder, for scripts run with the official SDK.
  static std::string node_binary();
  static std::string servers_dir();
  /// Runs `npm ci` in the servers folder when node_modules is missing. Throws on failure.
  static void ensure_installed();

 private:
  void start(unsigned short port);
  void stop();

  std::string data_dir_;
  unsigned short port_ = 0;
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
};

/// Runs a command, feeding `input` on stdin; returns stdout. Throws with stderr on failure.
std::string run_command(const std::string& command, const std::string& input = {});

}  // namespace qrt::test
