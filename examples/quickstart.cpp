// Send, receive and complete on the embedded provider with the asynchronous API.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <iostream>
#include <qrt/qrt.hpp>

using namespace std::chrono_literals;

qrt::awaitable<int> run() {
  auto cfg = qrt::config::from_yaml("provider: memory\nqueues: [orders]\n").value();
  auto provider = qrt::builtin_providers().make(cfg, co_await boost::asio::this_coro::executor);
  if (!provider) {
    std::cerr << provider.error().to_string() << '\n';
    co_return 1;
  }
  qrt::queue_client client(*provider);
  const auto orders = qrt::queue_name::from("orders");

  qrt::message order;
  order.body = R"({"order": 42})";
  order.content_type = "application/json";
  order.attributes["tenant"] = "acme";
  auto id = co_await client.send(orders, std::move(order));
  if (!id) {
    std::cerr << "send failed: " << id.error().to_string() << '\n';
    co_return 1;
  }

  auto batch = co_await client.receive(orders, 10, 1s);
  if (!batch || batch->empty()) {
    std::cerr << "nothing received\n";
    co_return 1;
  }
  for (const auto& m : *batch) {
    std::cout << "received " << m.id << ": " << m.body << " (delivery " << m.delivery_count
              << ")\n";
    if (auto done = co_await client.complete(m.receipt); !done) {
      std::cerr << "complete failed: " << done.error().to_string() << '\n';
      co_return 1;
    }
  }
  co_await client.close();
  co_return 0;
}

int main() {
  boost::asio::io_context io;
  int status = 1;
  boost::asio::co_spawn(io, run(), [&](std::exception_ptr e, int s) { status = e ? 1 : s; });
  io.run();
  return status;
}
