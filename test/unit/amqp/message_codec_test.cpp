// The Proton-free AMQP message codec, checked against Qpid Proton as the independent reference:
// what encode_message writes Proton reads with the same fields as to_proton's message; what
// Proton writes decode_message reads as from_proton does; batches split back into their
// messages (read with Proton's C data codec too); malformed input gives a protocol_error.
#include "amqp/message_codec.hpp"

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

namespace {

using namespace std::chrono_literals;
using namespace qrt::amqp::detail;

using bytes = std::vector<std::uint8_t>;

std::span<const std::uint8_t> span_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string proton_encode(const proton::message& m) {
  std::vector<char> out;
  m.encode(out);
  return std::string(out.begin(), out.end());
}

proton::message proton_decode(const std::string& encoded) {
  proton::message m;
  m.decode(std::vector<char>(encoded.begin(), encoded.end()));
  return m;
}

qrt::time_point at_ms(std::int64_t ms) {
  return qrt::time_point(std::chrono::milliseconds(ms));
}

qrt::message full_message() {
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

std::string encode(const qrt::message& m, const encode_extras& extras = {}) {
  std::string out;
  encode_message(m, extras, out);
  return out;
}

decoded_message decode(const std::string& encoded) {
  auto r = decode_message(span_of(encoded));
  if (!r) ADD_FAILURE() << r.error().to_string();
  return r ? *r : decoded_message{};
}

/// The error decode_message gives for `input`; fails the test when it decodes.
qrt::error decode_error(const bytes& input) {
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
void expect_same(const qrt::received_message& ours, const qrt::received_message& reference) {
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

// ---------------------------------------------------------------------------------------------
// encode_message, read by Proton

TEST(amqp_message_codec, proton_reads_what_encode_message_writes) {
  const qrt::message m = full_message();
  const auto wire = proton_decode(encode(m, {.creation_time = at_ms(1'700'000'000'123)}));
  EXPECT_TRUE(wire.durable());
  EXPECT_EQ(wire.ttl().milliseconds(), 1500u);
  EXPECT_EQ(wire.body().type(), proton::BINARY);
  const auto body = proton::get<proton::binary>(wire.body());
  EXPECT_EQ(std::string(body.begin(), body.end()), m.body);
  EXPECT_EQ(wire.id().type(), proton::STRING);
  EXPECT_EQ(proton::get<std::string>(wire.id()), "id-1");
  EXPECT_EQ(proton::get<std::string>(wire.correlation_id()), "corr-1");
  EXPECT_EQ(wire.content_type(), "application/json");
  EXPECT_EQ(wire.subject(), "order.created");
  EXPECT_EQ(wire.group_id(), "customer-9");
  EXPECT_EQ(wire.creation_time().milliseconds(), 1'700'000'000'123);
  EXPECT_EQ(wire.expiry_time().milliseconds(), 0);
  EXPECT_TRUE(wire.message_annotations().empty());
  std::map<std::string, proton::scalar> props;
  proton::get(wire.properties().value(), props);
  ASSERT_EQ(props.size(), 3u);
  for (const auto& [k, v] : props) {
    EXPECT_EQ(v.type(), proton::STRING) << k;  // string values, as to_proton writes them
    EXPECT_EQ(proton::get<std::string>(v), m.attributes.at(k));
  }
}

TEST(amqp_message_codec, agrees_with_to_proton_field_by_field) {
  for (qrt::message m : {full_message(), qrt::message{}}) {
    m.id = m.id.empty() ? "only-an-id" : m.id;
    const auto extras = encode_extras{.creation_time = at_ms(1'600'000'000'000)};
    proton::message reference = to_proton(m);
    reference.creation_time(proton::timestamp(1'600'000'000'000));
    const std::string theirs = proton_encode(reference);
    const std::string ours = encode(m, extras);
    // The smallest encodings and no trailing nulls: never longer than Proton's.
    EXPECT_LE(ours.size(), theirs.size());
    const auto a = proton_decode(ours);
    const auto b = proton_decode(theirs);
    EXPECT_EQ(a.durable(), b.durable());
    EXPECT_EQ(a.ttl(), b.ttl());
    EXPECT_EQ(a.priority(), b.priority());
    EXPECT_EQ(a.id(), b.id());
    EXPECT_EQ(a.correlation_id(), b.correlation_id());
    EXPECT_EQ(a.content_type(), b.content_type());
    EXPECT_EQ(a.subject(), b.subject());
    EXPECT_EQ(a.group_id(), b.group_id());
    EXPECT_EQ(a.creation_time(), b.creation_time());
    EXPECT_EQ(a.expiry_time(), b.expiry_time());
    EXPECT_EQ(a.body(), b.body());
    EXPECT_EQ(a.properties().value(), b.properties().value());
    EXPECT_EQ(proton::to_string(a.message_annotations().value()),
              proton::to_string(b.message_annotations().value()));
    expect_same(from_proton(a), from_proton(b));
    // And both read the same through our decoder.
    expect_same(decode(ours).message, decode(theirs).message);
  }
}

TEST(amqp_message_codec, creation_time_defaults_to_now) {
  const auto before = std::chrono::time_point_cast<std::chrono::milliseconds>(qrt::clock::now());
  const auto wire = proton_decode(encode(full_message()));
  const auto after = qrt::clock::now();
  const auto created = at_ms(wire.creation_time().milliseconds());
  EXPECT_GE(created, before);
  EXPECT_LE(created, after);
}

TEST(amqp_message_codec, extras_become_message_annotations_proton_reads) {
  qrt::message m = full_message();
  const auto wire = proton_decode(
      encode(m, {.scheduled_enqueue_time = at_ms(1'800'000'000'000), .partition_key = "pk-7"}));
  const auto scheduled =
      wire.message_annotations().get(proton::symbol("x-opt-scheduled-enqueue-time"));
  ASSERT_EQ(scheduled.type(), proton::TIMESTAMP);
  EXPECT_EQ(proton::get<proton::timestamp>(scheduled).milliseconds(), 1'800'000'000'000);
  const auto key = wire.message_annotations().get(proton::symbol("x-opt-partition-key"));
  ASSERT_EQ(key.type(), proton::STRING);
  EXPECT_EQ(proton::get<std::string>(key), "pk-7");
  EXPECT_EQ(from_proton(wire).body, m.body);
}

TEST(amqp_message_codec, large_fields_use_the_32_bit_encodings_proton_reads) {
  qrt::message m;
  m.body.assign(70'000, 'b');
  m.id = std::string(300, 'i');
  m.subject = std::string(1000, 's');
  for (int i = 0; i < 200; ++i) {
    m.attributes["key-" + std::to_string(i)] = std::string(static_cast<std::size_t>(i * 3), 'v');
  }
  m.attributes["long"] = std::string(5000, 'x');
  const std::string ours = encode(m, {.partition_key = std::string(400, 'p')});
  const auto back = from_proton(proton_decode(ours));
  EXPECT_EQ(back.body, m.body);
  EXPECT_EQ(back.id, m.id);
  EXPECT_EQ(back.subject, m.subject);
  EXPECT_EQ(back.attributes, m.attributes);
  const auto decoded = decode(ours);
  EXPECT_EQ(decoded.message.attributes, m.attributes);
  EXPECT_EQ(decoded.annotations.partition_key, std::string(400, 'p'));
}

TEST(amqp_message_codec, empty_message_and_zero_ttl_match_proton) {
  qrt::message m;
  m.id = "x";
  m.time_to_live = 0ms;  // to_proton passes 0 on, Proton writes no ttl: same here
  const auto extras = encode_extras{.creation_time = at_ms(5)};
  proton::message reference = to_proton(m);
  reference.creation_time(proton::timestamp(5));
  expect_same(decode(encode(m, extras)).message,
              from_proton(proton_decode(proton_encode(reference))));
  EXPECT_FALSE(decode(encode(m, extras)).message.time_to_live);
}

// ---------------------------------------------------------------------------------------------
// decode_message, reading what Proton writes

TEST(amqp_message_codec, round_trips_its_own_encoding) {
  const qrt::message m = full_message();
  const auto d = decode(encode(m, {.creation_time = at_ms(42),
                                   .scheduled_enqueue_time = at_ms(1'900'000'000'000),
                                   .partition_key = "p"}));
  EXPECT_EQ(d.message.body, m.body);
  EXPECT_EQ(d.message.id, m.id);
  EXPECT_EQ(d.message.correlation_id, m.correlation_id);
  EXPECT_EQ(d.message.content_type, m.content_type);
  EXPECT_EQ(d.message.subject, m.subject);
  ASSERT_TRUE(d.message.session);
  EXPECT_EQ(d.message.session->str(), "customer-9");
  EXPECT_EQ(d.message.time_to_live, m.time_to_live);
  EXPECT_EQ(d.message.attributes, m.attributes);
  EXPECT_EQ(d.message.delivery_count, 1u);
  EXPECT_EQ(d.message.enqueued_time, at_ms(42));
  EXPECT_EQ(d.annotations.scheduled_enqueue_time, at_ms(1'900'000'000'000));
  EXPECT_EQ(d.annotations.partition_key, "p");
}

TEST(amqp_message_codec, reads_a_proton_message_as_from_proton_does) {
  proton::message p = to_proton(full_message());
  p.delivery_count(4);
  p.reply_to("somewhere");
  p.to("queue");
  p.user("user");
  p.expiry_time(proton::timestamp(1'234));
  p.content_encoding("gzip");
  p.group_sequence(3);
  p.reply_to_group_id("rg");
  p.priority(7);
  p.first_acquirer(true);
  const std::string encoded = proton_encode(p);
  const auto ours = decode(encoded).message;
  const auto reference = from_proton(proton_decode(encoded));
  expect_same(ours, reference);
  EXPECT_EQ(ours.delivery_count, 5u);
}

TEST(amqp_message_codec, renders_application_property_values_as_from_proton_does) {
  proton::message p;
  p.body(proton::binary("x"));
  p.inferred(true);
  auto& props = p.properties();
  props.put("bool", true);
  props.put("false", false);
  props.put("ubyte", std::uint8_t(200));
  props.put("byte", std::int8_t(-5));
  props.put("ushort", std::uint16_t(65000));
  props.put("short", std::int16_t(-300));
  props.put("uint", std::uint32_t(4'000'000'000u));
  props.put("small_uint", std::uint32_t(7));
  props.put("int", std::int32_t(-70000));
  props.put("small_int", std::int32_t(-7));
  props.put("ulong", std::uint64_t(18'446'744'073'709'551'615ull));
  props.put("long", std::int64_t(-9'000'000'000));
  props.put("small_long", std::int64_t(-9));
  props.put("float", 0.1f);
  props.put("double", 1e300);
  props.put("double_int", 3.0);
  props.put("timestamp", proton::timestamp(1'700'000'000'123));
  props.put("char", wchar_t(0x263a));
  props.put("symbol", proton::symbol("sym"));
  props.put("binary", proton::binary("b\x01y"));
  props.put("string", std::string("st"));
  props.put("uuid",
            proton::uuid::copy("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"));
  proton::decimal32 d32;
  proton::decimal64 d64;
  proton::decimal128 d128;
  for (std::size_t i = 0; i < d32.size(); ++i) d32[i] = static_cast<std::uint8_t>(i + 1);
  for (std::size_t i = 0; i < d64.size(); ++i) d64[i] = static_cast<std::uint8_t>(i + 0x11);
  for (std::size_t i = 0; i < d128.size(); ++i) d128[i] = static_cast<std::uint8_t>(i + 0xa1);
  props.put("decimal32", d32);
  props.put("decimal64", d64);
  props.put("decimal128", d128);
  props.put("null", proton::scalar());
  const std::string encoded = proton_encode(p);
  const auto ours = decode(encoded).message.attributes;
  const auto reference = from_proton(proton_decode(encoded)).attributes;
  EXPECT_EQ(ours.size(), 26u);
  for (const auto& [k, v] : reference) {
    ASSERT_TRUE(ours.contains(k)) << k;
    EXPECT_EQ(ours.at(k), v) << k;
  }
  EXPECT_EQ(ours.size(), reference.size());
}

TEST(amqp_message_codec, a_repeated_application_property_keeps_the_last_value_as_proton_does) {
  const std::string encoded(
      "\x00\x53\x74\xc1\x0d\x04\xa1\x01k\xa1\x01"
      "1\xa1\x01k\xa1\x01"
      "2",
      18);
  EXPECT_EQ(decode(encoded).message.attributes, from_proton(proton_decode(encoded)).attributes);
  EXPECT_EQ(decode(encoded).message.attributes.at("k"), "2");
}

TEST(amqp_message_codec, renders_ids_of_every_type_as_id_to_string_does) {
  const std::vector<proton::message_id> ids{
      proton::message_id(std::string("text")), proton::message_id(std::uint64_t(1234567890123)),
      proton::message_id(
          proton::uuid::copy("\xde\xad\xbe\xef\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b")),
      proton::message_id(proton::binary(std::string("\x00\xff\x10", 3))),
      proton::message_id(std::uint64_t(0))};
  for (const auto& id : ids) {
    proton::message p;
    p.id(id);
    p.correlation_id(id);
    const std::string encoded = proton_encode(p);
    const auto ours = decode(encoded).message;
    EXPECT_EQ(ours.id, id_to_string(id));
    EXPECT_EQ(ours.correlation_id, id_to_string(id));
    EXPECT_EQ(ours.id, from_proton(proton_decode(encoded)).id);
  }
}

TEST(amqp_message_codec, reads_amqp_value_bodies_as_from_proton_does) {
  std::vector<proton::value> bodies{
      proton::value(std::string("a string body")),
      proton::value(proton::symbol("sym-body")),
      proton::value(proton::binary(std::string("bin\x00ary", 7))),
      proton::value(std::int32_t(5)),
      proton::value(std::vector<proton::value>{proton::value(1), proton::value(std::string("x"))}),
      proton::value(
          std::map<std::string, proton::value>{{"a", proton::value(proton::symbol("s"))},
                                               {"b", proton::value(proton::binary("x\x01"))}}),
      proton::value()};
  for (const auto& body : bodies) {
    proton::message p;
    p.body(body);  // not inferred: an amqp-value section, as other clients send
    const std::string encoded = proton_encode(p);
    EXPECT_EQ(decode(encoded).message.body, from_proton(proton_decode(encoded)).body)
        << proton::to_string(body);
  }
}

TEST(amqp_message_codec, renders_other_bodies_as_proton_does) {
  using namespace std::string_literals;
  const std::vector<std::string> bodies{
      // amqp-value: arrays of int, string, symbol, bool, null, uint0; an empty array; lists
      "\x00\x53\x77\xe0\x05\x03\x54\x01\x02\x03"s,
      "\x00\x53\x77\xe0\x06\x02\xa1\x01x\x01y"s,
      "\x00\x53\x77\xe0\x06\x02\xa3\x01x\x01y"s,
      "\x00\x53\x77\xe0\x04\x02\x56\x01\x00"s,
      "\x00\x53\x77\xe0\x02\x02\x40"s,
      "\x00\x53\x77\xe0\x02\x02\x43"s,
      "\x00\x53\x77\xe0\x02\x00\x54"s,
      "\x00\x53\x77\xe0\x04\x01\xc0\x01\x00"s,
      // text needing escapes, binary, symbols with and without odd characters
      "\x00\x53\x77\xc0\x0d\x02\xa1\x06\x22\x5c\x27\x7e\x0a\x80\xa0\x02\x22\x5c"s,
      "\x00\x53\x77\xc0\x0b\x02\xa3\x03"
      "a b\xa3\x03"
      "a\x22"
      "b"s,
      // described values, numeric and symbolic descriptors
      "\x00\x53\x77\x00\x53\x99\xa1\x01v"s,
      "\x00\x53\x77\x00\xa3\x03"
      "abc\x45"s,
      "\x00\x53\x77\x00\x53\x99\xc1\x05\x02\xa3\x01k\x43"s,
      // amqp-sequence, timestamp, double, uuid values
      "\x00\x53\x76\xc0\x03\x02\x41\x42"s,
      "\x00\x53\x77\x83\x00\x00\x00\x00\x00\x00\x00\x05"s,
      "\x00\x53\x77\xc0\x0a\x01\x82\x3f\xb9\x99\x99\x99\x99\x99\x9a"s,
  };
  for (const auto& encoded : bodies) {
    EXPECT_EQ(decode(encoded).message.body, from_proton(proton_decode(encoded)).body)
        << ::testing::PrintToString(encoded);
  }
}

TEST(amqp_message_codec, reads_broker_annotations_and_skips_unknown_ones) {
  proton::message p;
  p.body(proton::binary("x"));
  p.inferred(true);
  auto& a = p.message_annotations();
  a.put(proton::symbol("x-opt-unknown-list"),
        proton::value(std::vector<proton::value>{proton::value(1), proton::value(2)}));
  a.put(proton::symbol("x-opt-sequence-number"), std::int64_t(98765432109));
  a.put(proton::symbol("x-opt-unknown-map"),
        proton::value(std::map<std::string, std::string>{{"k", "v"}}));
  a.put(proton::symbol("x-opt-enqueued-time"), proton::timestamp(1'700'000'000'001));
  a.put(proton::symbol("x-opt-locked-until"), proton::timestamp(1'700'000'060'002));
  a.put(proton::symbol("x-opt-scheduled-enqueue-time"), proton::timestamp(1'700'000'100'003));
  a.put(proton::symbol("x-opt-deadletter-source"), std::string("orders"));
  a.put(proton::symbol("x-opt-enqueue-sequence-number"), proton::uuid::random());
  a.put(std::uint64_t(77), std::string("ulong keys are reserved"));
  p.delivery_count(2);
  const auto d = decode(proton_encode(p));
  EXPECT_EQ(d.annotations.sequence_number, 98765432109);
  EXPECT_EQ(d.annotations.enqueued_time, at_ms(1'700'000'000'001));
  EXPECT_EQ(d.annotations.locked_until, at_ms(1'700'000'060'002));
  EXPECT_EQ(d.annotations.scheduled_enqueue_time, at_ms(1'700'000'100'003));
  EXPECT_EQ(d.annotations.deadletter_source, "orders");
  EXPECT_FALSE(d.annotations.partition_key);
  EXPECT_EQ(d.message.body, "x");
  EXPECT_EQ(d.message.delivery_count, 3u);
}

TEST(amqp_message_codec, a_locked_until_past_the_clock_range_saturates) {
  // Service Bus sends DateTime.MaxValue (year 9999) for some locks: more than system_clock holds.
  proton::message p;
  p.message_annotations().put(proton::symbol("x-opt-locked-until"),
                              proton::timestamp(253'402'300'799'999));
  EXPECT_EQ(decode(proton_encode(p)).annotations.locked_until, qrt::time_point::max());
}

TEST(amqp_message_codec, skips_sections_it_does_not_use) {
  // delivery-annotations, a footer, a section named by an unknown ulong and by a symbol.
  const std::string data_body = std::string("\x00\x53\x75\xa0\x02hi", 7);
  const std::string delivery_annotations("\x00\x53\x71\xc1\x07\x02\xa3\x01k\xa1\x01v", 12);
  const std::string footer("\x00\x53\x78\xc1\x01\x00", 6);
  const std::string unknown_numbered("\x00\x53\x99\xd0\x00\x00\x00\x05\x00\x00\x00\x01\x40", 13);
  const std::string unknown_named = std::string("\x00\xa3\x05x:abc\x45", 9);
  const std::string header_by_name = std::string("\x00\xa3\x10", 3) + "amqp:header:list" +
                                     std::string("\xc0\x07\x05\x40\x40\x40\x40\x52\x02", 9);
  const auto d = decode(delivery_annotations + unknown_numbered + header_by_name + unknown_named +
                        data_body + footer);
  EXPECT_EQ(d.message.body, "hi");
  EXPECT_EQ(d.message.delivery_count, 3u);
}

TEST(amqp_message_codec, concatenates_several_data_sections) {
  const std::string two("\x00\x53\x75\xa0\x03one\x00\x53\x75\xb0\x00\x00\x00\x03two", 19);
  EXPECT_EQ(decode(two).message.body, "onetwo");
}

// ---------------------------------------------------------------------------------------------
// Batches

/// The sections of a payload as Proton's C data codec reads them: (descriptor, binary) pairs.
std::vector<std::pair<std::uint64_t, std::string>> proton_sections(const std::string& payload) {
  std::vector<std::pair<std::uint64_t, std::string>> out;
  pn_data_t* data = pn_data(0);
  const char* p = payload.data();
  std::size_t left = payload.size();
  while (left > 0) {
    pn_data_clear(data);
    const ssize_t used = pn_data_decode(data, p, left);
    if (used <= 0) {
      ADD_FAILURE() << "Proton cannot decode the section at offset " << payload.size() - left;
      break;
    }
    pn_data_rewind(data);
    pn_data_next(data);
    EXPECT_TRUE(pn_data_is_described(data));
    pn_data_enter(data);
    pn_data_next(data);
    const std::uint64_t descriptor = pn_data_get_ulong(data);
    pn_data_next(data);
    std::string value;
    if (pn_data_type(data) == PN_BINARY) {
      const pn_bytes_t b = pn_data_get_binary(data);
      value.assign(b.start, b.size);
    }
    out.emplace_back(descriptor, value);
    p += used;
    left -= static_cast<std::size_t>(used);
  }
  pn_data_free(data);
  return out;
}

TEST(amqp_message_codec, batch_holds_each_message_as_one_data_section) {
  std::vector<std::string> encoded;
  std::vector<qrt::message> messages;
  for (int i = 0; i < 5; ++i) {
    qrt::message m = full_message();
    m.id = "batch-" + std::to_string(i);
    m.body.assign(static_cast<std::size_t>(i * 100), static_cast<char>('a' + i));
    messages.push_back(m);
    encoded.push_back(encode(m));
  }
  const encode_extras extras{.partition_key = "pk"};
  const batch_envelope env = batch_envelope::of_first(messages.front(), extras);
  std::string payload = "prefix";  // appends
  encode_batch(encoded, env, payload);
  ASSERT_EQ(payload.substr(0, 6), "prefix");
  payload.erase(0, 6);

  std::size_t expected_size = batch_envelope_size(env);
  for (const auto& e : encoded) expected_size += batch_entry_size(e.size());
  EXPECT_EQ(payload.size(), expected_size);

  // Proton's reading: annotations, properties, then one data section per message.
  const auto sections = proton_sections(payload);
  ASSERT_EQ(sections.size(), 2 + encoded.size());
  EXPECT_EQ(sections[0].first, 0x72u);
  EXPECT_EQ(sections[1].first, 0x73u);
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    EXPECT_EQ(sections[2 + i].first, 0x75u);
    EXPECT_EQ(sections[2 + i].second, encoded[i]);
    // Each inner message is a complete message Proton reads.
    EXPECT_EQ(from_proton(proton_decode(sections[2 + i].second)).id, messages[i].id);
  }

  // The envelope carries the first message's id, session and partition key.
  const auto envelope = decode(payload);
  EXPECT_EQ(envelope.message.id, "batch-0");
  ASSERT_TRUE(envelope.message.session);
  EXPECT_EQ(envelope.message.session->str(), "customer-9");
  EXPECT_EQ(envelope.annotations.partition_key, "pk");

  auto split = split_batch(span_of(payload));
  ASSERT_TRUE(split);
  ASSERT_EQ(split->size(), encoded.size());
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    EXPECT_EQ(std::string(reinterpret_cast<const char*>((*split)[i].data()), (*split)[i].size()),
              encoded[i]);
    EXPECT_EQ(decode_message((*split)[i])->message.id, messages[i].id);
  }
}

TEST(amqp_message_codec, batch_sizes_cover_the_8_bit_and_32_bit_forms) {
  for (const std::size_t body : {0u, 100u, 240u, 255u, 256u, 300u, 70'000u}) {
    qrt::message m;
    m.id = "i";
    m.body.assign(body, 'z');
    const std::string e = encode(m);
    for (const batch_envelope& env :
         {batch_envelope{}, batch_envelope{"id", std::nullopt, ""},
          batch_envelope{"", qrt::session_id::from("s"), std::string(300, 'k')}}) {
      std::string payload;
      encode_batch(std::span<const std::string>(&e, 1), env, payload);
      EXPECT_EQ(payload.size(), batch_envelope_size(env) + batch_entry_size(e.size()));
      const auto sections = proton_sections(payload);
      ASSERT_FALSE(sections.empty());
      EXPECT_EQ(sections.back().second, e);
      EXPECT_EQ(decode(payload).message.id, env.message_id);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Malformed input: a protocol_error naming the problem, never a crash or an over-read.

TEST(amqp_message_codec, every_truncation_of_a_message_is_refused_or_ends_on_a_section) {
  const std::string whole = encode(full_message(), {.scheduled_enqueue_time = at_ms(1)});
  std::size_t refused = 0;
  for (std::size_t n = 0; n < whole.size(); ++n) {
    // A heap copy of exactly n bytes, so ASan sees any read past the end.
    const bytes prefix(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
    auto r = decode_message(prefix);
    if (!r) {
      ++refused;
      EXPECT_EQ(r.error().code, qrt::errc::protocol_error);
      EXPECT_NE(r.error().message.find("malformed AMQP message"), std::string::npos);
    }
  }
  // Only cuts at the 4 section boundaries (and not the empty input) decode.
  EXPECT_EQ(refused, whole.size() - 4);
}

TEST(amqp_message_codec, names_each_kind_of_malformed_input) {
  struct malformed_case {
    const char* name;
    bytes input;
    const char* says;
  };
  const std::vector<malformed_case> cases{
      {"empty", {}, "empty payload"},
      {"not a section", {0x45}, "where a message section was expected"},
      {"unknown constructor", {0x00, 0x53, 0x75, 0x57}, "unknown type constructor 0x57"},
      {"truncated descriptor", {0x00, 0x80, 0x00}, "needs 8 bytes"},
      {"binary past the end",
       {0x00, 0x53, 0x75, 0xb0, 0x00, 0x00, 0x10, 0x00, 'x'},
       "claims 4096 bytes"},
      {"size field cut off", {0x00, 0x53, 0x75, 0xb0, 0x00}, "is cut off"},
      {"absurd list count",
       {0x00, 0x53, 0x70, 0xd0, 0x00, 0x00, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0x40},
       "claims 4294967295 elements"},
      {"odd map count",
       {0x00, 0x53, 0x74, 0xc1, 0x04, 0x03, 0x40, 0x40, 0x40},
       "odd element count"},
      {"compound too small for its count",
       {0x00, 0x53, 0x70, 0xd0, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00},
       "too small"},
      {"descriptor of a wrong type", {0x00, 0xa1, 0x01, 'x', 0x40}, "ulong or symbol expected"},
      {"header not a list", {0x00, 0x53, 0x70, 0x40}, "header section at offset 0 holds a null"},
      {"ttl of a wrong type", {0x00, 0x53, 0x70, 0xc0, 0x04, 0x03, 0x40, 0x40, 0x41}, "header.ttl"},
      {"message-id of a wrong type", {0x00, 0x53, 0x73, 0xc0, 0x02, 0x01, 0x45}, "message-id"},
      {"subject of a wrong type",
       {0x00, 0x53, 0x73, 0xc0, 0x05, 0x04, 0x40, 0x40, 0x40, 0x43},
       "properties.subject"},
      {"creation-time of a wrong type",
       {0x00, 0x53, 0x73, 0xc0, 0x0b, 0x0a, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40,
        0x43},
       "creation-time"},
      {"application property holding a list",
       {0x00, 0x53, 0x74, 0xc1, 0x05, 0x02, 0xa1, 0x01, 'k', 0x45},
       "application property 'k'"},
      {"application property key not a string",
       {0x00, 0x53, 0x74, 0xc1, 0x04, 0x02, 0x43, 0xa1, 0x00},
       "key"},
      {"data section holding a string", {0x00, 0x53, 0x75, 0xa1, 0x01, 'x'}, "binary expected"},
      {"amqp-value after data",
       {0x00, 0x53, 0x75, 0xa0, 0x01, 'x', 0x00, 0x53, 0x77, 0xa1, 0x01, 'y'},
       "follows another body section"},
      {"list element past the list",
       {0x00, 0x53, 0x73, 0xc0, 0x03, 0x01, 0xa1, 0x05, 'a', 'b', 'c', 'd', 'e'},
       "claims 5 bytes"},
      {"array of zero-width values with an absurd count",
       {0x00, 0x53, 0x77, 0xf0, 0x00, 0x00, 0x00, 0x05, 0x7f, 0xff, 0xff, 0xff, 0x40},
       "would exceed"},
  };
  for (const auto& c : cases) {
    const auto e = decode_error(c.input);
    EXPECT_NE(e.message.find(c.says), std::string::npos) << c.name << ": " << e.message;
  }
}

TEST(amqp_message_codec, deep_nesting_is_refused_not_recursed_into) {
  // 100'000 nested descriptors, and a body of 100'000 nested lists.
  bytes descriptors(100'000, 0x00);
  EXPECT_NE(decode_error(descriptors).message.find("nested"), std::string::npos);
  bytes lists{0x00, 0x53, 0x77};
  for (int i = 0; i < 100'000; ++i) {
    lists.insert(lists.end(), {0xc0, 0x00, 0x01});
  }
  // Sizes are left unpatched: the inner sizes are wrong, so either complaint is fine; build a
  // correct deep nest too.
  (void)decode_message(lists);
  bytes nest;
  for (int depth = 0; depth < 200; ++depth) {
    bytes outer{0xd0};
    const std::uint32_t size = static_cast<std::uint32_t>(nest.size() + 4);
    for (int s = 24; s >= 0; s -= 8) outer.push_back(static_cast<std::uint8_t>(size >> s));
    outer.insert(outer.end(), {0x00, 0x00, 0x00, static_cast<std::uint8_t>(nest.empty() ? 0 : 1)});
    outer.insert(outer.end(), nest.begin(), nest.end());
    nest = outer;
  }
  bytes deep{0x00, 0x53, 0x77};
  deep.insert(deep.end(), nest.begin(), nest.end());
  EXPECT_NE(decode_error(deep).message.find("nested more than 32 deep"), std::string::npos);
}

/// An amqp-value body holding a list of `arrays` arrays, each of `claimed` nulls. A null takes
/// no bytes in an array, so each array is 10 bytes however many elements it claims, and its text
/// ("@PN_NULL[null, null, ...]") is 6 bytes per element.
bytes zero_width_array_bomb(std::uint32_t arrays, std::uint32_t claimed) {
  const auto put32 = [](bytes& out, std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
  };
  bytes out{0x00, 0x53, 0x77, 0xd0};
  put32(out, 4 + arrays * 10);  // list32 size: its count and the arrays
  put32(out, arrays);
  for (std::uint32_t i = 0; i < arrays; ++i) {
    out.push_back(0xf0);  // array32: size 5 (count + element constructor), `claimed` nulls
    put32(out, 5);
    put32(out, claimed);
    out.push_back(0x40);
  }
  return out;
}

TEST(amqp_message_codec, a_message_rendering_to_more_than_its_output_budget_is_refused) {
  // 1'000 arrays in ~10 KB, each claiming as many nulls as the payload has bytes: before the
  // budget this rendered to ~60 MB (a 100 KB payload, to gigabytes).
  const bytes bomb = zero_width_array_bomb(1'000, 10'000);
  ASSERT_GE(bomb.size(), 10'000u);
  auto r = decode_message(bomb);
  ASSERT_FALSE(r) << "decoded to " << r->message.body.size() << " bytes";
  EXPECT_EQ(r.error().code, qrt::errc::protocol_error);
  EXPECT_EQ(r.error().provider_code, "amqp:decode-error");
  EXPECT_NE(r.error().message.find("AMQP message refused: its decoded form would exceed " +
                                   std::to_string(decode_output_budget(bomb.size())) + " bytes"),
            std::string::npos)
      << r.error().message;

  // One array claiming more than the budget allows on its own.
  EXPECT_NE(decode_error(zero_width_array_bomb(1, 1'000'000)).message.find("would exceed"),
            std::string::npos);
}

TEST(amqp_message_codec, the_output_budget_covers_the_whole_message_not_each_part) {
  // Each array alone renders well within the budget; together they exceed it.
  const bytes bomb = zero_width_array_bomb(40, 400);
  ASSERT_GE(bomb.size(), 400u);
  const std::size_t one_array_text = std::string_view("@PN_NULL[]").size() + 400 * 6;
  ASSERT_LT(one_array_text, decode_output_budget(bomb.size()));
  ASSERT_GT(40 * one_array_text, decode_output_budget(bomb.size()));
  EXPECT_NE(decode_error(bomb).message.find("would exceed"), std::string::npos);

  // The amqp-sequence sections of one message share it too: each holds a list of one array8
  // of 255 nulls (10 bytes, about 1.5 KB of text); 100 of them exceed the budget together.
  bytes sequences;
  for (int i = 0; i < 100; ++i) {
    sequences.insert(sequences.end(), {0x00, 0x53, 0x76, 0xc0, 0x05, 0x01, 0xe0, 0x02, 0xff, 0x40});
  }
  const bytes first_ten(sequences.begin(), sequences.begin() + 100);
  ASSERT_TRUE(decode_message(first_ten));
  EXPECT_NE(decode_error(sequences).message.find("would exceed"), std::string::npos);
}

TEST(amqp_message_codec, legitimate_large_arrays_still_decode) {
  // 100'000 ints (smallint elements, 1 byte each) render to about 6 bytes per input byte.
  bytes ints{0x00, 0x53, 0x77, 0xf0};
  const std::uint32_t n = 100'000;
  const auto put32 = [](bytes& out, std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
  };
  put32(ints, 4 + 1 + n);
  put32(ints, n);
  ints.push_back(0x54);  // smallint
  for (std::uint32_t i = 0; i < n; ++i) ints.push_back(static_cast<std::uint8_t>(0x80 | i));
  const std::string encoded(ints.begin(), ints.end());
  const auto d = decode(encoded);
  EXPECT_TRUE(d.message.body.starts_with("@PN_INT[-128, -127, ")) << d.message.body.substr(0, 40);
  EXPECT_TRUE(d.message.body.ends_with("]"));
  EXPECT_EQ(static_cast<std::size_t>(std::count(d.message.body.begin(), d.message.body.end(), ',')),
            n - 1);
  EXPECT_LT(d.message.body.size(), decode_output_budget(encoded.size()));

  // Thousands of nulls in a small message fit the budget's floor.
  const bytes nulls = zero_width_array_bomb(1, 10'000);
  auto r = decode_message(nulls);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->message.body.size(), std::string_view("[@PN_NULL[]]").size() + 10'000 * 6 - 2);
  EXPECT_EQ(r->message.body,
            from_proton(proton_decode(std::string(nulls.begin(), nulls.end()))).body);

  // A large binary body is its own size, whatever the budget's multiple.
  qrt::message big;
  big.body.assign(4 << 20, 'b');
  EXPECT_EQ(decode(encode(big)).message.body.size(), big.body.size());
}

TEST(amqp_message_codec, split_batch_refuses_garbage) {
  EXPECT_FALSE(split_batch(bytes{0x00, 0x53, 0x75, 0xa1, 0x01, 'x'}));
  EXPECT_FALSE(split_batch(bytes{0x00, 0x53, 0x75, 0xa0, 0x09, 'x'}));
  EXPECT_FALSE(split_batch(bytes{0x41}));
  auto empty = split_batch(bytes{});
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

}  // namespace
