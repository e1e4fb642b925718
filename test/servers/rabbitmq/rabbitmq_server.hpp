// Starts and stops a throwaway RabbitMQ node (rabbitmq.sh next to this file) from a test
// binary. One node per test binary: RabbitMQ takes 5-7 s to boot.
//
//   // once per test binary (gtest owns the environment):
//   ::testing::AddGlobalTestEnvironment(new qrt::test::rabbitmq_environment);
//   qrt::test::broker->amqp_port(); qrt::test::broker->ctl({"list_queues"});
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef QRT_RABBITMQ_SCRIPT
#error "define QRT_RABBITMQ_SCRIPT as the path of test/servers/rabbitmq/rabbitmq.sh"
#endif

namespace qrt::test {

class rabbitmq_server {
 public:
  /// Boots a node under a fresh temporary folder; throws with the script's output on failure.
  rabbitmq_server() {
    std::string templ = (std::filesystem::temp_directory_path() / "qrt-rabbitmq-XXXXXX").string();
    if (!::mkdtemp(templ.data())) throw std::runtime_error("rabbitmq: mkdtemp failed");
    dir_ = templ;
    const std::string out = run({"start", dir_});
    amqp_port_ = std::stoi(field(out, "AMQP_PORT"));
    amqps_port_ = std::stoi(field(out, "AMQPS_PORT"));
    ca_file_ = field(out, "CA_FILE");
  }
  ~rabbitmq_server() {
    try {
      run({"stop", dir_});
      // QRT_KEEP_RABBITMQ_LOGS=1 keeps the node's folder (its logs) for a failure to be read.
      if (const char* keep = std::getenv("QRT_KEEP_RABBITMQ_LOGS"); keep && *keep == '1') {
        std::fprintf(stderr, "rabbitmq: node folder kept at %s\n", dir_.c_str());
      } else {
        std::filesystem::remove_all(dir_);
      }
    } catch (...) {
    }
  }
  rabbitmq_server(const rabbitmq_server&) = delete;
  rabbitmq_server& operator=(const rabbitmq_server&) = delete;

  int amqp_port() const { return amqp_port_; }
  int amqps_port() const { return amqps_port_; }
  const std::string& ca_file() const { return ca_file_; }

  /// The node's log lines at warning level and above, the last `max_lines` of them: what a
  /// failed test prints, since the node's folder is removed when the binary ends.
  std::string warnings(std::size_t max_lines) const {
    std::vector<std::string> kept;
    for (const auto& entry : std::filesystem::directory_iterator(dir_ + "/log")) {
      const auto name = entry.path().filename().string();
      if (entry.path().extension() != ".log" || name.find("_upgrade") != std::string::npos) {
        continue;
      }
      std::ifstream in(entry.path());
      bool in_report = false;  // an Erlang report continues on lines without a level
      for (std::string line; std::getline(in, line);) {
        const bool leveled =
            line.find(" [") != std::string::npos && line.find("] <") != std::string::npos;
        if (leveled) {
          in_report = line.find("[warning]") != std::string::npos ||
                      line.find("[error]") != std::string::npos;
        }
        if (in_report) kept.push_back(line);
      }
    }
    if (kept.size() > max_lines) kept.erase(kept.begin(), kept.end() - max_lines);
    std::string out;
    for (const auto& line : kept) out += line + "\n";
    return out;
  }

  /// rabbitmqctl against this node; returns its standard output, throws if it fails.
  std::string ctl(const std::vector<std::string>& args) const {
    std::vector<std::string> all{"ctl", dir_};
    all.insert(all.end(), args.begin(), args.end());
    return run(all);
  }

 private:
  static std::string quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
  }
  static std::string run(const std::vector<std::string>& args) {
    // The script stops the node by itself if this process dies without running ~rabbitmq_server.
    std::string cmd =
        "QRT_RABBITMQ_OWNER_PID=" + std::to_string(::getpid()) + " " + quote(QRT_RABBITMQ_SCRIPT);
    for (const auto& a : args) cmd += " " + quote(a);
    cmd += " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) throw std::runtime_error("rabbitmq: cannot run " + cmd);
    std::string out;
    std::array<char, 4096> buf{};
    while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
    const int status = ::pclose(p);
    if (status != 0) throw std::runtime_error("rabbitmq: '" + cmd + "' failed:\n" + out);
    return out;
  }
  static std::string field(const std::string& out, const std::string& name) {
    const auto pos = out.find(name + "=");
    if (pos == std::string::npos) throw std::runtime_error("rabbitmq: no " + name + " in:\n" + out);
    const auto start = pos + name.size() + 1;
    return out.substr(start, out.find('\n', start) - start);
  }

  std::string dir_;
  int amqp_port_ = 0;
  int amqps_port_ = 0;
  std::string ca_file_;
};

/// The node of this test binary while its tests run; nullptr before and after.
inline rabbitmq_server* broker = nullptr;

/// Boots the node before the first test and stops it after the last.
class rabbitmq_environment : public ::testing::Environment {
 public:
  void SetUp() override {
    server_ = std::make_unique<rabbitmq_server>();
    broker = server_.get();
  }
  void TearDown() override {
    // A failure may be the broker's doing (a link or session it ended): its view goes with the
    // test's output, which is all a CI run keeps.
    if (server_ && ::testing::UnitTest::GetInstance()->failed_test_count() > 0) {
      try {
        std::fprintf(stderr, "rabbitmq: the node's warnings and errors (last 60 lines):\n%s",
                     server_->warnings(60).c_str());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "rabbitmq: cannot read the node's log: %s\n", e.what());
      }
    }
    broker = nullptr;
    server_.reset();
  }

 private:
  std::unique_ptr<rabbitmq_server> server_;
};

}  // namespace qrt::test
