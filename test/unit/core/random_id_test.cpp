// The one generator of ids qrt makes up itself (src/core/random_id.hpp): the shapes the
// providers rely on, and ids that differ between calls and between threads.
#include "core/random_id.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

bool lower_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

}  // namespace

TEST(RandomId, HexIdIs32LowerCaseHexDigits) {
  const auto id = qrt::detail::random_hex_id();
  ASSERT_EQ(id.size(), 32u);
  for (char c : id) EXPECT_TRUE(lower_hex(c)) << id;
}

TEST(RandomId, UuidIsAVersion4UuidInCanonicalText) {
  for (int i = 0; i < 100; ++i) {
    const auto u = qrt::detail::random_uuid();
    ASSERT_EQ(u.size(), 36u) << u;
    for (std::size_t j = 0; j < u.size(); ++j) {
      if (j == 8 || j == 13 || j == 18 || j == 23) {
        EXPECT_EQ(u[j], '-') << u;
      } else {
        EXPECT_TRUE(lower_hex(u[j])) << u;
      }
    }
    EXPECT_EQ(u[14], '4') << u;                                          // version
    EXPECT_NE(std::string("89ab").find(u[19]), std::string::npos) << u;  // variant
  }
}

TEST(RandomId, IdsDifferBetweenCallsAndThreads) {
  constexpr int per_thread = 1000;
  std::vector<std::vector<std::string>> made(4);
  std::vector<std::thread> threads;
  for (auto& out : made) {
    threads.emplace_back([&out] {
      for (int i = 0; i < per_thread; ++i) out.push_back(qrt::detail::random_hex_id());
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> all;
  for (const auto& out : made) all.insert(out.begin(), out.end());
  EXPECT_EQ(all.size(), made.size() * per_thread) << "two ids repeated";
}

TEST(RandomId, RandomBytesFillsEveryByteOfAnOddLength) {
  // 11 bytes: the tail past the last whole 8-byte word is filled too. Each of the last three
  // bytes is zero in 1 of 256 draws; 20 draws all leaving the same one zero does not happen.
  bool tail_set[3] = {false, false, false};
  for (int i = 0; i < 20; ++i) {
    std::array<std::uint8_t, 11> b{};
    qrt::detail::random_bytes(b);
    for (int j = 0; j < 3; ++j) tail_set[j] = tail_set[j] || b[8 + j] != 0;
  }
  EXPECT_TRUE(tail_set[0] && tail_set[1] && tail_set[2]);
}
