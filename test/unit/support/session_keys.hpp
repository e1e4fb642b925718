// The session processor's keys every provider's configuration accepts (qrt::processing_keys),
// shown acting the same way for each provider: the provider only checks them, the session
// processor's options built from the same configuration carry them.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <qrt/config.hpp>
#include <qrt/session_processor.hpp>
#include <string>
#include <string_view>

namespace qrt::test {

/// `key` is one of max_concurrent_sessions, session_idle_timeout and max_session_hold;
/// `config_with(key, value)` is the provider's configuration with that key set, and
/// `provider_takes(cfg)` makes (or reads) the provider from it. A value unlike the default is
/// accepted by the provider and carried by session_processor_options::from_config; a
/// malformed one is refused by both, naming the key.
inline void expect_a_session_processor_key(
    std::string_view key,
    const std::function<config(std::string_view, std::string_view)>& config_with,
    const std::function<result<void>(const config&)>& provider_takes) {
  using std::chrono::milliseconds;
  const session_processor_options defaults;
  std::string good, bad;
  std::function<bool(const session_processor_options&)> carried;
  if (key == "max_concurrent_sessions") {
    good = "3", bad = "0";
    carried = [](const session_processor_options& o) { return o.max_concurrent_sessions == 3; };
    ASSERT_NE(defaults.max_concurrent_sessions, 3u);
  } else if (key == "session_idle_timeout") {
    good = "250ms", bad = "soon";
    carried = [](const session_processor_options& o) {
      return o.session_idle_timeout == milliseconds{250};
    };
    ASSERT_NE(defaults.session_idle_timeout, milliseconds{250});
  } else {
    ASSERT_EQ(key, "max_session_hold");
    good = "2s", bad = "forever";
    carried = [](const session_processor_options& o) {
      return o.max_session_hold == milliseconds{2'000};
    };
    ASSERT_NE(defaults.max_session_hold, milliseconds{2'000});
  }
  const config cfg = config_with(key, good);
  auto taken = provider_takes(cfg);
  ASSERT_TRUE(taken) << taken.error().to_string();
  auto options = session_processor_options::from_config(cfg);
  ASSERT_TRUE(options) << options.error().to_string();
  EXPECT_TRUE(carried(*options)) << key << "=" << good << " was not carried";

  const config malformed = config_with(key, bad);
  auto refused = provider_takes(malformed);
  ASSERT_FALSE(refused) << key << "=" << bad;
  EXPECT_EQ(refused.error().code, errc::configuration_error);
  EXPECT_NE(refused.error().message.find(std::string(key)), std::string::npos)
      << refused.error().message;
  auto not_read = session_processor_options::from_config(malformed);
  ASSERT_FALSE(not_read) << key << "=" << bad;
  EXPECT_NE(not_read.error().message.find(std::string(key)), std::string::npos)
      << not_read.error().message;
}

}  // namespace qrt::test
