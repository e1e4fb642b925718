// Torn writes and corruption: what recovery does with damaged segment files.
#include "log_test_support.hpp"
#include "providers/memory/log/crc32c.hpp"

namespace qrt::memory::log {
namespace {

using testing::make_message;
using testing::options_for;
using testing::orders;
using testing::read_file;
using testing::scratch_dir;
using testing::segment_files;
using testing::write_file;

/// Writes `count` messages into one segment and returns its path and the offset at which each
/// message's record starts (the file's size before it).
struct written_log {
  std::filesystem::path segment;
  std::vector<std::uint64_t> record_offsets;
};

/// Where each record of a segment starts, by walking its frames.
std::vector<std::uint64_t> record_starts(const std::string& segment) {
  std::vector<std::uint64_t> out;
  std::size_t pos = segment_header_size;
  while (pos < segment.size()) {
    const frame_view f = read_frame(std::string_view(segment).substr(pos));
    if (f.status != frame_status::ok) break;
    out.push_back(pos);
    pos += f.frame_size;
  }
  return out;
}

written_log write_messages(const std::filesystem::path& dir, int count) {
  written_log out;
  auto o = persistent_log::open(options_for(dir));
  EXPECT_TRUE(o);
  auto& log = *o->log;
  EXPECT_TRUE(log.wait_flushed(log.queue_created(orders, {})));
  out.segment = segment_files(dir).back();
  for (int i = 1; i <= count; ++i) {
    EXPECT_TRUE(log.wait_flushed(log.enqueued(
        orders, make_message(static_cast<std::uint64_t>(i), "body-" + std::to_string(i)))));
  }
  o->log.reset();
  // A clean close leaves the segment ending at its last record; the last `count` records are
  // the messages.
  const auto starts = record_starts(read_file(out.segment));
  EXPECT_GE(starts.size(), static_cast<std::size_t>(count));
  out.record_offsets.assign(starts.end() - count, starts.end());
  return out;
}

std::size_t recovered_count(const persistent_log::opened& o) {
  auto it = o.state.find(orders);
  return it == o.state.end() ? 0 : it->second.messages.size();
}

TEST(Recovery, TailCutAtEveryByteOfTheLastRecordKeepsEveryEarlierRecord) {
  scratch_dir dir;
  const written_log w = write_messages(dir.path(), 5);
  const std::string original = read_file(w.segment);
  const std::uint64_t last_start = w.record_offsets.back();
  for (std::uint64_t cut = last_start + 1; cut < original.size(); ++cut) {
    write_file(w.segment, original.substr(0, cut));
    std::vector<std::string> warnings;
    auto opts = options_for(dir.path());
    opts.warn = [&](const std::string& line) { warnings.push_back(line); };
    auto o = persistent_log::open(opts);
    ASSERT_TRUE(o) << "cut at " << cut << ": " << o.error().message;
    EXPECT_EQ(recovered_count(*o), 4u) << cut;
    EXPECT_EQ(o->report.torn_bytes, cut - last_start);
    EXPECT_EQ(o->report.torn_offset, last_start);
    EXPECT_EQ(o->report.torn_file, w.segment.string());
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find(w.segment.string()), std::string::npos);
    o->log.reset();
    // The torn bytes were cut off for good: the segment now ends at the last whole record.
    EXPECT_EQ(std::filesystem::file_size(w.segment), last_start);
    // Reopening a log that was cut cleanly is not a torn write. (The new segments that each
    // open creates are removed so the next iteration damages the same file again.)
    for (const auto& f : segment_files(dir.path()))
      if (f != w.segment) std::filesystem::remove(f);
  }
}

TEST(Recovery, CorruptByteInTheLastRecordIsATornTail) {
  scratch_dir dir;
  const written_log w = write_messages(dir.path(), 5);
  std::string bytes = read_file(w.segment);
  const std::uint64_t last_start = w.record_offsets.back();
  for (std::uint64_t at : {last_start, last_start + 5, last_start + 13, bytes.size() - 1}) {
    std::string damaged = bytes;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x5A);
    write_file(w.segment, damaged);
    auto o = persistent_log::open(options_for(dir.path()));
    ASSERT_TRUE(o) << at << ": " << o.error().message;
    EXPECT_EQ(recovered_count(*o), 4u);
    EXPECT_EQ(o->report.torn_offset, last_start);
    o->log.reset();
    for (const auto& f : segment_files(dir.path()))
      if (f != w.segment) std::filesystem::remove(f);
  }
}

