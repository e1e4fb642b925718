// Shared helpers for the persistence log tests: a scratch directory and message makers.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "providers/memory/log/persistent_log.hpp"

namespace qrt::memory::log::testing {

class scratch_dir {
 public:
  scratch_dir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("qrt-log-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline stored_message make_message(std::uint64_t sequence, std::string body,
                                   std::optional<std::string> session = std::nullopt) {
  stored_message m;
  m.sequence = sequence;
  m.content.body = std::move(body);
  m.content.id = "m" + std::to_string(sequence);
  if (session) m.content.session = session_id::from(*session);
  m.enqueued_time = clock::now();
  return m;
}

inline std::vector<std::filesystem::path> segment_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".log") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// The queue most log tests write to.
inline const queue_name orders = queue_name::from("orders");

/// Log options for a test: everything in `dir`, warnings dropped.
inline log_options options_for(const std::filesystem::path& dir,
                               durability mode = durability::always) {
  log_options o;
  o.directory = dir;
  o.mode = mode;
  o.warn = [](const std::string&) {};
  return o;
}

/// Opens a log. When it cannot, the test fails naming why, and value() throws.
inline persistent_log::opened open_or_die(log_options o) {
  auto opened = persistent_log::open(std::move(o));
  if (!opened) ADD_FAILURE() << opened.error().message;
  return std::move(opened).value();
}

}  // namespace qrt::memory::log::testing
