// What the message codec's tests share: Proton as the reference encoder and decoder, a message
// with every field set, and the checks that compare a decoded message with from_proton's.
#pragma once

#include <gtest/gtest.h>
#include <proton/codec.h>

#include <algorithm>
#include <proton/binary.hpp>
#include <proton/decimal.hpp>
#include <proton/message.hpp>
#include <proton/message_id.hpp>
#include <proton/scalar.hpp>
#include <proton/symbol.hpp>
#include <proton/timestamp.hpp>
#include <proton/types.hpp>
#include <proton/uuid.hpp>
#include <proton/value.hpp>
#include <string>
#include <vector>

#include "amqp/mapping.hpp"
#include "amqp/message_codec.hpp"

namespace qrt::amqp::test {

using namespace std::chrono_literals;
using namespace qrt::amqp::detail;

using bytes = std::vector<std::uint8_t>;

inline std::span<const std::uint8_t> span_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

inline std::string proton_encode(const proton::message& m) {
  std::vector<char> out;
  m.encode(out);
  return std::string(out.begin(), out.end());
}

inline proton::message proton_decode(const std::string& encoded) {
  proton::message m;
  m.decode(std::vector<char>(encoded.begin(), encoded.end()));
  return m;
}

inline qrt::time_point at_ms(std::int64_t ms) {
  return qrt::time_point(std::chrono::milliseconds(ms));
}

inline qrt::message full_message() {
  qrt::message m;
  for (int i = 0; i < 256; ++i) m.body.push_back(static_cast<char>(i));
  m.id = "id-1";
  m.correlation_id = "corr-1";
  m.content_type = "application/json";
  m.subject = "order.created";
  m.session = qrt::session_id::from("customer-9");
  m.time_to_live = 1500ms;
  m.attributes = {{"a", "1"}, {"b", ""}, {"c", "x=y"}};
  return m;
}

inline std::string encode(const qrt::message& m, const encode_extras& extras = {}) {
  std::string out;
  encode_message(m, extras, out);
  return out;
}

inline decoded_message decode(const std::string& encoded) {
  auto r = decode_message(span_of(encoded));
  if (!r) ADD_FAILURE() << r.error().to_string();
  return r ? *r : decoded_message{};
}

/// The error decode_message gives for `input`; fails the test when it decodes.
inline qrt::error decode_error(const bytes& input) {
  auto r = decode_message(input);
  if (r) {
    ADD_FAILURE() << "malformed input decoded";
    return {};
  }
  EXPECT_EQ(r.error().code, qrt::errc::protocol_error);
  EXPECT_FALSE(r.error().message.empty());
  return r.error();
}

/// Every field received_message carries that from_proton fills.
inline void expect_same(const qrt::received_message& ours, const qrt::received_message& reference) {
  EXPECT_EQ(ours.body, reference.body);
  EXPECT_EQ(ours.id, reference.id);
  EXPECT_EQ(ours.correlation_id, reference.correlation_id);
  EXPECT_EQ(ours.content_type, reference.content_type);
  EXPECT_EQ(ours.subject, reference.subject);
  EXPECT_EQ(ours.session.has_value(), reference.session.has_value());
  if (ours.session && reference.session) {
    EXPECT_EQ(ours.session->str(), reference.session->str());
  }
  EXPECT_EQ(ours.time_to_live, reference.time_to_live);
  EXPECT_EQ(ours.attributes, reference.attributes);
  EXPECT_EQ(ours.delivery_count, reference.delivery_count);
  EXPECT_EQ(ours.enqueued_time, reference.enqueued_time);
}

}  // namespace qrt::amqp::test
