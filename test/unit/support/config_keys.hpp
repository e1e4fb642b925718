// Shared by the per-provider configuration key tests (each key a provider accepts, shown acting):
// the check that a test's table names exactly the keys the provider accepts, a polling wait for
// conditions the tests observe from outside, and a scratch directory.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

namespace qrt::test {

/// Fails the test unless `rows` (anything with a `key` member, one per key the test shows
/// acting) names every key in `accepted` once and no other: a key added to a provider without a
/// row showing its effect fails here.
template <class Rows>
void expect_a_row_for_exactly(std::span<const std::string_view> accepted, const Rows& rows) {
  const std::set<std::string_view> accepted_keys(accepted.begin(), accepted.end());
  std::set<std::string_view> tabled;
  for (const auto& row : rows) EXPECT_TRUE(tabled.insert(row.key).second) << row.key;
  for (auto key : accepted_keys) {
    EXPECT_TRUE(tabled.count(key)) << "accepted key '" << key << "' has no row showing its effect";
  }
  for (auto key : tabled) {
    EXPECT_TRUE(accepted_keys.count(key)) << "row for '" << key << "', which the provider refuses";
  }
}

/// Fails the test unless the documentation page `doc` (a path under the source tree, given to
/// the test as QRT_SOURCE_DIR) names every key in `accepted` as code (`key`): the provider's key
/// table and its page cannot drift apart.
inline void expect_documented(std::span<const std::string_view> accepted, const std::string& doc) {
  std::ifstream in(std::string(QRT_SOURCE_DIR) + "/" + doc);
  ASSERT_TRUE(in) << "cannot read " << doc;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (auto key : accepted) {
    EXPECT_NE(text.find("`" + std::string(key) + "`"), std::string::npos)
        << doc << " does not name the key '" << key << "'";
  }
}

/// Polls `done` until it holds or `deadline` passes (a generous bound, not a timing claim), for
/// conditions seen only from outside (a broker's counts, a queue's depth).
inline bool eventually(const std::function<bool()>& done,
                       std::chrono::milliseconds deadline = std::chrono::seconds{20}) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    // The polling interval of a condition, not a wait standing in for it.
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  return true;
}

/// A fresh directory under the system's temporary directory, removed with its contents.
class scratch_dir {
 public:
  scratch_dir()
      : path_(std::filesystem::temp_directory_path() /
              ("qrt-test-" + std::to_string(::getpid()) + "-" +
               std::to_string(std::random_device{}()))) {
    std::filesystem::create_directories(path_);
  }
  ~scratch_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace qrt::test
