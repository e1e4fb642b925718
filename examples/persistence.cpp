// Messages that survive a restart: the embedded provider keeps every queue in a checksummed log
// under a directory, and a send returns only after its record is on disk (durability=always).
// The program sends, "restarts" (closes the provider and opens a new one on the same directory),
// and finds its messages again; what was completed before the restart stays gone.
#include <filesystem>
#include <iostream>
#include <qrt/client.hpp>
#include <qrt/memory.hpp>
#include <qrt/runtime.hpp>
#include <random>

using namespace std::chrono_literals;

int main() {
  const auto directory = std::filesystem::temp_directory_path() /
                         ("qrt-example-persistence-" + std::to_string(std::random_device{}()));
  qrt::memory::options options = qrt::memory::options::for_testing();
  options.enable_persistence = true;
  options.persistence_path = directory.string();
  options.durability_mode = qrt::memory::durability::always;
  const auto payments = qrt::queue_name::from("payments");
  qrt::runtime rt(qrt::runtime_configuration::for_low_resource());

  {  // the first run: three payments, one of them handled before the process stops
    qrt::queue_client client(qrt::memory::make_provider(options, rt.executor()).value());
    rt.block_on(client.create_queue(payments)).value();
    for (const char* body : {"payment-1", "payment-2", "payment-3"}) {
      rt.block_on(client.send(payments, {.body = body})).value();
    }
    auto first = rt.block_on(client.receive(payments, 1, 1s)).value();
    rt.block_on(client.complete(first.at(0).receipt)).value();
    rt.block_on(client.close());
  }

  std::vector<std::string> after_restart;
  {  // the next run replays the log first
    qrt::queue_client client(qrt::memory::make_provider(options, rt.executor()).value());
    auto batch = rt.block_on(client.receive(payments, 10, 1s)).value();
    for (const auto& m : batch) {
      after_restart.push_back(m.body);
      rt.block_on(client.complete(m.receipt)).value();
    }
    rt.block_on(client.close());
  }
  std::filesystem::remove_all(directory);

  std::cout << "after the restart:";
  for (const auto& body : after_restart) std::cout << ' ' << body;
  std::cout << '\n';
  return after_restart == std::vector<std::string>{"payment-2", "payment-3"} ? 0 : 1;
}
