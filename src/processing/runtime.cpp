#include <algorithm>
#include <qrt/runtime.hpp>

#include "core/config_binder.hpp"
#include "core/io_loop.hpp"

namespace qrt {

runtime_configuration runtime_configuration::for_high_throughput() {
  return {.worker_threads = std::max<std::size_t>(1, std::thread::hardware_concurrency())};
}

runtime_configuration runtime_configuration::for_low_resource() {
  return {.worker_threads = 2};
}

result<runtime_configuration> runtime_configuration::from_config(const config& cfg) {
  runtime_configuration out;
  auto preset = cfg.get_string("preset", std::string());
  if (!preset) return preset.error();
  if (*preset == "high_throughput") out = for_high_throughput();
  auto threads = cfg.get_uint("worker_threads", out.worker_threads, 1, detail::most_worker_threads);
  if (!threads) return threads.error();
  out.worker_threads = *threads;
  return out;
}

runtime::runtime(runtime_configuration config)
    : io_(static_cast<int>(std::max<std::size_t>(1, config.worker_threads))),
      guard_(io_.get_executor()) {
  const std::size_t n = std::max<std::size_t>(1, config.worker_threads);
  threads_.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    threads_.emplace_back(
        [this] { qrt::detail::run_io_loop(io_, "runtime worker", "qrt-worker"); });
}

runtime::~runtime() {
  // Whatever still runs (a processor nobody stopped) is abandoned here rather than waited for
  // forever; its coroutine frames are destroyed with the io_context.
  guard_.reset();
  io_.stop();
  join();
}

void runtime::stop() {
  guard_.reset();
  join();
}

void runtime::join() {
  for (auto& t : threads_) {
    if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
  }
}

}  // namespace qrt
