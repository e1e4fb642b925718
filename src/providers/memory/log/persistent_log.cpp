#include "persistent_log.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <set>

#include "core/post_releasing.hpp"

namespace qrt::memory::log {
namespace {

namespace fs = std::filesystem;

error io_error(const std::string& what, const fs::path& path, int err) {
  return fail(errc::provider_error,
              "persistence log: " + what + " " + path.string() + ": " + std::strerror(err));
}

using error_injector = std::function<int(std::string_view call)>;

result<void> write_at(int fd, const char* data, std::size_t size, std::uint64_t offset,
                      const fs::path& path, const error_injector& inject) {
  while (size > 0) {
    if (const int err = inject ? inject("write") : 0; err != 0)
      return io_error("cannot write", path, err);
    const ssize_t n = ::pwrite(fd, data, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("cannot write", path, errno);
    }
    data += n;
    offset += static_cast<std::uint64_t>(n);
    size -= static_cast<std::size_t>(n);
  }
  return {};
}

/// Writes zeros over [from, to): real blocks, unlike fallocate's unwritten extents, whose first
/// write is a metadata change that every fdatasync would then have to commit.
result<void> write_zeros(int fd, std::uint64_t from, std::uint64_t to, const fs::path& path,
                         const error_injector& inject) {
  static const std::vector<char> zeros(64 * 1024, '\0');
  while (from < to) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(to - from, zeros.size()));
    if (auto r = write_at(fd, zeros.data(), n, from, path, inject); !r) return r;
    from += n;
  }
  return {};
}

result<void> sync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_error("cannot open directory", dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return io_error("cannot sync directory", dir, err);
  return {};
}

/// What a failed flock attempt found.
struct lock_attempt {
  int fd = -1;         ///< >= 0: the lock is ours
  std::string holder;  ///< else, when held by someone else: the holder's pid as it wrote it
  std::optional<error> failure;  ///< else: could not try at all
};

lock_attempt try_lock(const fs::path& lock_path) {
  lock_attempt out;
  // O_NOFOLLOW here and wherever the log opens a file to write it: a symbolic link planted in
  // the directory would otherwise have the log truncate, or create, a file outside it.
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    out.failure = io_error("cannot open lock file", lock_path, errno);
    return out;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
    out.fd = fd;
    return out;
  }
  const int err = errno;
  char holder[32] = {};
  const ssize_t n = ::pread(fd, holder, sizeof holder - 1, 0);
  ::close(fd);
  if (err != EWOULDBLOCK) {
    out.failure = io_error("cannot lock", lock_path, err);
    return out;
  }
  out.holder = n > 0 ? std::string(holder, static_cast<std::size_t>(n)) : "unknown";
  while (!out.holder.empty() && (out.holder.back() == '\n' || out.holder.back() == ' '))
    out.holder.pop_back();
  return out;
}

/// Takes the directory's lock file. A second opener (another process, or another provider in
/// this one) waits up to `timeout` for the holder to let go, then gets an error naming the
/// directory and the holder's pid. flock has no timed wait, so waiting polls every 10 ms.
result<int> lock_directory(const fs::path& dir, milliseconds timeout,
                           const std::function<void(const std::string&)>& warn) {
  const fs::path lock_path = dir / "LOCK";
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool told = false;
  lock_attempt a;
  while (true) {
    a = try_lock(lock_path);
    if (a.failure) return *a.failure;
    if (a.fd >= 0) break;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      std::string waited;
      if (timeout.count() > 0)
        waited = "; waited " + std::to_string(timeout.count()) + " ms for it to close";
      // The same pid: another provider of this process has it open (until it is closed).
      const bool this_process = a.holder == std::to_string(::getpid());
      return fail(errc::provider_error,
                  "persistence path " + dir.string() +
                      (this_process ? " is in use by another provider of this process (pid " +
                                          a.holder + "), which keeps it until closed"
                                    : " is in use by another process (pid " + a.holder + ")") +
                      "; only one provider may open it at a time" + waited,
                  "locked");
    }
    if (!told) {
      warn("persistence path " + dir.string() + " is in use by pid " + a.holder +
           "; waiting up to " + std::to_string(timeout.count()) + " ms for it to close");
      told = true;
    }
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        std::chrono::milliseconds{10}, deadline - now));
  }
  const int fd = a.fd;
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The pid is only a hint for the error above; the flock is what excludes.
  }
  return fd;
}

}  // namespace

persistent_log::persistent_log(log_options options) : options_(std::move(options)) {}

