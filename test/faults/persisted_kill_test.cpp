// Scenario: the persisted embedded provider's client PROCESS is SIGKILLed mid-run, twice, while
// a producer sends and a processor (concurrency 16) handles, and is restarted on the same
// directory; a third run drains the queue. Acknowledged sends and completes are on disk
// (durability=always), so: every acknowledged send is handled, no message comes back after its
// complete was acknowledged, and the only duplicates are messages whose complete the kill cut
// off (at-least-once).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include "ledger.hpp"

#ifndef QRT_FAULT_CHILD
#error "QRT_FAULT_CHILD must name the fault child binary"
#endif

namespace qrt::faults {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

struct child_outcome {
  bool drained = false;
  bool killed = false;
  double spawn_to_first_handled_ms = -1;
  double ready_to_first_handled_ms = -1;
  std::size_t handled_this_run = 0;
};

/// Runs the child; feeds every line into `book`. In run mode, SIGKILLs it once it has started
/// `kill_after_handled` handlers in this run; in drain mode, waits for it to finish.
child_outcome run_child(const std::filesystem::path& dir, int run, bool drain,
                        std::size_t kill_after_handled, ledger& book) {
  int out[2];
  EXPECT_EQ(::pipe(out), 0);
  const auto spawned = steady::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::close(out[0]);
    ::close(out[1]);
    const std::string run_text = "r" + std::to_string(run);
    ::execl(QRT_FAULT_CHILD, QRT_FAULT_CHILD, dir.c_str(), run_text.c_str(),
            drain ? "drain" : "run", nullptr);
    std::_Exit(127);
  }
  ::close(out[1]);
  child_outcome result;
  std::optional<steady::time_point> ready;
  std::string buffer;
  char chunk[8192];
  const auto give_up = steady::now() + 120s;  // a hung child fails the test, never hangs it
  for (;;) {
    if (!result.killed && steady::now() > give_up) {
      ADD_FAILURE() << "run " << run << " did not finish in time";
      ::kill(pid, SIGKILL);
      result.killed = true;
    }
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) continue;
    const ssize_t n = ::read(out[0], chunk, sizeof chunk);
    if (n <= 0) break;  // EOF: the child is gone and all it wrote has been read
    buffer.append(chunk, static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (std::size_t end; (end = buffer.find('\n', start)) != std::string::npos; start = end + 1) {
      const std::string_view line(buffer.data() + start, end - start);
      if (line == "READY") {
        ready = steady::now();
      } else if (line == "DRAINED") {
        result.drained = true;
      } else if (line.size() > 2 && line[1] == ' ') {
        const std::string id(line.substr(2));
        switch (line[0]) {
          case 'S':
            book.sent();
            book.acknowledged(id);
            break;
          case 'H':
            if (result.handled_this_run++ == 0) {
              const auto now = steady::now();
              result.spawn_to_first_handled_ms =
                  std::chrono::duration<double, std::milli>(now - spawned).count();
              if (ready) {
                result.ready_to_first_handled_ms =
                    std::chrono::duration<double, std::milli>(now - *ready).count();
              }
            }
            book.handled(id);
            break;
          case 'C':
            book.completed(id);
            break;
        }
      }
    }
    buffer.erase(0, start);  // keep a partial last line for the next read
    if (!drain && !result.killed && result.handled_this_run >= kill_after_handled) {
      ::kill(pid, SIGKILL);
      result.killed = true;
    }
  }
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (drain) {
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "drain run status " << status;
  } else {
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "run " << run << " ended on its own (status " << status << ")";
  }
  return result;
}

TEST(FaultPersistedMemory, ClientProcessKilledTwiceMidRunLosesAndResurrectsNothing) {
  const auto before = process_resources::baseline();
  const auto dir = std::filesystem::temp_directory_path() /
                   ("qrt-fault-persisted-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ledger book;

  std::vector<double> recovery_ms;
  for (int run = 1; run <= 2; ++run) {
    // Killed at different points of the work in each run.
    auto r = run_child(dir, run, false, 400 + 173 * static_cast<std::size_t>(run), book);
    ASSERT_TRUE(r.killed);
    if (run > 1) recovery_ms.push_back(r.spawn_to_first_handled_ms);
    std::cout << "run " << run << ": handled " << r.handled_this_run << ", spawn to first handled "
              << r.spawn_to_first_handled_ms << " ms (ready to " << r.ready_to_first_handled_ms
              << " ms)\n";
  }
  auto last = run_child(dir, 3, true, 0, book);
  recovery_ms.push_back(last.spawn_to_first_handled_ms);
  EXPECT_TRUE(last.drained);
  std::cout << "run 3 (drain): handled " << last.handled_this_run << ", spawn to first handled "
            << last.spawn_to_first_handled_ms << " ms\n";

  const auto c = book.counts();
  double worst = 0;
  for (double ms : recovery_ms) worst = std::max(worst, ms);
  std::cout << book.summary("persisted-memory client SIGKILL x2", worst) << "\n";
  EXPECT_GT(c.acknowledged, 800u);
  EXPECT_EQ(c.lost, 0u) << "acknowledged sends never handled";
  EXPECT_EQ(c.resurrected, 0u) << "handled again after an acknowledged complete";
  // The drain run ended with the queue empty (DRAINED), so nothing acknowledged is left in it.
  // A complete whose "C" line the kill cut off is not counted as completed: that is why this
  // checks handled, not completed.

  std::filesystem::remove_all(dir);
  const auto after = process_resources::settled_to(before);
  std::cout << "resources before " << before.to_string() << ", after " << after.to_string() << "\n";
  EXPECT_EQ(after.threads, before.threads);
  EXPECT_EQ(after.fds, before.fds);
}

}  // namespace
}  // namespace qrt::faults
