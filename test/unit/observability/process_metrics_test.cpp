// Process resource series: the /proc parser on odd text, and the series add_process_metrics
// exposes moving as this process's use does.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <qrt/metrics.hpp>
#include <string>

namespace qrt::metrics {
namespace {

// Fields 3..52 of a real /proc/self/stat; utime 250, stime 50, starttime 1000, vsize 8192000,
// rss 300 (pages).
constexpr std::string_view stat_tail =
    " S 1 1234 1234 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 3 0 1000 8192000 300 "
    "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

constexpr std::string_view limits_text =
    "Limit                     Soft Limit           Hard Limit           Units     \n"
    "Max cpu time              unlimited            unlimited            seconds   \n"
    "Max open files            1024                 524288               files     \n"
    "Max locked memory         8388608              8388608              bytes     \n";

constexpr std::string_view system_stat_text =
    "cpu  1 2 3 4 5 6 7 8 9 10\nintr 12345 0 0\nctxt 99\nbtime 1700000000\nprocesses 5\n";

proc_text sample(const std::string& stat) {
  return {.stat = stat,
          .statm = "5000 300 120 10 0 400 0\n",
          .limits = limits_text,
          .system_stat = system_stat_text,
          .ticks_per_second = 100,
          .page_size = 4096};
}

TEST(ParseProcessUsage, ReadsEachValueInItsUnit) {
  const std::string stat = "1234 (qrt)" + std::string(stat_tail);
  const auto u = parse_process_usage(sample(stat));
  EXPECT_EQ(u.cpu_seconds, 3.0);  // (250 + 50) ticks at 100 a second
  EXPECT_EQ(u.resident_bytes, 300.0 * 4096);
  EXPECT_EQ(u.virtual_bytes, 8192000.0);
  EXPECT_EQ(u.start_time_seconds, 1700000000.0 + 10.0);
  EXPECT_EQ(u.max_fds, 1024.0);
  EXPECT_FALSE(u.open_fds) << "counted from /proc/self/fd, not parsed";
}

TEST(ParseProcessUsage, FindsTheFieldsAfterACommandNameHoldingSpacesAndParentheses) {
  // A program may name itself anything: the fields are counted from the last ')'.
  const std::string stat =
      "1234 (evil) 1 2 3 4 5 6 7 8 9 10 11 12 13 (x))" + std::string(stat_tail);
  const auto u = parse_process_usage(sample(stat));
  EXPECT_EQ(u.cpu_seconds, 3.0);
  EXPECT_EQ(u.virtual_bytes, 8192000.0);
}

TEST(ParseProcessUsage, LeavesOutWhatIsMissingShortOrNotANumber) {
  // Cut short after utime: no CPU time rather than utime alone, and nothing further on.
  const auto cut =
      parse_process_usage(sample("1234 (qrt) S 1 1234 1234 0 -1 4194560 900 0 0 0 250"));
  EXPECT_FALSE(cut.cpu_seconds);
  EXPECT_FALSE(cut.start_time_seconds);
  EXPECT_FALSE(cut.virtual_bytes);
  EXPECT_EQ(cut.resident_bytes, 300.0 * 4096) << "statm is a separate source";

  // No closing parenthesis: where the fields start is unknown.
  const auto unclosed = parse_process_usage(sample("1234 (qrt" + std::string(stat_tail)));
  EXPECT_FALSE(unclosed.cpu_seconds);
  EXPECT_FALSE(unclosed.virtual_bytes);

  // Negative, trailing garbage, too large for 64 bits.
  std::string stat = "1234 (qrt)" + std::string(stat_tail);
  for (std::string_view bad : {"-250", "250x", "99999999999999999999999"}) {
    std::string odd = stat;
    odd.replace(odd.find(" 250 "), 5, " " + std::string(bad) + " ");
    EXPECT_FALSE(parse_process_usage(sample(odd)).cpu_seconds) << bad;
  }

  auto other = sample(stat);
  other.statm = "5000\n";  // one field: no resident size
  other.limits = "Max open files            unlimited            unlimited            files\n";
  other.system_stat = "btime soon\n";
  const auto u = parse_process_usage(other);
  EXPECT_FALSE(u.resident_bytes);
  EXPECT_FALSE(u.max_fds) << "an unlimited limit is no number of descriptors";
  EXPECT_FALSE(u.start_time_seconds);
  EXPECT_EQ(u.cpu_seconds, 3.0);

  const auto empty = parse_process_usage({});
  EXPECT_FALSE(empty.cpu_seconds || empty.resident_bytes || empty.virtual_bytes ||
               empty.start_time_seconds || empty.max_fds);

  auto no_units = sample(stat);
  no_units.ticks_per_second = 0;  // sysconf failed: no value can be scaled
  EXPECT_FALSE(parse_process_usage(no_units).cpu_seconds);
}

// The value of the unlabelled sample `name` in an exposition.
std::optional<double> sample_value(const std::string& text, const std::string& name) {
  const auto at = text.find("\n" + name + " ");
  if (at == std::string::npos) return std::nullopt;
  return std::strtod(text.c_str() + at + name.size() + 2, nullptr);
}

double cpu_time_of_this_process() {
  return static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
}

TEST(ProcessMetrics, ExposesEachSeriesUnderItsConventionalNameAndType) {
  registry r;
  add_process_metrics(r);
  const auto text = r.expose();
  for (const char* type_line :
       {"# TYPE process_cpu_seconds_total counter\n",
        "# TYPE process_resident_memory_bytes gauge\n",
        "# TYPE process_virtual_memory_bytes gauge\n", "# TYPE process_open_fds gauge\n",
        "# TYPE process_max_fds gauge\n", "# TYPE process_start_time_seconds gauge\n"}) {
    EXPECT_NE(text.find(type_line), std::string::npos) << type_line << text;
  }
  const auto resident = sample_value(text, "process_resident_memory_bytes");
  ASSERT_TRUE(resident) << text;
  EXPECT_GT(*resident, 0);
  const auto virtual_bytes = sample_value(text, "process_virtual_memory_bytes");
  ASSERT_TRUE(virtual_bytes) << text;
  EXPECT_GE(*virtual_bytes, *resident);
  const auto start = sample_value(text, "process_start_time_seconds");
  ASSERT_TRUE(start) << text;
  EXPECT_GT(*start, 0);
  EXPECT_LE(*start, static_cast<double>(std::time(nullptr)) + 1);  // not in the future

  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_cur != RLIM_INFINITY) {
    EXPECT_EQ(sample_value(text, "process_max_fds"), static_cast<double>(limit.rlim_cur));
    // The same count by another route: every descriptor number the kernel says is open.
    double open = 0;
    for (rlim_t fd = 0; fd < std::min<rlim_t>(limit.rlim_cur, 1 << 20); ++fd) {
      if (::fcntl(static_cast<int>(fd), F_GETFD) != -1) ++open;
    }
    EXPECT_EQ(sample_value(text, "process_open_fds"), open);
  }
}

TEST(ProcessMetrics, CpuSecondsGrowAsThisProcessBurnsCpu) {
  registry r;
  add_process_metrics(r);
  const auto before = sample_value(r.expose(), "process_cpu_seconds_total");
  ASSERT_TRUE(before);
  // Burn until the C library's own count of this process's CPU time has moved by 50 ms, well
  // over the kernel's 10 ms tick.
  const double start = cpu_time_of_this_process();
  volatile std::uint64_t sink = 0;
  while (cpu_time_of_this_process() < start + 0.05) {
    for (int i = 0; i < 10000; ++i) sink = sink + static_cast<std::uint64_t>(i);
  }
  const auto after = sample_value(r.expose(), "process_cpu_seconds_total");
  ASSERT_TRUE(after);
  EXPECT_GT(*after, 0);
  EXPECT_GT(*after, *before);
}

TEST(ProcessMetrics, OpenFdsRiseByOneWhileAFileIsOpen) {
  registry r;
  add_process_metrics(r);
  const auto before = sample_value(r.expose(), "process_open_fds");
  ASSERT_TRUE(before);
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const auto during = sample_value(r.expose(), "process_open_fds");
  ::close(fd);
  const auto after = sample_value(r.expose(), "process_open_fds");
  ASSERT_TRUE(during && after);
  EXPECT_EQ(*during, *before + 1);
  EXPECT_EQ(*after, *before);
}

TEST(ProcessMetrics, RemovingTheCollectorStopsTheUpdates) {
  registry r;
  const auto id = add_process_metrics(r);
  const auto first = sample_value(r.expose(), "process_open_fds");
  ASSERT_TRUE(first);
  r.remove_collector(id);
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const auto later = sample_value(r.expose(), "process_open_fds");
  ::close(fd);
  EXPECT_EQ(later, first);
}

}  // namespace
}  // namespace qrt::metrics
