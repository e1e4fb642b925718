#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "log_test_support.hpp"

namespace qrt::memory::log {
namespace {

using testing::make_message;
using testing::open_or_die;
using testing::options_for;
using testing::orders;
using testing::read_file;
using testing::scratch_dir;
using testing::segment_files;
using testing::write_file;

std::vector<std::uint64_t> sequences(const std::vector<stored_message>& ms) {
  std::vector<std::uint64_t> out;
  for (const auto& m : ms) out.push_back(m.sequence);
  return out;
}

TEST(PersistentLog, ReopenRestoresQueuesMessagesCountsAndSessionState) {
  scratch_dir dir;
  queue_options opts;
  opts.max_delivery_count = 4;
  opts.requires_session = true;
  {
    auto o = open_or_die(options_for(dir.path()));
    EXPECT_TRUE(o.state.empty());
    auto& log = *o.log;
    log.queue_created(orders, opts);
    log.enqueued(orders, make_message(1, "one", "s1"));
    log.enqueued(orders, make_message(2, "two", "s1"));
    log.enqueued(orders, make_message(3, "three", "s2"));
    log.delivered(orders, 2, 1);
    log.delivered(orders, 2, 2);
    log.removed(orders, 1);
    auto dlq = make_message(7, "dead");
    dlq.dead_letter = dead_letter_info{"reason", "desc"};
    log.removed(orders, 3);
    log.enqueued(orders.dead_letter(), dlq);
    log.session_state_set(orders, session_id::from("s1"), "checkpoint-1");
    log.session_state_set(orders, session_id::from("s2"), "x");
    const auto last = log.session_state_set(orders, session_id::from("s2"), "");
    ASSERT_TRUE(log.wait_flushed(last));
  }
  auto o = open_or_die(options_for(dir.path()));
  ASSERT_EQ(o.state.size(), 1u);
  const auto& q = o.state.at(orders);
  EXPECT_EQ(q.options.max_delivery_count, 4u);
  EXPECT_TRUE(q.options.requires_session);
  EXPECT_EQ(sequences(q.messages), (std::vector<std::uint64_t>{2}));
  EXPECT_EQ(q.messages[0].content.body, "two");
  EXPECT_EQ(q.messages[0].delivery_count, 2u);
  ASSERT_EQ(q.dead_letters.size(), 1u);
  EXPECT_EQ(q.dead_letters[0].content.body, "dead");
  EXPECT_EQ(q.dead_letters[0].dead_letter->reason, "reason");
  EXPECT_EQ(q.next_sequence, 8u);
  EXPECT_EQ(q.session_states,
            (std::map<session_id, std::string>{{session_id::from("s1"), "checkpoint-1"}}));
  EXPECT_EQ(o.report.torn_bytes, 0u);
}

TEST(PersistentLog, DeletedQueueStaysDeleted) {
  scratch_dir dir;
  {
    auto o = open_or_die(options_for(dir.path()));
    o.log->queue_created(orders, {});
    o.log->enqueued(orders, make_message(1, "a"));
    o.log->enqueued(orders.dead_letter(), make_message(2, "b"));
    o.log->queue_deleted(orders);
    o.log->queue_created(queue_name::from("other"), {});
  }
  auto o = open_or_die(options_for(dir.path()));
  EXPECT_EQ(o.state.count(orders), 0u);
  EXPECT_EQ(o.state.count(queue_name::from("other")), 1u);
}

// The persistence directory removed under a running log: the next sync finds its segment gone
// and fails, so what was written since is never acknowledged as durable, and the log refuses
// everything after (a reopen would not have it).
TEST(PersistentLog, ASegmentDeletedWhileInUseFailsTheNextSyncInsteadOfAcknowledging) {
  scratch_dir dir;
  auto o = open_or_die(options_for(dir.path()));
  auto& log = *o.log;
  ASSERT_TRUE(log.wait_flushed(log.queue_created(orders, {})));
  std::filesystem::remove_all(dir.path());
  auto lost = log.wait_flushed(log.enqueued(orders, make_message(1, "not kept")));
  ASSERT_FALSE(lost) << "a write into a deleted segment was acknowledged";
  EXPECT_NE(lost.error().message.find("deleted while in use"), std::string::npos)
      << lost.error().message;
  EXPECT_TRUE(log.failure());
}

TEST(PersistentLog, SecondOpenerIsRefusedWithAClearError) {
  scratch_dir dir;
  auto first = open_or_die(options_for(dir.path()));
  auto second = persistent_log::open(options_for(dir.path()));
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("in use by another provider of this process"),
            std::string::npos);
  EXPECT_NE(second.error().message.find(dir.path().string()), std::string::npos);
  EXPECT_NE(second.error().message.find(std::to_string(::getpid())), std::string::npos);
  first.log.reset();
  EXPECT_TRUE(persistent_log::open(options_for(dir.path())));
}

TEST(PersistentLog, SecondOpenerAskedToWaitOpensOnceTheHolderCloses) {
  scratch_dir dir;
  auto first = open_or_die(options_for(dir.path()));
  ASSERT_TRUE(first.log->wait_flushed(first.log->queue_created(orders, {})));

  std::promise<void> waiting;
  auto opts = options_for(dir.path());
  opts.open_timeout = milliseconds{60'000};
  opts.warn = [&](const std::string& line) {
    if (line.find("waiting up to") != std::string::npos) waiting.set_value();
  };
  auto second = std::async(std::launch::async, [&] { return persistent_log::open(opts); });
  // The second opener found the directory locked and said so; only then does the first close.
  ASSERT_EQ(waiting.get_future().wait_for(std::chrono::seconds{30}), std::future_status::ready);
  ASSERT_EQ(second.wait_for(milliseconds{0}), std::future_status::timeout);
  first.log.reset();
  ASSERT_EQ(second.wait_for(std::chrono::seconds{30}), std::future_status::ready);
  auto opened = second.get();
  ASSERT_TRUE(opened) << opened.error().message;
  EXPECT_EQ(opened->state.count(orders), 1u);  // and it sees what the first one wrote
}

TEST(PersistentLog, SecondOpenerGivesUpAfterItsTimeoutNamingTheHolder) {
  scratch_dir dir;
  auto first = open_or_die(options_for(dir.path()));
  auto opts = options_for(dir.path());
  opts.open_timeout = milliseconds{50};
  auto second = persistent_log::open(opts);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, errc::provider_error);
  EXPECT_NE(second.error().message.find("in use by another provider of this process"),
            std::string::npos);
  EXPECT_NE(second.error().message.find(std::to_string(::getpid())), std::string::npos);
  EXPECT_NE(second.error().message.find("waited 50 ms"), std::string::npos)
      << second.error().message;
}

// Whoever can write the persistence directory (a shared or world-writable parent) can plant
// symbolic links where the log opens its lock file or its next segment. The log writes only
// files in its directory: it fails instead of truncating, or creating, a file elsewhere.
TEST(PersistentLog, SymbolicLinksInTheDirectoryAreNotFollowedOutOfIt) {
  scratch_dir elsewhere;
  {
    scratch_dir dir;
    const auto victim = elsewhere.path() / "victim";
    write_file(victim, "precious");
    std::filesystem::create_symlink(victim, dir.path() / "LOCK");
    auto o = persistent_log::open(options_for(dir.path()));
    EXPECT_FALSE(o);
    EXPECT_EQ(read_file(victim), "precious");
  }
  {
    scratch_dir dir;
    const auto target = elsewhere.path() / "created";
    // Dangling, so replay skips it; the next segment the writer creates has this name.
    std::filesystem::create_symlink(target, dir.path() / segment_file_name(1));
    auto o = persistent_log::open(options_for(dir.path()));
    ASSERT_TRUE(o) << o.error().message;
    EXPECT_FALSE(o->log->wait_flushed(o->log->queue_created(orders, {})));
    EXPECT_FALSE(std::filesystem::exists(target));
  }
}

TEST(PersistentLog, MissingDirectoryIsAConfigurationError) {
  auto o = persistent_log::open(options_for(""));
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().code, errc::configuration_error);
}

