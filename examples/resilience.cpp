// Resilience: the client retries transient failures by itself; a circuit breaker stops calling
// a dependency that keeps failing and probes it again later. Faults come from the
// fault-injecting decorator, which wraps any provider.
#include <iostream>
#include <qrt/circuit_breaker.hpp>
#include <qrt/client.hpp>
#include <qrt/fault_injection.hpp>
#include <qrt/memory.hpp>
#include <qrt/runtime.hpp>

using namespace std::chrono_literals;

int main() {
  qrt::runtime rt;
  auto memory =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  // 30% of calls fail with a transient error before reaching the provider.
  auto flaky = qrt::make_fault_injecting_provider(
      memory, {.latency = 1ms, .transient_error_rate = 0.3, .seed = 42});
  auto retry = qrt::retry_policy::exponential_backoff(5ms, 100ms, 2.0);
  retry.max_attempts = 10;
  qrt::queue_client client(flaky, {.retry = retry});
  const auto q = qrt::queue_name::from("payments");
  rt.block_on(client.create_queue(q)).value();

  int sent = 0;
  for (int i = 0; i < 20; ++i) sent += rt.block_on(client.send(q, {.body = "p"})).has_value();
  std::cout << sent << "/20 sent despite " << flaky->stats().transient_errors
            << " injected failures\n";

  // The breaker: 3 failures open it; while open, calls fail fast without reaching the service.
  qrt::circuit_breaker breaker(
      {.failure_threshold = 3, .open_duration = 50ms, .on_state_change = [](auto from, auto to) {
         std::cout << "breaker " << qrt::to_string(from) << " -> " << qrt::to_string(to) << '\n';
       }});
  qrt::queue_client no_retry(flaky, {.retry = std::nullopt});
  flaky->disconnect_for(1h);
  for (int i = 0; i < 5; ++i) {
    auto r = rt.block_on(breaker.run([&] { return no_retry.stats(q); }));
    std::cout << "call " << i << ": " << (r ? "ok" : r.error().to_string()) << '\n';
  }
  flaky->reconnect();
  flaky->set_options({});
  rt.block_on(qrt::sleep_for(60ms));  // the open duration; then one probe closes it
  auto probe = rt.block_on(breaker.run([&] { return no_retry.stats(q); }));
  return sent == 20 && probe && breaker.state() == qrt::breaker_state::closed ? 0 : 1;
}
