// qrt::runtime and its configuration presets.
#include <gtest/gtest.h>
#include <pthread.h>

#include <boost/asio/post.hpp>
#include <climits>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <qrt/runtime.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include "../support/runtime_key.hpp"

namespace {

constexpr std::size_t mib = std::size_t{1} << 20;

qrt::awaitable<std::size_t> own_stack_size() {
  co_return qrt::test::own_stack_size();
}

}  // namespace

TEST(Runtime, PresetsHaveTheirDocumentedValues) {
  EXPECT_EQ(qrt::runtime_configuration::for_low_resource().worker_threads, 2u);
  EXPECT_EQ(qrt::runtime_configuration::for_low_resource().thread_stack_size, 1 * mib);
  EXPECT_EQ(qrt::runtime_configuration::for_high_throughput().worker_threads,
            std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_EQ(qrt::runtime_configuration::for_high_throughput().thread_stack_size, 2 * mib);
  EXPECT_EQ(qrt::runtime_configuration{}.thread_stack_size, 0u);
}

// The configured stack size is the one the workers really have: the size is above the
// platform's default, so a worker started without it would be seen short; a task reads its own
// thread's stack size back.
TEST(Runtime, WorkersHaveTheConfiguredStackSize) {
  const std::size_t size = qrt::test::a_stack_size_above_the_default();
  qrt::runtime rt({.worker_threads = 2, .thread_stack_size = size});
  EXPECT_TRUE(qrt::test::has_the_stack_asked_for(rt.block_on(own_stack_size()), size));
  rt.stop();
}

// The stack size comes from a provider's configuration too, as a plain byte count; a value no
// thread could have, or a typo, is refused naming the key and the value.
TEST(Runtime, StackSizeComesFromTheConfiguration) {
  const std::size_t size = qrt::test::a_stack_size_above_the_default();
  qrt::test::expect_a_runtime_with_stacks_of(
      qrt::config{{"provider", "memory"}, {"thread_stack_size", std::to_string(size)}}, size);

  auto high = qrt::runtime_configuration::from_config(qrt::config{{"preset", "high_throughput"}});
  ASSERT_TRUE(high) << high.error().to_string();
  EXPECT_EQ(high->thread_stack_size, 2 * mib);
  auto overridden = qrt::runtime_configuration::from_config(
      qrt::config{{"preset", "high_throughput"}, {"thread_stack_size", "1048576"}});
  ASSERT_TRUE(overridden) << overridden.error().to_string();
  EXPECT_EQ(overridden->thread_stack_size, 1 * mib);
  // 0 undoes the preset's size: the platform's default, as in code.
  auto platform = qrt::runtime_configuration::from_config(
      qrt::config{{"preset", "high_throughput"}, {"thread_stack_size", "0"}});
  ASSERT_TRUE(platform) << platform.error().to_string();
  EXPECT_EQ(platform->thread_stack_size, 0u);
  auto plain = qrt::runtime_configuration::from_config(qrt::config{{"provider", "memory"}});
  ASSERT_TRUE(plain) << plain.error().to_string();
  EXPECT_EQ(plain->thread_stack_size, 0u);

  for (const std::string& bad : {std::to_string(PTHREAD_STACK_MIN - 1), std::string("1073741825"),
                                 std::string("2M"), std::string("")}) {
    auto refused = qrt::runtime_configuration::from_config(qrt::config{{"thread_stack_size", bad}});
    ASSERT_FALSE(refused) << bad;
    EXPECT_EQ(refused.error().code, qrt::errc::configuration_error);
    EXPECT_NE(refused.error().message.find("thread_stack_size"), std::string::npos)
        << refused.error().message;
    if (!bad.empty()) {
      EXPECT_NE(refused.error().message.find(bad), std::string::npos) << refused.error().message;
    }
  }
}

// Both runtime presets come from the shared `preset` key; a name that is some provider's or
// processor's preset leaves the runtime at its defaults (the provider refuses unknown names).
TEST(Runtime, PresetsComeFromTheConfiguration) {
  auto low = qrt::runtime_configuration::from_config(qrt::config{{"preset", "low_resource"}});
  ASSERT_TRUE(low) << low.error().to_string();
  EXPECT_EQ(low->worker_threads, 2u);
  EXPECT_EQ(low->thread_stack_size, 1 * mib);
  auto tuned = qrt::runtime_configuration::from_config(
      qrt::config{{"preset", "low_resource"}, {"worker_threads", "3"}});
  ASSERT_TRUE(tuned) << tuned.error().to_string();
  EXPECT_EQ(tuned->worker_threads, 3u);
  EXPECT_EQ(tuned->thread_stack_size, 1 * mib);
  auto other = qrt::runtime_configuration::from_config(qrt::config{{"preset", "low_latency"}});
  ASSERT_TRUE(other) << other.error().to_string();
  EXPECT_EQ(other->worker_threads, 1u);
  EXPECT_EQ(other->thread_stack_size, 0u);
  qrt::runtime rt(*low);
  EXPECT_EQ(rt.worker_threads(), 2u);
  EXPECT_TRUE(qrt::test::has_the_stack_asked_for(rt.block_on(own_stack_size()), 1 * mib));
}

// A stack size the platform cannot give is an error of the constructor (not a crash, not a
// thread with some other stack); a runtime made afterwards works.
TEST(Runtime, AStackSizeThatCannotBeHadIsRefused) {
  const std::size_t tiny = static_cast<std::size_t>(PTHREAD_STACK_MIN) - 1;
  try {
    qrt::runtime rt({.worker_threads = 2, .thread_stack_size = tiny});
    ADD_FAILURE() << "a runtime started threads with a stack of " << tiny << " bytes";
  } catch (const qrt::exception& e) {
    EXPECT_EQ(e.get().code, qrt::errc::invalid_argument);
    EXPECT_NE(e.get().message.find("thread_stack_size"), std::string::npos) << e.what();
  }
  // More address space than there is: the first thread cannot be started.
  const std::size_t huge = std::numeric_limits<std::size_t>::max() / 2;
  try {
    qrt::runtime rt({.worker_threads = 2, .thread_stack_size = huge});
    ADD_FAILURE() << "a runtime started threads with a stack of " << huge << " bytes";
  } catch (const qrt::exception& e) {
    EXPECT_NE(e.get().message.find("thread_stack_size"), std::string::npos) << e.what();
  }
  qrt::runtime rt({.worker_threads = 1});
  EXPECT_EQ(rt.block_on([]() -> qrt::awaitable<int> { co_return 7; }()), 7);
}

// The configured worker count is real: N tasks that each wait for all N to be running at once
// only finish if N threads run them.
TEST(Runtime, RunsWorkOnTheConfiguredNumberOfThreads) {
  constexpr std::size_t n = 3;
  qrt::runtime rt({.worker_threads = n});
  EXPECT_EQ(rt.worker_threads(), n);
  std::mutex m;
  std::condition_variable cv;
  std::set<std::thread::id> threads;
  std::vector<std::future<bool>> done;
  for (std::size_t i = 0; i < n; ++i) {
    done.push_back(boost::asio::co_spawn(
        rt.executor(),
        [&]() -> qrt::awaitable<bool> {
          std::unique_lock lock(m);
          threads.insert(std::this_thread::get_id());
          cv.notify_all();
          co_return cv.wait_for(lock, std::chrono::seconds{10},
                                [&] { return threads.size() == n; });
        },
        boost::asio::use_future));
  }
  for (auto& d : done) EXPECT_TRUE(d.get());
  EXPECT_EQ(rt.block_on([]() -> qrt::awaitable<int> { co_return 7; }()), 7);
}

// A handler that throws must not terminate the process (every queue's consumer with it): the
// worker reports it on stderr and carries on. Both workers are shown alive afterwards by work
// that can only finish with two threads running it at once.
TEST(Runtime, AHandlerThatThrowsIsReportedAndTheWorkersCarryOn) {
  constexpr std::size_t n = 2;
  qrt::runtime rt({.worker_threads = n});
  ::testing::internal::CaptureStderr();
  boost::asio::post(rt.executor(), [] { throw std::runtime_error("decoder exploded"); });
  boost::asio::post(rt.executor(), [] { throw 42; });
  std::mutex m;
  std::condition_variable cv;
  std::size_t running = 0;
  std::vector<std::future<bool>> done;
  for (std::size_t i = 0; i < n; ++i) {
    done.push_back(boost::asio::co_spawn(
        rt.executor(),
        [&]() -> qrt::awaitable<bool> {
          std::unique_lock lock(m);
          ++running;
          cv.notify_all();
          co_return cv.wait_for(lock, std::chrono::seconds{10}, [&] { return running == n; });
        },
        boost::asio::use_future));
  }
  for (auto& d : done) EXPECT_TRUE(d.get());
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("qrt: runtime worker: a handler threw (decoder exploded)"), std::string::npos)
      << err;
  EXPECT_NE(err.find("not a std::exception"), std::string::npos) << err;
}

// The runtime's threads carry a name of their own, so that `top -H`, `perf` and a debugger tell
// them from the application's threads.
TEST(Runtime, WorkerThreadsAreNamed) {
  qrt::runtime rt({.worker_threads = 1});
  const std::string name = rt.block_on([]() -> qrt::awaitable<std::string> {
    char buffer[16] = {};
    if (::pthread_getname_np(::pthread_self(), buffer, sizeof buffer) != 0) co_return "?";
    co_return std::string(buffer);
  }());
  EXPECT_EQ(name, "qrt-worker");
}