TEST(PersistentLog, SegmentsRollAndSettledOnesAreDeleted) {
  scratch_dir dir;
  auto opts = options_for(dir.path());
  opts.segment_bytes = 4096;
  auto o = open_or_die(opts);
  auto& log = *o.log;
  log.queue_created(orders, {});
  const std::string body(300, 'x');
  detail::lsn last = 0;
  for (std::uint64_t seq = 1; seq <= 200; ++seq)
    last = log.enqueued(orders, make_message(seq, body));
  ASSERT_TRUE(log.wait_flushed(last));
  const std::size_t rolled = segment_files(dir.path()).size();
  EXPECT_GT(rolled, 10u);

  // Settle all but the newest message: every segment but the one holding it (and the active
  // one) can go.
  for (std::uint64_t seq = 1; seq < 200; ++seq) last = log.removed(orders, seq);
  // Fill a few more segments so the writer moves past the one that held message 199.
  for (std::uint64_t seq = 201; seq <= 240; ++seq) {
    log.enqueued(orders, make_message(seq, body));
    last = log.removed(orders, seq);
  }
  ASSERT_TRUE(log.wait_flushed(last));
  // The writer may still be copying the live message forward (compaction appends records past
  // `last`, in segments it has not created yet); closing lets it finish.
  log.close();
  EXPECT_LT(segment_files(dir.path()).size(), rolled);
  EXPECT_EQ(log.segment_count(), segment_files(dir.path()).size());
  o.log.reset();

  auto reopened = open_or_die(opts);
  const auto& q = reopened.state.at(orders);
  EXPECT_EQ(sequences(q.messages), (std::vector<std::uint64_t>{200}));
  EXPECT_EQ(q.next_sequence, 241u);
}

