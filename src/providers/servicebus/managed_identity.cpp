#include "managed_identity.hpp"

#include <boost/json.hpp>
#include <charconv>
#include <cstdlib>

#include "core/name_checks.hpp"
#include "sas.hpp"

namespace qrt::servicebus::detail {

namespace json = boost::json;
using std::chrono::system_clock;

namespace {

/// Text from a server kept short, single-line and fit to show (peer_text: valid UTF-8, control
/// characters and malformed bytes replaced) before it goes into an error message.
std::string excerpt(std::string_view text, std::size_t limit = 200) {
  return qrt::detail::peer_text(text, limit);
}

std::optional<std::string> json_string(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (!v || !v->is_string()) return std::nullopt;
  return std::string(v->as_string());
}

}  // namespace

environment_lookup process_environment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (!value) return std::nullopt;
    return std::string(value);
  };
}

std::string describe_identity(std::string_view client_id) {
  return client_id.empty() ? std::string("the system-assigned identity")
                           : "identity client_id '" + std::string(client_id) + "'";
}

identity_endpoint choose_identity_endpoint(std::string_view configured,
                                           const environment_lookup& env) {
  if (!configured.empty()) return {identity_protocol::imds, std::string(configured), {}};
  auto endpoint = env("IDENTITY_ENDPOINT");
  auto header = env("IDENTITY_HEADER");
  if (endpoint && !endpoint->empty() && header && !header->empty()) {
    return {identity_protocol::app_service, std::move(*endpoint), std::move(*header)};
  }
  return {identity_protocol::imds, std::string(imds_token_url), {}};
}

result<identity_request> build_identity_request(const identity_endpoint& endpoint,
                                                std::string_view resource,
                                                std::string_view client_id) {
  const std::string_view url = endpoint.url;
  const auto bad = [&](std::string why) {
    return fail(errc::configuration_error, "servicebus: managed identity endpoint '" +
                                               std::string(url) + "' " + std::move(why));
  };
  // Both endpoints are plain http on the local host or a link-local address.
  constexpr std::string_view scheme = "http://";
  if (url.substr(0, scheme.size()) != scheme) return bad("must start with http://");
  if (url.find_first_of("?#") != std::string_view::npos) return bad("must not have a query");
  const auto path_start = url.find('/', scheme.size());
  identity_request req;
  req.origin = std::string(url.substr(0, path_start));
  if (req.origin.size() == scheme.size()) return bad("has no host");
  req.target = path_start == std::string_view::npos ? "/" : std::string(url.substr(path_start));
  const bool app_service = endpoint.protocol == identity_protocol::app_service;
  req.target += app_service ? "?api-version=2019-08-01" : "?api-version=2018-02-01";
  req.target += "&resource=" + url_encode(resource);
  if (!client_id.empty()) req.target += "&client_id=" + url_encode(client_id);
  if (app_service) {
    req.headers.emplace_back("X-IDENTITY-HEADER", endpoint.identity_header);
  } else {
    req.headers.emplace_back("Metadata", "true");
  }
  req.headers.emplace_back("Accept", "application/json");
  return req;
}

result<access_token> parse_identity_response(unsigned status, std::string_view body,
                                             std::string_view client_id,
                                             system_clock::time_point now) {
  const std::string who = describe_identity(client_id);
  boost::system::error_code ec;
  const json::value doc = json::parse(body, ec);
  const json::object* object = !ec && doc.is_object() ? &doc.as_object() : nullptr;

  if (status != 200) {
    // IMDS and App Service answer errors as {"error": "...", "error_description": "..."}; some
    // proxies answer text. Either is the service's own wording, never a token.
    std::string why;
    if (object) {
      const auto code = json_string(*object, "error");
      const auto description = json_string(*object, "error_description");
      if (code) why = *code;
      if (description) why += (why.empty() ? "" : ": ") + *description;
    }
    if (why.empty() && !object) why = body;  // cut once, below
    const std::string detail =
        "HTTP " + std::to_string(status) + (why.empty() ? "" : " " + excerpt(why));
    if (status == 400 || status == 401 || status == 403) {
      return fail(errc::permission,
                  "servicebus: the managed identity endpoint refused a token for " + who + " (" +
                      detail + "); is that identity assigned to this resource?");
    }
    if (status == 429) {
      return fail(errc::throttled,
                  "servicebus: the managed identity endpoint is throttling (" + detail + ")");
    }
    if (status == 404 || status == 410 || status >= 500) {
      return fail(errc::connection_failed,
                  "servicebus: the managed identity endpoint is not ready (" + detail + ")");
    }
    return fail(
        errc::protocol_error,
        "servicebus: unexpected answer from the managed identity endpoint (" + detail + ")");
  }

  if (!object) {
    return fail(errc::protocol_error,
                "servicebus: the managed identity endpoint answered with something that is not a "
                "JSON object");
  }
  auto token = json_string(*object, "access_token");
  if (!token || token->empty()) {
    return fail(errc::protocol_error, "servicebus: the managed identity endpoint's answer for " +
                                          who + " has no access_token");
  }
  // expires_on: epoch seconds, sent as a string by IMDS and App Service (a number is accepted).
  std::optional<std::int64_t> expires_on;
  std::string shown;
  if (const auto* v = object->if_contains("expires_on")) {
    if (v->is_int64()) {
      expires_on = v->as_int64();
      shown = std::to_string(*expires_on);
    } else if (v->is_uint64() && v->as_uint64() <= INT64_MAX) {
      expires_on = static_cast<std::int64_t>(v->as_uint64());
      shown = std::to_string(*expires_on);
    } else if (v->is_string()) {
      const std::string_view text = v->as_string();
      shown = excerpt(text, 40);
      std::int64_t seconds = 0;
      auto [p, err] = std::from_chars(text.data(), text.data() + text.size(), seconds);
      if (err == std::errc{} && p == text.data() + text.size() && !text.empty()) {
        expires_on = seconds;
      }
    } else {
      shown = "a " + std::string(v->is_null() ? "null" : "non-numeric value");
    }
  } else {
    return fail(errc::protocol_error,
                "servicebus: the managed identity endpoint's answer has no expires_on");
  }
  // Only a time the clock can hold (until year 2262): a later one would wrap around.
  constexpr auto latest =
      std::chrono::floor<std::chrono::seconds>(system_clock::time_point::max()).time_since_epoch();
  if (!expires_on || *expires_on <= 0 || *expires_on > latest.count()) {
    return fail(errc::protocol_error,
                "servicebus: the managed identity endpoint's answer has a bad "
                "expires_on '" +
                    shown + "' (epoch seconds expected)");
  }
  access_token out;
  out.expires_at = system_clock::time_point(std::chrono::seconds(*expires_on));
  if (out.expires_at <= now) {
    return fail(errc::protocol_error,
                "servicebus: the managed identity endpoint returned a token that already expired "
                "(expires_on " +
                    shown + ")");
  }
  out.token = std::move(*token);
  out.type = "jwt";
  return out;
}

system_clock::time_point refresh_time(system_clock::time_point obtained,
                                      system_clock::time_point expires) {
  if (expires <= obtained) return obtained;
  // expires - life/5 rather than obtained + life*8/10: a life of decades must not overflow.
  return expires - (expires - obtained) / 5;
}

}  // namespace qrt::servicebus::detail