result<persistent_log::opened> persistent_log::open(log_options options) {
  if (options.directory.empty())
    return fail(errc::configuration_error, "persistence_path: required with enable_persistence");
  options.segment_bytes =
      std::clamp<std::uint64_t>(options.segment_bytes, 4096, largest_segment_bytes);
  if (!options.warn)
    options.warn = [](const std::string& line) { std::cerr << "qrt: " << line << '\n'; };
  std::error_code ec;
  fs::create_directories(options.directory, ec);
  if (ec || !fs::is_directory(options.directory))
    return fail(errc::configuration_error, "persistence_path: cannot create directory " +
                                               options.directory.string() +
                                               (ec ? ": " + ec.message() : std::string{}));

  auto lock_fd = lock_directory(options.directory, options.open_timeout, options.warn);
  if (!lock_fd) return lock_fd.error();

  auto replayed = replay_directory(options.directory);
  if (!replayed) {
    ::close(*lock_fd);
    return replayed.error();
  }

  std::shared_ptr<persistent_log> log(new persistent_log(std::move(options)));
  log->lock_fd_ = *lock_fd;
  const recovery_report& report = replayed->report;
  if (report.torn_bytes > 0)
    log->options_.warn("persistence log recovery: cut " + std::to_string(report.torn_bytes) +
                       " torn bytes off " + report.torn_file + " at offset " +
                       std::to_string(report.torn_offset) + " (" + report.torn_problem +
                       "); records there were never acknowledged as durable");

  log->index_ = std::move(replayed->index);
  for (const segment_file& s : replayed->segments) {
    log->segment_bytes_[s.index] = s.bytes;
    log->segment_records_[s.index] = s.records;
    log->total_bytes_ += s.bytes;
  }
  // Appends go to a fresh segment that starts with a checkpoint; the old ones are deleted by
  // the writer as soon as nothing live is left in them.
  log->active_segment_ = replayed->segments.empty() ? 0 : replayed->segments.back().index;
  {
    std::lock_guard lock(log->mutex_);
    log->roll_segment_locked();
  }
  log->writer_ = std::thread([raw = log.get()] { raw->writer_loop(); });

  opened out;
  out.log = std::move(log);
  out.state = std::move(replayed->state);
  out.report = report;
  return out;
}

persistent_log::~persistent_log() {
  close();
}

void persistent_log::close() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  if (writer_.joinable()) writer_.join();
  // Only the writer touches the files, and it has stopped: the directory is free for the next
  // provider, which need not wait for this one to be destroyed.
  std::lock_guard lock(mutex_);
  if (lock_fd_ >= 0) ::close(std::exchange(lock_fd_, -1));
}

void persistent_log::roll_segment_locked() {
  ++active_segment_;
  index_.segment_opened(active_segment_);
  chunk c;
  c.segment = active_segment_;
  if (auto r = index_.append_checkpoint(c.bytes); !r) fail_locked(r.error());
  const std::uint64_t bytes = segment_header_size + c.bytes.size();
  segment_bytes_[active_segment_] = bytes;
  total_bytes_ += bytes;
  queued_.push_back(std::move(c));
}

template <class Encode>
detail::lsn persistent_log::append(Encode&& encode) {
  // Called with mutex_ held.
  const detail::lsn lsn = next_lsn_++;
  if (failure_ || stopping_) return lsn;
  if (segment_bytes_[active_segment_] >= options_.segment_bytes) roll_segment_locked();
  if (queued_.empty() || queued_.back().segment != active_segment_)
    queued_.push_back(chunk{active_segment_, {}, 0});
  chunk& c = queued_.back();
  const std::size_t before = c.bytes.size();
  if (result<void> r = encode(c.bytes); !r) {
    // Unreachable for valid input: the provider refuses, before changing anything, a message
    // whose record could be too large (refuse()), and bounds session states and dead-letter
    // texts. Were it reached, memory would hold a change the disk lacks; acknowledging anything
    // after that would be wrong, so the log stops as on a disk error.
    fail_locked(r.error());
    return lsn;
  }
  const std::size_t added = c.bytes.size() - before;
  segment_bytes_[active_segment_] += added;
  total_bytes_ += added;
  c.last = lsn;
  ++segment_records_[active_segment_];
  if (writer_idle_) work_ready_.notify_one();
  return lsn;
}

detail::lsn persistent_log::queue_created(const queue_name& queue, const queue_options& options) {
  std::lock_guard lock(mutex_);
  const auto lsn = append([&](std::string& out) {
    const auto* q =
        index_.queues().count(queue.parent()) ? &index_.queues().at(queue.parent()) : nullptr;
    return append_queue_created(out, queue, options, q ? q->next_sequence : 0);
  });
  index_.queue_created(queue, options, 0);
  return lsn;
}

detail::lsn persistent_log::queue_deleted(const queue_name& queue) {
  std::lock_guard lock(mutex_);
  const auto lsn = append([&](std::string& out) { return append_queue_deleted(out, queue); });
  if (auto it = index_.queues().find(queue.parent()); it != index_.queues().end()) {
    for (const auto& [seq, m] : it->second.live) note_release_locked(m.segment, lsn);
    for (const auto& [seq, m] : it->second.live_dead_letters) note_release_locked(m.segment, lsn);
  }
  index_.queue_deleted(queue);
  return lsn;
}