// A segment may go only once the record that took its last live message away is written: the
// live counts move when a record is appended, not when it reaches the disk. Here the writer is
// held inside a write while the last message of an old segment is settled; that settlement's
// own write then fails. It was not acknowledged, so the message must still be there on reopen.
TEST(PersistentLog, ASegmentIsNotDeletedOnASettlementThatWasNeverWritten) {
  scratch_dir dir;
  std::mutex m;
  std::condition_variable changed;
  bool hold_next_write = false, writer_held = false, release_writer = false;
  bool fail_writes = false;
  auto opts = options_for(dir.path(), durability::none);
  opts.segment_bytes = 4096;
  opts.inject_error = [&](std::string_view call) {
    if (call != "write") return 0;
    std::unique_lock lock(m);
    if (hold_next_write) {
      hold_next_write = false;
      writer_held = true;
      changed.notify_all();
      changed.wait(lock, [&] { return release_writer; });
      return 0;
    }
    return fail_writes ? ENOSPC : 0;
  };
  {
    auto o = open_or_die(opts);
    auto& log = *o.log;
    log.queue_created(orders, {});
    log.enqueued(orders, make_message(1, "kept"));                  // segment 1, stays live
    log.enqueued(orders, make_message(2, std::string(5000, 'x')));  // fills segment 1
    ASSERT_TRUE(log.wait_flushed(log.removed(orders, 2)));          // rolls to segment 2
    ASSERT_EQ(segment_files(dir.path()).size(), 2u);

    {
      std::lock_guard lock(m);
      hold_next_write = true;
    }
    const auto in_flight = log.delivered(orders, 1, 1);  // the batch the writer is held in
    {
      std::unique_lock lock(m);
      changed.wait(lock, [&] { return writer_held; });
    }
    const auto settled = log.removed(orders, 1);  // segment 1 has nothing live left
    {
      std::lock_guard lock(m);
      fail_writes = true;  // the settlement's batch fails
      release_writer = true;
    }
    changed.notify_all();
    EXPECT_TRUE(log.wait_flushed(in_flight));
    EXPECT_FALSE(log.wait_flushed(settled));
  }
  opts.inject_error = nullptr;
  auto reopened = open_or_die(opts);
  EXPECT_EQ(sequences(reopened.state.at(orders).messages), (std::vector<std::uint64_t>{1}));
}

TEST(PersistentLog, QueueDefinitionsSurviveTheDeletionOfTheSegmentThatCreatedThem) {
  scratch_dir dir;
  auto opts = options_for(dir.path());
  opts.segment_bytes = 4096;
  queue_options qo;
  qo.max_delivery_count = 9;
  {
    auto o = open_or_die(opts);
    o.log->queue_created(orders, qo);
    o.log->session_state_set(orders, session_id::from("s"), "kept");
    detail::lsn last = 0;
    for (std::uint64_t seq = 1; seq <= 100; ++seq) {
      o.log->enqueued(orders, make_message(seq, std::string(200, 'y')));
      last = o.log->removed(orders, seq);
    }
    ASSERT_TRUE(o.log->wait_flushed(last));
    EXPECT_LE(o.log->segment_count(), 3u);
  }
  auto o = open_or_die(opts);
  const auto& q = o.state.at(orders);
  EXPECT_EQ(q.options.max_delivery_count, 9u);
  EXPECT_EQ(q.session_states.at(session_id::from("s")), "kept");
  EXPECT_TRUE(q.messages.empty());
  EXPECT_EQ(q.next_sequence, 101u);
}

