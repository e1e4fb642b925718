// The message codec refusing input: every truncation, each kind of malformed section, nesting
// past the limit and output past the budget give a protocol_error naming the problem, never a
// crash or an over-read; split_batch refuses garbage the same way.
#include <gtest/gtest.h>
#include <proton/codec.h>

#include "message_codec_support.hpp"

namespace {

using namespace qrt::amqp::test;

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
