#include "peer_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <stdexcept>

extern char** environ;

namespace qrt::test {
namespace {

struct spawned {
  pid_t pid;
  int out;      // read end of the child's stdout
  int in = -1;  // with tie_stdin: write end of the child's stdin, held until it is stopped
};

/// With `tie_stdin`, the child's stdin is a pipe only this process holds open (close-on-exec,
/// so no other child inherits it): when this process dies however it dies, the child reads
/// end-of-file there (peer.js --exit-with-stdin exits then) instead of being left behind.
spawned spawn_node(const std::vector<std::string>& args, bool tie_stdin = false) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  int in[2] = {-1, -1};
  if (tie_stdin && pipe2(in, O_CLOEXEC) != 0) {
    close(fds[0]);
    close(fds[1]);
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  if (tie_stdin) posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  std::vector<std::string> argv_storage{QRT_NODE};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, QRT_NODE, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (tie_stdin) close(in[0]);
  if (rc != 0) {
    close(fds[0]);
    if (tie_stdin) close(in[1]);
    throw std::runtime_error(std::string("cannot start node: ") + std::strerror(rc));
  }
  return {pid, fds[0], in[1]};
}

// Reads until EOF or the deadline; returns what was read.
std::string read_all(int fd, int timeout_ms, bool first_line_only) {
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int ready = poll(&p, 1, timeout_ms);
    if (ready <= 0) break;
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (first_line_only && out.find('\n') != std::string::npos) break;
  }
  return out;
}

}  // namespace

servicebus_peer::servicebus_peer(std::vector<std::string> extra_args) {
  std::vector<std::string> args{std::string(QRT_SERVICEBUS_PEER_DIR) + "/peer.js", "--quiet",
                                "--exit-with-stdin"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  auto child = spawn_node(args, /*tie_stdin=*/true);
  pid_ = child.pid;
  stdin_ = child.in;
  const std::string line = read_all(child.out, 10'000, true);
  close(child.out);  // the peer writes nothing more on stdout
  const auto at = line.find("\"port\":");
  if (at == std::string::npos) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    close(stdin_);
    throw std::runtime_error("the Service Bus test peer did not report its port (got '" + line +
                             "')");
  }
  port_ = static_cast<std::uint16_t>(std::stoi(line.substr(at + 7)));
}

servicebus_peer::~servicebus_peer() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  if (stdin_ >= 0) close(stdin_);
}

std::string servicebus_peer::connection_string(const std::string& key) const {
  return std::string("Endpoint=sb://127.0.0.1:") + std::to_string(port_) +
         "/;SharedAccessKeyName=x;SharedAccessKey=" + key + ";UseDevelopmentEmulator=true";
}

std::string run_sdk(const std::vector<std::string>& args) {
  return run_sdk_script("sdk-interop.js", args);
}

std::string run_sdk_script(const std::string& script, const std::vector<std::string>& args) {
  std::vector<std::string> full{std::string(QRT_SERVICEBUS_PEER_DIR) + "/" + script};
  full.insert(full.end(), args.begin(), args.end());
  auto child = spawn_node(full);
  std::string out = read_all(child.out, 60'000, false);
  close(child.out);
  int status = 0;
  waitpid(child.pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("the official SDK failed (" + script + "); its stderr is above");
  }
  return out;
}

}  // namespace qrt::test
