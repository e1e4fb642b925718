#include "managed_identity_source.hpp"

#include <boost/asio/this_coro.hpp>

#include "net/http.hpp"

namespace qrt::servicebus::detail {

using std::chrono::system_clock;

managed_identity_source::managed_identity_source(identity_endpoint endpoint, std::string client_id,
                                                 std::chrono::milliseconds timeout)
    : endpoint_(std::move(endpoint)), client_id_(std::move(client_id)), timeout_(timeout) {}

boost::asio::awaitable<result<access_token>> managed_identity_source::token() {
  {
    std::lock_guard lock(mutex_);
    if (cached_ && system_clock::now() < refresh_at_) co_return *cached_;
  }
  const auto obtained = system_clock::now();
  auto fresh = co_await fetch();
  if (!fresh) co_return fresh.error();
  ++fetches_;
  std::lock_guard lock(mutex_);
  cached_ = *fresh;
  refresh_at_ = refresh_time(obtained, fresh->expires_at);
  co_return std::move(*fresh);
}

boost::asio::awaitable<result<access_token>> managed_identity_source::fetch() {
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
  const auto executor = co_await boost::asio::this_coro::executor;
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
