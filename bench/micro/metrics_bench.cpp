// Hot-path recording costs: a sharded counter and histogram against the obvious alternatives
// (one shared atomic, a mutex), single-threaded and with several threads hammering one series.
// Run: build/release/bench/qrt_micro_bench
#include <benchmark/benchmark.h>

#include <mutex>
#include <qrt/bench/latency_histogram.hpp>
#include <qrt/metrics.hpp>

namespace {

qrt::metrics::registry& shared_registry() {
  static qrt::metrics::registry r;
  return r;
}

void BM_ShardedCounterInc(benchmark::State& state) {
  static auto& c = shared_registry().add_counter("bench_sharded_total", "c").with({});
  for (auto _ : state) c.inc();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ShardedCounterInc)->ThreadRange(1, 4)->UseRealTime();

void BM_SharedAtomicInc(benchmark::State& state) {
  static std::atomic<std::uint64_t> c{0};
  for (auto _ : state) c.fetch_add(1, std::memory_order_relaxed);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SharedAtomicInc)->ThreadRange(1, 4)->UseRealTime();

void BM_MutexCounterInc(benchmark::State& state) {
  static std::mutex m;
  static std::uint64_t c = 0;
  for (auto _ : state) {
    std::lock_guard lock(m);
    benchmark::DoNotOptimize(++c);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MutexCounterInc)->ThreadRange(1, 4)->UseRealTime();

void BM_ShardedHistogramObserve(benchmark::State& state) {
  static auto& h =
      shared_registry()
          .add_histogram("bench_seconds", "h", qrt::metrics::processing_duration_buckets())
          .with({});
  double v = 0.0001;
  for (auto _ : state) {
    h.observe(v);
    v = v < 2 ? v * 1.7 : 0.0001;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ShardedHistogramObserve)->ThreadRange(1, 4)->UseRealTime();

void BM_FamilyLookupPerMessage(benchmark::State& state) {
  // What recording would cost if every message looked its series up by labels (it must not).
  static auto& fam =
      shared_registry().add_counter("bench_lookup_total", "c", {"queue", "provider"});
  for (auto _ : state) fam.with({"orders", "memory"}).inc();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FamilyLookupPerMessage)->ThreadRange(1, 4)->UseRealTime();

void BM_LatencyHistogramRecord(benchmark::State& state) {
  qrt::bench::latency_histogram h;
  std::uint64_t v = 1000;
  for (auto _ : state) {
    h.record(v);
    v = v < 10'000'000 ? v * 3 : 1000;
  }
  benchmark::DoNotOptimize(h.count());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LatencyHistogramRecord);

}  // namespace

BENCHMARK_MAIN();
