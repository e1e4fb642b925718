// qrt::runtime and its configuration presets.
#include <gtest/gtest.h>
#include <pthread.h>

#include <boost/asio/post.hpp>
#include <condition_variable>
#include <mutex>
#include <qrt/runtime.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

TEST(Runtime, PresetsHaveTheirDocumentedValues) {
  EXPECT_EQ(qrt::runtime_configuration::for_low_resource().worker_threads, 2u);
  EXPECT_EQ(qrt::runtime_configuration::for_high_throughput().worker_threads,
            std::max(1u, std::thread::hardware_concurrency()));
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
