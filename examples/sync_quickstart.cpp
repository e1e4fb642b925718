// The blocking facade, for code that does not use Asio: dead-letter a message and read it back.
#include <iostream>
#include <qrt/qrt.hpp>

using namespace std::chrono_literals;

int main() {
  auto client = qrt::sync::queue_client::open(
      qrt::config{{"provider", "memory"}, {"queues", "payments"}}, qrt::builtin_providers());
  if (!client) {
    std::cerr << client.error().to_string() << '\n';
    return 1;
  }
  const auto payments = qrt::queue_name::from("payments");

  qrt::message m;
  m.body = std::string("\x00\xff binary is fine", 18);
  m.correlation_id = "invoice-7";
  if (auto id = client->send(payments, m); !id) {
    std::cerr << id.error().to_string() << '\n';
    return 1;
  }
  auto got = client->receive(payments, 1, 1s).value();
  if (got.size() != 1) return 1;
  if (auto r = client->dead_letter(got[0].receipt, "InvalidCard", "card number failed Luhn"); !r) {
    std::cerr << r.error().to_string() << '\n';
    return 1;
  }

  auto dead = client->receive(payments.dead_letter(), 1, 1s).value();
  if (dead.size() != 1 || !dead[0].dead_letter) return 1;
  std::cout << "dead-lettered " << dead[0].correlation_id << ": " << dead[0].dead_letter->reason
            << " - " << dead[0].dead_letter->description << '\n';
  return client->complete(dead[0].receipt) ? 0 : 1;
}
