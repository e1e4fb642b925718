// The runtime keys every provider's configuration accepts (qrt::runtime_keys), shown acting the
// same way for each provider: the provider only checks them, the runtime built from the same
// configuration reads them.
#pragma once

#include <gtest/gtest.h>
#include <pthread.h>

#include <boost/asio/post.hpp>
#include <chrono>
#include <cstddef>
#include <qrt/config.hpp>
#include <qrt/runtime.hpp>

#include "wait.hpp"

namespace qrt::test {

/// `cfg` is a configuration the provider accepts, with worker_threads=3: the runtime built from
/// it has three threads, shown by three tasks that each wait for the other two, which all
/// finish only when three threads run them at once.
inline void expect_a_runtime_of_three_threads_from(const config& cfg) {
  auto configured = runtime_configuration::from_config(cfg);
  ASSERT_TRUE(configured) << configured.error().to_string();
  runtime rt(*configured);
  EXPECT_EQ(rt.worker_threads(), 3u);
  counter arrived, passed;
  for (int i = 0; i < 3; ++i) {
    boost::asio::post(rt.executor(), [&] {
      arrived.add();
      if (arrived.wait_for_at_least(3, std::chrono::seconds{10})) passed.add();
    });
  }
  EXPECT_TRUE(passed.wait_for_at_least(3, std::chrono::seconds{20}))
      << "fewer than three threads ran at once";
  rt.stop();
}

/// The stack size of the calling thread, as the thread library reports it (0 if it cannot).
inline std::size_t own_stack_size() {
  pthread_attr_t attr;
  if (::pthread_getattr_np(::pthread_self(), &attr) != 0) return 0;
  std::size_t size = 0;
  if (::pthread_attr_getstacksize(&attr, &size) != 0) size = 0;
  ::pthread_attr_destroy(&attr);
  return size;
}

/// A stack size 2 MiB above the platform's default for new threads (8 MiB with glibc, or what
/// `ulimit -s` says): a thread found with at least this much was given it, not the default.
inline std::size_t a_stack_size_above_the_default() {
  constexpr std::size_t mib = std::size_t{1} << 20;
  std::size_t standard = 8 * mib;
  pthread_attr_t attr;
  if (::pthread_getattr_default_np(&attr) == 0) {
    (void)::pthread_attr_getstacksize(&attr, &standard);
    ::pthread_attr_destroy(&attr);
  }
  return (standard / mib + 2) * mib;
}

/// Whether a thread whose stack is reported as `seen` bytes has the `asked` bytes it was started
/// with. At least: glibc gives a new thread the cached stack of one that ended when that is large
/// enough (up to four times the size asked for), and reports the cached stack's size.
inline ::testing::AssertionResult has_the_stack_asked_for(std::size_t seen, std::size_t asked) {
  if (seen >= asked && seen <= 4 * asked) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "a thread started with a " << asked << "-byte stack has " << seen << " bytes";
}

/// `cfg` is a configuration the provider accepts, with thread_stack_size=`size` (from
/// a_stack_size_above_the_default()): a task on the runtime built from it runs on a thread with
/// that stack.
inline void expect_a_runtime_with_stacks_of(const config& cfg, std::size_t size) {
  auto configured = runtime_configuration::from_config(cfg);
  ASSERT_TRUE(configured) << configured.error().to_string();
  EXPECT_EQ(configured->thread_stack_size, size);
  runtime rt(*configured);
  EXPECT_TRUE(has_the_stack_asked_for(
      rt.block_on([]() -> awaitable<std::size_t> { co_return own_stack_size(); }()), size));
  rt.stop();
}

}  // namespace qrt::test
