// Errors: one type for every provider. See docs/adr/0002-errors.md.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>
#include <chrono>
#include <iosfwd>
#include <optional>
#include <string>
#include <system_error>

namespace qrt {

/// Error codes every provider maps its own failures onto.
enum class errc {
  queue_not_found = 1,
  message_too_large,
  invalid_receipt,      ///< the receipt is unknown, malformed, or already settled
  receipt_expired,      ///< the receipt's lock ran out before it was used
  session_locked,       ///< another receiver holds this session
  session_lock_lost,    ///< our session lock expired or was taken away
  queue_full,           ///< backpressure: the queue stayed full until the deadline
  timeout,              ///< an operation did not finish within its deadline
  connection_failed,    ///< transport down, refused, reset, or TLS failure
  configuration_error,  ///< a configuration field is missing or malformed
  permission,           ///< authentication or authorisation refused
  throttled,            ///< the service asked us to slow down (see retry_after)
  invalid_argument,     ///< a call's argument is malformed (bad name, empty batch, ...)
  unsupported,          ///< the provider does not have this capability
  closed,               ///< the client, provider or session has been closed
  protocol_error,       ///< the peer sent something we cannot parse
  provider_error,       ///< any other failure reported by the service
  topic_not_found,      ///< the topic does not exist (a missing subscription is queue_not_found)
  /// The request reached the peer (or may have) but its outcome never came back: it may or may
  /// not have taken effect. Transient: a retry may store a send twice, or find a settlement
  /// already applied (its receipt then refused). Appended last: the numbers above never change.
  unconfirmed,
};

/// How a caller should react to an error.
enum class error_kind {
  transient,  ///< retry with back-off
  throttled,  ///< retry after the service's retry_after (or back-off)
  permanent,  ///< fail fast: retrying cannot help
};

/// The Boost.System category of qrt::errc codes (named "qrt").
const boost::system::error_category& qrt_category() noexcept;

/// Lets an errc convert to a boost::system::error_code.
inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), qrt_category()};
}

/// The classification qrt uses when a provider does not override it.
error_kind default_kind(errc e) noexcept;

/// A failure, with enough detail to act on and to debug.
/// `message` and `provider_code` never contain secrets: providers redact before building one.
struct error {
  errc code = errc::provider_error;         ///< what failed, as one of qrt's codes
  error_kind kind = error_kind::permanent;  ///< whether retrying can help; default_kind(code)
                                            ///< unless the provider knows better
  std::string message;                      ///< human-readable, names the thing that failed
  std::string provider_code;  ///< the service's own code ("QueueDoesNotExist", "amqp:not-found")
  std::optional<std::chrono::milliseconds> retry_after;  ///< set for throttled errors when known

  error() = default;
  /// An error of code `c`, classified by default_kind(c).
  error(errc c, std::string msg, std::string provider_code = {})
      : code(c),
        kind(default_kind(c)),
        message(std::move(msg)),
        provider_code(std::move(provider_code)) {}

  /// The code as a boost::system::error_code.
  boost::system::error_code ec() const noexcept { return make_error_code(code); }
  /// True when retrying can help (transient or throttled).
  bool is_transient() const noexcept { return kind != error_kind::permanent; }

  /// "queue_not_found: queue 'orders' does not exist [QueueDoesNotExist]"
  std::string to_string() const;

  friend bool operator==(const error& e, errc c) noexcept { return e.code == c; }
};

/// The code's name, as written in the enum ("queue_not_found").
std::string_view to_string(errc e) noexcept;
/// "transient", "throttled" or "permanent".
std::string_view to_string(error_kind k) noexcept;

/// Writes to_string(e), so logs and test failures show the code's name, not its number.
std::ostream& operator<<(std::ostream& os, errc e);
/// Writes to_string(k).
std::ostream& operator<<(std::ostream& os, error_kind k);
/// Writes e.to_string().
std::ostream& operator<<(std::ostream& os, const error& e);

/// Thrown by result<T>::value() on an error, and by the blocking facade's *_or_throw helpers.
class exception : public std::runtime_error {
 public:
  /// Carries `e`; what() is e.to_string().
  explicit exception(qrt::error e) : std::runtime_error(e.to_string()), error_(std::move(e)) {}
  /// The error that was thrown.
  const qrt::error& get() const noexcept { return error_; }

 private:
  qrt::error error_;
};

/// Every fallible qrt operation returns one of these.
template <class T>
using result = boost::system::result<T, error>;

/// Found by ADL when result<T>::value() is called on an error.
[[noreturn]] void throw_exception_from_error(const error& e, const boost::source_location& loc);

/// Shorthand: `return qrt::fail(errc::queue_not_found, "queue 'x' does not exist");`
inline error fail(errc c, std::string msg, std::string provider_code = {}) {
  return error{c, std::move(msg), std::move(provider_code)};
}

}  // namespace qrt

namespace boost::system {
template <>
struct is_error_code_enum<qrt::errc> : std::true_type {};
}  // namespace boost::system
