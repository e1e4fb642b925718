#include "providers/memory/log/record.hpp"

#include <gtest/gtest.h>

#include <random>

#include "providers/memory/log/crc32c.hpp"

namespace qrt::memory::log {
namespace {

TEST(Crc32c, MatchesTheStandardCheckValue) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0u);
}

TEST(Crc32c, KnownVectorsFromRfc3720) {
  // iSCSI (RFC 3720 B.4): 32 bytes of zeros, of 0xFF, and an ascending sequence.
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(crc32c(ascending), 0x46DD794Eu);
}

TEST(Crc32c, IncrementalEqualsOneShotForEverySplit) {
  std::string data;
  for (int i = 0; i < 100; ++i) data.push_back(static_cast<char>(i * 37 + 11));
  const std::uint32_t whole = crc32c(data);
  for (std::size_t split = 0; split <= data.size(); ++split) {
    const std::uint32_t first = crc32c(0, data.data(), split);
    EXPECT_EQ(crc32c(first, data.data() + split, data.size() - split), whole) << split;
  }
}

stored_message full_message() {
  stored_message m;
  m.sequence = 42;
  m.enqueued_time = time_point{std::chrono::nanoseconds{1'700'000'000'123'456'789LL}};
  m.delivery_count = 3;
  m.dead_letter = dead_letter_info{"MaxDeliveryCountExceeded", "tried 10 times"};
  m.content.body = std::string("bin\0ary\xFF", 8);
  m.content.attributes = {{"a", "1"}, {"empty", ""}};
  m.content.session = session_id::from("sess-1");
  m.content.correlation_id = "corr";
  m.content.content_type = "application/json";
  m.content.subject = "subj";
  m.content.id = "id-42";
  m.content.time_to_live = milliseconds{60'000};
  m.content.scheduled_enqueue_time = time_point{std::chrono::seconds{1'800'000'000}};
  return m;
}

record decode_single(const std::string& frame) {
  const frame_view f = read_frame(frame);
  EXPECT_EQ(f.status, frame_status::ok) << f.problem;
  EXPECT_EQ(f.frame_size, frame.size());
  auto r = decode_record(f.payload);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  return r ? *r : record{};
}

TEST(Crc32c, HardwareAndPortableAgreeOnEveryLengthAndAlignment) {
  std::mt19937 random(7);
  std::string data(300, '\0');
  for (auto& c : data) c = static_cast<char>(random());
  for (std::size_t offset = 0; offset < 8; ++offset)
    for (std::size_t size = 0; offset + size <= data.size(); size += 1 + size / 8)
      ASSERT_EQ(crc32c(0x1234u, data.data() + offset, size),
                crc32c_portable(0x1234u, data.data() + offset, size))
          << "offset " << offset << " size " << size;
  EXPECT_EQ(crc32c_portable(0, "123456789", 9), 0xE3069283u);
}

TEST(Record, EnqueuedRoundTripsEveryField) {
  const stored_message m = full_message();
  std::string frame;
  ASSERT_TRUE(append_enqueued(frame, queue_name::from("orders").dead_letter(), m));
  const auto r = std::get<enqueued_record>(decode_single(frame));
  EXPECT_EQ(r.queue, queue_name::from("orders").dead_letter());
  EXPECT_EQ(r.message.sequence, m.sequence);
  EXPECT_EQ(r.message.enqueued_time, m.enqueued_time);
  EXPECT_EQ(r.message.delivery_count, m.delivery_count);
  ASSERT_TRUE(r.message.dead_letter);
  EXPECT_EQ(r.message.dead_letter->reason, m.dead_letter->reason);
  EXPECT_EQ(r.message.dead_letter->description, m.dead_letter->description);
  EXPECT_EQ(r.message.content.body, m.content.body);
  EXPECT_EQ(r.message.content.attributes, m.content.attributes);
  EXPECT_EQ(r.message.content.session, m.content.session);
  EXPECT_EQ(r.message.content.correlation_id, m.content.correlation_id);
  EXPECT_EQ(r.message.content.content_type, m.content.content_type);
  EXPECT_EQ(r.message.content.subject, m.content.subject);
  EXPECT_EQ(r.message.content.id, m.content.id);
  EXPECT_EQ(r.message.content.time_to_live, m.content.time_to_live);
  EXPECT_EQ(r.message.content.scheduled_enqueue_time, m.content.scheduled_enqueue_time);
}

TEST(Record, EnqueuedRoundTripsAMinimalMessage) {
  stored_message m;
  m.sequence = 1;
  std::string frame;
  ASSERT_TRUE(append_enqueued(frame, queue_name::from("q"), m));
  const auto r = std::get<enqueued_record>(decode_single(frame));
  EXPECT_FALSE(r.message.dead_letter);
  EXPECT_FALSE(r.message.content.session);
  EXPECT_FALSE(r.message.content.time_to_live);
  EXPECT_FALSE(r.message.content.scheduled_enqueue_time);
  EXPECT_TRUE(r.message.content.body.empty());
}

TEST(Record, QueueCreatedRoundTripsOptionsAndNextSequence) {
  queue_options o;
  o.lock_duration = milliseconds{1234};
  o.max_delivery_count = 7;
  o.default_time_to_live = milliseconds{99};
  o.dead_letter_on_expiration = false;
  o.requires_session = true;
  o.max_size = 500;
  o.max_message_bytes = 4096;
  std::string frame;
  ASSERT_TRUE(append_queue_created(frame, queue_name::from("q.fifo"), o, 77));
  const auto r = std::get<queue_created_record>(decode_single(frame));
  EXPECT_EQ(r.queue, queue_name::from("q.fifo"));
  EXPECT_EQ(r.options.lock_duration, o.lock_duration);
  EXPECT_EQ(r.options.max_delivery_count, 7u);
  EXPECT_EQ(r.options.default_time_to_live, o.default_time_to_live);
  EXPECT_FALSE(r.options.dead_letter_on_expiration);
  EXPECT_TRUE(r.options.requires_session);
  EXPECT_EQ(r.options.max_size, 500u);
  EXPECT_EQ(r.options.max_message_bytes, 4096u);
  EXPECT_EQ(r.next_sequence, 77u);
}

TEST(Record, SmallRecordsRoundTrip) {
  const auto q = queue_name::from("q");
  std::string frames;
  ASSERT_TRUE(append_queue_deleted(frames, q));
  ASSERT_TRUE(append_delivered(frames, q, 5, 2));
  ASSERT_TRUE(append_removed(frames, q.dead_letter(), 9));
  ASSERT_TRUE(append_session_state(frames, q, session_id::from("s"), "state\0x"));

  std::vector<record> decoded;
  std::string_view rest = frames;
  while (!rest.empty()) {
    const frame_view f = read_frame(rest);
    ASSERT_EQ(f.status, frame_status::ok) << f.problem;
    auto r = decode_record(f.payload);
    ASSERT_TRUE(r);
    decoded.push_back(*r);
    rest.remove_prefix(f.frame_size);
  }
  ASSERT_EQ(decoded.size(), 4u);
  EXPECT_EQ(std::get<queue_deleted_record>(decoded[0]).queue, q);
  EXPECT_EQ(std::get<delivered_record>(decoded[1]).sequence, 5u);
  EXPECT_EQ(std::get<delivered_record>(decoded[1]).delivery_count, 2u);
  EXPECT_EQ(std::get<removed_record>(decoded[2]).queue, q.dead_letter());
  EXPECT_EQ(std::get<removed_record>(decoded[2]).sequence, 9u);
  EXPECT_EQ(std::get<session_state_record>(decoded[3]).session, session_id::from("s"));
  EXPECT_EQ(std::get<session_state_record>(decoded[3]).state, "state");
}

TEST(Frame, EveryTruncationIsIncompleteNeverOk) {
  std::string frame;
  ASSERT_TRUE(append_enqueued(frame, queue_name::from("q"), full_message()));
  for (std::size_t n = 0; n < frame.size(); ++n) {
    const frame_view f = read_frame(std::string_view(frame).substr(0, n));
    EXPECT_EQ(f.status, frame_status::incomplete) << n;
    EXPECT_FALSE(f.problem.empty());
  }
}

TEST(Frame, EverySingleBitFlipIsDetected) {
  std::string frame;
  ASSERT_TRUE(append_enqueued(frame, queue_name::from("q"), full_message()));
  for (std::size_t byte = 0; byte < frame.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = frame;
      damaged[byte] = static_cast<char>(damaged[byte] ^ (1 << bit));
      const frame_view f = read_frame(damaged);
      EXPECT_NE(f.status, frame_status::ok) << "byte " << byte << " bit " << bit;
    }
  }
}

TEST(Frame, ZeroFilledBytesAreNotAFrame) {
  EXPECT_EQ(read_frame(std::string(64, '\0')).status, frame_status::corrupt);
}

TEST(Decode, RejectsGarbageWithAReason) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string payload(static_cast<std::size_t>(rng() % 64), '\0');
    for (char& c : payload) c = static_cast<char>(rng());
    auto r = decode_record(payload);
    if (!r) {
      EXPECT_EQ(r.error().code, errc::protocol_error);
      EXPECT_NE(r.error().message.find("persistence log record"), std::string::npos);
    }
  }
}

