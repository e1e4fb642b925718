// The table of deliveries waiting for an outcome or a settlement (src/amqp/sequence_table.hpp):
// each number gives back its own item exactly once, in whatever order they are taken, as a
// std::map would; and an item held for long does not make the table grow without bound.
#include "amqp/sequence_table.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using qrt::amqp::detail::sequence_table;

TEST(SequenceTable, GivesEachItemBackOnceWhateverTheOrder) {
  sequence_table<std::string> t;
  for (std::uint64_t n = 1; n <= 5; ++n) t.add(n, "m" + std::to_string(n));
  EXPECT_EQ(t.size(), 5u);
  EXPECT_EQ(t.take(3), "m3");
  EXPECT_EQ(t.take(3), std::nullopt) << "taken once only";
  EXPECT_EQ(t.take(1), "m1");
  EXPECT_EQ(t.take(5), "m5");
  EXPECT_EQ(t.take(9), std::nullopt) << "never added";
  EXPECT_EQ(t.take(0), std::nullopt) << "below every number held";
  EXPECT_EQ(t.size(), 2u);
  EXPECT_EQ(t.take(2), "m2");
  EXPECT_EQ(t.take(4), "m4");
  EXPECT_TRUE(t.empty());
}

TEST(SequenceTable, FindsItemsWhenNumbersAreSkipped) {
  // A receiver's numbers skip those of deliveries it settled itself; a sender's, those of other
  // links: the slot is then not where its distance from the front says.
  sequence_table<int> t;
  t.add(10, 10);
  t.add(11, 11);
  t.add(20, 20);
  t.add(21, 21);
  t.add(40, 40);
  EXPECT_EQ(t.take(21), 21);
  EXPECT_EQ(t.take(15), std::nullopt);
  EXPECT_EQ(t.take(40), 40);
  EXPECT_EQ(t.take(10), 10);
  EXPECT_EQ(t.take(20), 20);
  EXPECT_EQ(t.take(11), 11);
  EXPECT_TRUE(t.empty());
}

TEST(SequenceTable, AgreesWithAMapUnderRandomTakes) {
  std::mt19937_64 rng(7);
  sequence_table<std::uint64_t> t;
  std::map<std::uint64_t, std::uint64_t> model;
  std::uint64_t next = 1;
  for (int step = 0; step < 20000; ++step) {
    if (model.empty() || rng() % 3 != 0) {
      next += 1 + rng() % 3;  // sometimes skipped numbers
      t.add(next, next * 7);
      model.emplace(next, next * 7);
    } else {
      // Mostly the oldest (outcomes come about in order), sometimes any held or unknown number.
      std::uint64_t n = model.begin()->first;
      if (rng() % 4 == 0) n = 1 + rng() % next;
      const auto expected = model.find(n);
      const auto got = t.take(n);
      if (expected == model.end()) {
        ASSERT_EQ(got, std::nullopt) << "number " << n;
      } else {
        ASSERT_EQ(got, expected->second) << "number " << n;
        model.erase(expected);
      }
    }
    ASSERT_EQ(t.size(), model.size());
  }
  std::vector<std::uint64_t> rest;
  for (auto v : t.take_all()) rest.push_back(v);
  std::vector<std::uint64_t> expected;
  for (auto& [n, v] : model) expected.push_back(v);
  EXPECT_EQ(rest, expected) << "take_all gives what is held, in number order";
  EXPECT_TRUE(t.empty());
}

TEST(SequenceTable, TakeIfTakesOnlyTheSelectedInOrder) {
  sequence_table<int> t;
  for (int n = 1; n <= 10; ++n) t.add(static_cast<std::uint64_t>(n), n);
  ASSERT_EQ(t.take(4), 4);
  const auto even = t.take_if([](int v) { return v % 2 == 0; });
  EXPECT_EQ(even, (std::vector<int>{2, 6, 8, 10}));
  EXPECT_EQ(t.size(), 5u);
  EXPECT_EQ(t.take(6), std::nullopt);
  EXPECT_EQ(t.take(7), 7);
  EXPECT_EQ(t.take_all(), (std::vector<int>{1, 3, 5, 9}));
}

TEST(SequenceTable, AnItemHeldForLongDoesNotKeepEveryHoleBehindIt) {
  // One delivery whose outcome never comes while a million others pass: the holes behind it
  // are swept, so what the table keeps stays bounded by what it holds, not by what passed.
  sequence_table<std::shared_ptr<int>> t;
  const auto stuck = std::make_shared<int>(0);
  t.add(1, stuck);
  const auto passing = std::make_shared<int>(1);
  std::size_t most_slots = 0;
  for (std::uint64_t n = 2; n < 1'000'000; ++n) {
    t.add(n, passing);
    ASSERT_TRUE(t.take(n).has_value());
    most_slots = std::max(most_slots, t.slots());
  }
  EXPECT_EQ(t.size(), 1u);
  EXPECT_LE(most_slots, 2 * 2 + 64u);
  EXPECT_EQ(passing.use_count(), 1) << "a taken item is not kept alive by its hole";
  EXPECT_EQ(t.take(1), stuck);
  EXPECT_EQ(t.slots(), 0u) << "holes at the front go as soon as they are the front";
}

TEST(SequenceTable, TakingMovesTheItemOut) {
  sequence_table<std::unique_ptr<int>> t;
  t.add(1, std::make_unique<int>(41));
  auto taken = t.take(1);
  ASSERT_TRUE(taken.has_value());
  ASSERT_NE(*taken, nullptr);
  EXPECT_EQ(**taken, 41);
}

}  // namespace
