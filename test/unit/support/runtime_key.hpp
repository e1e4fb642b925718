// The runtime key every provider's configuration accepts (qrt::runtime_keys), shown acting the
// same way for each provider: the provider only checks it, the runtime built from the same
// configuration reads it.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/post.hpp>
#include <chrono>
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

}  // namespace qrt::test
