// Service Bus batches from the message codec: the envelope and each message as one data
// section, read back with Proton's C data codec and with split_batch.
#include <gtest/gtest.h>
#include <proton/codec.h>

#include "message_codec_support.hpp"

namespace {

using namespace qrt::amqp::test;

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

}  // namespace
