#include "amqp/mapping.hpp"

#include <map>
#include <proton/binary.hpp>
#include <proton/scalar.hpp>
#include <proton/symbol.hpp>
#include <proton/timestamp.hpp>
#include <proton/types.hpp>
#include <proton/uuid.hpp>
#include <proton/value.hpp>
#include <vector>

#include "amqp/message_codec.hpp"

namespace qrt::amqp::detail {

namespace {

std::string hex(const proton::binary& b) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(b.size() * 2);
  for (std::uint8_t c : b) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 0xF]);
  }
  return out;
}

std::string scalar_to_string(const proton::scalar& s) {
  switch (s.type()) {
    case proton::STRING:
      return proton::get<std::string>(s);
    case proton::SYMBOL:
      return std::string(proton::get<proton::symbol>(s));
    case proton::BINARY: {
      const auto b = proton::get<proton::binary>(s);
      return std::string(b.begin(), b.end());
    }
    default:
      return proton::to_string(s);
  }
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

}  // namespace

std::string id_to_string(const proton::message_id& id) {
  switch (id.type()) {
    case proton::NULL_TYPE:
      return {};
    case proton::STRING:
      return proton::get<std::string>(id);
    case proton::ULONG:
      return std::to_string(proton::get<std::uint64_t>(id));
    case proton::UUID:
      return proton::get<proton::uuid>(id).str();
    case proton::BINARY:
      return hex(proton::get<proton::binary>(id));
    default:
      return proton::to_string(id);
  }
}

proton::message to_proton(const message& m) {
  proton::message out;
  // inferred: a binary body is written as a data section, not as an amqp-value.
  out.inferred(true);
  out.body(proton::binary(m.body.begin(), m.body.end()));
  out.durable(true);
  // Brokers that don't stamp an enqueue time (RabbitMQ) still let the receiver see when the
  // message was sent.
  out.creation_time(proton::timestamp(
      std::chrono::duration_cast<milliseconds>(clock::now().time_since_epoch()).count()));
  if (!m.id.empty()) out.id(m.id);
  if (!m.correlation_id.empty()) out.correlation_id(m.correlation_id);
  if (!m.content_type.empty()) out.content_type(m.content_type);
  if (!m.subject.empty()) out.subject(m.subject);
  if (m.session) out.group_id(m.session->str());
  if (m.time_to_live) out.ttl(proton::duration(m.time_to_live->count()));
  for (const auto& [key, value] : m.attributes) out.properties().put(key, value);
  return out;
}

received_message from_proton(const proton::message& m) {
  received_message out;
  const proton::value& body = m.body();
  switch (body.type()) {
    case proton::NULL_TYPE:
      break;
    case proton::BINARY: {
      const auto b = proton::get<proton::binary>(body);
      out.body.assign(b.begin(), b.end());
      break;
    }
    case proton::STRING:
      out.body = proton::get<std::string>(body);
      break;
    case proton::SYMBOL:
      out.body = std::string(proton::get<proton::symbol>(body));
      break;
    default:
      // A list or map body from another client: keep its AMQP text rendering.
      out.body = proton::to_string(body);
      break;
  }
  out.id = id_to_string(m.id());
  out.correlation_id = id_to_string(m.correlation_id());
  out.content_type = m.content_type();
  out.subject = m.subject();
  if (const std::string group = m.group_id(); !group.empty()) {
    // A group id qrt cannot name as a session (too long, control characters) is still kept
    // visible as an attribute rather than dropped.
    if (auto s = session_id::parse(group)) {
      out.session = *s;
    } else {
      out.attributes["amqp.group-id"] = group;
    }
  }
  if (m.ttl().milliseconds() > 0) out.time_to_live = milliseconds(m.ttl().milliseconds());
  if (!m.properties().empty()) {
    std::map<std::string, proton::scalar> props;
    proton::get(m.properties().value(), props);
    for (const auto& [key, value] : props) out.attributes[key] = scalar_to_string(value);
  }
  out.delivery_count = m.delivery_count() + 1;
  if (m.creation_time().milliseconds() > 0) {
    out.enqueued_time = time_point(milliseconds(m.creation_time().milliseconds()));
  }
  return out;
}

error map_condition(const proton::error_condition& condition, failure_context context) {
  // Both come from the peer: bounded and printable before they reach an error.
  const std::string name = peer_text(condition.name());
  const std::string description = peer_text(condition.description());
  std::string what = std::string(context.operation) + " '" + std::string(context.target) + "'";
  std::string msg = what + " failed: " + (description.empty() ? name : description);
  errc code = errc::provider_error;
  if (name == "amqp:not-found") {
    code = errc::queue_not_found;
    msg = what + " failed: the queue does not exist" +
          (description.empty() ? std::string() : " (" + description + ")");
  } else if (name == "amqp:unauthorized-access") {
    code = errc::permission;
  } else if (name == "amqp:resource-limit-exceeded") {
    code = errc::throttled;
  } else if (name == "amqp:link:message-size-exceeded") {
    code = errc::message_too_large;
  } else if (name == "amqp:precondition-failed" || name == "amqp:not-allowed") {
    // Brokers say not-allowed of a request the entity refuses (a message without the session
    // id a session queue needs, a send to a dead-letter queue): the caller's to fix.
    code = errc::invalid_argument;
  } else if (name == "amqp:invalid-field" || name == "amqp:decode-error" ||
             name == "amqp:not-implemented" || name == "amqp:frame-size-too-small") {
    code = errc::protocol_error;
  } else if (starts_with(name, "amqp:connection:") || starts_with(name, "amqp:session:") ||
             name == "amqp:link:detach-forced" || name == "amqp:link:stolen" ||
             name == "amqp:internal-error" || starts_with(name, "proton:")) {
    code = errc::connection_failed;
  }
  error e{code, std::move(msg), name};
  // Link or connection losses are worth retrying on a fresh link even where the default
  // classification for the code would say otherwise.
  if (code == errc::connection_failed) e.kind = error_kind::transient;
  return e;
}

error map_transport_error(const proton::error_condition& condition, failure_context context) {
  const std::string name = peer_text(condition.name());
  const std::string description = peer_text(condition.description());
  std::string what = std::string(context.operation) + " '" + std::string(context.target) + "'";
  if (name == "amqp:unauthorized-access") {
    return error{errc::permission, what + " failed: authentication refused (" + description + ")",
                 name};
  }
  std::string msg = what + " failed: " + (description.empty() ? name : description);
  if (description.find("SSL") != std::string::npos ||
      description.find("certificate") != std::string::npos) {
    msg += " (TLS: check the server certificate, the CA file and the host name)";
  }
  error e{errc::connection_failed, std::move(msg), name};
  e.kind = error_kind::transient;
  return e;
}

}  // namespace qrt::amqp::detail
