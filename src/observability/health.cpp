#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>
#include <qrt/health.hpp>

namespace qrt {

std::string health_report::to_json() const {
  boost::json::object o;
  o["status"] = healthy() ? "healthy" : "unhealthy";
  o["provider"] = provider;
  o["reachable"] = reachable;
  o["queue_exists"] = queue_exists;
  o["breaker"] = breaker ? std::string(to_string(*breaker)) : std::string("none");
  o["latency_us"] = latency.count();
  if (problem) o["error"] = problem->to_string();
  return boost::json::serialize(o);
}

awaitable<health_report> check_health(provider& p, const queue_name& probe_queue,
                                      milliseconds timeout,
                                      std::function<breaker_state()> breaker) {
  using namespace boost::asio::experimental::awaitable_operators;
  health_report report;
  report.provider = std::string(p.name());
  if (breaker) report.breaker = breaker();

  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, timeout);
  const auto start = std::chrono::steady_clock::now();
  auto outcome = co_await (p.stats(probe_queue) || timer.async_wait(boost::asio::use_awaitable));
  report.latency = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - start);

  if (outcome.index() == 1) {
    report.problem = fail(errc::timeout, "health probe of queue '" + probe_queue.to_string() +
                                             "' did not answer within " +
                                             std::to_string(timeout.count()) + " ms");
    co_return report;
  }
  auto& stats = std::get<0>(outcome);
  if (stats) {
    report.reachable = true;
    report.queue_exists = true;
  } else {
    report.problem = stats.error();
    // The service answered, it just has no such queue.
    report.reachable = stats.error().code == errc::queue_not_found;
  }
  co_return report;
}

}  // namespace qrt
