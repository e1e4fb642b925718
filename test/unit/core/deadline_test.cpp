// detail::deadline_after: the end of a wait given as a duration, saturated instead of wrapped.
#include "core/deadline.hpp"

#include <gtest/gtest.h>

#include <chrono>

using namespace std::chrono_literals;
using qrt::detail::deadline_after;

TEST(Deadline, AnOrdinaryWaitEndsThatLongFromNow) {
  const auto now = std::chrono::steady_clock::now();
  EXPECT_EQ(deadline_after(now, 250ms), now + 250ms);
  const auto wall = std::chrono::system_clock::now();
  EXPECT_EQ(deadline_after(wall, 3s), wall + 3s);
}

TEST(Deadline, AWaitTooLongToAddEndsAtTheLastTimePointNotInThePast) {
  const auto now = std::chrono::system_clock::now();
  EXPECT_EQ(deadline_after(now, std::chrono::milliseconds::max()),
            std::chrono::system_clock::time_point::max());
  // About 300 years: more than a nanosecond clock can add to now.
  EXPECT_EQ(deadline_after(now, std::chrono::milliseconds{9'500'000'000'000'000}),
            std::chrono::system_clock::time_point::max());
  const auto steady = std::chrono::steady_clock::now();
  EXPECT_GT(deadline_after(steady, std::chrono::milliseconds::max()), steady);
}

TEST(Deadline, AWaitOfZeroOrLessEndsNow) {
  const auto now = std::chrono::steady_clock::now();
  EXPECT_EQ(deadline_after(now, 0ms), now);
  EXPECT_EQ(deadline_after(now, -5ms), now);
  EXPECT_EQ(deadline_after(now, std::chrono::milliseconds::min()), now);
}
