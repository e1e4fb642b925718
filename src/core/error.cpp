#include <boost/throw_exception.hpp>
#include <ostream>
#include <qrt/error.hpp>

namespace qrt {
namespace {

class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "qrt"; }
  std::string message(int ev) const override {
    return std::string(to_string(static_cast<errc>(ev)));
  }
};

}  // namespace

const boost::system::error_category& qrt_category() noexcept {
  static const category instance;
  return instance;
}

std::string_view to_string(errc e) noexcept {
  switch (e) {
    case errc::queue_not_found:
      return "queue_not_found";
    case errc::message_too_large:
      return "message_too_large";
    case errc::invalid_receipt:
      return "invalid_receipt";
    case errc::receipt_expired:
      return "receipt_expired";
    case errc::session_locked:
      return "session_locked";
    case errc::session_lock_lost:
      return "session_lock_lost";
    case errc::queue_full:
      return "queue_full";
    case errc::timeout:
      return "timeout";
    case errc::connection_failed:
      return "connection_failed";
    case errc::configuration_error:
      return "configuration_error";
    case errc::permission:
      return "permission";
    case errc::throttled:
      return "throttled";
    case errc::invalid_argument:
      return "invalid_argument";
    case errc::unsupported:
      return "unsupported";
    case errc::closed:
      return "closed";
    case errc::protocol_error:
      return "protocol_error";
    case errc::provider_error:
      return "provider_error";
    case errc::topic_not_found:
      return "topic_not_found";
    case errc::unconfirmed:
      return "unconfirmed";
  }
  return "unknown";
}

std::string_view to_string(error_kind k) noexcept {
  switch (k) {
    case error_kind::transient:
      return "transient";
    case error_kind::throttled:
      return "throttled";
    case error_kind::permanent:
      return "permanent";
  }
  return "unknown";
}

error_kind default_kind(errc e) noexcept {
  switch (e) {
    case errc::throttled:
      return error_kind::throttled;
    case errc::queue_full:
    case errc::timeout:
    case errc::connection_failed:
    case errc::session_locked:
    case errc::unconfirmed:
      return error_kind::transient;
    default:
      return error_kind::permanent;
  }
}

std::string error::to_string() const {
  std::string out{qrt::to_string(code)};
  if (!message.empty()) {
    out += ": ";
    out += message;
  }
  if (!provider_code.empty()) {
    out += " [";
    out += provider_code;
    out += ']';
  }
  return out;
}

std::ostream& operator<<(std::ostream& os, errc e) {
  return os << to_string(e);
}

std::ostream& operator<<(std::ostream& os, error_kind k) {
  return os << to_string(k);
}

std::ostream& operator<<(std::ostream& os, const error& e) {
  return os << e.to_string();
}

void throw_exception_from_error(const error& e, const boost::source_location& loc) {
  boost::throw_exception(exception(e), loc);
}

}  // namespace qrt
