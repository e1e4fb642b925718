#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>
#include <qrt/health.hpp>

#include "core/deadline.hpp"

namespace qrt {
namespace {

/// The length of the well-formed UTF-8 sequence at the start of `text` (no overlong forms,
/// surrogates or code points past U+10FFFF); 0 when there is none.
std::size_t utf8_sequence(std::string_view text) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return 1;
  std::size_t length = 0;
  unsigned char low = 0x80, high = 0xbf;  // the range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;   // overlong
    if (lead == 0xed) high = 0x9f;  // surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;   // overlong
    if (lead == 0xf4) high = 0x8f;  // past U+10FFFF
  } else {
    return 0;
  }
  if (text.size() < length || byte(1) < low || byte(1) > high) return 0;
  for (std::size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xbf) return 0;
  }
  return length;
}

/// `text` with every byte that does not start a well-formed UTF-8 sequence replaced by U+FFFD:
/// a JSON text is UTF-8, and an error's message may carry a service's bytes (cut short, or in
/// another encoding), which would make the whole answer unreadable to a JSON parser.
std::string as_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const std::size_t n = utf8_sequence(text);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      text.remove_prefix(1);
    } else {
      out.append(text.substr(0, n));
      text.remove_prefix(n);
    }
  }
  return out;
}

/// Carries the probe's answer to check_health, which may have stopped waiting for it.
using probe_channel = boost::asio::experimental::concurrent_channel<void(boost::system::error_code,
                                                                         result<queue_stats>)>;

/// The probe, run detached: it holds the provider and the channel until the provider answers,
/// however long after check_health has returned.
awaitable<void> probe(provider_ptr p, queue_name queue, std::shared_ptr<probe_channel> answer) {
  auto stats = co_await p->stats(queue);
  answer->try_send(boost::system::error_code{}, std::move(stats));  // room for one: never waits
}

}  // namespace

std::string health_report::to_json() const {
  boost::json::object o;
  o["status"] = healthy() ? "healthy" : "unhealthy";
  o["provider"] = as_utf8(provider);
  o["reachable"] = reachable;
  o["queue_exists"] = queue_exists;
  o["breaker"] = breaker ? std::string(to_string(*breaker)) : std::string("none");
  o["latency_us"] = latency.count();
  if (problem) o["error"] = as_utf8(problem->to_string());
  return boost::json::serialize(o);
}

awaitable<health_report> check_health(provider_ptr p, const queue_name& probe_queue,
                                      milliseconds timeout,
                                      std::function<breaker_state()> breaker) {
  using namespace boost::asio::experimental::awaitable_operators;
  health_report report;
  report.provider = std::string(p->name());
  if (breaker) report.breaker = breaker();

  // The probe runs on its own and the wait for it is what the timeout cuts: a provider call
  // need not stop when cancelled (an HTTP call runs to its own timeout), and /health must
  // answer within its bound whatever the provider does.
  const auto executor = co_await boost::asio::this_coro::executor;
  auto answer = std::make_shared<probe_channel>(executor, 1);
  const auto start = std::chrono::steady_clock::now();
  boost::asio::steady_timer timer(executor, detail::deadline_after(start, timeout));
  boost::asio::co_spawn(executor, probe(std::move(p), probe_queue, answer), boost::asio::detached);
  auto outcome = co_await (answer->async_receive(boost::asio::use_awaitable) ||
                           timer.async_wait(boost::asio::use_awaitable));
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
