// Azure managed identity: Azure AD tokens for Service Bus from the Instance Metadata Service
// (IMDS, on VMs, scale sets and AKS nodes) or from the App Service / Container Apps / Functions
// identity endpoint. Pure functions here (which endpoint, the request, the answer and when to
// ask again); managed_identity_source.hpp does the HTTP call and the caching.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <qrt/error.hpp>
#include <qrt/servicebus.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qrt::servicebus::detail {

/// The resource (AAD v1 "resource", scope without /.default) of every Service Bus namespace.
inline constexpr std::string_view servicebus_resource = "https://servicebus.azure.net/";
/// Where IMDS answers on every Azure VM (plain http on a link-local address).
inline constexpr std::string_view imds_token_url =
    "http://169.254.169.254/metadata/identity/oauth2/token";

enum class identity_protocol {
  imds,         ///< api-version 2018-02-01, header "Metadata: true"
  app_service,  ///< api-version 2019-08-01, header "X-IDENTITY-HEADER: <IDENTITY_HEADER>"
};

struct identity_endpoint {
  identity_protocol protocol = identity_protocol::imds;
  std::string url;              ///< "http://host[:port]/path", no query
  std::string identity_header;  ///< app_service only; a secret of the hosting platform
};

using environment_lookup = std::function<std::optional<std::string>(std::string_view)>;
/// Reads the process environment.
environment_lookup process_environment();

/// `configured` (options::managed_identity_endpoint) wins and speaks the IMDS protocol; else
/// IDENTITY_ENDPOINT with IDENTITY_HEADER from the environment (App Service, Container Apps,
/// Functions); else IMDS at its fixed address.
identity_endpoint choose_identity_endpoint(std::string_view configured,
                                           const environment_lookup& env);

struct identity_request {
  std::string origin;  ///< "http://host:port": what the HTTP client connects to
  std::string target;  ///< path and query
  std::vector<std::pair<std::string, std::string>> headers;
};

/// The GET for a token for `resource`; `client_id` selects a user-assigned identity (empty: the
/// system-assigned one). Fails with configuration_error when the endpoint URL is malformed.
result<identity_request> build_identity_request(const identity_endpoint& endpoint,
                                                std::string_view resource,
                                                std::string_view client_id);

/// Reads the endpoint's answer into a "jwt" access_token. Refusals (HTTP 400 "Identity not
/// found", 401, 403) are errc::permission naming the identity; 429 is throttled; 404, 410 and
/// 5xx (IMDS busy or still starting) are transient connection_failed; an answer that is not
/// JSON, lacks access_token, or has a bad or past expires_on is protocol_error. No message
/// ever contains the token or the answer's body beyond the service's own error text.
result<access_token> parse_identity_response(unsigned status, std::string_view body,
                                             std::string_view client_id,
                                             std::chrono::system_clock::time_point now);

/// When a token obtained at `obtained` that expires at `expires` should be replaced: once 80%
/// of its life has passed (for every token put on $cbs: managed identity, SAS, a token hook).
std::chrono::system_clock::time_point refresh_time(std::chrono::system_clock::time_point obtained,
                                                   std::chrono::system_clock::time_point expires);

/// "identity client_id 'x'" or "the system-assigned identity": how errors name the identity.
std::string describe_identity(std::string_view client_id);

}  // namespace qrt::servicebus::detail