TEST(Recovery, ZeroFilledTailIsTheEndOfTheLogNotATornTail) {
  // What `always` mode leaves after a crash: zeros written ahead of the records (and, after a
  // power loss, a size that grew while the data never landed). Nothing there was acknowledged.
  scratch_dir dir;
  const written_log w = write_messages(dir.path(), 3);
  const std::string records = read_file(w.segment);
  write_file(w.segment, records + std::string(64 * 1024, '\0'));
  std::vector<std::string> warnings;
  auto opts = options_for(dir.path());
  opts.warn = [&](const std::string& line) { warnings.push_back(line); };
  auto o = persistent_log::open(opts);
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(recovered_count(*o), 3u);
  EXPECT_EQ(o->report.torn_bytes, 0u);
  EXPECT_TRUE(warnings.empty());
  // The zeros are cut off: the segment ends at its last record again.
  EXPECT_EQ(read_file(w.segment), records);
}

// Only the last segment can end in zeros the writer put there: it cuts them off a segment before
// it starts the next one, and syncs the cut first. Zeros at the end of an earlier segment are
// records the disk lost (a zeroed block), and cutting them would drop acknowledged records
// without a word and change a file that recovery must leave as it is.
TEST(Recovery, ZerosAtTheEndOfAnEarlierSegmentAreCorruption) {
  scratch_dir dir;
  const written_log w = write_messages(dir.path(), 3);
  {
    auto o = persistent_log::open(options_for(dir.path()));
    ASSERT_TRUE(o) << o.error().message;
    ASSERT_TRUE(o->log->wait_flushed(o->log->enqueued(orders, make_message(4, "later"))));
  }
  ASSERT_GE(segment_files(dir.path()).size(), 2u);
  std::string bytes = read_file(w.segment);
  const std::uint64_t at = w.record_offsets.back();
  std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(at), bytes.end(), '\0');
  write_file(w.segment, bytes);
  auto o = persistent_log::open(options_for(dir.path()));
  ASSERT_FALSE(o) << "reopened with " << recovered_count(*o) << " messages";
  EXPECT_EQ(o.error().code, errc::protocol_error);
  EXPECT_NE(o.error().message.find(w.segment.string()), std::string::npos) << o.error().message;
  EXPECT_NE(o.error().message.find("offset " + std::to_string(at)), std::string::npos)
      << o.error().message;
  EXPECT_EQ(read_file(w.segment), bytes);
}

TEST(Recovery, AlwaysModeWritesAheadAndWhatAKillLeavesReopensWithoutLoss) {
  // In `always` mode the open segment is longer than its records (zeros written ahead). A copy
  // taken while the log is open is what a kill -9 leaves on disk.
  scratch_dir dir, copy;
  auto o = persistent_log::open(options_for(dir.path()));
  ASSERT_TRUE(o);
  auto& log = *o->log;
  ASSERT_TRUE(log.wait_flushed(log.queue_created(orders, {})));
  detail::lsn last = 0;
  for (std::uint64_t i = 1; i <= 50; ++i) last = log.enqueued(orders, make_message(i, "body"));
  ASSERT_TRUE(log.wait_flushed(last));
  const auto segment = segment_files(dir.path()).back();
  const std::string on_disk = read_file(segment);
  const auto starts = record_starts(on_disk);
  ASSERT_FALSE(starts.empty());
  EXPECT_GT(on_disk.size(), starts.back() + 4096) << "no zeros written ahead of the records";
  write_file(copy.path() / segment.filename(), on_disk);
  o->log.reset();

  std::vector<std::string> warnings;
  auto opts = options_for(copy.path());
  opts.warn = [&](const std::string& line) { warnings.push_back(line); };
  auto reopened = persistent_log::open(opts);
  ASSERT_TRUE(reopened) << reopened.error().message;
  EXPECT_EQ(recovered_count(*reopened), 50u);
  EXPECT_EQ(reopened->report.torn_bytes, 0u);
  EXPECT_TRUE(warnings.empty());
}

