// Metrics for Prometheus: the provider is wrapped once with qrt::metrics::instrument(), a
// processor records what its handlers did, and a metrics_server serves both on GET /metrics.
// This program scrapes its own endpoint the way Prometheus would and prints what it got.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <iostream>
#include <qrt/instrumented_provider.hpp>
#include <qrt/memory.hpp>
#include <qrt/metrics.hpp>
#include <qrt/metrics_server.hpp>
#include <qrt/processor.hpp>
#include <qrt/runtime.hpp>
#include <sstream>

using namespace std::chrono_literals;

namespace {

/// GET http://127.0.0.1:port/metrics with a bare socket: the answer's body, or "" on failure.
std::string scrape(std::uint16_t port) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  boost::system::error_code ec;
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) return {};
  const std::string request =
      "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  boost::asio::write(socket, boost::asio::buffer(request), ec);
  if (ec) return {};
  std::string answer;
  boost::asio::read(socket, boost::asio::dynamic_buffer(answer), ec);  // until the server closes
  const auto body = answer.find("\r\n\r\n");
  return body == std::string::npos ? std::string{} : answer.substr(body + 4);
}

}  // namespace

int main() {
  // The registry and the metrics outlive the runtime: work still queued on the runtime when it
  // stops may hold the instrumented provider, which reports to them until it is destroyed.
  qrt::metrics::registry registry;
  qrt::metrics::runtime_metrics metrics(registry);
  qrt::metrics::add_process_metrics(registry);  // process_cpu_seconds_total, ..._memory_bytes, ...
  qrt::runtime rt(qrt::runtime_configuration::for_low_resource());
  auto provider = qrt::metrics::instrument(
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value(),
      metrics);
  auto server = qrt::metrics::metrics_server::start(registry, {.address = "127.0.0.1"}).value();

  qrt::queue_client client(provider);
  const auto orders = qrt::queue_name::from("orders");
  rt.block_on(client.create_queue(orders)).value();
  for (int i = 0; i < 10; ++i) rt.block_on(client.send(orders, {.body = "order"})).value();

  std::promise<void> all_handled;
  int handled = 0;
  auto options = qrt::processor_options::for_low_latency();
  options.max_concurrent_calls = 1;  // handlers one at a time: `handled` needs no lock
  options.receive_wait = 100ms;
  options.on_processed = qrt::metrics::record_processing(metrics, "memory");
  qrt::processor processor(
      client, orders,
      [&](const qrt::received_message&) -> qrt::awaitable<qrt::result<void>> {
        if (++handled == 10) all_handled.set_value();
        co_return qrt::result<void>{};
      },
      options);
  processor.start(rt.executor());
  if (all_handled.get_future().wait_for(30s) != std::future_status::ready) return 1;
  (void)rt.block_on(processor.stop(5s));

  const std::string exposition = scrape(server->port());
  std::istringstream lines(exposition);
  bool sent_counted = false;
  bool processed_counted = false;
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("queue_runtime_messages_sent_total{") ||
        line.starts_with("queue_runtime_messages_processed_total{")) {
      std::cout << line << '\n';
      const bool ten = line.ends_with(" 10");
      if (line.starts_with("queue_runtime_messages_sent_total{")) sent_counted |= ten;
      if (line.find("outcome=\"completed\"") != std::string::npos) processed_counted |= ten;
    }
  }
  return sent_counted && processed_counted ? 0 : 1;
}
