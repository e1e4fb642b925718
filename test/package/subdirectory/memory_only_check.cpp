// What a build with every QRT_WITH_* option off offers: builtin_providers() knows only the
// embedded provider, and asking it for persistence is a configuration error that names the
// field, not a crash or a silently non-persistent queue.
#include <iostream>
#include <qrt/qrt.hpp>
#include <string>
#include <vector>

int main() {
  int failures = 0;
  const auto names = qrt::builtin_providers().names();
  if (names != std::vector<std::string>{"memory"}) {
    std::cerr << "FAIL: builtin_providers() has";
    for (const auto& n : names) std::cerr << ' ' << n;
    std::cerr << ", expected only memory\n";
    ++failures;
  }
  auto persisted =
      qrt::sync::queue_client::open(qrt::config{{"provider", "memory"},
                                                {"queues", "orders"},
                                                {"enable_persistence", "true"},
                                                {"persistence_path", "unused-log-dir"}},
                                    qrt::builtin_providers());
  if (persisted) {
    std::cerr << "FAIL: enable_persistence=true opened without the persistence log\n";
    ++failures;
  } else if (persisted.error().code != qrt::errc::configuration_error ||
             persisted.error().to_string().find("enable_persistence") == std::string::npos) {
    std::cerr << "FAIL: enable_persistence=true refused with the wrong error: "
              << persisted.error().to_string() << '\n';
    ++failures;
  }
  auto sqs =
      qrt::sync::queue_client::open(qrt::config{{"provider", "sqs"}}, qrt::builtin_providers());
  if (sqs) {
    std::cerr << "FAIL: provider=sqs opened in a build without SQS\n";
    ++failures;
  }
  if (failures == 0) std::cout << "memory-only build: ok\n";
  return failures == 0 ? 0 : 1;
}
