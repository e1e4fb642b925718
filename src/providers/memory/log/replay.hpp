// Recovery: reads a persistence directory's segments in order and rebuilds the state they
// describe. A torn or corrupt record at the very tail of the last segment is cut off (an
// interrupted write); corruption anywhere else refuses the open, naming file and offset.
#pragma once

#include <filesystem>
#include <vector>

#include "live_index.hpp"

namespace qrt::memory::log {

struct segment_file {
  std::uint64_t index = 0;
  std::filesystem::path path;
  std::uint64_t bytes = 0;
  std::uint64_t records = 0;
};

struct recovery_report {
  std::size_t segments_read = 0;
  std::size_t records_replayed = 0;
  std::uint64_t torn_bytes = 0;  ///< bytes cut off the tail (0: the log ended cleanly)
  std::string torn_file;
  std::uint64_t torn_offset = 0;
  std::string torn_problem;
};

struct replay_result {
  detail::recovered_state state;
  live_index index;
  std::vector<segment_file> segments;  ///< what is left on disk, in order
  recovery_report report;
};

/// "segment-00000000000000000042.log"
std::string segment_file_name(std::uint64_t index);

/// Replays every segment under `directory` (which must exist). Truncates a torn tail in place.
result<replay_result> replay_directory(const std::filesystem::path& directory);

}  // namespace qrt::memory::log