TEST(Recovery, PartialRecordFollowedByZerosIsATornTail) {
  // A write into preallocated space that a crash interrupted: the record's first bytes, then
  // the zeros that were there before.
  scratch_dir dir;
  const written_log w = write_messages(dir.path(), 3);
  const std::string records = read_file(w.segment);
  const std::uint64_t last_start = w.record_offsets.back();
  write_file(w.segment, records.substr(0, last_start + 20) + std::string(8192, '\0'));
  auto o = persistent_log::open(options_for(dir.path()));
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(recovered_count(*o), 2u);
  EXPECT_EQ(o->report.torn_offset, last_start);
  EXPECT_EQ(o->report.torn_bytes, 20u + 8192u);
}

TEST(Recovery, ZerosFollowedByAnIntactRecordAreCorruption) {
  // Zeros are only the end of a segment when nothing intact follows them.
  scratch_dir dir;
  const written_log w = write_messages(dir.path(), 3);
  std::string damaged = read_file(w.segment);
  const std::uint64_t second = w.record_offsets[1];
  std::fill(damaged.begin() + static_cast<std::ptrdiff_t>(second),
            damaged.begin() + static_cast<std::ptrdiff_t>(w.record_offsets[2]), '\0');
  write_file(w.segment, damaged);
  auto o = persistent_log::open(options_for(dir.path()));
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().code, errc::protocol_error);
  EXPECT_NE(o.error().message.find("offset " + std::to_string(second)), std::string::npos)
      << o.error().message;
}

TEST(Recovery, CorruptionInTheMiddleOfTheLastSegmentRefusesToOpenNamingFileAndOffset) {
  scratch_dir dir;
  const written_log w = write_messages(dir.path(), 5);
  const std::string original = read_file(w.segment);
  const std::uint64_t second = w.record_offsets[1];
  for (std::uint64_t at : {second, second + 4, second + 9, w.record_offsets[2] - 1}) {
    std::string damaged = original;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x01);
    write_file(w.segment, damaged);
    auto o = persistent_log::open(options_for(dir.path()));
    ASSERT_FALSE(o) << "byte " << at << " damaged, yet the log opened";
    EXPECT_EQ(o.error().code, errc::protocol_error);
    EXPECT_NE(o.error().message.find(w.segment.string()), std::string::npos) << o.error().message;
    EXPECT_NE(o.error().message.find("offset " + std::to_string(second)), std::string::npos)
        << o.error().message;
  }
  // The refusal changed nothing: repaired, the log opens with everything.
  write_file(w.segment, original);
  auto o = persistent_log::open(options_for(dir.path()));
  ASSERT_TRUE(o);
  EXPECT_EQ(recovered_count(*o), 5u);
}

TEST(Recovery, TruncationInsideAnEarlierSegmentRefusesToOpen) {
  scratch_dir dir;
  const written_log w = write_messages(dir.path(), 3);
  // A second session adds a newer segment, so the damaged one is no longer the tail.
  {
    auto o = persistent_log::open(options_for(dir.path()));
    ASSERT_TRUE(o);
    ASSERT_TRUE(o->log->wait_flushed(o->log->enqueued(orders, make_message(4, "later"))));
  }
  ASSERT_GE(segment_files(dir.path()).size(), 2u);
  const std::string original = read_file(w.segment);
  write_file(w.segment, original.substr(0, original.size() - 3));
  auto o = persistent_log::open(options_for(dir.path()));
  ASSERT_FALSE(o);
  EXPECT_NE(o.error().message.find(w.segment.string()), std::string::npos);
  EXPECT_NE(o.error().message.find("offset " + std::to_string(w.record_offsets.back())),
            std::string::npos)
      << o.error().message;
}

