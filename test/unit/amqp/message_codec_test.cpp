// The Proton-free AMQP message codec, checked against Qpid Proton as the independent reference:
// what encode_message writes Proton reads with the same fields as to_proton's message; what
// Proton writes decode_message reads as from_proton does. Batches are checked in
// message_codec_batch_test.cpp, malformed input in message_codec_malformed_test.cpp.
#include <gtest/gtest.h>

#include "amqp/value_reader.hpp"
#include "message_codec_support.hpp"

namespace {

using namespace qrt::amqp::test;

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

TEST(amqp_message_codec, the_reader_skips_a_null_and_nothing_else) {
  const bytes input{0x40, 0x43, 0x40};
  std::string problem;
  qrt::amqp::detail::codec::reader r(input.data(), input.size(), 0, problem);
  EXPECT_TRUE(r.skip_null());
  EXPECT_FALSE(r.skip_null()) << "a uint0 is not a null";
  qrt::amqp::detail::codec::value_view v;
  ASSERT_TRUE(r.next(v));
  EXPECT_EQ(v.code, 0x43);
  EXPECT_EQ(v.offset, 1u);
  EXPECT_TRUE(r.skip_null());
  EXPECT_TRUE(r.at_end());
  EXPECT_FALSE(r.skip_null()) << "past the end";
  EXPECT_TRUE(problem.empty());
}

TEST(amqp_message_codec, the_reader_gives_a_described_values_inner_value_as_a_second_read_would) {
  using namespace qrt::amqp::detail::codec;
  // A data section (0x00 0x53 0x75, vbin8 of 2 bytes), then a plain uint.
  const bytes input{0x00, 0x53, 0x75, 0xA0, 0x02, 'h', 'i', 0x52, 0x07};
  std::string problem;
  reader r(input.data(), input.size(), 0, problem);
  value_view section, inner;
  ASSERT_TRUE(r.next_described(section, inner));
  EXPECT_EQ(section.code, described_code);
  EXPECT_EQ(section.descriptor, 0x75u);
  value_view again;
  reader content = inside(section, input.data(), problem);
  ASSERT_TRUE(content.next(again));
  EXPECT_EQ(inner.code, again.code);
  EXPECT_EQ(inner.offset, again.offset);
  EXPECT_EQ(inner.data, again.data);
  EXPECT_EQ(inner.size, again.size);
  EXPECT_EQ(inner.bytes(), "hi");

  value_view plain, untouched;
  untouched.code = 0x99;
  ASSERT_TRUE(r.next_described(plain, untouched));
  EXPECT_EQ(plain.code, smalluint_code);
  EXPECT_EQ(untouched.code, 0x99) << "not a described value: no inner value";
  EXPECT_TRUE(r.at_end());
  EXPECT_FALSE(r.next_described(plain, untouched));
  EXPECT_NE(problem.find("truncated"), std::string::npos);
}

TEST(amqp_message_codec, decoding_into_a_fresh_message_gives_what_decode_message_returns) {
  const std::string encoded = encode(
      full_message(),
      {.creation_time = at_ms(42), .scheduled_enqueue_time = at_ms(7), .partition_key = "p"});
  const decoded_message returned = decode(encoded);
  decoded_message into;
  ASSERT_TRUE(decode_message_into(span_of(encoded), into));
  expect_same(into.message, returned.message);
  EXPECT_EQ(into.message.time_to_live, returned.message.time_to_live);
  EXPECT_EQ(into.annotations.scheduled_enqueue_time, returned.annotations.scheduled_enqueue_time);
  EXPECT_EQ(into.annotations.partition_key, returned.annotations.partition_key);

  decoded_message refused;
  const bytes truncated(encoded.begin(), encoded.end() - 1);
  auto r = decode_message_into(truncated, refused);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, decode_message(truncated).error().message);
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

}  // namespace
