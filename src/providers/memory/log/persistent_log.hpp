// The persisted embedded provider's event_sink: appends every state change to a segmented log
// under a directory, with one writer thread that writes and syncs in batches (group commit).
// See docs/adr/0003-persistence-format.md.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/execution_context.hpp>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <qrt/memory.hpp>
#include <string_view>
#include <thread>
#include <vector>

#include "core/abandon_on_shutdown.hpp"
#include "replay.hpp"

namespace qrt::memory::log {

struct log_options {
  std::filesystem::path directory;  ///< created if missing
  durability mode = durability::always;
  milliseconds sync_interval{100};   ///< durability::interval
  std::uint64_t max_disk_bytes = 0;  ///< 0: no limit
  /// A segment is rolled once it reaches this size (4 KiB to largest_segment_bytes).
  std::uint64_t segment_bytes = largest_segment_bytes;
  /// durability::always writes zeros this far ahead of the records (see prepare_space).
  std::uint64_t preallocate_bytes = 1u << 20;
  /// How long open() waits for another holder of the directory to close it (0: fail at once).
  milliseconds open_timeout{0};
  /// Where recovery reports what it cut off, and open() that it waits; default: stderr.
  std::function<void(const std::string&)> warn;
  /// Test seam standing in for a failing disk: consulted before each write ("write") and sync
  /// ("fdatasync", "fsync") of a segment; a non-zero result fails that call with that errno.
  std::function<int(std::string_view call)> inject_error;
};

class persistent_log final : public detail::event_sink,
                             public qrt::detail::holds_handlers,
                             public std::enable_shared_from_this<persistent_log> {
 public:
  struct opened;

  /// Locks the directory (a second opener gets an error naming the holder), replays it, and
  /// starts the writer. The returned state is what the provider starts from.
  static result<opened> open(log_options options);

  ~persistent_log() override;
  persistent_log(const persistent_log&) = delete;
  persistent_log& operator=(const persistent_log&) = delete;

  detail::lsn queue_created(const queue_name& queue, const queue_options& options) override;
  detail::lsn queue_deleted(const queue_name& queue) override;
  detail::lsn enqueued(const queue_name& queue, const stored_message& msg) override;
  detail::lsn delivered(const queue_name& queue, std::uint64_t sequence,
                        std::uint32_t delivery_count) override;
  detail::lsn removed(const queue_name& queue, std::uint64_t sequence) override;
  detail::lsn session_state_set(const queue_name& queue, const session_id& session,
                                const std::string& state) override;
  bool stores_topics() const override { return true; }
  detail::lsn topic_created(const topic_name& topic) override;
  detail::lsn topic_deleted(const topic_name& topic) override;
  detail::lsn subscription_created(const queue_name& subscription,
                                   const subscription_options& options) override;
  detail::lsn published(const topic_name& topic, const stored_message& msg,
                        const std::vector<std::pair<queue_name, std::uint64_t>>& copies) override;
  void begin_operation() override;
  void end_operation() override;
  awaitable<result<void>> flushed(detail::lsn upto) override;
  std::optional<error> refuse(const queue_name& queue, const message& content) const override;
  std::optional<error> refuse_publish(const topic_name& topic, const message& content,
                                      const std::vector<queue_name>& copies) const override;
  std::optional<error> failure() const override;

  /// Blocking form of flushed() for callers outside a coroutine (tests, shutdown).
  result<void> wait_flushed(detail::lsn upto);

  /// Bytes the log holds on disk, counting what is queued for writing.
  std::uint64_t disk_bytes() const;
  /// True while the log is at or above max_disk_bytes: new messages must wait (backpressure);
  /// settlements are always accepted, since they are what frees space.
  bool over_disk_limit() const;
  bool has_room() const override { return !over_disk_limit(); }
  void set_space_listener(std::function<void()> listener) override;
  /// How many segment files exist now (tests and stats).
  std::size_t segment_count() const;
  std::uint64_t fdatasync_count() const;

  /// Writes and syncs everything appended so far, stops the writer, then unlocks the directory.
  /// Idempotent.
  void close() override;

  /// `ctx` is shutting down: the flushed() calls of coroutines that run there are dropped
  /// unresumed (Asio then destroys the coroutines), so the writer never posts to a context
  /// that is gone (core/abandon_on_shutdown.hpp).
  void abandon(const boost::asio::execution_context& ctx) override;

 private:
  struct chunk {
    std::uint64_t segment = 0;
    std::string bytes;
    detail::lsn last = 0;
  };
  struct waiter {
    boost::asio::any_io_executor executor;     ///< where the waiting coroutine resumes
    std::function<void(result<void>)> resume;  ///< run on `executor`
  };
  /// Resumes `ready` with one post per executor: a sync typically releases every client at
  /// once, and one post (at most one thread wake-up) for all of them costs far less than one
  /// each — the wake-ups, not the disk, were most of a group-commit cycle's time.
  static void resume_all(std::vector<waiter> ready, const result<void>& outcome);

  explicit persistent_log(log_options options);
  template <class Encode>
  detail::lsn append(Encode&& encode);
  void roll_segment_locked();
  void roll_early_at_disk_limit_locked();
  bool reached_locked(detail::lsn upto) const;
  void writer_loop();
  result<void> write_chunk(chunk& c);
  /// Where the writer stood before a batch: what a failed batch is cut back to.
  struct write_position {
    bool open = false;  ///< a segment was open (else the batch started a new one)
    std::uint64_t segment = 0;
    std::uint64_t offset = 0;
  };
  /// After a failed write or sync, takes the batch's records off the disk again (cuts the open
  /// segment back to `before`, deletes segments the batch started): none of its operations was
  /// acknowledged, so a reopen must not replay them. Returns why it could not, if so.
  std::optional<std::string> rewind_failed_batch(const write_position& before,
                                                 const std::deque<chunk>& batch);
  /// errno injected for `call` by options_.inject_error, else 0.
  int injected(std::string_view call) const;
  result<void> sync_open_file();
  result<void> prepare_space(std::size_t bytes, const std::filesystem::path& path);
  /// Cuts the zeros ahead of the last record, syncs (if `sync`) and closes the open segment.
  result<void> close_open_file(bool sync);
  /// Deletes the oldest segments that hold nothing live, as long as every record that emptied
  /// them is written (lsn <= `written`).
  void delete_settled_segments(std::unique_lock<std::mutex>& lock, detail::lsn written);
  /// The record `lsn` takes a live message out of `segment` (settled, deleted, copied forward).
  void note_release_locked(std::uint64_t segment, detail::lsn lsn);
  void compact_oldest_segment(std::unique_lock<std::mutex>& lock);
  void complete_reached_waiters_locked();
  void complete_all_waiters_locked();
  void fail_locked(error e);
  void register_waiter(detail::lsn upto, waiter w);

  const log_options options_;
  int lock_fd_ = -1;

  std::mutex listener_mutex_;  ///< held while the listener runs, so removing it is final
  std::function<void()> space_listener_;

  mutable std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable progress_;
  /// Operations (begin_operation) under way. The writer takes a batch only when there is none,
  /// so no operation is split between two batches.
  std::size_t open_operations_ = 0;
  bool writer_waits_for_operations_ = false;
  std::condition_variable operations_closed_;
  live_index index_;
  std::deque<chunk> queued_;
  std::map<std::uint64_t, std::uint64_t> segment_bytes_;    ///< index -> bytes (incl. queued)
  std::map<std::uint64_t, std::uint64_t> segment_records_;  ///< index -> records in it
  /// index -> the last record that took a live message out of it. The live counts move when a
  /// record is appended, so a segment whose count is 0 may still wait for that record's write.
  std::map<std::uint64_t, detail::lsn> released_at_;
  std::uint64_t active_segment_ = 0;
  std::uint64_t total_bytes_ = 0;
  detail::lsn next_lsn_ = 1;
  detail::lsn written_lsn_ = 0;  ///< handed to the kernel
  detail::lsn durable_lsn_ = 0;  ///< fdatasync'ed
  detail::lsn taken_lsn_ = 0;    ///< taken by the writer for its current or last batch
  std::multimap<detail::lsn, waiter> waiters_;
  qrt::detail::watched_contexts watched_contexts_;  ///< of the flushed() callers; see abandon()
  std::optional<error> failure_;
  std::atomic<bool> failed_{false};  ///< failure_ is set: read without the mutex by failure()
  bool stopping_ = false;
  bool stopped_ = false;
  std::atomic<std::uint64_t> syncs_{0};
  std::size_t arrived_waiters_ = 0;      ///< flushed() callers since the writer last took a batch
  std::size_t expected_waiters_ = 0;     ///< the writer waits for this many (0: not waiting)
  bool writer_idle_ = false;             ///< the writer sleeps until something is appended
  std::size_t released_last_round_ = 0;  ///< waiters the last sync completed
  std::chrono::nanoseconds sync_estimate_{0};  ///< moving average of one write+fdatasync

  // Owned by the writer thread.
  int file_fd_ = -1;
  std::uint64_t file_segment_ = 0;
  bool file_dirty_ = false;
  std::uint64_t file_offset_ = 0;    ///< where the next record goes
  std::uint64_t file_prepared_ = 0;  ///< the file's size: zeros from file_offset_ up to here

  std::thread writer_;
};

struct persistent_log::opened {
  std::shared_ptr<persistent_log> log;
  detail::recovered_state state;
  recovery_report report;
};

}  // namespace qrt::memory::log
