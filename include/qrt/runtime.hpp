// The executor qrt's clients and processors run on: an io_context and N worker threads.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <cstddef>
#include <memory>
#include <optional>
#include <qrt/config.hpp>
#include <qrt/provider.hpp>
#include <thread>
#include <vector>

namespace qrt {

/// How many threads a runtime runs, and how large their stacks are. qrt starts the threads
/// itself, so it sets their stack size; there is no blocking pool to size (Asio has none, and
/// handlers run on these threads), see docs/adr/0061-processor-handlers.md.
struct runtime_configuration {
  std::size_t worker_threads = 1;  ///< threads running the io_context (at least 1)
  /// Bytes of stack each worker thread gets; 0: the platform's default. A coroutine's frame
  /// lives on the heap, so this bounds only what a handler puts on the stack synchronously.
  std::size_t thread_stack_size = 0;

  /// One thread per hardware thread, 2 MiB of stack each.
  static runtime_configuration for_high_throughput();
  /// Two threads, 1 MiB of stack each.
  static runtime_configuration for_low_resource();
  /// From a provider's configuration: `worker_threads` and `thread_stack_size` (bytes) where
  /// present (qrt::runtime_keys, which every provider's configuration accepts and checks), else
  /// the preset's with preset=high_throughput or preset=low_resource (the preset every provider
  /// accepts for the runtime alone), else one thread with the platform's stack size. A
  /// malformed or out-of-range value is a configuration_error naming the key and the value.
  static result<runtime_configuration> from_config(const config& cfg);
};

/// Owns an io_context and its worker threads. The threads start in the constructor. stop()
/// waits until no work is left (stop processors first); the destructor stops at once and
/// drops unfinished work.
class runtime {
 public:
  /// Starts config.worker_threads threads (at least one) running the io_context, each named
  /// `qrt-worker` (as `top -H`, `perf` and debuggers show it) and with config.thread_stack_size
  /// bytes of stack (0: the platform's default). A thread that cannot be started (a stack size
  /// the platform refuses, too little memory, too many threads) throws qrt::exception
  /// (invalid_argument for a stack size below the platform's least, else provider_error),
  /// after the threads already started are stopped and joined.
  explicit runtime(runtime_configuration config = {});
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  /// The executor to start clients, providers and processors on.
  boost::asio::any_io_executor executor() noexcept { return io_.get_executor(); }
  /// The io_context the threads run.
  boost::asio::io_context& context() noexcept { return io_; }
  /// How many threads run the io_context.
  std::size_t worker_threads() const noexcept { return threads_.size(); }

  /// Runs `op` on the runtime and blocks the calling thread (not a worker) until it finishes.
  template <class T>
  T block_on(awaitable<T> op) {
    return boost::asio::co_spawn(io_, std::move(op), boost::asio::use_future).get();
  }

  /// Waits until the io_context runs out of work, then joins the threads. Idempotent.
  void stop();

 private:
  void join();

  /// One worker thread: its platform handle, kept out of this header (runtime.cpp).
  struct worker;

  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_;
  std::vector<std::unique_ptr<worker>> threads_;
};

}  // namespace qrt
