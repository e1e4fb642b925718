#include "replay.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace qrt::memory::log {
namespace {

namespace fs = std::filesystem;

std::optional<std::uint64_t> index_from_file_name(const std::string& name) {
  constexpr std::string_view prefix = "segment-", suffix = ".log";
  if (name.size() != prefix.size() + 20 + suffix.size()) return std::nullopt;
  if (name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  if (name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return std::nullopt;
  std::uint64_t index = 0;
  for (std::size_t i = prefix.size(); i < prefix.size() + 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    index = index * 10 + static_cast<std::uint64_t>(name[i] - '0');
  }
  return index;
}

result<std::string> read_whole_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(errc::provider_error, "persistence log: cannot read " + path.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad())
    return fail(errc::provider_error, "persistence log: error reading " + path.string());
  return std::move(buffer).str();
}

result<void> truncate_file(const fs::path& path, std::uint64_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);  // as the writer's
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    return fail(errc::provider_error,
                "persistence log: cannot truncate the torn tail of " + path.string());
  }
  ::close(fd);
  return {};
}

/// The first offset after `from` where an intact frame starts, if any. Checks the 8-byte header
/// checksum first, so scanning garbage costs little.
std::optional<std::size_t> next_intact_frame(std::string_view data, std::size_t from) {
  for (std::size_t pos = from; pos + frame_header_size <= data.size(); ++pos) {
    const frame_view f = read_frame(data.substr(pos));
    if (f.status == frame_status::ok) return pos;
  }
  return std::nullopt;
}

bool all_zero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == '\0'; });
}

/// Rebuilds message contents alongside the live index.
class state_builder {
 public:
  void apply(const record& r, std::uint64_t segment) {
    std::visit([&](const auto& x) { apply_one(x, segment); }, r);
  }

  /// Why `r` could not have been written by the provider given what came before it, if so.
  /// A queue and its dead-letter queue number their messages from one counter, so no number is
  /// live in both; the provider finds a message by its number in the queue first, so a forged
  /// twin would have settling the dead letter remove the queue's message instead.
  std::optional<std::string> impossible(const record& r) const {
    const auto twin = [&](const queue_name& queue, std::uint64_t sequence) {
      const queue_name other = queue.is_dead_letter() ? queue.parent() : queue.dead_letter();
      if (!index.find(other, sequence)) return std::optional<std::string>{};
      return std::optional<std::string>{"message " + std::to_string(sequence) + " of " +
                                        queue.to_string() + " is already live in " +
                                        other.to_string()};
    };
    if (const auto* e = std::get_if<enqueued_record>(&r))
      return twin(e->queue, e->message.sequence);
    if (const auto* p = std::get_if<published_record>(&r)) {
      for (const auto& [subscription, sequence] : p->copies)
        if (auto problem = twin(subscription, sequence)) return problem;
    }
    return std::nullopt;
  }

  detail::recovered_state finish() {
    detail::recovered_state out;
    out.topics = index.topics();
    for (const auto& [name, q] : index.queues()) {
      detail::recovered_queue& rq = out[name];
      rq.options = q.options;
      rq.filter = q.filter;
      rq.next_sequence = q.next_sequence;
      rq.session_states = q.session_states;
      auto take = [&](const queue_name& key, std::vector<stored_message>& into) {
        auto it = contents_.find(key);
        if (it == contents_.end()) return;
        for (auto& [seq, m] : it->second) {
          if (const live_message* live = index.find(key, seq))
            m.delivery_count = live->delivery_count;
          into.push_back(std::move(m));
        }
      };
      take(name, rq.messages);
      take(name.dead_letter(), rq.dead_letters);
    }
    return out;
  }

  live_index index;

 private:
  void apply_one(const queue_created_record& x, std::uint64_t) {
    index.queue_created(x.queue, x.options, x.next_sequence);
  }
  void apply_one(const queue_deleted_record& x, std::uint64_t) {
    index.queue_deleted(x.queue);
    contents_.erase(x.queue.parent());
    contents_.erase(x.queue.parent().dead_letter());
  }
  void apply_one(const enqueued_record& x, std::uint64_t segment) {
    index.enqueued(x.queue, x.message.sequence, x.message.delivery_count, segment);
    contents_[x.queue].insert_or_assign(x.message.sequence, x.message);
  }
  void apply_one(const delivered_record& x, std::uint64_t) {
    index.delivered(x.queue, x.sequence, x.delivery_count);
  }
  void apply_one(const removed_record& x, std::uint64_t) {
    index.removed(x.queue, x.sequence);
    auto it = contents_.find(x.queue);
    if (it != contents_.end()) it->second.erase(x.sequence);
  }
  void apply_one(const session_state_record& x, std::uint64_t) {
    index.session_state_set(x.queue, x.session, x.state);
  }
  void apply_one(const topic_created_record& x, std::uint64_t) { index.topic_created(x.topic); }
  void apply_one(const topic_deleted_record& x, std::uint64_t) {
    for (auto it = contents_.begin(); it != contents_.end();) {
      const bool gone = it->first.is_subscription() && it->first.topic() == x.topic.str();
      it = gone ? contents_.erase(it) : std::next(it);
    }
    index.topic_deleted(x.topic);
  }
  void apply_one(const subscription_created_record& x, std::uint64_t) {
    index.subscription_created(x.subscription, x.options, x.next_sequence, x.filter);
  }
  // One published message is a copy in each subscription it lists, as if each had its own
  // enqueued record.
  void apply_one(const published_record& x, std::uint64_t segment) {
    for (const auto& [subscription, sequence] : x.copies) {
      stored_message copy = x.message;
      copy.sequence = sequence;
      index.enqueued(subscription, sequence, copy.delivery_count, segment);
      contents_[subscription].insert_or_assign(sequence, std::move(copy));
    }
  }

