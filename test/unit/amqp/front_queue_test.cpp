// The receiver buffer's queue (src/amqp/front_queue.hpp): first in, first out, in any mix of
// adding, taking and erasing, as std::deque would be.
#include "amqp/front_queue.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <string>

namespace {

using qrt::amqp::detail::front_queue;

TEST(FrontQueue, TakesInTheOrderAdded) {
  front_queue<std::string> q;
  EXPECT_TRUE(q.empty());
  q.emplace_back() = "a";
  q.emplace_back() = "b";
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.front(), "a");
  q.pop_front();
  EXPECT_EQ(q.front(), "b");
  q.emplace_back() = "c";
  q.pop_back();
  EXPECT_EQ(q.size(), 1u);
  q.pop_front();
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.emplace_back(), "") << "a new element is value-initialised, not a reused one";
}

TEST(FrontQueue, EraseIfKeepsTheOrderOfTheRestAndSkipsTakenOnes) {
  front_queue<int> q;
  for (int i = 0; i < 10; ++i) q.emplace_back() = i;
  q.pop_front();
  q.pop_front();
  int asked = 0;
  EXPECT_EQ(q.erase_if([&](int v) {
    ++asked;
    return v % 3 == 0;
  }),
            3u);  // 3, 6 and 9, not the taken 0
  EXPECT_EQ(asked, 8);
  std::deque<int> rest;
  while (!q.empty()) {
    rest.push_back(q.front());
    q.pop_front();
  }
  EXPECT_EQ(rest, (std::deque<int>{2, 4, 5, 7, 8}));
}

TEST(FrontQueue, BehavesAsADequeUnderAnyMix) {
  front_queue<std::string> q;
  std::deque<std::string> reference;
  unsigned state = 12345;
  const auto next = [&state] {
    state = state * 1103515245u + 12345u;
    return (state >> 16) % 100;
  };
  for (int step = 0; step < 20000; ++step) {
    const auto roll = next();
    if (roll < 55) {
      const std::string v = std::to_string(step) + std::string(step % 40, 'x');
      q.emplace_back() = v;
      reference.push_back(v);
    } else if (roll < 95) {
      if (reference.empty()) continue;
      ASSERT_EQ(q.front(), reference.front()) << "step " << step;
      q.pop_front();
      reference.pop_front();
    } else if (roll < 97) {
      if (reference.empty()) continue;
      q.pop_back();
      reference.pop_back();
    } else {
      const auto odd = [](const std::string& s) { return s.size() % 2 == 1; };
      q.erase_if(odd);
      std::erase_if(reference, odd);
    }
    ASSERT_EQ(q.size(), reference.size()) << "step " << step;
  }
  while (!reference.empty()) {
    ASSERT_EQ(q.front(), reference.front());
    q.pop_front();
    reference.pop_front();
  }
  EXPECT_TRUE(q.empty());
}

}  // namespace