detail::lsn persistent_log::enqueued(const queue_name& queue, const stored_message& msg) {
  std::lock_guard lock(mutex_);
  const auto lsn = append([&](std::string& out) { return append_enqueued(out, queue, msg); });
  if (const live_message* earlier = index_.find(queue, msg.sequence))
    note_release_locked(earlier->segment, lsn);
  index_.enqueued(queue, msg.sequence, msg.delivery_count, active_segment_);
  return lsn;
}

detail::lsn persistent_log::delivered(const queue_name& queue, std::uint64_t sequence,
                                      std::uint32_t delivery_count) {
  std::lock_guard lock(mutex_);
  const auto lsn = append(
      [&](std::string& out) { return append_delivered(out, queue, sequence, delivery_count); });
  index_.delivered(queue, sequence, delivery_count);
  return lsn;
}

detail::lsn persistent_log::removed(const queue_name& queue, std::uint64_t sequence) {
  std::lock_guard lock(mutex_);
  const auto lsn = append([&](std::string& out) { return append_removed(out, queue, sequence); });
  if (const live_message* m = index_.find(queue, sequence)) note_release_locked(m->segment, lsn);
  index_.removed(queue, sequence);
  return lsn;
}

detail::lsn persistent_log::session_state_set(const queue_name& queue, const session_id& session,
                                              const std::string& state) {
  std::lock_guard lock(mutex_);
  const auto lsn =
      append([&](std::string& out) { return append_session_state(out, queue, session, state); });
  index_.session_state_set(queue, session, state);
  return lsn;
}

detail::lsn persistent_log::topic_created(const topic_name& topic) {
  std::lock_guard lock(mutex_);
  const auto lsn = append([&](std::string& out) { return append_topic_created(out, topic); });
  index_.topic_created(topic);
  return lsn;
}

detail::lsn persistent_log::topic_deleted(const topic_name& topic) {
  std::lock_guard lock(mutex_);
  const auto lsn = append([&](std::string& out) { return append_topic_deleted(out, topic); });
  // The provider deleted each subscription first (queue_deleted); any still known go now.
  for (const auto& [name, q] : index_.queues()) {
    if (!name.is_subscription() || name.topic() != topic.str()) continue;
    for (const auto& [seq, m] : q.live) note_release_locked(m.segment, lsn);
    for (const auto& [seq, m] : q.live_dead_letters) note_release_locked(m.segment, lsn);
  }
  index_.topic_deleted(topic);
  return lsn;
}

detail::lsn persistent_log::subscription_created(const queue_name& subscription,
                                                 const subscription_options& options) {
  std::lock_guard lock(mutex_);
  const auto lsn = append([&](std::string& out) {
    const auto* q = index_.queues().count(subscription.parent())
                        ? &index_.queues().at(subscription.parent())
                        : nullptr;
    return append_subscription_created(out, subscription, options.queue, q ? q->next_sequence : 0,
                                       options.filter);
  });
  index_.subscription_created(subscription, options.queue, 0, options.filter);
  return lsn;
}

detail::lsn persistent_log::published(
    const topic_name& topic, const stored_message& msg,
    const std::vector<std::pair<queue_name, std::uint64_t>>& copies) {
  std::lock_guard lock(mutex_);
  const auto lsn =
      append([&](std::string& out) { return append_published(out, topic, msg, copies); });
  for (const auto& [subscription, sequence] : copies) {
    if (const live_message* earlier = index_.find(subscription, sequence))
      note_release_locked(earlier->segment, lsn);
    index_.enqueued(subscription, sequence, msg.delivery_count, active_segment_);
  }
  return lsn;
}

void persistent_log::begin_operation() {
  std::lock_guard lock(mutex_);
  ++open_operations_;
}

void persistent_log::end_operation() {
  std::lock_guard lock(mutex_);
  if (--open_operations_ == 0 && writer_waits_for_operations_) operations_closed_.notify_one();
}

void persistent_log::note_release_locked(std::uint64_t segment, detail::lsn lsn) {
  detail::lsn& at = released_at_[segment];
  at = std::max(at, lsn);
}

bool persistent_log::reached_locked(detail::lsn upto) const {
  return (options_.mode == durability::always ? durable_lsn_ : written_lsn_) >= upto;
}