TEST(PersistentLog, LongLivedMessagesAreCopiedForwardSoOldSegmentsCanGo) {
  for (durability mode : {durability::always, durability::none}) {
    scratch_dir dir;
    auto opts = options_for(dir.path(), mode);
    opts.segment_bytes = 4096;
    {
      auto o = open_or_die(opts);
      auto& log = *o.log;
      log.queue_created(orders, {});
      // A message nobody settles, and a dead letter nobody reads, in the first segment.
      log.enqueued(orders, make_message(1, "stays", "s"));
      log.delivered(orders, 1, 1);
      auto dead = make_message(2, "dead letter");
      dead.dead_letter = dead_letter_info{"r", "d"};
      log.enqueued(orders.dead_letter(), dead);
      ASSERT_TRUE(log.wait_flushed(log.delivered(orders, 1, 2)));
      const auto first_segment = segment_files(dir.path()).front();
      detail::lsn last = 0;
      for (std::uint64_t seq = 3; seq <= 300; ++seq) {
        log.enqueued(orders, make_message(seq, std::string(300, 'f')));
        last = log.removed(orders, seq);
      }
      ASSERT_TRUE(log.wait_flushed(last));
      // The sync that acknowledged `last` is followed by the copying; the next sync makes the
      // copies durable and lets the old segments go.
      ASSERT_TRUE(log.wait_flushed(log.delivered(orders, 1, 2)));
      EXPECT_FALSE(std::filesystem::exists(first_segment));
      EXPECT_LE(log.segment_count(), 4u);
    }
    auto o = open_or_die(opts);
    const auto& q = o.state.at(orders);
    ASSERT_EQ(sequences(q.messages), (std::vector<std::uint64_t>{1}));
    EXPECT_EQ(q.messages[0].content.body, "stays");
    EXPECT_EQ(q.messages[0].content.session, session_id::from("s"));
    EXPECT_EQ(q.messages[0].delivery_count, 2u);
    ASSERT_EQ(sequences(q.dead_letters), (std::vector<std::uint64_t>{2}));
    EXPECT_EQ(q.dead_letters[0].dead_letter->reason, "r");
    EXPECT_EQ(q.next_sequence, 301u);
  }
}

