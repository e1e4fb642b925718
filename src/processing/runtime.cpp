#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <qrt/runtime.hpp>
#include <string>

#include "core/config_binder.hpp"
#include "core/io_loop.hpp"

namespace qrt {

namespace {

constexpr std::size_t mib = std::size_t{1} << 20;

}  // namespace

runtime_configuration runtime_configuration::for_high_throughput() {
  return {.worker_threads = std::max<std::size_t>(1, std::thread::hardware_concurrency()),
          .thread_stack_size = 2 * mib};
}

runtime_configuration runtime_configuration::for_low_resource() {
  return {.worker_threads = 2, .thread_stack_size = 1 * mib};
}

result<runtime_configuration> runtime_configuration::from_config(const config& cfg) {
  runtime_configuration out;
  auto preset = cfg.get_string("preset", std::string());
  if (!preset) return preset.error();
  // Other names are the provider's or the processor's presets; the provider refuses unknown ones.
  if (*preset == "high_throughput") out = for_high_throughput();
  if (*preset == detail::runtime_only_preset) out = for_low_resource();
  auto threads = detail::read_runtime_key(cfg, "worker_threads", out.worker_threads);
  if (!threads) return threads.error();
  out.worker_threads = *threads;
  auto stack = detail::read_runtime_key(cfg, "thread_stack_size", out.thread_stack_size);
  if (!stack) return stack.error();
  out.thread_stack_size = *stack;
  return out;
}

// std::thread cannot be given a stack size, so the workers are POSIX threads.
struct runtime::worker {
  pthread_t handle{};
  bool joinable = true;
};

namespace {

extern "C" void* run_worker(void* arg) {
  auto* io = static_cast<boost::asio::io_context*>(arg);
  qrt::detail::run_io_loop(*io, "runtime worker", "qrt-worker");
  return nullptr;
}

// The attributes of a worker thread: joinable, with `stack_size` bytes of stack (0: the
// platform's default). Destroyed with the object.
class thread_attributes {
 public:
  explicit thread_attributes(std::size_t stack_size) {
    if (int rc = ::pthread_attr_init(&attr_); rc != 0) fail_with(rc, "initialising", stack_size);
    if (stack_size == 0) return;
    const auto least = static_cast<std::size_t>(PTHREAD_STACK_MIN);
    if (stack_size < least) {
      ::pthread_attr_destroy(&attr_);
      throw exception(fail(errc::invalid_argument,
                           "qrt::runtime: thread_stack_size " + std::to_string(stack_size) +
                               " is below the platform's least (" + std::to_string(least) + ")"));
    }
    if (int rc = ::pthread_attr_setstacksize(&attr_, stack_size); rc != 0) {
      ::pthread_attr_destroy(&attr_);
      fail_with(rc, "setting", stack_size);
    }
  }
  ~thread_attributes() { ::pthread_attr_destroy(&attr_); }
  thread_attributes(const thread_attributes&) = delete;
  thread_attributes& operator=(const thread_attributes&) = delete;

  const pthread_attr_t* get() const noexcept { return &attr_; }

  [[noreturn]] static void fail_with(int rc, const char* doing, std::size_t stack_size) {
    throw exception(fail(rc == EINVAL ? errc::invalid_argument : errc::provider_error,
                         std::string("qrt::runtime: ") + doing + " a worker thread with " +
                             "thread_stack_size " + std::to_string(stack_size) +
                             " failed: " + std::strerror(rc)));
  }

 private:
  pthread_attr_t attr_{};
};

}  // namespace

runtime::runtime(runtime_configuration config)
    : io_(static_cast<int>(std::max<std::size_t>(1, config.worker_threads))),
      guard_(io_.get_executor()) {
  const std::size_t n = std::max<std::size_t>(1, config.worker_threads);
  threads_.reserve(n);
  try {
    const thread_attributes attributes(config.thread_stack_size);
    for (std::size_t i = 0; i < n; ++i) {
      auto w = std::make_unique<worker>();
      if (int rc = ::pthread_create(&w->handle, attributes.get(), &run_worker, &io_); rc != 0)
        thread_attributes::fail_with(rc, "starting", config.thread_stack_size);
      threads_.push_back(std::move(w));
    }
  } catch (...) {
    // The destructor does not run for a constructor that throws: the threads already started
    // must not outlive the io_context they run.
    guard_.reset();
    io_.stop();
    join();
    throw;
  }
}

runtime::~runtime() {
  // Whatever still runs (a processor nobody stopped) is abandoned here rather than waited for
  // forever; its coroutine frames are destroyed with the io_context.
  guard_.reset();
  io_.stop();
  join();
  // Destroyed from one of its own workers, which cannot wait for itself: its resources go
  // when it ends.
  for (auto& t : threads_) {
    if (t->joinable) ::pthread_detach(t->handle);
  }
}

void runtime::stop() {
  guard_.reset();
  join();
}

void runtime::join() {
  const pthread_t self = ::pthread_self();
  for (auto& t : threads_) {
    // A worker calling stop() cannot wait for itself; it is joined later, by the destructor.
    if (!t->joinable || ::pthread_equal(t->handle, self)) continue;
    ::pthread_join(t->handle, nullptr);
    t->joinable = false;
  }
}

}  // namespace qrt
