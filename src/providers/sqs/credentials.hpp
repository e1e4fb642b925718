// Where the SQS provider's keys come from, in the AWS SDKs' order: explicit keys, environment,
// shared credentials/config files, the ECS container endpoint, EC2 IMDSv2. Keys are cached and
// fetched again five minutes before they expire. Nothing here logs or puts a secret into an
// error message.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <qrt/error.hpp>
#include <string>

#include "sigv4.hpp"

namespace qrt::sqs::detail {

using environment_lookup = std::function<std::optional<std::string>(std::string_view)>;
/// Reads the process environment.
environment_lookup process_environment();

struct expiring_credentials {
  aws_credentials keys;
  std::optional<std::chrono::system_clock::time_point> expiration;  ///< nullopt: never
  std::string source;  ///< "explicit", "environment", "profile 'x'", "ecs", "imds"
};

/// INI text -> section -> key -> value (keys lower-cased, values trimmed; '#'/';' comments).
using ini_file = std::map<std::string, std::map<std::string, std::string>>;
ini_file parse_ini(std::string_view text);

/// Looks a profile up: the credentials file's [name], then the config file's [profile name]
/// (or [default]). nullopt when neither has both keys.
std::optional<aws_credentials> profile_credentials(const ini_file& credentials_file,
                                                   const ini_file& config_file,
                                                   const std::string& profile);
/// The profile's region from the config file (or the credentials file), empty when none.
std::string profile_region(const ini_file& credentials_file, const ini_file& config_file,
                           const std::string& profile);

/// The JSON the ECS endpoint and IMDS answer with
/// ({"AccessKeyId","SecretAccessKey","Token","Expiration"}). Keys that could not be sent (see
/// check_credentials) are refused like a malformed document; errors never quote a value.
result<expiring_credentials> parse_credentials_document(std::string_view body, std::string source);

/// Keys qrt can sign and send: access key id and secret 1-256 printable ASCII characters, a
/// session token of at most 16 KiB without control characters. errc::permission naming
/// `source` and the field, never the value.
result<void> check_credentials(const aws_credentials& keys, std::string_view source);

/// IMDSv2's answer to the token PUT: the token (surrounding whitespace trimmed), 1-4096
/// printable ASCII characters, else errc::permission.
result<std::string> parse_imds_token(std::string_view body);
/// IMDS's answer listing the instance's role: the first line, trimmed; a valid IAM role name
/// (1-128 of A-Z a-z 0-9 + = , . @ _ -), else errc::permission. Empty body: no role.
result<std::string> parse_imds_role_name(std::string_view body);

/// Largest shared credentials/config file read; a larger one is skipped (and named).
inline constexpr std::size_t max_shared_file_bytes = 1u << 20;

/// "2026-11-27T12:00:00Z" (fractions and offsets accepted) -> time point.
std::optional<std::chrono::system_clock::time_point> parse_iso8601(std::string_view text);

struct credential_settings {
  aws_credentials explicit_keys;  ///< used when access key and secret are both set
  std::string profile;            ///< empty: AWS_PROFILE, else "default"
  std::chrono::milliseconds http_timeout{2'000};
  /// Refresh this long before expiry.
  std::chrono::seconds refresh_margin{300};
};

/// Resolves the profile name, the files' paths and the region the way the AWS CLI does.
struct shared_files {
  std::string profile;
  ini_file credentials;
  ini_file config;
  /// Files that exist but were skipped (over max_shared_file_bytes, unreadable), for errors.
  std::string skipped;
};
shared_files load_shared_files(const environment_lookup& env, const std::string& profile);
/// explicit region, AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else "us-east-1".
std::string resolve_region(const std::string& configured, const environment_lookup& env,
                           const shared_files& files);

/// The chain, cached. Thread-safe; concurrent callers during a refresh may each fetch.
class credential_chain {
 public:
  credential_chain(boost::asio::any_io_executor executor, credential_settings settings,
                   environment_lookup env = process_environment());

  /// Cached keys while they are valid beyond the refresh margin, else the chain again.
  /// errc::permission naming every source tried when none has keys.
  boost::asio::awaitable<result<expiring_credentials>> get(
      std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

  /// Forgets the cached keys (after the service rejected them).
  void invalidate();

 private:
  boost::asio::awaitable<result<expiring_credentials>> resolve();

  boost::asio::any_io_executor executor_;
  credential_settings settings_;
  environment_lookup env_;
  std::mutex mutex_;
  std::optional<expiring_credentials> cached_;
};

}  // namespace qrt::sqs::detail
