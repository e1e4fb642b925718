// A session processor: several customers' messages at once, each customer's strictly in order.
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <qrt/memory.hpp>
#include <qrt/runtime.hpp>
#include <qrt/session_processor.hpp>

using namespace std::chrono_literals;

int main() {
  qrt::runtime rt(qrt::runtime_configuration::for_low_resource());
  auto provider =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(provider);
  const auto events = qrt::queue_name::from("account-events");
  rt.block_on(client.create_queue(events, {.lock_duration = 5s, .requires_session = true})).value();
  const std::vector<std::string> customers{"alice", "bob", "carol"};
  for (int step = 0; step < 5; ++step) {
    for (const auto& c : customers) {
      qrt::message m{.body = std::to_string(step)};
      m.session = qrt::session_id::from(c);
      rt.block_on(client.send(events, std::move(m))).value();
    }
  }

  std::mutex mutex;
  std::map<std::string, std::string> seen;  // customer -> steps in handling order
  int total = 0;
  std::promise<void> all_done;
  qrt::session_processor processor(
      client, events,
      [&](const qrt::received_message& m) -> qrt::awaitable<qrt::result<void>> {
        std::lock_guard lock(mutex);
        seen[m.session->str()] += m.body;
        if (++total == 15) all_done.set_value();
        co_return qrt::result<void>{};
      },
      {.max_concurrent_sessions = 3, .session_idle_timeout = 100ms, .accept_wait = 100ms});
  processor.start(rt.executor());
  if (all_done.get_future().wait_for(30s) != std::future_status::ready) return 1;
  rt.block_on(processor.stop(5s));

  bool in_order = true;
  for (const auto& [customer, steps] : seen) {
    std::cout << customer << ": " << steps << '\n';
    in_order = in_order && steps == "01234";
  }
  return in_order && seen.size() == 3 ? 0 : 1;
}