TEST(Decode, NamesTheProblem) {
  auto unknown = decode_record(std::string("\x63", 1));
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("unknown record type 99"), std::string::npos);

  auto empty = decode_record("");
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message.find("truncated record type"), std::string::npos);

  std::string frame;
  ASSERT_TRUE(append_removed(frame, queue_name::from("q"), 1));
  std::string payload = frame.substr(frame_header_size) + "x";
  auto trailing = decode_record(payload);
  ASSERT_FALSE(trailing);
  EXPECT_NE(trailing.error().message.find("trailing bytes"), std::string::npos);

  // A valid frame whose queue name is not a valid name.
  std::string bad_name = frame.substr(frame_header_size);
  bad_name[5] = '!';
  auto invalid = decode_record(bad_name);
  ASSERT_FALSE(invalid);
  EXPECT_NE(invalid.error().message.find("invalid queue name"), std::string::npos);
}

TEST(Decode, EveryPrefixOfAPayloadFailsCleanly) {
  std::string frame;
  ASSERT_TRUE(append_enqueued(frame, queue_name::from("q"), full_message()));
  const std::string payload = frame.substr(frame_header_size);
  for (std::size_t n = 0; n < payload.size(); ++n)
    EXPECT_FALSE(decode_record(std::string_view(payload).substr(0, n))) << n;
}

