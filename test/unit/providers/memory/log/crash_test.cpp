// Crash tests: a child process sends, settles and publishes through the persisted provider
// with durability=always; the test kill -9s it at random moments, reopens the directory, and
// checks that every send that returned success is there unless a completion of it was
// attempted, that no completed message comes back, that order within each session is kept, and
// that every acknowledged publish is in both subscriptions, each publish in both or neither.
#include <poll.h>
#include <sys/wait.h>

#include <csignal>
#include <map>
#include <qrt/memory.hpp>
#include <qrt/qrt.hpp>
#include <set>

#include "log_test_support.hpp"

#ifndef QRT_CRASH_CHILD
#error "QRT_CRASH_CHILD must name the crash child binary"
#endif

namespace qrt::memory::log {
namespace {

using testing::scratch_dir;

struct child_run {
  std::vector<std::string> sent, completing, completed, published;
};

/// Starts the child, lets it report `lines_before_kill` acknowledged operations (or run for at
/// most 5 s), kills it with SIGKILL, and returns every complete line it wrote.
child_run run_and_kill(const std::filesystem::path& dir, int cycle, std::size_t lines_before_kill) {
  int out[2];
  EXPECT_EQ(::pipe(out), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::close(out[0]);
    ::close(out[1]);
    const std::string cycle_text = std::to_string(cycle);
    ::execl(QRT_CRASH_CHILD, QRT_CRASH_CHILD, dir.c_str(), cycle_text.c_str(), nullptr);
    std::_Exit(127);
  }
  ::close(out[1]);
  std::string buffer;
  std::size_t lines = 0;
  bool killed = false;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  char chunk[4096];
  while (true) {
    if (!killed && (lines >= lines_before_kill || std::chrono::steady_clock::now() > give_up)) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 100) < 0) continue;
    if (!(p.revents & (POLLIN | POLLHUP))) continue;
    const ssize_t n = ::read(out[0], chunk, sizeof chunk);
    if (n <= 0) break;  // EOF: the child is gone and everything it wrote has been read
    buffer.append(chunk, static_cast<std::size_t>(n));
    for (char c : std::string_view(chunk, static_cast<std::size_t>(n)))
      if (c == '\n') ++lines;
  }
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the child ended on its own (status " << status << ") instead of being killed";

  child_run run;
  std::size_t start = 0;
  while (true) {
    const auto end = buffer.find('\n', start);
    if (end == std::string::npos) break;  // a partial last line is no acknowledgement
    const std::string line = buffer.substr(start, end - start);
    start = end + 1;
    if (line.size() < 3) continue;
    auto& into = line[0] == 'S'   ? run.sent
                 : line[0] == 'R' ? run.completing
                 : line[0] == 'P' ? run.published
                                  : run.completed;
    into.push_back(line.substr(2));
  }
  return run;
}

/// "cycle:session:counter...." -> (session, (cycle, counter))
std::pair<std::string, std::pair<long, long>> order_key(const std::string& body) {
  const auto a = body.find(':'), b = body.find(':', a + 1);
  const auto dots = body.find('.', b + 1);
  return {body.substr(a + 1, b - a - 1),
          {std::stol(body.substr(0, a)), std::stol(body.substr(b + 1, dots - b - 1))}};
}

TEST(CrashRecovery, AcknowledgedOperationsSurviveKill9) {
  scratch_dir dir;
  const int cycles =
      std::getenv("QRT_CRASH_CYCLES") ? std::atoi(std::getenv("QRT_CRASH_CYCLES")) : 50;
  std::mt19937 rng(std::random_device{}());
  std::set<std::string> acked_sent, completing, acked_completed, acked_published;
  const auto queue = queue_name::from("crash");
  const auto topic = topic_name::from("crash-topic");

  for (int cycle = 1; cycle <= cycles; ++cycle) {
    const std::size_t kill_after = 1 + rng() % 150;
    child_run run = run_and_kill(dir.path(), cycle, kill_after);
    acked_sent.insert(run.sent.begin(), run.sent.end());
    acked_completed.insert(run.completed.begin(), run.completed.end());
    completing.insert(run.completing.begin(), run.completing.end());
    acked_published.insert(run.published.begin(), run.published.end());

    // Reopen as the next user of the directory would (the killed child's lock is gone).
    qrt::config cfg{{"provider", "memory"},
                    {"enable_persistence", "true"},
                    {"persistence_path", dir.path().string()}};
    auto client = qrt::sync::queue_client::open(cfg, qrt::builtin_providers());
    ASSERT_TRUE(client) << "cycle " << cycle << ": " << client.error().message;

    std::vector<std::string> present;
    std::int64_t from = 0;
    while (true) {
      auto page = client->peek(queue, 1000, from);
      if (!page) {
        ASSERT_EQ(page.error().code, errc::queue_not_found) << page.error().message;
        break;  // killed before the queue was created
      }
      if (page->empty()) break;
      for (const auto& m : *page) present.push_back(m.body);
      from = page->back().sequence_number + 1;
    }
    const std::set<std::string> present_set(present.begin(), present.end());
    ASSERT_EQ(present_set.size(), present.size())
        << "cycle " << cycle << ": a message came back twice";

    for (const auto& body : acked_sent) {
      // Gone is fine only for a message whose completion was under way (it may have become
      // durable just before the kill, without its acknowledgement reaching us).
      if (!completing.count(body)) {
        ASSERT_TRUE(present_set.count(body))
            << "cycle " << cycle << ": acknowledged send lost: " << body;
      }
    }
    for (const auto& body : acked_completed)
      ASSERT_FALSE(present_set.count(body))
          << "cycle " << cycle << ": completed message came back: " << body;

    std::map<std::string, std::pair<long, long>> last_in_session;
    for (const auto& body : present) {
      const auto [session, key] = order_key(body);
      auto it = last_in_session.find(session);
      if (it != last_in_session.end()) {
        ASSERT_LT(it->second, key)
            << "cycle " << cycle << ": session " << session << " out of order at " << body;
      }
      last_in_session[session] = key;
    }
    // Publishes (contract C39, C44): every acknowledged one is in both subscriptions, and each
    // publish is in both or in neither (one record), never twice.
    std::vector<std::set<std::string>> copies;
    for (const char* name : {"a", "b"}) {
      const auto subscription = queue_name::subscription(topic, name).value();
      std::set<std::string> bodies;
      std::int64_t at = 0;
      while (true) {
        auto page = client->peek(subscription, 1000, at);
        if (!page) {
          ASSERT_EQ(page.error().code, errc::queue_not_found) << page.error().message;
          break;  // killed before the subscription was created
        }
        if (page->empty()) break;
        for (const auto& m : *page) {
          ASSERT_TRUE(bodies.insert(m.body).second)
              << "cycle " << cycle << ": a publish came back twice in " << name;
        }
        at = page->back().sequence_number + 1;
      }
      for (const auto& body : acked_published) {
        ASSERT_TRUE(bodies.count(body))
            << "cycle " << cycle << ": acknowledged publish lost from " << name << ": " << body;
      }
      copies.push_back(std::move(bodies));
    }
    ASSERT_EQ(copies[0], copies[1]) << "cycle " << cycle << ": a publish reached one subscription";
    client->close();
  }
  // The test proves something only if the children got work acknowledged.
  EXPECT_GT(acked_published.size(), 0u);
  EXPECT_GT(acked_sent.size(), static_cast<std::size_t>(cycles));
  EXPECT_GT(acked_completed.size(), 0u);
}

}  // namespace
}  // namespace qrt::memory::log
