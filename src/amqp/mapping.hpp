// Pure conversions between qrt's types and AMQP 1.0 (Proton) types: no I/O, no threads, so they
// are unit-tested without a broker (test/unit/amqp/mapping_test.cpp).
// Internal to qrt: the generic amqp provider and the Service Bus provider use the error mapping
// and id_to_string. Messages travel through message_codec.hpp; to_proton / from_proton are the
// same mapping in Proton's types, kept as the independent reference the codec is tested (and
// benchmarked) against — the connection never calls them (ADR 0032).
#pragma once

#include <proton/error_condition.hpp>
#include <proton/message.hpp>
#include <qrt/error.hpp>
#include <qrt/message.hpp>
#include <string>
#include <string_view>

namespace qrt::amqp::detail {

/// Builds the AMQP message for `m`: the body as one data section (binary), message-id,
/// correlation-id, content-type, subject, group-id (= session), TTL (header), and the attributes
/// as application properties (string values), creation-time = now. `m.id` must already be set
/// by the caller.
proton::message to_proton(const message& m);

/// Reads an AMQP message into qrt's shape. The body is read from a data section (binary), or
/// from an amqp-value holding a string, symbol or binary (what many other clients send); any
/// other amqp-value is kept as its AMQP text rendering, so nothing is dropped silently.
/// Application properties become attributes; non-string values are rendered as text.
/// delivery_count is the header's count + 1 (qrt counts the first delivery as 1).
/// enqueued_time is the sender's creation-time (to_proton sets it) until the provider finds a
/// broker annotation (x-opt-enqueued-time); receipt and sequence number are the provider's.
received_message from_proton(const proton::message& m);

/// Message-id / correlation-id as text: strings as they are, ulong and uuid in their canonical
/// text form, binary as lowercase hex.
std::string id_to_string(const proton::message_id& id);

/// What a queue operation was doing when the peer refused it; used in error messages.
struct failure_context {
  std::string_view operation;  ///< "send to", "receive from", "settle on", "connect to"
  std::string_view target;     ///< queue name or endpoint (never credentials)
};

/// Maps an AMQP error condition (link detach, connection close, rejected outcome) onto qrt::error,
/// keeping the condition name as provider_code and its description in the message:
///   amqp:not-found                      -> queue_not_found
///   amqp:unauthorized-access            -> permission
///   amqp:resource-limit-exceeded        -> throttled
///   amqp:link:message-size-exceeded     -> message_too_large
///   amqp:connection:forced, amqp:connection:framing-error, transport errors -> connection_failed
///   amqp:link:detach-forced, amqp:link:stolen, amqp:session:* -> connection_failed (transient:
///                                          the link is gone, a new one can be attached)
///   amqp:invalid-field, amqp:decode-error, amqp:not-implemented, amqp:not-allowed ->
///   protocol_error amqp:precondition-failed            -> invalid_argument anything else ->
///   provider_error
error map_condition(const proton::error_condition& condition, failure_context context);

/// The error for a transport failure (socket refused, reset, TLS or SASL failure).
/// SASL failures map to permission; TLS verification failures say so.
error map_transport_error(const proton::error_condition& condition, failure_context context);

}  // namespace qrt::amqp::detail
