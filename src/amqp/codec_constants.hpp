// The numbers of AMQP 1.0's encoding that the message codec's files share (message_codec.hpp):
// type constructors (part 1.6), message section descriptors (part 3.2), and the message
// annotations qrt writes. Internal to the codec.
#pragma once

#include <cstdint>
#include <string_view>

namespace qrt::amqp::detail::codec {

enum code : std::uint8_t {
  described_code = 0x00,
  null_code = 0x40,
  true_code = 0x41,
  false_code = 0x42,
  uint0_code = 0x43,
  ulong0_code = 0x44,
  list0_code = 0x45,
  ubyte_code = 0x50,
  byte_code = 0x51,
  smalluint_code = 0x52,
  smallulong_code = 0x53,
  smallint_code = 0x54,
  smalllong_code = 0x55,
  boolean_code = 0x56,
  ushort_code = 0x60,
  short_code = 0x61,
  uint_code = 0x70,
  int_code = 0x71,
  float_code = 0x72,
  char_code = 0x73,
  decimal32_code = 0x74,
  ulong_code = 0x80,
  long_code = 0x81,
  double_code = 0x82,
  timestamp_code = 0x83,
  decimal64_code = 0x84,
  decimal128_code = 0x94,
  uuid_code = 0x98,
  vbin8_code = 0xa0,
  str8_code = 0xa1,
  sym8_code = 0xa3,
  vbin32_code = 0xb0,
  str32_code = 0xb1,
  sym32_code = 0xb3,
  list8_code = 0xc0,
  map8_code = 0xc1,
  list32_code = 0xd0,
  map32_code = 0xd1,
  array8_code = 0xe0,
  array32_code = 0xf0,
};

enum section : std::uint64_t {
  header_section = 0x70,
  delivery_annotations_section = 0x71,
  message_annotations_section = 0x72,
  properties_section = 0x73,
  application_properties_section = 0x74,
  data_section = 0x75,
  amqp_sequence_section = 0x76,
  amqp_value_section = 0x77,
  footer_section = 0x78,
};

constexpr std::string_view scheduled_enqueue_time_key = "x-opt-scheduled-enqueue-time";
constexpr std::string_view partition_key_key = "x-opt-partition-key";

}  // namespace qrt::amqp::detail::codec
