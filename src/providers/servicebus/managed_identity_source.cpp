#include "managed_identity_source.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "net/http.hpp"

namespace qrt::servicebus::detail {

namespace asio = boost::asio;
using std::chrono::system_clock;

/// Makes sure the waiters of a fetch hear an outcome even when the fetching coroutine is
/// destroyed before it finishes (its io_context stopped): they would wait forever otherwise.
class managed_identity_source::fetch_guard {
 public:
  explicit fetch_guard(managed_identity_source& source) : source_(source) {}
  ~fetch_guard() {
    if (!done_) {
      source_.publish(fail(errc::closed,
                           "servicebus: the managed identity token fetch was "
                           "abandoned (its executor stopped)"),
                      system_clock::now());
    }
  }
  fetch_guard(const fetch_guard&) = delete;
  fetch_guard& operator=(const fetch_guard&) = delete;
  void finish(const result<access_token>& outcome, system_clock::time_point obtained) {
    done_ = true;
    source_.publish(outcome, obtained);
  }

 private:
  managed_identity_source& source_;
  bool done_ = false;
};

managed_identity_source::managed_identity_source(identity_endpoint endpoint, std::string client_id,
                                                 std::chrono::milliseconds timeout)
    : endpoint_(std::move(endpoint)), client_id_(std::move(client_id)), timeout_(timeout) {}

managed_identity_source::~managed_identity_source() = default;

void managed_identity_source::publish(const result<access_token>& outcome,
                                      system_clock::time_point obtained) {
  std::vector<std::shared_ptr<outcome_channel>> waiting;
  {
    std::lock_guard lock(mutex_);
    if (outcome) {
      cached_ = *outcome;
      refresh_at_ = refresh_time(obtained, outcome->expires_at);
    }
    fetching_ = false;
    waiting.swap(waiters_);
  }
  // Each channel buffers one outcome, so a waiter that has not started receiving yet still
  // finds it.
  for (const auto& channel : waiting) channel->try_send(boost::system::error_code{}, outcome);
}

asio::awaitable<result<access_token>> managed_identity_source::token() {
  const auto executor = co_await asio::this_coro::executor;
  std::shared_ptr<outcome_channel> wait_on;
  {
    std::lock_guard lock(mutex_);
    if (cached_ && system_clock::now() < refresh_at_) co_return *cached_;
    if (fetching_) {
      wait_on = std::make_shared<outcome_channel>(executor, 1);
      waiters_.push_back(wait_on);
    } else {
      fetching_ = true;
    }
  }
  if (wait_on) {
    auto [ec, outcome] = co_await wait_on->async_receive(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      co_return fail(errc::closed,
                     "servicebus: waiting for the managed identity token failed: " + ec.message());
    }
    co_return std::move(outcome);
  }
  fetch_guard guard(*this);
  const auto obtained = system_clock::now();
  ++fetches_;
  auto fresh = co_await fetch();
  guard.finish(fresh, obtained);
  co_return fresh;
}

asio::awaitable<result<access_token>> managed_identity_source::fetch() {
  auto request = build_identity_request(endpoint_, servicebus_resource, client_id_);
  if (!request) co_return request.error();
  auto origin = net::parse_endpoint(request->origin);
  if (!origin) {
    co_return fail(errc::configuration_error,
                   "servicebus: managed identity endpoint: " + origin.error().message);
  }
  net::http_request get;
  get.method = "GET";
  get.target = std::move(request->target);
  get.headers = std::move(request->headers);
  // Off Azure the IMDS address usually swallows the SYN: bound the connect tightly so that a
  // missing identity endpoint fails in seconds, not after the whole operation timeout.
  net::http_settings settings;
  settings.connect_timeout = std::min(timeout_, std::chrono::milliseconds(5'000));
  settings.max_idle_connections = 0;  // one call every few hours: no connection to keep
  settings.max_response_bytes = 1u << 20;
  const auto executor = co_await asio::this_coro::executor;
  net::http_pool pool(executor, *origin, settings);
  auto answer = co_await pool.send(std::move(get), timeout_);
  if (!answer) {
    const auto& e = answer.error();
    if (e.code == errc::connection_failed || e.code == errc::timeout) {
      co_return fail(errc::connection_failed,
                     "servicebus: cannot get a token for " + describe_identity(client_id_) +
                         " from the managed identity endpoint " + origin->to_string() + ": " +
                         e.message +
                         " (is this running on Azure with a managed identity, or is "
                         "managed_identity_endpoint wrong?)");
    }
    co_return e;
  }
  co_return parse_identity_response(answer->status, answer->body, client_id_, system_clock::now());
}

}  // namespace qrt::servicebus::detail
