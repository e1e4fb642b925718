// outbound_frames: the batch format set on the right transfer frames, everything else passed
// through byte for byte. Frames are built by hand here; Proton's own decoder (pn_data) reads
// the rewritten performative back as an independent check.
#include "amqp/outbound_frames.hpp"

#include <gtest/gtest.h>
#include <proton/codec.h>

#include <cstring>
#include <string>
#include <vector>

namespace {

using qrt::amqp::detail::batch_message_format;
using qrt::amqp::detail::outbound_frames;
using qrt::amqp::detail::with_message_format;

std::string be32(std::uint32_t v) {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xFF));
  return s;
}

/// A frame: size, doff 2, type, channel, then `body`.
std::string frame(std::uint16_t channel, const std::string& body, char type = 0) {
  std::string f = be32(static_cast<std::uint32_t>(8 + body.size()));
  f += '\x02';
  f += type;
  f += static_cast<char>(channel >> 8);
  f += static_cast<char>(channel & 0xFF);
  return f + body;
}

std::string tag_of(std::uint64_t n) {
  std::string t(8, '\0');
  std::memcpy(t.data(), &n, 8);
  return t;
}

/// transfer(handle, delivery-id, delivery-tag, message-format 0, settled false, more) + payload,
/// as a list8 the way Proton writes it.
std::string transfer(std::uint8_t handle, std::uint8_t delivery_id, const std::string& tag,
                     bool more, const std::string& payload) {
  std::string fields;
  fields += "\x52";
  fields += static_cast<char>(handle);
  fields += "\x52";
  fields += static_cast<char>(delivery_id);
  fields += "\xA0";
  fields += static_cast<char>(tag.size());
  fields += tag;
  fields += "\x43";                  // message-format uint0
  fields += "\x42";                  // settled false
  fields += more ? "\x41" : "\x42";  // more
  std::string list = "\xC0";
  list += static_cast<char>(fields.size() + 1);
  list += '\x06';
  return std::string("\x00\x53\x14", 3) + list + fields + payload;
}

/// A continuation transfer: only the handle (the rest may be omitted), then payload.
std::string continuation(std::uint8_t handle, bool more, const std::string& payload) {
  std::string fields = "\x52";
  fields += static_cast<char>(handle);
  fields += "\x40\x40\x40\x40";
  fields += more ? "\x41" : "\x42";
  std::string list = "\xC0";
  list += static_cast<char>(fields.size() + 1);
  list += '\x06';
  return std::string("\x00\x53\x14", 3) + list + fields + payload;
}

struct decoded_transfer {
  std::uint32_t handle = 0;
  bool has_format = false;
  std::uint32_t format = 0;
  std::string tag;
  std::string payload;
};

/// Reads a transfer frame with Proton's decoder: the performative, then what follows it.
decoded_transfer decode(const std::string& f) {
  decoded_transfer out;
  EXPECT_GE(f.size(), 8u);
  std::uint32_t size = 0;
  for (int i = 0; i < 4; ++i) size = (size << 8) | static_cast<std::uint8_t>(f[i]);
  EXPECT_EQ(size, f.size()) << "frame size field does not match the frame";
  const std::size_t body = static_cast<std::uint8_t>(f[4]) * 4u;
  pn_data_t* data = pn_data(16);
  const ssize_t used = pn_data_decode(data, f.data() + body, f.size() - body);
  EXPECT_GT(used, 0) << "Proton cannot decode the performative";
  pn_data_rewind(data);
  EXPECT_TRUE(pn_data_next(data));
  EXPECT_EQ(pn_data_type(data), PN_DESCRIBED);
  pn_data_enter(data);
  pn_data_next(data);
  EXPECT_EQ(pn_data_get_ulong(data), 0x14u);
  pn_data_next(data);
  EXPECT_EQ(pn_data_type(data), PN_LIST);
  pn_data_enter(data);
  pn_data_next(data);
  out.handle = pn_data_get_uint(data);
  pn_data_next(data);  // delivery-id
  pn_data_next(data);  // delivery-tag
  if (pn_data_type(data) == PN_BINARY) {
    pn_bytes_t b = pn_data_get_binary(data);
    out.tag.assign(b.start, b.size);
  }
  if (pn_data_next(data) && pn_data_type(data) == PN_UINT) {
    out.has_format = true;
    out.format = pn_data_get_uint(data);
  }
  pn_data_free(data);
  out.payload = f.substr(body + static_cast<std::size_t>(used));
  return out;
}

