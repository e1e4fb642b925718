// The AMQP message and error mapping, without a socket: messages are encoded to AMQP bytes and
// decoded again, as a peer would see them.
#include "amqp/mapping.hpp"

#include <gtest/gtest.h>

#include <proton/binary.hpp>
#include <proton/error_condition.hpp>
#include <proton/message.hpp>
#include <proton/message_id.hpp>
#include <proton/symbol.hpp>
#include <proton/uuid.hpp>
#include <proton/value.hpp>
#include <vector>

#include "../support/shown_text.hpp"

namespace {

using namespace std::chrono_literals;
using qrt::amqp::detail::from_proton;
using qrt::amqp::detail::map_condition;
using qrt::amqp::detail::map_transport_error;
using qrt::amqp::detail::to_proton;

/// What a peer receives: the message as encoded on the wire, decoded into a fresh message.
proton::message over_the_wire(const proton::message& m) {
  std::vector<char> bytes;
  m.encode(bytes);
  proton::message out;
  out.decode(bytes);
  return out;
}

TEST(amqp_mapping, full_message_round_trips_through_the_wire_encoding) {
  qrt::message m;
  for (int i = 0; i < 256; ++i) m.body.push_back(static_cast<char>(i));
  m.id = "id-1";
  m.correlation_id = "corr-1";
  m.content_type = "application/json";
  m.subject = "order.created";
  m.session = qrt::session_id::from("customer-9");
  m.time_to_live = 1500ms;
  m.attributes = {{"a", "1"}, {"b", ""}, {"c", "x=y"}};

  const auto back = from_proton(over_the_wire(to_proton(m)));
  EXPECT_EQ(back.body, m.body);
  EXPECT_EQ(back.id, "id-1");
  EXPECT_EQ(back.correlation_id, "corr-1");
  EXPECT_EQ(back.content_type, "application/json");
  EXPECT_EQ(back.subject, "order.created");
  ASSERT_TRUE(back.session);
  EXPECT_EQ(back.session->str(), "customer-9");
  ASSERT_TRUE(back.time_to_live);
  EXPECT_EQ(*back.time_to_live, 1500ms);
  EXPECT_EQ(back.attributes, m.attributes);
  EXPECT_EQ(back.delivery_count, 1u);
}

TEST(amqp_mapping, body_is_sent_as_a_data_section) {
  qrt::message m;
  m.body = "abc";
  std::vector<char> bytes;
  to_proton(m).encode(bytes);
  // A data section is the described type 0x75 followed by vbin8 (0xa0): 00 53 75 a0 03 'abc'.
  const std::string wire(bytes.begin(), bytes.end());
  EXPECT_NE(wire.find(std::string("\x00\x53\x75\xa0\x03"
                                  "abc",
                                  8)),
            std::string::npos);
  // ...and not as an amqp-value (0x77).
  EXPECT_EQ(wire.find(std::string("\x00\x53\x77", 3)), std::string::npos);
}

TEST(amqp_mapping, an_amqp_value_string_body_from_another_client_is_readable) {
  proton::message m;
  m.body(std::string("hello from a peer"));
  EXPECT_EQ(from_proton(over_the_wire(m)).body, "hello from a peer");

  proton::message sym;
  sym.body(proton::symbol("sym"));
  EXPECT_EQ(from_proton(over_the_wire(sym)).body, "sym");

  proton::message bin;  // binary as an amqp-value (not inferred): still the bytes
  bin.body(proton::binary(std::string("\x01\x02", 2)));
  EXPECT_EQ(from_proton(over_the_wire(bin)).body, std::string("\x01\x02", 2));
}

TEST(amqp_mapping, other_amqp_values_are_kept_as_text_not_dropped) {
  proton::message m;
  m.body(std::int64_t{42});
  EXPECT_EQ(from_proton(over_the_wire(m)).body, "42");
}

TEST(amqp_mapping, non_string_ids_and_properties_become_text) {
  proton::message m;
  m.id(proton::message_id(std::uint64_t{7}));
  m.correlation_id(proton::message_id(proton::binary(std::string("\xab\x01", 2))));
  m.properties().put("count", std::int32_t{3});
  m.properties().put("flag", true);
  const auto back = from_proton(over_the_wire(m));
  EXPECT_EQ(back.id, "7");
  EXPECT_EQ(back.correlation_id, "ab01");
  EXPECT_EQ(back.attributes.at("count"), "3");
  EXPECT_EQ(back.attributes.at("flag"), "true");
}

TEST(amqp_mapping, delivery_count_counts_the_first_delivery_as_one) {
  proton::message m;
  m.delivery_count(2);  // two earlier failed deliveries
  EXPECT_EQ(from_proton(over_the_wire(m)).delivery_count, 3u);
}

TEST(amqp_mapping, a_group_id_that_is_no_valid_session_is_kept_as_an_attribute) {
  proton::message m;
  m.group_id(std::string(200, 'g'));  // longer than a session id may be
  const auto back = from_proton(over_the_wire(m));
  EXPECT_FALSE(back.session);
  EXPECT_EQ(back.attributes.at("amqp.group-id"), std::string(200, 'g'));
}

TEST(amqp_mapping, absent_fields_stay_empty) {
  const auto back = from_proton(over_the_wire(to_proton(qrt::message{})));
  EXPECT_TRUE(back.body.empty());
  EXPECT_TRUE(back.id.empty());
  EXPECT_FALSE(back.session);
  EXPECT_FALSE(back.time_to_live);
  EXPECT_TRUE(back.attributes.empty());
}

TEST(amqp_error_mapping, conditions_map_to_qrt_codes_and_keep_the_amqp_name) {
  struct row {
    const char* condition;
    qrt::errc code;
  };
  const row rows[] = {
      {"amqp:not-found", qrt::errc::queue_not_found},
      {"amqp:unauthorized-access", qrt::errc::permission},
      {"amqp:resource-limit-exceeded", qrt::errc::throttled},
      {"amqp:link:message-size-exceeded", qrt::errc::message_too_large},
      {"amqp:connection:forced", qrt::errc::connection_failed},
      {"amqp:link:detach-forced", qrt::errc::connection_failed},
      {"amqp:invalid-field", qrt::errc::protocol_error},
      {"amqp:precondition-failed", qrt::errc::invalid_argument},
      {"amqp:not-allowed", qrt::errc::invalid_argument},
      {"vendor:something-else", qrt::errc::provider_error},
  };
  for (const auto& r : rows) {
    const auto e = map_condition(proton::error_condition(r.condition, "details here"),
                                 {"receive from", "orders"});
    EXPECT_EQ(e.code, r.code) << r.condition;
    EXPECT_EQ(e.provider_code, r.condition);
    EXPECT_NE(e.message.find("orders"), std::string::npos) << e.message;
  }
  EXPECT_EQ(
      map_condition(proton::error_condition("amqp:resource-limit-exceeded", ""), {"x", "y"}).kind,
      qrt::error_kind::throttled);
  EXPECT_TRUE(map_condition(proton::error_condition("amqp:connection:forced", ""), {"x", "y"})
                  .is_transient());
}

// A peer's condition name and description reach error::provider_code and the message, and from
// there logs and terminals: whatever bytes the peer sent, both come out valid UTF-8 without
// control characters. Before, bytes from 0x80 up went through as they were (a C1 control such as
// U+009B, malformed UTF-8, a character cut in half at the length limit).
TEST(amqp_error_mapping, a_peers_hostile_bytes_reach_the_error_fit_to_show) {
  const std::string hostile(qrt::test::hostile_text);
  const std::string cut = std::string(1023, 'd') + "\xc3\xa9";
  for (const auto& e :
       {map_condition(proton::error_condition("amqp:" + hostile, hostile), {"send to", "orders"}),
        map_condition(proton::error_condition("amqp:not-found", cut), {"send to", "orders"}),
        map_transport_error(proton::error_condition(hostile, hostile), {"connect to", "amqp://h"}),
        map_transport_error(proton::error_condition("amqp:unauthorized-access", hostile),
                            {"connect to", "amqp://h"})}) {
    EXPECT_TRUE(qrt::test::fit_to_show(e.message)) << e.message;
    EXPECT_TRUE(qrt::test::fit_to_show(e.provider_code)) << e.provider_code;
  }
}

TEST(amqp_error_mapping, transport_errors) {
  const auto refused = map_transport_error(
      proton::error_condition("proton:io", "connection refused"), {"connect to", "amqp://h:1"});
  EXPECT_EQ(refused.code, qrt::errc::connection_failed);
  EXPECT_TRUE(refused.is_transient());
  const auto sasl = map_transport_error(
      proton::error_condition("amqp:unauthorized-access", "Authentication failed [mech=PLAIN]"),
      {"connect to", "amqp://h:1"});
  EXPECT_EQ(sasl.code, qrt::errc::permission);
  const auto tls =
      map_transport_error(proton::error_condition("amqp:connection:framing-error",
                                                  "SSL Failure: certificate verify failed"),
                          {"connect to", "amqps://h:1"});
  EXPECT_EQ(tls.code, qrt::errc::connection_failed);
  EXPECT_NE(tls.message.find("TLS"), std::string::npos);
}

}  // namespace
