// The conformance suite on the persisted embedded provider (durability=always): the same tests,
// each against a provider over a fresh log directory, so every state change goes through the
// log and its group commit. Nothing here may be tuned to make a failing test pass.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <qrt/memory.hpp>
#include <random>
#include <string>

#include "conformance/suite.hpp"

namespace {

using namespace std::chrono_literals;

/// One directory per test process, removed at exit; each provider gets its own subdirectory.
class log_root {
 public:
  log_root()
      : path_(std::filesystem::temp_directory_path() /
              ("qrt-persisted-conformance-" + std::to_string(::getpid()) + "-" +
               std::to_string(std::random_device{}()))) {
    std::filesystem::create_directories(path_);
  }
  ~log_root() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string next() { return (path_ / std::to_string(counter_++)).string(); }

 private:
  std::filesystem::path path_;
  std::atomic<int> counter_{0};
};

log_root& root() {
  static log_root r;
  return r;
}

qrt::conformance::target persisted_target() {
  return {
      .name = "memory_persisted",
      .make_provider =
          [](boost::asio::any_io_executor ex) {
            auto o = qrt::memory::options::for_testing();
            o.enable_persistence = true;
            o.persistence_path = root().next();
            o.durability_mode = qrt::memory::durability::always;
            return qrt::memory::make_provider(o, std::move(ex));
          },
      .short_lock = 250ms,
      .empty_wait = 150ms,
      .schedule_delay = 300ms,
      .event_timeout = 5s,
      .operation_timeout = 60s,
      .clock_tolerance = 20ms,
  };
}

}  // namespace

QRT_INSTANTIATE_CONFORMANCE(memory_persisted, persisted_target());