  std::map<queue_name, std::map<std::uint64_t, stored_message>> contents_;
};

error corrupt_at(const fs::path& file, std::uint64_t offset, const std::string& problem) {
  return fail(errc::protocol_error, "persistence log is corrupt: " + file.string() + " at offset " +
                                        std::to_string(offset) + ": " + problem +
                                        "; refusing to open (records after it would be lost)");
}

}  // namespace

std::string segment_file_name(std::uint64_t index) {
  char name[64];
  std::snprintf(name, sizeof name, "segment-%020llu.log", static_cast<unsigned long long>(index));
  return name;
}

result<replay_result> replay_directory(const std::filesystem::path& directory) {
  replay_result out;
  std::vector<segment_file> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(directory, ec)) {
    if (!entry.is_regular_file()) continue;
    if (auto index = index_from_file_name(entry.path().filename().string()))
      files.push_back({*index, entry.path(), 0});
  }
  if (ec)
    return fail(errc::provider_error,
                "persistence log: cannot list " + directory.string() + ": " + ec.message());
  std::sort(files.begin(), files.end(),
            [](const segment_file& a, const segment_file& b) { return a.index < b.index; });

  state_builder builder;
  for (std::size_t i = 0; i < files.size(); ++i) {
    segment_file& file = files[i];
    const bool last = i + 1 == files.size();
    // The file's own size is the one length replay trusts before reading: bounded, so a damaged
    // or foreign file cannot make it allocate more than any segment the log writes.
    if (const auto size = fs::file_size(file.path, ec); !ec && size > largest_segment_file_bytes) {
      return corrupt_at(file.path, 0,
                        "a segment of " + std::to_string(size) +
                            " bytes is larger than any the log writes (" +
                            std::to_string(largest_segment_file_bytes) + ")");
    }
    auto data = read_whole_file(file.path);
    if (!data) return data.error();
    const std::string_view bytes = *data;

    auto header_index = parse_segment_header(bytes);
    if (!header_index || *header_index != file.index) {
      const std::string problem =
          header_index ? "segment header names index " + std::to_string(*header_index)
                       : header_index.error().message;
      if (!last || next_intact_frame(bytes, 1)) return corrupt_at(file.path, 0, problem);
      // A segment whose creation was interrupted: nothing in it was ever acknowledged.
      out.report.torn_bytes = bytes.size();
      out.report.torn_file = file.path.string();
      out.report.torn_offset = 0;
      out.report.torn_problem = problem;
      fs::remove(file.path, ec);
      continue;
    }
    // The log deletes segments oldest first, so those left are consecutive. A gap lost the
    // records of the missing one (enqueues and the settlements of older messages); replaying
    // around it would drop those messages and bring settled ones back.
    if (!out.segments.empty() && file.index != out.segments.back().index + 1) {
      return corrupt_at(file.path, 0,
                        "segment " + segment_file_name(out.segments.back().index + 1) +
                            " is missing (the segment before this one is " +
                            out.segments.back().path.filename().string() + ")");
    }
    builder.index.segment_opened(file.index);
    ++out.report.segments_read;

    std::size_t pos = segment_header_size;
    while (pos < bytes.size()) {
      const frame_view frame = read_frame(bytes.substr(pos));
      if (frame.status == frame_status::ok) {
        auto decoded = decode_record(frame.payload);
        // Checksums match but the content does not decode: not a torn write, a real defect.
        if (!decoded) return corrupt_at(file.path, pos, decoded.error().message);
        if (auto problem = builder.impossible(*decoded))
          return corrupt_at(file.path, pos, *problem);
        builder.apply(*decoded, file.index);
        ++out.report.records_replayed;
        ++file.records;
        pos += frame.frame_size;
        continue;
      }
      const bool zero_tail = all_zero(bytes.substr(pos));
      if (zero_tail && last) {
        // Space the writer filled with zeros ahead of its records (durability::always), left
        // behind by a crash: the end of the log, not damage. Cut so the file ends at its last
        // record.
        if (auto t = truncate_file(file.path, pos); !t) return t.error();
        break;
      }
      // The writer cuts those zeros off a segment (and syncs the cut) before it starts the next
      // one, so in an earlier segment they are records the disk lost.
      if (!last)
        return corrupt_at(
            file.path, pos,
            zero_tail ? "zeros up to the end of a segment that is not the last" : frame.problem);
      if (auto next = next_intact_frame(bytes, pos + 1))
        return corrupt_at(
            file.path, pos,
            frame.problem + ", followed by an intact record at offset " + std::to_string(*next));
      out.report.torn_bytes = bytes.size() - pos;
      out.report.torn_file = file.path.string();
      out.report.torn_offset = pos;
      out.report.torn_problem = frame.problem;
      if (auto t = truncate_file(file.path, pos); !t) return t.error();
      break;
    }
    file.bytes = std::min<std::uint64_t>(pos, bytes.size());
    out.segments.push_back(file);
  }
  out.state = builder.finish();
  out.index = std::move(builder.index);
  return out;
}

}  // namespace qrt::memory::log