// The provider refuses a message before it changes anything when its record could be too large;
// that check must count exactly what the encoder writes.
TEST(Record, EnqueuedPayloadSizeIsExactlyWhatTheEncoderWrites) {
  stored_message with_everything = full_message();
  stored_message minimal;
  minimal.sequence = 1;
  for (const stored_message* m : {&with_everything, &minimal}) {
    for (const auto& q : {queue_name::from("orders"), queue_name::from("orders").dead_letter()}) {
      std::string frame;
      ASSERT_TRUE(append_enqueued(frame, q, *m));
      const dead_letter_info* info = m->dead_letter ? &*m->dead_letter : nullptr;
      EXPECT_EQ(enqueued_payload_size(q, m->content, info), frame.size() - frame_header_size);
    }
  }
}

TEST(Record, OversizeRecordIsRefusedAndLeavesTheBufferAsItWas) {
  stored_message m;
  m.sequence = 1;
  m.content.body.assign(max_payload_size, 'b');
  std::string out = "earlier bytes";
  auto r = append_enqueued(out, queue_name::from("q"), m);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::message_too_large);
  EXPECT_EQ(out, "earlier bytes");
}

// A damaged or hostile record may carry any duration; one the provider could not have written
// (it would overflow once added to a clock reading) is corruption, not a value to use.
TEST(Decode, ImpossibleDurationsAreCorruption) {
  queue_options o;
  o.lock_duration = milliseconds{1000};
  std::string frame;
  ASSERT_TRUE(append_queue_created(frame, queue_name::from("q"), o, 0));
  std::string payload = frame.substr(frame_header_size);
  // type (1) + name length (4) + "q" (1) + dead-letter flag (1): then the lock duration.
  const std::size_t at = 7;
  for (std::size_t i = 0; i < 8; ++i) payload[at + i] = i == 7 ? '\x7f' : '\xff';
  auto r = decode_record(payload);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("impossible lock duration"), std::string::npos)
      << r.error().message;
}

TEST(SegmentHeader, RoundTripsAndRejectsForeignFiles) {
  const std::string h = segment_header(12345);
  ASSERT_EQ(h.size(), segment_header_size);
  auto index = parse_segment_header(h);
  ASSERT_TRUE(index);
  EXPECT_EQ(*index, 12345u);
  EXPECT_FALSE(parse_segment_header("QRTLOG0"));
  EXPECT_FALSE(parse_segment_header("NOTALOG!12345678"));
}

}  // namespace
}  // namespace qrt::memory::log