/// Splits a stream into frames by their size fields (protocol headers kept whole).
std::vector<std::string> split(const std::string& stream) {
  std::vector<std::string> frames;
  std::size_t at = 0;
  while (at < stream.size()) {
    if (stream.compare(at, 4, "AMQP") == 0) {
      frames.push_back(stream.substr(at, 8));
      at += 8;
      continue;
    }
    std::uint32_t size = 0;
    for (int i = 0; i < 4; ++i) size = (size << 8) | static_cast<std::uint8_t>(stream[at + i]);
    frames.push_back(stream.substr(at, size));
    at += size;
  }
  return frames;
}

/// Formats batch tags only (tag number 7 and 9 here); counts how often it is asked.
struct batch_tags {
  int asked = 0;
  outbound_frames::format_lookup lookup() {
    return [this](std::span<const std::uint8_t> tag) -> std::optional<std::uint32_t> {
      ++asked;
      const std::string t(reinterpret_cast<const char*>(tag.data()), tag.size());
      if (t == tag_of(7) || t == tag_of(9)) return batch_message_format;
      return std::nullopt;
    };
  }
};

const std::string amqp_header("AMQP\x00\x01\x00\x00", 8);
const std::string sasl_header("AMQP\x03\x01\x00\x00", 8);
const std::string open_frame = frame(0, std::string("\x00\x53\x10\xC0\x03\x01\xA1\x00", 8));
const std::string heartbeat = frame(0, "");

TEST(OutboundFrames, BatchTransferGetsTheFormatAndKeepsEverythingElse) {
  batch_tags tags;
  outbound_frames frames(tags.lookup());
  const std::string in = frame(3, transfer(2, 5, tag_of(7), false, "batch-body"));
  std::string out;
  frames.write(in, out);
  const auto got = decode(out);
  EXPECT_TRUE(got.has_format);
  EXPECT_EQ(got.format, batch_message_format);
  EXPECT_EQ(got.handle, 2u);
  EXPECT_EQ(got.tag, tag_of(7));
  EXPECT_EQ(got.payload, "batch-body");
  EXPECT_EQ(out.substr(6, 2), std::string("\x00\x03", 2)) << "channel changed";
  EXPECT_EQ(tags.asked, 1);
}

TEST(OutboundFrames, EverythingElsePassesThroughByteForByte) {
  batch_tags tags;
  outbound_frames frames(tags.lookup());
  const std::string sasl_frame = frame(0, std::string("\x00\x53\x41\x45", 4), '\x01');
  const std::string in = sasl_header + sasl_frame + amqp_header + open_frame + heartbeat +
                         frame(1, transfer(0, 1, tag_of(8), false, "plain message"));
  std::string out;
  frames.write(in, out);
  EXPECT_EQ(out, in);
  EXPECT_EQ(frames.pending(), 0u);
}

TEST(OutboundFrames, AnySplitOfTheStreamGivesTheSameOutput) {
  const std::string in = amqp_header + open_frame +
                         frame(1, transfer(0, 1, tag_of(8), false, "one")) +
                         frame(1, transfer(0, 2, tag_of(9), false, "two")) + heartbeat;
  batch_tags whole_tags;
  outbound_frames whole(whole_tags.lookup());
  std::string expected;
  whole.write(in, expected);
  ASSERT_NE(expected, in) << "the batch transfer was not rewritten";
  for (std::size_t cut = 1; cut < in.size(); ++cut) {
    batch_tags tags;
    outbound_frames frames(tags.lookup());
    std::string out;
    frames.write(std::span<const char>(in.data(), cut), out);
    frames.write(std::span<const char>(in.data() + cut, in.size() - cut), out);
    ASSERT_EQ(out, expected) << "split at " << cut;
    ASSERT_EQ(frames.pending(), 0u);
  }
}