// A queue deleted and created again numbers its messages from 1 again, so the oldest segment
// may hold two enqueue records of one queue and sequence: the deleted message's and the live
// one's. Compaction must copy forward the live message, not the first record it meets, or a
// reopen gives back the deleted message's content in place of the live one.
TEST(PersistentLog, CompactionCopiesTheLiveMessageNotAnEarlierOneWithItsSequence) {
  scratch_dir dir;
  auto opts = options_for(dir.path());
  opts.segment_bytes = 4096;
  {
    auto o = open_or_die(opts);
    auto& log = *o.log;
    log.queue_created(orders, {});
    log.enqueued(orders, make_message(1, "deleted with its queue"));
    log.queue_deleted(orders);
    log.queue_created(orders, {});
    ASSERT_TRUE(log.wait_flushed(log.enqueued(orders, make_message(1, "live"))));
    const auto first_segment = segment_files(dir.path()).front();
    detail::lsn last = 0;
    for (std::uint64_t seq = 2; seq <= 300; ++seq) {
      log.enqueued(orders, make_message(seq, std::string(300, 'f')));
      last = log.removed(orders, seq);
    }
    ASSERT_TRUE(log.wait_flushed(last));
    // As in the test above: the next sync makes the copies durable and lets the first go.
    ASSERT_TRUE(log.wait_flushed(log.delivered(orders, 1, 1)));
    ASSERT_FALSE(std::filesystem::exists(first_segment));
  }
  auto o = open_or_die(opts);
  const auto& q = o.state.at(orders);
  ASSERT_EQ(sequences(q.messages), (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(q.messages[0].content.body, "live");
}

TEST(PersistentLog, EveryModeKeepsWhatWasWrittenAcrossACleanClose) {
  for (durability mode : {durability::always, durability::interval, durability::none}) {
    scratch_dir dir;
    {
      auto opts = options_for(dir.path(), mode);
      opts.sync_interval = milliseconds{5};
      auto o = open_or_die(opts);
      o.log->queue_created(orders, {});
      detail::lsn last = 0;
      for (std::uint64_t seq = 1; seq <= 50; ++seq)
        last = o.log->enqueued(orders, make_message(seq, "b"));
      ASSERT_TRUE(o.log->wait_flushed(last));
    }
    auto o = open_or_die(options_for(dir.path(), mode));
    EXPECT_EQ(o.state.at(orders).messages.size(), 50u) << static_cast<int>(mode);
  }
}

// Acknowledgement follows the disk: an operation whose records were written before a later
// batch failed is on disk and replayed, so asking for it after the failure says it succeeded.
// (An operation's caller may get to flushed() only after some other operation's write failed.)
TEST(PersistentLog, WhatWasWrittenBeforeAFailureIsStillAcknowledgedAfterIt) {
  for (durability mode : {durability::always, durability::interval, durability::none}) {
    scratch_dir dir;
    std::atomic<bool> disk_full{false};
    auto opts = options_for(dir.path(), mode);
    opts.inject_error = [&](std::string_view call) {
      return call == "write" && disk_full ? ENOSPC : 0;
    };
    {
      auto o = open_or_die(opts);
      auto& log = *o.log;
      log.queue_created(orders, {});
      const auto written = log.enqueued(orders, make_message(1, "written"));
      ASSERT_TRUE(log.wait_flushed(written));
      disk_full = true;
      EXPECT_FALSE(log.wait_flushed(log.enqueued(orders, make_message(2, "refused"))));
      EXPECT_TRUE(log.wait_flushed(written));
      boost::asio::io_context io;
      std::optional<result<void>> outcome;
      boost::asio::co_spawn(
          io, [&]() -> awaitable<void> { outcome = co_await log.flushed(written); },
          boost::asio::detached);
      io.run();
      ASSERT_TRUE(outcome);
      EXPECT_TRUE(*outcome) << outcome->error().message;
    }
    opts.inject_error = nullptr;
    auto reopened = open_or_die(opts);
    EXPECT_EQ(sequences(reopened.state.at(orders).messages), (std::vector<std::uint64_t>{1}));
  }
}

TEST(PersistentLog, FlushedCompletesOnTheCallersExecutor) {
  scratch_dir dir;
  auto o = open_or_die(options_for(dir.path()));
  o.log->queue_created(orders, {});
  const auto lsn = o.log->enqueued(orders, make_message(1, "x"));
  boost::asio::io_context io;
  std::optional<result<void>> outcome;
  std::thread::id completed_on;
  boost::asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        outcome = co_await o.log->flushed(lsn);
        completed_on = std::this_thread::get_id();
      },
      boost::asio::detached);
  io.run();  // returns only once the coroutine has finished: the wait keeps work counted
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(*outcome);
  EXPECT_EQ(completed_on, std::this_thread::get_id());
}

TEST(PersistentLog, OneSyncResumesEachWaiterOnItsOwnExecutor) {
  // A sync resumes the waiters it releases with one post per executor; waiters from two
  // io_contexts released together must still each resume on their own.
  scratch_dir dir;
  auto o = open_or_die(options_for(dir.path()));
  o.log->queue_created(orders, {});
  constexpr int per_context = 8;
  boost::asio::io_context a, b;
  std::mutex m;
  std::vector<std::pair<boost::asio::io_context*, std::thread::id>> resumed;
  int failures = 0;
  for (int i = 0; i < 2 * per_context; ++i) {
    auto& io = i % 2 == 0 ? a : b;
    boost::asio::co_spawn(
        io,
        [&, i, ctx = &io]() -> awaitable<void> {
          auto r = co_await o.log->flushed(
              o.log->enqueued(orders, make_message(static_cast<std::uint64_t>(i + 1), "x")));
          std::lock_guard lock(m);
          if (!r) ++failures;
          resumed.emplace_back(ctx, std::this_thread::get_id());
        },
        boost::asio::detached);
  }
  std::thread::id a_thread, b_thread;
  std::thread ta([&] {
    a_thread = std::this_thread::get_id();
    a.run();
  });
  std::thread tb([&] {
    b_thread = std::this_thread::get_id();
    b.run();
  });
  ta.join();  // run() returns once its coroutines finished: their waits keep work counted
  tb.join();
  EXPECT_EQ(failures, 0);
  ASSERT_EQ(resumed.size(), 2u * per_context);
  for (const auto& [ctx, thread] : resumed) EXPECT_EQ(thread, ctx == &a ? a_thread : b_thread);
}

