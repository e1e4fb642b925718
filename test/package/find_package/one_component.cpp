// README.md: link everything or only the components you use. This program links qrt::memory
// alone (no qrt::qrt, no builtin_providers()): the embedded provider registered by hand, a
// message sent and received through the synchronous client.
#include <chrono>
#include <iostream>
#include <qrt/memory.hpp>
#include <qrt/sync_client.hpp>

int main() {
  qrt::provider_registry registry;
  qrt::memory::register_provider(registry);
  auto client = qrt::sync::queue_client::open(
      qrt::config{{"provider", "memory"}, {"queues", "orders"}}, registry);
  if (!client) {
    std::cerr << "FAIL: " << client.error().to_string() << '\n';
    return 1;
  }
  const auto orders = qrt::queue_name::from("orders");
  qrt::message m;
  m.body = "one component";
  if (auto sent = client->send(orders, m); !sent) {
    std::cerr << "FAIL: " << sent.error().to_string() << '\n';
    return 1;
  }
  auto got = client->receive(orders, 1, std::chrono::seconds(1));
  if (!got || got->size() != 1 || got->front().body != "one component") {
    std::cerr << "FAIL: the message did not come back\n";
    return 1;
  }
  std::cout << "qrt::memory alone: ok\n";
  return 0;
}