void persistent_log::abandon(const boost::asio::execution_context& ctx) {
  std::vector<waiter> gone;
  {
    std::lock_guard lock(mutex_);
    watched_contexts_.forget(ctx);
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (&boost::asio::query(it->second.executor, boost::asio::execution::context) == &ctx) {
        gone.push_back(std::move(it->second));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Destroyed here, unrun and without the lock: each lets its coroutine be destroyed.
}

void persistent_log::register_waiter(detail::lsn upto, waiter w) {
  std::lock_guard lock(mutex_);
  const auto resume_now = [&](result<void> outcome) {
    std::vector<waiter> one;
    one.push_back(std::move(w));
    resume_all(std::move(one), outcome);
  };
  // Reached first: what was written before a failure is on disk and is replayed, so it is
  // acknowledged even when asked for after the failure (see flushed()).
  if (reached_locked(upto)) return resume_now(result<void>{});
  if (failure_) return resume_now(*failure_);
  if (stopped_) return resume_now(fail(errc::closed, "persistence log is closed"));
  watched_contexts_.watch(boost::asio::query(w.executor, boost::asio::execution::context),
                          weak_from_this());
  waiters_.emplace(upto, std::move(w));
  // Only operations the next batch will carry count towards the writer's patience.
  if (upto > taken_lsn_ && ++arrived_waiters_ == expected_waiters_) work_ready_.notify_one();
}

awaitable<result<void>> persistent_log::flushed(detail::lsn upto) {
  if (upto == 0) co_return result<void>{};
  {
    std::lock_guard lock(mutex_);
    // An lsn past the last one handed out means "everything appended so far".
    upto = std::min(upto, next_lsn_ - 1);
    // The lsns reached only move after a successful write (and sync, in `always` mode), so an
    // operation written before a later batch failed is acknowledged: it is on disk and a reopen
    // replays it. Its caller may well ask only after that failure.
    if (reached_locked(upto)) co_return result<void>{};
    if (failure_) co_return *failure_;
  }
  co_return co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&,
                                                 void(result<void>)>(
      [this, upto](auto handler) {
        // The writer thread completes this: hop back to the coroutine's executor, and keep that
        // executor's work count up meanwhile so its run() does not return under us.
        auto executor = boost::asio::prefer(boost::asio::get_associated_executor(handler),
                                            boost::asio::execution::outstanding_work.tracked);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        register_waiter(upto, waiter{std::move(executor),
                                     [shared](result<void> r) { (*shared)(std::move(r)); }});
      },
      boost::asio::use_awaitable);
}

result<void> persistent_log::wait_flushed(detail::lsn upto) {
  std::unique_lock lock(mutex_);
  upto = std::min(upto, next_lsn_ - 1);
  progress_.wait(lock, [&] { return failure_ || reached_locked(upto) || stopped_; });
  if (reached_locked(upto)) return {};
  if (failure_) return *failure_;
  if (!reached_locked(upto)) return fail(errc::closed, "persistence log is closed");
  return {};
}

std::uint64_t persistent_log::disk_bytes() const {
  std::lock_guard lock(mutex_);
  return total_bytes_;
}

bool persistent_log::over_disk_limit() const {
  std::lock_guard lock(mutex_);
  return options_.max_disk_bytes != 0 && total_bytes_ >= options_.max_disk_bytes;
}

std::size_t persistent_log::segment_count() const {
  std::lock_guard lock(mutex_);
  return segment_bytes_.size();
}

std::uint64_t persistent_log::fdatasync_count() const {
  return syncs_.load();
}

std::optional<error> persistent_log::refuse(const queue_name& queue, const message& content) const {
  // The record a message needs once dead-lettered, with the longest texts that may come with it.
  static const dead_letter_info longest{std::string(max_dead_letter_reason_bytes, 'r'),
                                        std::string(max_dead_letter_description_bytes, 'd')};
  const std::size_t needed = enqueued_payload_size(queue.dead_letter(), content, &longest);
  if (needed <= max_payload_size) return std::nullopt;
  return fail(errc::message_too_large,
              "message cannot be persisted: it needs a log record of " + std::to_string(needed) +
                  " bytes (counting every field and room for a dead-letter reason), more than "
                  "the largest record (" +
                  std::to_string(max_payload_size) + " bytes)");
}

std::optional<error> persistent_log::refuse_publish(const topic_name& topic, const message& content,
                                                    const std::vector<queue_name>& copies) const {
  // A message without an id gets one (15 characters) before it is logged.
  const std::size_t id_to_come = content.id.empty() ? 16 : 0;
  const std::size_t needed = published_payload_size(topic, content, copies) + id_to_come;
  if (needed <= max_payload_size) return std::nullopt;
  return fail(
      errc::message_too_large,
      "message cannot be published to " + std::to_string(copies.size()) +
          " subscriptions: the log record carrying it and every subscription's copy needs " +
          std::to_string(needed) + " bytes, more than the largest record (" +
          std::to_string(max_payload_size) + " bytes)");
}

std::optional<error> persistent_log::failure() const {
  if (!failed_.load(std::memory_order_acquire)) return std::nullopt;
  std::lock_guard lock(mutex_);
  return failure_;
}

int persistent_log::injected(std::string_view call) const {
  return options_.inject_error ? options_.inject_error(call) : 0;
}

std::optional<std::string> persistent_log::rewind_failed_batch(const write_position& before,
                                                               const std::deque<chunk>& batch) {
  // The descriptor goes first: the file is cut by path, and nothing may later sync or cut it.
  if (file_fd_ >= 0) ::close(file_fd_);
  file_fd_ = -1;
  file_dirty_ = false;
  file_offset_ = file_prepared_ = 0;
  std::set<std::uint64_t> segments;
  for (const chunk& c : batch) segments.insert(c.segment);
  std::string problems;
  const auto note = [&](const std::string& what, const fs::path& path, int err) {
    problems +=
        (problems.empty() ? "" : "; ") + what + " " + path.string() + ": " + std::strerror(err);
  };
  for (const std::uint64_t segment : segments) {
    const fs::path path = options_.directory / segment_file_name(segment);
    if (before.open && segment == before.segment) {
      const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) {
        note("cannot open", path, errno);
        continue;
      }
      if (::ftruncate(fd, static_cast<off_t>(before.offset)) != 0)
        note("cannot cut", path, errno);
      else if (::fsync(fd) != 0)
        note("cannot sync", path, errno);
      ::close(fd);
    } else {
      std::error_code ec;
      if (!fs::remove(path, ec) && ec) note("cannot delete", path, ec.value());
    }
  }
  if (auto r = sync_directory(options_.directory); !r) problems += "; " + r.error().message;
  if (problems.empty()) return std::nullopt;
  return problems;
}

void persistent_log::fail_locked(error e) {
  if (!failure_) failure_ = std::move(e);
  failed_.store(true, std::memory_order_release);
  complete_all_waiters_locked();
}

void persistent_log::resume_all(std::vector<waiter> ready, const result<void>& outcome) {
  for (std::size_t first = 0; first < ready.size(); ++first) {
    if (!ready[first].resume) continue;  // already taken into an earlier executor's group
    std::vector<std::function<void(result<void>)>> group;
    // The group's other copies of the executor go with it and are let go of on the caller's
    // side: this (writer) thread must hold none once a caller can resume (post_releasing).
    std::vector<boost::asio::any_io_executor> copies;
    for (std::size_t i = first; i < ready.size(); ++i) {
      if (ready[i].resume && ready[i].executor == ready[first].executor) {
        group.push_back(std::move(ready[i].resume));
        ready[i].resume = nullptr;
        if (i != first) copies.push_back(std::move(ready[i].executor));
      }
    }
    qrt::detail::post_releasing(
        std::move(ready[first].executor),
        [group = std::move(group), copies = std::move(copies), outcome]() mutable {
          for (auto& resume : group) resume(outcome);
        });
  }
}

void persistent_log::complete_all_waiters_locked() {
  std::vector<waiter> all;
  all.reserve(waiters_.size());
  for (auto& [lsn, w] : waiters_) all.push_back(std::move(w));
  waiters_.clear();
  resume_all(std::move(all), failure_
                                 ? result<void>{*failure_}
                                 : result<void>{fail(errc::closed, "persistence log is closed")});
  progress_.notify_all();
}

void persistent_log::complete_reached_waiters_locked() {
  const detail::lsn reached = options_.mode == durability::always ? durable_lsn_ : written_lsn_;
  auto end = waiters_.upper_bound(reached);
  std::vector<waiter> ready;
  for (auto it = waiters_.begin(); it != end; ++it) ready.push_back(std::move(it->second));
  waiters_.erase(waiters_.begin(), end);
  released_last_round_ = ready.size();
  if (!ready.empty()) resume_all(std::move(ready), result<void>{});
  progress_.notify_all();
}

result<void> persistent_log::write_chunk(chunk& c) {
  const fs::path& dir = options_.directory;
  const fs::path path = dir / segment_file_name(c.segment);
  if (file_fd_ < 0 || file_segment_ != c.segment) {
    // The old segment must be as durable as what follows it before it is left behind.
    if (auto r = close_open_file(options_.mode != durability::none); !r) return r;
    file_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (file_fd_ < 0) return io_error("cannot create segment", path, errno);
    file_segment_ = c.segment;
    file_offset_ = 0;
    file_prepared_ = 0;
    const std::string header = segment_header(c.segment);
    if (auto r = write_at(file_fd_, header.data(), header.size(), 0, path, options_.inject_error);
        !r)
      return r;
    file_offset_ = header.size();
    file_prepared_ = file_offset_;
    if (auto r = prepare_space(c.bytes.size(), path); !r) return r;
    if (options_.mode != durability::none) {
      // The file's size and the zeros ahead become durable here, once, not on the first sync.
      if (const int err = injected("fsync"); err != 0) return io_error("cannot sync", path, err);
      if (::fsync(file_fd_) != 0) return io_error("cannot sync", path, errno);
      if (auto r = sync_directory(dir); !r) return r;
    }
  }
  if (auto r = prepare_space(c.bytes.size(), path); !r) return r;
  file_dirty_ = true;
  if (auto r = write_at(file_fd_, c.bytes.data(), c.bytes.size(), file_offset_, path,
                        options_.inject_error);
      !r)
    return r;
  file_offset_ += c.bytes.size();
  return {};
}

result<void> persistent_log::prepare_space(std::size_t bytes, const fs::path& path) {
  // In `always` mode every sync would otherwise also commit the file's new size (a journal
  // commit on ext4, about doubling its cost); writing zeros ahead of the records, a step at a
  // time, leaves the syncs nothing but data to flush. Recovery reads an all-zero tail as the
  // end of the log.
  if (options_.mode != durability::always) return {};
  const std::uint64_t needed = file_offset_ + bytes;
  if (needed <= file_prepared_) return {};
  std::uint64_t target =
      std::min<std::uint64_t>(needed + options_.preallocate_bytes, options_.segment_bytes);
  target = (std::max(target, needed) + 4095) / 4096 * 4096;
  if (auto r = write_zeros(file_fd_, file_prepared_, target, path, options_.inject_error); !r)
    return r;
  file_prepared_ = target;
  return {};
}

result<void> persistent_log::close_open_file(bool sync) {
  if (file_fd_ < 0) return {};
  const fs::path path = options_.directory / segment_file_name(file_segment_);
  result<void> r;
  // Zeros ahead of the last record are cut off, so a segment left behind ends at its last record.
  if (file_prepared_ > file_offset_) {
    if (::ftruncate(file_fd_, static_cast<off_t>(file_offset_)) != 0)
      r = io_error("cannot truncate", path, errno);
    else
      file_dirty_ = true;
  }
  if (r && sync && file_dirty_) {
    if (const int err = injected("fsync"); err != 0)
      r = io_error("cannot sync", path, err);
    else if (::fsync(file_fd_) != 0)
      r = io_error("cannot sync", path, errno);
    else
      ++syncs_;
  }
  ::close(file_fd_);
  file_fd_ = -1;
  file_dirty_ = false;
  file_offset_ = file_prepared_ = 0;
  return r;
}

result<void> persistent_log::sync_open_file() {
  if (file_fd_ < 0 || !file_dirty_) return {};
  if (const int err = injected("fdatasync"); err != 0)
    return io_error("fdatasync failed on", options_.directory / segment_file_name(file_segment_),
                    err);
  if (::fdatasync(file_fd_) != 0)
    return io_error("fdatasync failed on", options_.directory / segment_file_name(file_segment_),
                    errno);
  // Synced into a file nobody can open again (the segment, or the whole persistence directory,
  // was deleted while open): nothing of it survives a restart, so none of it is acknowledged.
  struct stat st {};
  if (::fstat(file_fd_, &st) == 0 && st.st_nlink == 0) {
    return fail(errc::provider_error,
                "persistence log: segment " +
                    (options_.directory / segment_file_name(file_segment_)).string() +
                    " was deleted while in use (was the persistence directory removed?); what "
                    "was written to it since is not kept");
  }
  file_dirty_ = false;
  ++syncs_;
  return {};
}

void persistent_log::delete_settled_segments(std::unique_lock<std::mutex>& lock,
                                             detail::lsn written) {
  // Only a prefix goes: a later segment may hold the `removed` record of a message enqueued in
  // an earlier one, so deleting out of order could bring settled messages back. The segment
  // the writer has open started with a checkpoint of every queue and session state, which is
  // what lets the older ones go.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> doomed;  // index, bytes
  for (const auto& [index, bytes] : segment_bytes_) {
    if (index >= file_segment_ || index_.live_in(index) != 0) break;
    // Its last message may have been settled by a record still waiting to be written: deleting
    // now would apply that settlement on disk before it is acknowledged, and if its write then
    // failed, a reopen would lose a message its caller was told was not settled.
    if (auto it = released_at_.find(index); it != released_at_.end() && it->second > written) break;
    doomed.emplace_back(index, bytes);
  }
  if (doomed.empty()) return;
  lock.unlock();
  result<void> r = sync_open_file();  // the checkpoint that replaces them must be on disk first
  std::error_code ec;
  for (std::size_t i = 0; r && i < doomed.size(); ++i) {
    const fs::path path = options_.directory / segment_file_name(doomed[i].first);
    if (!fs::remove(path, ec) && ec) r = io_error("cannot delete", path, ec.value());
  }
  if (r) r = sync_directory(options_.directory);
  lock.lock();
  if (!r) return fail_locked(r.error());
  for (const auto& [index, bytes] : doomed) {
    segment_bytes_.erase(index);
    segment_records_.erase(index);
    released_at_.erase(index);
    total_bytes_ -= bytes;
    index_.segment_deleted(index);
  }
  progress_.notify_all();
  lock.unlock();
  {
    std::lock_guard listening(listener_mutex_);
    if (space_listener_) space_listener_();
  }
  lock.lock();
}

void persistent_log::set_space_listener(std::function<void()> listener) {
  std::lock_guard listening(listener_mutex_);
  space_listener_ = std::move(listener);
}

void persistent_log::compact_oldest_segment(std::unique_lock<std::mutex>& lock) {
  // A message that stays unsettled (a backlog's oldest, or a dead letter nobody reads) would
  // otherwise pin its segment and, since only a prefix may go, every segment after it. Once
  // three quarters of the oldest segment's records are dead, or the disk limit is reached, its
  // live messages are appended again (with their current delivery count) to the active
  // segment; the oldest then holds nothing live and goes once those copies are durable.
  if (segment_bytes_.size() < 3 || failure_) return;
  const std::uint64_t head = segment_bytes_.begin()->first;
  const std::uint64_t live = index_.live_in(head);
  if (head >= file_segment_ || live == 0) return;
  const bool need_space = options_.max_disk_bytes != 0 && total_bytes_ >= options_.max_disk_bytes;
  if (!need_space && live * 4 > segment_records_[head]) return;

  const fs::path path = options_.directory / segment_file_name(head);
  lock.unlock();
  std::string data;
  {
    std::ifstream in(path, std::ios::binary);
    data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // Calls `each(record, offset)` for every record of the segment, in order.
  const auto for_each_record = [&](auto&& each) {
    std::size_t pos = segment_header_size;
    while (pos < data.size()) {
      const frame_view frame = read_frame(std::string_view(data).substr(pos));
      if (frame.status != frame_status::ok) break;  // a tail this process cut off on open
      if (auto decoded = decode_record(frame.payload)) each(*decoded, pos);
      pos += frame.frame_size;
    }
  };
  // A queue deleted and created again numbers its messages from 1 again, so the segment may
  // hold several enqueue records of one queue and sequence. The live message is the last of
  // them (a later one would have replaced it in the index); an earlier one is a message that
  // went with its queue, and copying that forward would give its content back in place of the
  // live one's.
  std::map<std::pair<queue_name, std::uint64_t>, std::size_t> last_enqueue;
  for_each_record([&](const record& r, std::size_t offset) {
    if (const auto* enqueued = std::get_if<enqueued_record>(&r)) {
      last_enqueue[{enqueued->queue, enqueued->message.sequence}] = offset;
    } else if (const auto* published = std::get_if<published_record>(&r)) {
      for (const auto& [subscription, sequence] : published->copies)
        last_enqueue[{subscription, sequence}] = offset;
    }
  });
  lock.lock();
  if (data.size() < segment_header_size) {
    return fail_locked(fail(errc::provider_error,
                            "persistence log: cannot read " + path.string() + " to compact it"));
  }
  for_each_record([&](record& r, std::size_t offset) {
    // Each live message whose enqueue record is here is appended again as its own enqueued
    // record; a published record holds one per subscription it went to.
    auto copy_forward = [&](const queue_name& queue, stored_message& message) {
      const auto last = last_enqueue.find({queue, message.sequence});
      if (last == last_enqueue.end() || last->second != offset) return;
      const live_message* current = index_.find(queue, message.sequence);
      if (!current || current->segment != head) return;
      message.delivery_count = current->delivery_count;
      const detail::lsn copied =
          append([&](std::string& out) { return append_enqueued(out, queue, message); });
      note_release_locked(head, copied);
      index_.moved(queue, message.sequence, active_segment_);
    };
    if (auto* enqueued = std::get_if<enqueued_record>(&r)) {
      copy_forward(enqueued->queue, enqueued->message);
    } else if (auto* published = std::get_if<published_record>(&r)) {
      for (const auto& [subscription, sequence] : published->copies) {
        stored_message message = published->message;
        message.sequence = sequence;
        copy_forward(subscription, message);
      }
    }
  });
}

void persistent_log::roll_early_at_disk_limit_locked() {
  // Only segments behind the writer can go. With a limit smaller than a few segments, the
  // active one could fill with records that are all settled and still pin the space: at the
  // limit, a segment that took a quarter of it is rolled, so settlements can free it.
  if (options_.max_disk_bytes == 0 || total_bytes_ < options_.max_disk_bytes || failure_) return;
  if (segment_records_[active_segment_] == 0) return;  // only its checkpoint: rolling frees nothing
  if (segment_bytes_[active_segment_] < options_.max_disk_bytes / 4) return;
  roll_segment_locked();
}

void persistent_log::writer_loop() {
  using steady = std::chrono::steady_clock;
  std::unique_lock lock(mutex_);
  auto next_sync = steady::now() + options_.sync_interval;
  while (true) {
    if (queued_.empty()) {
      if (stopping_ || failure_) break;
      // While idle, every append wakes the writer (otherwise appends do not notify).
      const auto has_work = [&] { return !queued_.empty() || stopping_; };
      writer_idle_ = true;
      if (options_.mode == durability::interval && file_dirty_) {
        const bool woken = work_ready_.wait_until(lock, next_sync, has_work);
        writer_idle_ = false;
        if (!woken) {
          lock.unlock();
          result<void> r = sync_open_file();
          lock.lock();
          if (!r) fail_locked(r.error());
          durable_lsn_ = written_lsn_;
          next_sync = steady::now() + options_.sync_interval;
        }
      } else {
        work_ready_.wait(lock, has_work);
        writer_idle_ = false;
      }
      continue;
    }
    // Group commit: everything appended while the previous write+sync ran goes out together.
    // The operations the last sync released usually come straight back with their next
    // operation; syncing before they have arrived would cost each straggler a sync of its own.
    // So wait until as many operations wait for a sync as the last one released, up to three
    // syncs' time (measured: waiting longer for the last few beats leaving them for the next
    // sync; a released operation that does not come back costs at most that, capped at 2 ms).
    if (options_.mode == durability::always && released_last_round_ > 1 &&
        arrived_waiters_ < released_last_round_) {
      const auto patience =
          std::min<std::chrono::nanoseconds>(sync_estimate_ * 3, std::chrono::milliseconds{2});
      expected_waiters_ = released_last_round_;
      work_ready_.wait_until(lock, steady::now() + patience,
                             [&] { return arrived_waiters_ >= released_last_round_ || stopping_; });
      expected_waiters_ = 0;
    }
    // An operation's events are appended one by one under its queue's lock: taking a batch in
    // the middle would split it, and if the second part then failed, a reopen would replay the
    // first part of an operation its caller was told had failed (half a send batch, or a
    // message both dead-lettered and still in its queue). Operations are short (no I/O, no
    // waiting), so this waits microseconds.
    writer_waits_for_operations_ = true;
    operations_closed_.wait(lock, [&] { return open_operations_ == 0; });
    writer_waits_for_operations_ = false;
    released_last_round_ = 0;
    arrived_waiters_ = 0;
    std::deque<chunk> batch;
    batch.swap(queued_);
    detail::lsn last = 0;
    for (const chunk& c : batch) last = std::max(last, c.last);
    taken_lsn_ = std::max(taken_lsn_, last);
    lock.unlock();
    const write_position before{file_fd_ >= 0, file_segment_, file_offset_};
    result<void> r;
    for (chunk& c : batch)
      if (r = write_chunk(c); !r) break;
    if (r && options_.mode == durability::always) {
      const auto sync_start = steady::now();
      r = sync_open_file();
      sync_estimate_ = (sync_estimate_ * 7 + (steady::now() - sync_start)) / 8;
    }
    if (!r) {
      // No operation in this batch was acknowledged (that happens below, after the write and,
      // in `always` mode, the sync): what of it reached the disk is taken off again, so that
      // a reopen replays exactly what was acknowledged. The provider refuses every operation
      // from here on (failure()), since its memory already holds the batch's changes.
      error e = r.error();
      if (auto problem = rewind_failed_batch(before, batch))
        e.message += "; the failed batch could not be taken off the disk (" + *problem +
                     "), so a reopen may replay operations that were reported as failed";
      else
        e.message += "; the persisted provider stops here: reopen it once the disk is fixed";
      lock.lock();
      fail_locked(std::move(e));
      break;
    }
    lock.lock();
    // Deleting before the batch counts as written (rare: once per settled segment) means
    // whoever sees its operation acknowledged also sees the disk space it freed. The deletion
    // unlocks the mutex for its syscalls, so the lsns must not be published before it: a
    // wait_flushed() caller would see its operation done while files are still going.
    delete_settled_segments(lock, std::max(written_lsn_, last));
    compact_oldest_segment(lock);
    roll_early_at_disk_limit_locked();
    written_lsn_ = std::max(written_lsn_, last);
    if (options_.mode == durability::always) durable_lsn_ = written_lsn_;
    complete_reached_waiters_locked();
    if (options_.mode == durability::interval && steady::now() >= next_sync) {
      lock.unlock();
      r = sync_open_file();
      lock.lock();
      if (!r) fail_locked(r.error());
      durable_lsn_ = written_lsn_;
      next_sync = steady::now() + options_.sync_interval;
    }
  }
  // Stopping: whatever was written gets synced, whatever mode, so a clean close loses nothing.
  const bool failed = failure_.has_value();
  lock.unlock();
  result<void> r = close_open_file(!failed);
  lock.lock();
  if (!r) fail_locked(r.error());
  if (!failure_) durable_lsn_ = written_lsn_;
  complete_reached_waiters_locked();
  stopped_ = true;
  complete_all_waiters_locked();
}

}  // namespace qrt::memory::log