TEST(PersistentLog, IntervalAndNoneAcknowledgeOnceWrittenNotAtTheNextSync) {
  // interval/none promise "written to the kernel" only, so an append is acknowledged as soon as
  // the writer has written it, however far away the next timed sync is.
  for (durability mode : {durability::interval, durability::none}) {
    scratch_dir dir;
    auto opts = options_for(dir.path(), mode);
    opts.sync_interval = milliseconds{3'600'000};
    auto o = open_or_die(opts);
    auto& log = *o.log;
    ASSERT_TRUE(log.wait_flushed(log.queue_created(orders, {})));
    for (std::uint64_t seq = 1; seq <= 3; ++seq) {
      const auto lsn = log.enqueued(orders, make_message(seq, "quick"));
      auto acked = std::async(std::launch::async, [&] { return log.wait_flushed(lsn); });
      ASSERT_EQ(acked.wait_for(std::chrono::seconds{30}), std::future_status::ready)
          << "append " << seq << " waited for the hourly sync";
      EXPECT_TRUE(acked.get());
    }
  }
}

TEST(PersistentLog, ConcurrentAppendersShareFdatasyncs) {
  scratch_dir dir;
  auto o = open_or_die(options_for(dir.path()));
  auto& log = *o.log;
  constexpr int threads = 8, per_thread = 100;
  std::mutex queue_lock;  // stands in for the provider's per-queue lock
  std::uint64_t next_sequence = 1;
  log.queue_created(orders, {});
  std::vector<std::thread> producers;
  for (int t = 0; t < threads; ++t) {
    producers.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        detail::lsn lsn;
        {
          std::lock_guard lock(queue_lock);
          lsn = log.enqueued(orders, make_message(next_sequence++, "payload"));
        }
        ASSERT_TRUE(log.wait_flushed(lsn));
      }
    });
  }
  for (auto& p : producers) p.join();
  // Every operation waited for its own durability, yet they shared syncs.
  EXPECT_LT(log.fdatasync_count(), static_cast<std::uint64_t>(threads * per_thread));
  o.log.reset();
  auto reopened = open_or_die(options_for(dir.path()));
  EXPECT_EQ(reopened.state.at(orders).messages.size(),
            static_cast<std::size_t>(threads * per_thread));
}

TEST(PersistentLog, DiskLimitAppliesBackpressureUntilSettlementsFreeSpace) {
  scratch_dir dir;
  auto opts = options_for(dir.path());
  opts.segment_bytes = 4096;
  opts.max_disk_bytes = 16 * 1024;
  auto o = open_or_die(opts);
  auto& log = *o.log;
  log.queue_created(orders, {});
  std::uint64_t seq = 0;
  detail::lsn last = 0;
  while (!log.over_disk_limit())
    last = log.enqueued(orders, make_message(++seq, std::string(500, 'z')));
  ASSERT_TRUE(log.wait_flushed(last));
  EXPECT_GE(log.disk_bytes(), opts.max_disk_bytes);
  for (std::uint64_t s = 1; s <= seq; ++s) last = log.removed(orders, s);
  // A roll puts the settled segments behind the writer, which then deletes them.
  for (int i = 0; i < 20; ++i)
    last = log.session_state_set(orders, session_id::from("s"), std::string(400, 'p'));
  ASSERT_TRUE(log.wait_flushed(last));
  EXPECT_FALSE(log.over_disk_limit());
}

TEST(PersistentLog, UndeclaredQueueStillGetsItsMessagesBack) {
  // A log whose queue_created record is gone (only possible by tampering) must still return
  // every message it holds rather than drop them.
  scratch_dir dir;
  {
    auto o = open_or_die(options_for(dir.path()));
    o.log->enqueued(orders, make_message(5, "orphan"));
  }
  auto o = open_or_die(options_for(dir.path()));
  EXPECT_EQ(sequences(o.state.at(orders).messages), (std::vector<std::uint64_t>{5}));
}

}  // namespace
}  // namespace qrt::memory::log