TEST(OutboundFrames, EveryFrameOfAMultiFrameBatchGetsTheFormatAndOnlyThose) {
  batch_tags tags;
  outbound_frames frames(tags.lookup());
  const std::string in = frame(1, transfer(4, 1, tag_of(7), true, "part1")) +
                         frame(1, continuation(4, true, "part2")) +
                         frame(1, continuation(4, false, "part3")) +
                         frame(1, transfer(4, 2, tag_of(8), false, "next, not a batch"));
  std::string out;
  frames.write(in, out);
  const auto parts = split(out);
  ASSERT_EQ(parts.size(), 4u);
  std::string payload;
  for (std::size_t i = 0; i < 3; ++i) {
    const auto got = decode(parts[i]);
    EXPECT_TRUE(got.has_format) << "frame " << i;
    EXPECT_EQ(got.format, batch_message_format) << "frame " << i;
    payload += got.payload;
  }
  EXPECT_EQ(payload, "part1part2part3");
  EXPECT_EQ(parts[3], frame(1, transfer(4, 2, tag_of(8), false, "next, not a batch")));
  EXPECT_EQ(tags.asked, 2) << "asked again for a continuation frame";
}

TEST(OutboundFrames, WithNoFormatPendingTransfersPassThroughUnasked) {
  batch_tags tags;
  outbound_frames frames(tags.lookup());
  const std::string in = amqp_header + open_frame +
                         frame(1, transfer(0, 1, tag_of(7), false, "would be a batch")) + heartbeat;
  std::string out;
  frames.write(std::span<const char>(in.data(), 20), out, false);
  frames.write(std::span<const char>(in.data() + 20, in.size() - 20), out, false);
  EXPECT_EQ(out, in);
  EXPECT_EQ(tags.asked, 0);
  EXPECT_EQ(frames.pending(), 0u);
}

TEST(OutboundFrames, ABatchBeingRewrittenKeepsItsFormatWhenNoneIsPending) {
  batch_tags tags;
  outbound_frames frames(tags.lookup());
  std::string out;
  frames.write(frame(1, transfer(4, 1, tag_of(7), true, "part1")), out);
  // The lookup has answered for the batch: nothing is pending any more, but its
  // continuation frames are still re-encoded, and what follows it is not.
  const std::string rest = frame(1, continuation(4, false, "part2")) +
                           frame(1, transfer(4, 2, tag_of(9), false, "not asked"));
  frames.write(rest, out, false);
  const auto parts = split(out);
  ASSERT_EQ(parts.size(), 3u);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto got = decode(parts[i]);
    EXPECT_TRUE(got.has_format) << "frame " << i;
    EXPECT_EQ(got.format, batch_message_format) << "frame " << i;
  }
  EXPECT_EQ(parts[2], frame(1, transfer(4, 2, tag_of(9), false, "not asked")));
  EXPECT_EQ(tags.asked, 1);
}

TEST(OutboundFrames, ATransferWithoutAFormatFieldGetsOne) {
  // handle, delivery-id, delivery-tag only (the list stops before message-format).
  std::string fields = std::string("\x43\x43\xA0\x08", 4) + tag_of(9);
  std::string list = "\xC0";
  list += static_cast<char>(fields.size() + 1);
  list += '\x03';
  const auto rewritten =
      with_message_format(frame(0, std::string("\x00\x53\x14", 3) + list + fields + "body"), 42);
  ASSERT_TRUE(rewritten);
  const auto got = decode(*rewritten);
  EXPECT_TRUE(got.has_format);
  EXPECT_EQ(got.format, 42u);
  EXPECT_EQ(got.tag, tag_of(9));
  EXPECT_EQ(got.payload, "body");
}

TEST(OutboundFrames, MalformedFramesAreNotRewrittenAndGarbageIsNotDropped) {
  EXPECT_FALSE(with_message_format(open_frame, batch_message_format)) << "not a transfer";
  std::string truncated_list = frame(0, std::string("\x00\x53\x14\xC0\x30\x06\x43", 7));
  EXPECT_FALSE(with_message_format(truncated_list, batch_message_format));
  std::string bad_constructor = frame(0, std::string("\x00\x53\x14\xC0\x02\x01\x3F", 7));
  EXPECT_FALSE(with_message_format(bad_constructor, batch_message_format));

  batch_tags tags;
  outbound_frames frames(tags.lookup());
  // A size field under 8 cannot be a frame: from there on bytes pass through untouched.
  const std::string garbage = std::string("\x00\x00\x00\x03", 4) + "whatever follows";
  const std::string in = amqp_header + truncated_list + garbage;
  std::string out;
  frames.write(in, out);
  frames.write(std::string_view("more"), out);
  EXPECT_EQ(out, in + "more");
}

}  // namespace
