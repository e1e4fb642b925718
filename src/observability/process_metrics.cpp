// Process resource series read from Linux's /proc (docs/adr/0070-metrics-recording.md).
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <qrt/metrics.hpp>
#include <string>
#include <vector>

#include "core/bounded_file.hpp"

namespace qrt::metrics {

namespace {

// The kernel's text is still input: each file is read up to a bound, so a file that keeps
// growing (or a /proc/stat with thousands of CPUs) cannot make a scrape read without end.
constexpr std::size_t small_file_limit = 64 * 1024;
constexpr std::size_t system_stat_limit = 1024 * 1024;

// The file's text, or nothing when it cannot be read or holds more than `limit` bytes (its
// series are then left out, as for text that does not parse).
std::string proc_file(const char* path, std::size_t limit) {
  auto text = qrt::detail::read_file_at_most(path, limit, "process file");
  return text ? std::move(*text) : std::string();
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\n')) ++i;
    const auto start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\n') ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

// A whole decimal number and nothing else: "12x", "-3" and "" are not numbers.
std::optional<double> whole_number(std::string_view text) {
  std::uint64_t v = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc{} || ptr != end || text.empty()) return std::nullopt;
  return static_cast<double>(v);
}

std::optional<double> field(const std::vector<std::string_view>& fields, std::size_t i) {
  if (i >= fields.size()) return std::nullopt;
  return whole_number(fields[i]);
}

// The first line starting with `prefix`, without it.
std::optional<std::string_view> line_after(std::string_view text, std::string_view prefix) {
  std::size_t at = 0;
  while (at < text.size()) {
    auto end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    const auto line = text.substr(at, end - at);
    if (line.starts_with(prefix)) return line.substr(prefix.size());
    at = end + 1;
  }
  return std::nullopt;
}

// Descriptors open now, not counting the one this count reads /proc/self/fd through.
std::optional<double> count_open_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return std::nullopt;
  double entries = 0;
  while (const auto* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++entries;
  }
  ::closedir(dir);
  return entries > 0 ? entries - 1 : 0;
}

}  // namespace

process_usage parse_process_usage(const proc_text& text) {
  process_usage u;
  const bool units_valid = text.ticks_per_second > 0 && text.page_size > 0;
  if (!units_valid) return u;

  // The command name (field 2) is in parentheses and may itself hold spaces and ')', so the
  // numbered fields start after the last ')'; fields[0] is then field 3, the state.
  const auto close = text.stat.rfind(')');
  if (close != std::string_view::npos) {
    const auto fields = split_fields(text.stat.substr(close + 1));
    const auto utime = field(fields, 11);
    const auto stime = field(fields, 12);
    if (utime && stime) u.cpu_seconds = (*utime + *stime) / text.ticks_per_second;
    const auto started_ticks = field(fields, 19);
    std::optional<double> boot_time;
    if (auto btime = line_after(text.system_stat, "btime ")) boot_time = whole_number(*btime);
    if (started_ticks && boot_time) {
      u.start_time_seconds = *boot_time + *started_ticks / text.ticks_per_second;
    }
    u.virtual_bytes = field(fields, 20);
  }

  const auto statm = split_fields(text.statm);
  if (const auto resident_pages = field(statm, 1)) {
    u.resident_bytes = *resident_pages * text.page_size;
  }

  // "Max open files            1024                 524288               files"
  if (auto limits = line_after(text.limits, "Max open files")) {
    u.max_fds = field(split_fields(*limits), 0);
  }
  return u;
}

std::uint64_t add_process_metrics(registry& r) {
  struct state {
    gauge_family& cpu;
    gauge_family& resident;
    gauge_family& virtual_memory;
    gauge_family& start_time;
    gauge_family& open_fds;
    gauge_family& max_fds;
    std::string system_stat;  // read once: only its boot time is used, which does not change
    double ticks_per_second;
    double page_size;
    double last_cpu = 0;
  };
  const auto ticks = ::sysconf(_SC_CLK_TCK);
  const auto page = ::sysconf(_SC_PAGESIZE);
  auto s = std::make_shared<state>(state{
      r.add_sampled_counter("process_cpu_seconds_total",
                            "Total user and system CPU time spent in seconds."),
      r.add_gauge("process_resident_memory_bytes", "Resident memory size in bytes."),
      r.add_gauge("process_virtual_memory_bytes", "Virtual memory size in bytes."),
      r.add_gauge("process_start_time_seconds",
                  "Start time of the process since unix epoch in seconds."),
      r.add_gauge("process_open_fds", "Number of open file descriptors."),
      r.add_gauge("process_max_fds", "Maximum number of open file descriptors."),
      proc_file("/proc/stat", system_stat_limit),
      ticks > 0 ? static_cast<double>(ticks) : 0.0,
      page > 0 ? static_cast<double>(page) : 0.0,
  });
  return r.add_collector([s] {
    const auto stat = proc_file("/proc/self/stat", small_file_limit);
    const auto statm = proc_file("/proc/self/statm", small_file_limit);
    const auto limits = proc_file("/proc/self/limits", small_file_limit);
    auto u = parse_process_usage({.stat = stat,
                                  .statm = statm,
                                  .limits = limits,
                                  .system_stat = s->system_stat,
                                  .ticks_per_second = s->ticks_per_second,
                                  .page_size = s->page_size});
    u.open_fds = count_open_fds();
    // A series appears on its first good reading, so a source that never parses shows no
    // sample rather than a zero that looks like a measurement.
    auto publish = [](gauge_family& f, const std::optional<double>& v) {
      if (v) f.with({}).set(*v);
    };
    // The kernel's count never goes back; a counter that did would read as a restart.
    if (u.cpu_seconds && *u.cpu_seconds >= s->last_cpu) {
      s->last_cpu = *u.cpu_seconds;
      publish(s->cpu, u.cpu_seconds);
    }
    publish(s->resident, u.resident_bytes);
    publish(s->virtual_memory, u.virtual_bytes);
    publish(s->start_time, u.start_time_seconds);
    publish(s->open_fds, u.open_fds);
    publish(s->max_fds, u.max_fds);
  });
}

}  // namespace qrt::metrics
