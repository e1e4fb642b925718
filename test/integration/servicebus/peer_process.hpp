// Starts the Service Bus test peer (test/servers/servicebus/peer.js) on a port the OS picks,
// waits until it listens, and stops it on destruction. Also runs the official SDK's interop
// script and captures what it prints.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace qrt::test {

class servicebus_peer {
 public:
  /// `extra_args` go to peer.js (e.g. {"--lock-duration-ms", "1000"}). Throws on failure.
  explicit servicebus_peer(std::vector<std::string> extra_args = {});
  ~servicebus_peer();
  servicebus_peer(const servicebus_peer&) = delete;
  servicebus_peer& operator=(const servicebus_peer&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  /// The node process serving the peer (for measuring its CPU in benchmarks).
  pid_t pid() const noexcept { return pid_; }
  /// "Endpoint=sb://127.0.0.1:PORT/;SharedAccessKeyName=x;SharedAccessKey=<key>;UseDevelopmentEmulator=true"
  std::string connection_string(const std::string& key = "y") const;

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;  ///< the peer's stdin, held open: it exits when this process is gone
  std::uint16_t port_ = 0;
};

/// Runs `node sdk-interop.js ARGS...` and returns its stdout; throws when it exits non-zero.
std::string run_sdk(const std::vector<std::string>& args);
/// Runs `node <script> ARGS...` from the peer's folder the same way.
std::string run_sdk_script(const std::string& script, const std::vector<std::string>& args);

}  // namespace qrt::test
