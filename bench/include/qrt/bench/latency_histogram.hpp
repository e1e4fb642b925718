// An HDR-style latency histogram: log-linear buckets (128 per power of two, so any recorded
// value is reported within 1/128 of itself), O(1) recording with no allocation, mergeable.
// Each producer/consumer owns one and the harness merges them at the end: nothing is shared
// on the hot path and nothing grows with the number of samples.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

namespace qrt::bench {

class latency_histogram {
 public:
  static constexpr unsigned sub_bucket_bits = 7;
  static constexpr std::uint64_t sub_buckets = 1ULL << sub_bucket_bits;

  latency_histogram();

  void record(std::uint64_t nanoseconds) noexcept {
    ++counts_[index_of(nanoseconds)];
    ++count_;
    sum_ += nanoseconds;
    if (nanoseconds < min_) min_ = nanoseconds;
    if (nanoseconds > max_) max_ = nanoseconds;
  }
  void record(std::chrono::nanoseconds d) noexcept {
    record(d.count() < 0 ? 0 : static_cast<std::uint64_t>(d.count()));
  }
  void merge(const latency_histogram& other);
  void reset();

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept { return count_ ? static_cast<double>(sum_) / count_ : 0.0; }
  /// The value at quantile q in [0, 1]: the highest value equivalent to the bucket holding
  /// the ceil(q * count)-th sample (never above max()). 0 when empty.
  std::uint64_t percentile(double q) const noexcept;

  static std::size_t index_of(std::uint64_t v) noexcept {
    if (v < sub_buckets) return static_cast<std::size_t>(v);
    const unsigned msb = 63u - static_cast<unsigned>(__builtin_clzll(v));
    const unsigned shift = msb - sub_bucket_bits;
    const std::uint64_t group = shift + 1;
    const std::uint64_t sub = (v >> shift) - sub_buckets;
    return static_cast<std::size_t>(group * sub_buckets + sub);
  }
  /// The largest value that lands in bucket `index`.
  static std::uint64_t highest_equivalent(std::size_t index) noexcept;

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
};

}  // namespace qrt::bench