TEST(Recovery, GarbageSegmentHeaderInAnEarlierSegmentRefusesToOpen) {
  scratch_dir dir;
  const written_log w = write_messages(dir.path(), 2);
  {
    auto o = persistent_log::open(options_for(dir.path()));
    ASSERT_TRUE(o);
    ASSERT_TRUE(o->log->wait_flushed(o->log->enqueued(orders, make_message(3, "later"))));
  }
  std::string bytes = read_file(w.segment);
  bytes[0] = 'X';
  write_file(w.segment, bytes);
  auto o = persistent_log::open(options_for(dir.path()));
  ASSERT_FALSE(o);
  EXPECT_NE(o.error().message.find("offset 0"), std::string::npos);
  EXPECT_NE(o.error().message.find("bad magic"), std::string::npos);
}

// The log deletes segments oldest first, so the segments on disk are always a run of
// consecutive indexes. One missing from the middle of the run (deleted by hand, or a directory
// restored from a backup beside newer segments) held records nothing else repeats: its messages
// would be lost and the settlements it held undone, bringing settled messages back.
TEST(Recovery, ASegmentMissingFromTheMiddleRefusesToOpenNamingIt) {
  scratch_dir dir;
  write_messages(dir.path(), 2);  // segment 1: messages 1 and 2
  {
    auto o = persistent_log::open(options_for(dir.path()));  // segment 2
    ASSERT_TRUE(o) << o.error().message;
    ASSERT_TRUE(o->log->wait_flushed(o->log->removed(orders, 1)));  // message 1 settled
  }
  {
    auto o = persistent_log::open(options_for(dir.path()));  // segment 3
    ASSERT_TRUE(o) << o.error().message;
    ASSERT_EQ(recovered_count(*o), 1u);
  }
  const auto missing = dir.path() / segment_file_name(2);
  ASSERT_TRUE(std::filesystem::exists(missing));
  ASSERT_TRUE(std::filesystem::exists(dir.path() / segment_file_name(3)));
  std::filesystem::remove(missing);
  auto o = persistent_log::open(options_for(dir.path()));
  ASSERT_FALSE(o) << "reopened with " << recovered_count(*o) << " messages";
  EXPECT_EQ(o.error().code, errc::protocol_error);
  EXPECT_NE(o.error().message.find(missing.filename().string()), std::string::npos)
      << o.error().message;
  EXPECT_NE(o.error().message.find("missing"), std::string::npos) << o.error().message;
}

// A queue and its dead-letter queue take their numbers from one counter, so a number is never
// live in both. A log claiming one is (forged or damaged, with intact checksums) would have
// settling the dead letter remove the queue's message of that number instead: refused.
TEST(Recovery, AMessageLiveInBothAQueueAndItsDeadLetterQueueRefusesToOpen) {
  scratch_dir dir;
  // durability::none writes no zeros ahead, so the file's size is where the next record goes.
  const auto opts = options_for(dir.path(), durability::none);
  std::uint64_t offset = 0;
  {
    auto o = persistent_log::open(opts);
    ASSERT_TRUE(o) << o.error().message;
    auto& log = *o->log;
    log.queue_created(orders, {});
    ASSERT_TRUE(log.wait_flushed(log.enqueued(orders, make_message(5, "in the queue"))));
    offset = std::filesystem::file_size(segment_files(dir.path()).back());
    auto twin = make_message(5, "its forged twin");
    twin.dead_letter = dead_letter_info{"r", "d"};
    ASSERT_TRUE(log.wait_flushed(log.enqueued(orders.dead_letter(), twin)));
  }
  auto o = persistent_log::open(opts);
  ASSERT_FALSE(o) << "reopened with " << recovered_count(*o) << " messages";
  EXPECT_EQ(o.error().code, errc::protocol_error);
  EXPECT_NE(o.error().message.find("offset " + std::to_string(offset)), std::string::npos)
      << o.error().message;
  EXPECT_NE(o.error().message.find("already live"), std::string::npos) << o.error().message;
}

TEST(Recovery, SegmentWhoseCreationWasInterruptedIsDropped) {
  scratch_dir dir;
  const written_log w = write_messages(dir.path(), 2);
  // The next segment got created but only part of its header was written.
  const auto next = dir.path() / segment_file_name(1000);
  write_file(next, std::string("QRTLO"));
  auto o = persistent_log::open(options_for(dir.path()));
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(recovered_count(*o), 2u);
  EXPECT_EQ(o->report.torn_file, next.string());
  EXPECT_FALSE(std::filesystem::exists(next));
}

