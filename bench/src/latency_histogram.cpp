#include <algorithm>
#include <cmath>
#include <qrt/bench/latency_histogram.hpp>

namespace qrt::bench {

namespace {
// Groups 0..57 cover every 64-bit value: group g >= 1 holds [2^(g+6), 2^(g+7)).
constexpr std::size_t bucket_count =
    (64 - latency_histogram::sub_bucket_bits + 1) * latency_histogram::sub_buckets;
}  // namespace

latency_histogram::latency_histogram() : counts_(bucket_count, 0) {}

void latency_histogram::merge(const latency_histogram& other) {
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
}

void latency_histogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = sum_ = max_ = 0;
  min_ = UINT64_MAX;
}

std::uint64_t latency_histogram::highest_equivalent(std::size_t index) noexcept {
  const std::uint64_t group = index >> sub_bucket_bits;
  const std::uint64_t sub = index & (sub_buckets - 1);
  if (group == 0) return sub;
  const std::uint64_t lowest = (sub_buckets + sub) << (group - 1);
  return lowest + ((1ULL << (group - 1)) - 1);
}

std::uint64_t latency_histogram::percentile(double q) const noexcept {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(q * count_)));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(highest_equivalent(i), max_);
  }
  return max_;
}

}  // namespace qrt::bench
