#include <algorithm>
#include <qrt/bench/extra_runs.hpp>
#include <string>
#include <string_view>
#include <utility>

namespace qrt::bench {

std::size_t median_index(const std::vector<double>& figures) {
  std::vector<std::size_t> order(figures.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](auto a, auto b) { return figures[a] < figures[b]; });
  return order[order.size() / 2];
}

std::optional<error> run_extra_runs(report& rep, const bench_options& options,
                                    const extra_runs& extras) {
  auto failed = [](std::string_view which, error e) {
    e.message =
        std::string(which) + " failed (the figures measured before it are kept): " + e.message;
    return e;
  };
  if (extras.half_rate && rep.run.e2e_throughput > 0) {
    // As many rounds as the full-rate runs, each followed by the raw queue at the same pace:
    // a machine that stalls its threads for milliseconds (other processes, the hypervisor)
    // decides a single round's p99, and shows it in the raw queue's too. The round with the
    // median p99 is reported.
    auto half = options;
    half.rate = rep.run.e2e_throughput / 2;
    half.duration.reset();
    half.messages = std::max<std::uint64_t>(static_cast<std::uint64_t>(half.rate * 2), 1000);
    struct half_round {
      bench_result run;
      std::optional<baseline_result> raw;
    };
    std::vector<half_round> halves;
    for (std::size_t round = 0; round < std::max<std::size_t>(extras.rounds, 1); ++round) {
      auto h = run_benchmark(half);
      if (extras.after_half_rate_round) extras.after_half_rate_round();
      if (!h) return failed("the half-rate run", h.error());
      half_round hr{std::move(*h), std::nullopt};
      if (extras.with_baseline) {
        auto base_half = half;
        base_half.messages = std::max<std::uint64_t>(hr.run.messages_sent, 1);
        hr.raw = run_baseline(base_half);
      }
      halves.push_back(std::move(hr));
    }
    std::vector<double> p99s;
    for (const auto& hr : halves) p99s.push_back(hr.run.e2e.p99_us);
    auto& median = halves[median_index(p99s)];
    if (halves.size() > 1) rep.half_rate_round_p99s = std::move(p99s);
    rep.half_rate = std::move(median.run);
    rep.half_rate_baseline = std::move(median.raw);
  }
  if (extras.scaling) {
    auto s = run_scaling(*extras.scaling);
    if (!s) return failed("the scaling run", s.error());
    rep.scaling = std::move(*s);
  }
  if (extras.overhead_handler_cost.count() > 0) {
    auto ov = options;
    ov.on_progress = nullptr;
    auto r = run_overhead(ov, extras.overhead_messages, extras.overhead_handler_cost);
    if (!r) return failed("the overhead run", r.error());
    rep.overhead = *r;
  }
  if (extras.memory_budget > 0) {
    auto mb = options;
    mb.on_progress = nullptr;
    auto r = run_memory_budget(mb, extras.memory_budget);
    if (!r) return failed("the memory budget run", r.error());
    rep.memory_budget = std::move(*r);
  }
  if (extras.outage) {
    outage_options oo;
    oo.base = options;
    oo.base.on_progress = nullptr;
    oo.base.duration.reset();
    oo.base.rate = options.rate > 0 ? options.rate : rep.run.e2e_throughput / 2;
    oo.outage = *extras.outage;
    auto r = run_outage(oo);
    if (!r) return failed("the outage run", r.error());
    rep.outage = std::move(*r);
  }
  return std::nullopt;
}

}  // namespace qrt::bench
