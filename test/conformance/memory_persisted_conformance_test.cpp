// The conformance suite on the persisted embedded provider (durability=always): the same tests,
// each against a provider over a fresh log directory, so every state change goes through the
// log and its group commit; the tests' reopen() steps close the provider and open a new one over
// the same directory, so what they check next must have come back from the log. Nothing here may be
// tuned to make a failing test pass.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
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

qrt::result<qrt::provider_ptr> open_persisted(const std::string& dir,
                                              boost::asio::any_io_executor ex) {
  auto o = qrt::memory::options::for_testing();
  o.enable_persistence = true;
  o.persistence_path = dir;
  o.durability_mode = qrt::memory::durability::always;
  // A reopen may find the old provider's last reference still being dropped on an io thread.
  o.persistence_open_timeout = 10s;
  return qrt::memory::make_provider(o, std::move(ex));
}

/// `reopen`: the tests' reopen() steps restart the provider over its directory; without, they
/// are no-ops and every step runs against the provider that wrote the log.
qrt::conformance::target persisted_target(bool reopen) {
  // The directory of the provider the current test made; tests run one at a time.
  auto current = std::make_shared<std::string>();
  std::function<qrt::result<qrt::provider_ptr>(boost::asio::any_io_executor)> reopen_provider;
  if (reopen) {
    reopen_provider = [current](boost::asio::any_io_executor ex) {
      return open_persisted(*current, std::move(ex));
    };
  }
  return {
      .name = reopen ? "memory_persisted_reopen" : "memory_persisted",
      .make_provider =
          [current](boost::asio::any_io_executor ex) {
            *current = root().next();
            return open_persisted(*current, std::move(ex));
          },
      // Every operation waits for an fdatasync: renewals every third of this lock must still
      // land in time on a loaded 2-core machine under ASan or TSan.
      .short_lock = 1s,
      .empty_wait = 150ms,
      .schedule_delay = 300ms,
      .event_timeout = 5s,
      .operation_timeout = 60s,
      .clock_tolerance = 20ms,
      .reopen_provider = std::move(reopen_provider),
  };
}

}  // namespace

QRT_INSTANTIATE_CONFORMANCE(memory_persisted, persisted_target(false), persisted_target(true));

// memory_persisted runs every step on the provider that wrote the log; only
// memory_persisted_reopen restarts it at the tests' reopen() steps.
TEST(MemoryPersistedTargets, OnlyTheReopenVariantRestartsTheProvider) {
  EXPECT_FALSE(persisted_target(false).reopen_provider)
      << "memory_persisted would run the reopen variant's suite a second time";
  EXPECT_TRUE(persisted_target(true).reopen_provider);
}