TEST(Recovery, ChecksummedButUndecodableRecordIsCorruptionNotATornTail) {
  // Intact checksums around a payload this version cannot read (e.g. written by a newer qrt):
  // dropping it silently would lose data, so the open is refused.
  scratch_dir dir;
  const written_log w = write_messages(dir.path(), 1);
  std::string bytes = read_file(w.segment);
  std::string frame;
  ASSERT_TRUE(append_removed(frame, orders, 1));
  // Rewrite the record type to one that does not exist, with fresh checksums.
  std::string payload = frame.substr(frame_header_size);
  payload[0] = 0x7F;
  std::string reframed(frame_header_size, '\0');
  auto put = [&](std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
      reframed[at + static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
  };
  put(0, static_cast<std::uint32_t>(payload.size()));
  put(4, crc32c(payload));
  put(8, crc32c(0, reframed.data(), 8));
  const std::uint64_t offset = bytes.size();
  write_file(w.segment, bytes + reframed + payload);
  auto o = persistent_log::open(options_for(dir.path()));
  ASSERT_FALSE(o);
  EXPECT_NE(o.error().message.find("offset " + std::to_string(offset)), std::string::npos);
  EXPECT_NE(o.error().message.find("unknown record type 127"), std::string::npos);
}

}  // namespace
}  // namespace qrt::memory::log

namespace qrt::memory::log {
namespace {

// A damaged or foreign file's own size is the first thing replay would trust: one larger than
// any segment the log writes is refused, naming it, before it is read (the file here is sparse,
// so the test allocates nothing either).
TEST(Recovery, SegmentLargerThanAnyTheLogWritesIsRefusedUnread) {
  scratch_dir dir;
  const written_log w = write_messages(dir.path(), 2);
  std::filesystem::resize_file(w.segment, largest_segment_file_bytes + 1);
  auto o = persistent_log::open(options_for(dir.path()));
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().code, errc::protocol_error);
  EXPECT_NE(o.error().message.find(w.segment.string()), std::string::npos) << o.error().message;
  EXPECT_NE(o.error().message.find("larger than any the log writes"), std::string::npos)
      << o.error().message;
}

// A record whose checksums match but whose inner lengths claim far more than the record holds
// (a hostile file, not a torn write) is refused naming file and offset, without allocating what
// the lengths claim.
TEST(Recovery, HostileLengthInsideAChecksummedRecordIsRefusedNamingFileAndOffset) {
  scratch_dir dir;
  const written_log w = write_messages(dir.path(), 3);
  std::string bytes = read_file(w.segment);
  const std::uint64_t at = w.record_offsets[1];
  // Payload: type (1), queue name length (4) ... : claim a 4 GiB queue name.
  char* payload = bytes.data() + at + frame_header_size;
  for (int i = 1; i <= 4; ++i) payload[i] = '\xff';
  const std::uint32_t length =
      static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at])) |
      static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + 1])) << 8 |
      static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + 2])) << 16 |
      static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + 3])) << 24;
  const std::uint32_t crc = crc32c(0, payload, length);
  for (int i = 0; i < 4; ++i) bytes[at + 4 + i] = static_cast<char>((crc >> (8 * i)) & 0xFF);
  // The frame header carries its own checksum (of length and payload checksum) at offset 8.
  const std::uint32_t header_crc = crc32c(0, bytes.data() + at, 8);
  for (int i = 0; i < 4; ++i) {
    bytes[at + 8 + i] = static_cast<char>((header_crc >> (8 * i)) & 0xFF);
  }
  write_file(w.segment, bytes);
  auto o = persistent_log::open(options_for(dir.path()));
  ASSERT_FALSE(o);
  EXPECT_NE(o.error().message.find(w.segment.string()), std::string::npos) << o.error().message;
  EXPECT_NE(o.error().message.find("offset " + std::to_string(at)), std::string::npos)
      << o.error().message;
  EXPECT_NE(o.error().message.find("truncated queue name"), std::string::npos) << o.error().message;
}

}  // namespace
}  // namespace qrt::memory::log
