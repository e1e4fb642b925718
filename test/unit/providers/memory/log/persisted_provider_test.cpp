// The embedded provider with enable_persistence, end to end through the blocking facade.
#include <sys/mount.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>
#include <qrt/memory.hpp>
#include <qrt/qrt.hpp>
#include <qrt/runtime.hpp>
#include <set>
#include <thread>

#include "log_test_support.hpp"
#include "providers/memory/memory_provider.hpp"

namespace qrt::memory::log {
namespace {

using testing::scratch_dir;

const queue_name jobs = queue_name::from("jobs");

result<sync::queue_client> open_persisted(
    const std::filesystem::path& dir, std::vector<std::pair<std::string, std::string>> extra = {},
    client_options co = {}) {
  config cfg{
      {"provider", "memory"}, {"enable_persistence", "true"}, {"persistence_path", dir.string()}};
  for (auto& [k, v] : extra) cfg.set(k, v);
  return sync::queue_client::open(cfg, builtin_providers(), co);
}

message text(std::string body, std::optional<std::string> session = std::nullopt) {
  message m;
  m.body = std::move(body);
  if (session) m.session = session_id::from(*session);
  return m;
}

client_options without_retries() {
  client_options co;
  co.retry = std::nullopt;
  return co;
}

/// A registry whose "memory" provider persists through a log whose disk calls fail whenever
/// `inject` says so (the seam standing in for a failing disk).
provider_registry registry_with_disk_faults(std::function<int(std::string_view)> inject) {
  provider_registry registry;
  registry.add(
      "memory",
      [inject](const config& cfg, boost::asio::any_io_executor executor) -> result<provider_ptr> {
        auto o = options_from_config(cfg);
        if (!o) return o.error();
        log_options lo;
        lo.directory = o->persistence_path;
        lo.mode = o->durability_mode;
        lo.inject_error = inject;
        auto opened = persistent_log::open(std::move(lo));
        if (!opened) return opened.error();
        return qrt::memory::detail::make_memory_provider(*o, std::move(executor), opened->log,
                                                         std::move(opened->state));
      });
  return registry;
}

std::multiset<std::string> bodies_of(sync::queue_client& c, const queue_name& q) {
  std::multiset<std::string> out;
  for (;;) {
    auto got = c.receive(q, 1000, milliseconds{0});
    EXPECT_TRUE(got) << got.error().message;
    if (!got || got->empty()) return out;
    for (auto& m : *got) out.insert(m.body);
  }
}

TEST(PersistedProvider, UnsettledMessagesComeBackAfterReopenWithTheirDeliveryCount) {
  scratch_dir dir;
  {
    auto c = open_persisted(dir.path());
    ASSERT_TRUE(c) << c.error().message;
    ASSERT_TRUE(c->create_queue(jobs));
    for (auto body : {"a", "b", "c", "d"}) ASSERT_TRUE(c->send(jobs, text(body)));
    auto got = c->receive(jobs, 3, milliseconds{1000});
    ASSERT_TRUE(got);
    ASSERT_EQ(got->size(), 3u);
    ASSERT_TRUE(c->complete((*got)[0].receipt));  // a: gone for good
    ASSERT_TRUE(c->abandon((*got)[1].receipt));   // b: delivered once
    // c stays locked when the process "dies": locks are not persisted.
    ASSERT_TRUE(c->dead_letter((*got)[2].receipt, "bad", "cannot parse"));  // c: to the DLQ
  }
  auto c = open_persisted(dir.path());
  ASSERT_TRUE(c) << c.error().message;
  auto got = c->receive(jobs, 10, milliseconds{1000});
  ASSERT_TRUE(got);
  std::vector<std::string> bodies;
  for (const auto& m : *got) bodies.push_back(m.body);
  EXPECT_EQ(bodies, (std::vector<std::string>{"b", "d"}));
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].delivery_count, 2u);  // abandoned once, delivered again now
  EXPECT_EQ((*got)[1].delivery_count, 1u);
  auto dead = c->receive(jobs.dead_letter(), 10, milliseconds{1000});
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ((*dead)[0].body, "c");
  ASSERT_TRUE((*dead)[0].dead_letter);
  EXPECT_EQ((*dead)[0].dead_letter->reason, "bad");
}

TEST(PersistedProvider, LockedMessagesAreReadyAgainAfterReopen) {
  scratch_dir dir;
  {
    auto c = open_persisted(dir.path());
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->create_queue(jobs));
    ASSERT_TRUE(c->send(jobs, text("locked")));
    auto got = c->receive(jobs, 1, milliseconds{1000});
    ASSERT_TRUE(got);
    ASSERT_EQ(got->size(), 1u);
  }
  auto c = open_persisted(dir.path());
  ASSERT_TRUE(c);
  auto got = c->receive(jobs, 1, milliseconds{1000});
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].body, "locked");
  EXPECT_EQ((*got)[0].delivery_count, 2u);
}

TEST(PersistedProvider, SessionStateAndSessionOrderSurviveReopen) {
  scratch_dir dir;
  {
    auto c = open_persisted(dir.path());
    ASSERT_TRUE(c);
    queue_options o;
    o.requires_session = true;
    ASSERT_TRUE(c->create_queue(jobs, o));
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(c->send(jobs, text(std::to_string(i), "s1")));
    auto s = c->accept_session(jobs, session_id::from("s1"), milliseconds{1000});
    ASSERT_TRUE(s) << s.error().message;
    ASSERT_TRUE(s->set_state("step-2"));
    auto first = s->receive(1, milliseconds{1000});
    ASSERT_TRUE(first);
    ASSERT_EQ(first->size(), 1u);
    ASSERT_TRUE(s->complete((*first)[0].receipt));
  }
  auto c = open_persisted(dir.path());
  ASSERT_TRUE(c);
  auto s = c->accept_session(jobs, session_id::from("s1"), milliseconds{1000});
  ASSERT_TRUE(s) << s.error().message;
  auto state = s->get_state();
  ASSERT_TRUE(state);
  EXPECT_EQ(*state, "step-2");
  auto got = s->receive(10, milliseconds{1000});
  ASSERT_TRUE(got);
  std::vector<std::string> bodies;
  for (const auto& m : *got) bodies.push_back(m.body);
  EXPECT_EQ(bodies, (std::vector<std::string>{"1", "2", "3", "4"}));
}

TEST(PersistedProvider, SecondProviderOnTheSameDirectoryIsRefused) {
  scratch_dir dir;
  auto first = open_persisted(dir.path());
  ASSERT_TRUE(first);
  auto second = open_persisted(dir.path());
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("in use by another provider of this process"),
            std::string::npos);
}

TEST(PersistedProvider, DiskLimitMakesSendsWaitThenFailNamingTheLimit) {
  scratch_dir dir;
  client_options co;
  co.send_timeout = milliseconds{200};
  auto c = open_persisted(dir.path(), {{"max_disk_bytes", "20000"}}, co);
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE(c->create_queue(jobs));
  std::size_t sent = 0;
  result<message_id> r = message_id{};
  while ((r = c->send(jobs, text(std::string(1000, 'x'))))) ++sent;
  EXPECT_EQ(r.error().code, errc::queue_full);
  EXPECT_NE(r.error().message.find("disk limit"), std::string::npos) << r.error().message;
  EXPECT_GE(sent, 10u);
  // Nothing already accepted was dropped to make room.
  auto stats = c->stats(jobs);
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->active, static_cast<std::int64_t>(sent));
}

/// Runs `op` on `ioc` until it completes; other work (a suspended send) may stay pending.
template <class T>
std::optional<T> run_until_done(boost::asio::io_context& ioc, awaitable<T> op) {
  std::optional<T> out;
  boost::asio::co_spawn(ioc, std::move(op), [&](std::exception_ptr e, T value) {
    if (e) std::rethrow_exception(e);
    out = std::move(value);
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{30};
  while (!out && std::chrono::steady_clock::now() < deadline) {
    ioc.restart();  // a run that found no work stops the context until restarted
    ioc.run_one_for(std::chrono::milliseconds{100});
  }
  return out;
}

TEST(PersistedProvider, SendWaitingAtTheDiskLimitProceedsOnceSettlementsFreeSpace) {
  scratch_dir dir;
  boost::asio::io_context ioc;
  options o;
  o.enable_persistence = true;
  o.persistence_path = dir.path().string();
  o.max_disk_bytes = 20000;
  auto made = make_provider(o, ioc.get_executor());
  ASSERT_TRUE(made) << made.error().message;
  provider& p = **made;
  // Locks far longer than the test: no lock expiry may wake the waiting send in its place.
  queue_options long_locks;
  long_locks.lock_duration = milliseconds{600'000};
  ASSERT_TRUE(run_until_done(ioc, p.create_queue(jobs, long_locks)).value());

  // Fill the log to its limit: a send that may not wait is refused naming the limit.
  std::size_t sent = 0;
  for (;;) {
    auto r = run_until_done(ioc, p.send(jobs, {text(std::string(1000, 'x'))}, milliseconds{0}));
    ASSERT_TRUE(r && *r);
    if (!(**r)[0]) {
      EXPECT_EQ((**r)[0].error().code, errc::queue_full);
      EXPECT_NE((**r)[0].error().message.find("disk limit"), std::string::npos);
      break;
    }
    ASSERT_LT(++sent, 1000u) << "the disk limit never applied";
  }

  // This send waits for room, with a deadline far beyond the test's own.
  std::optional<result<std::vector<send_outcome>>> waiting;
  boost::asio::co_spawn(ioc, p.send(jobs, {text("after the limit")}, milliseconds{600'000}),
                        [&](std::exception_ptr e, result<std::vector<send_outcome>> r) {
                          if (e) std::rethrow_exception(e);
                          waiting = std::move(r);
                        });
  ioc.restart();
  ioc.poll();
  ASSERT_FALSE(waiting) << "the send did not wait for disk room";

  // Settling everything frees the segments that held it; that, not a timer, wakes the sender.
  std::size_t completed = 0;
  while (completed < sent) {
    auto got = run_until_done(ioc, p.receive(jobs, sent, milliseconds{1000}));
    ASSERT_TRUE(got && *got);
    ASSERT_FALSE((*got)->empty());
    std::vector<settlement> acks;
    for (auto& m : **got) acks.push_back(settlement::complete(m.receipt));
    auto results = run_until_done(ioc, p.settle(std::move(acks)));
    ASSERT_TRUE(results);
    for (auto& r : *results) ASSERT_TRUE(r) << r.error().message;
    completed += (*got)->size();
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{30};
  while (!waiting && std::chrono::steady_clock::now() < deadline) {
    ioc.restart();
    ioc.run_one_for(std::chrono::milliseconds{100});
  }
  ASSERT_TRUE(waiting) << "the waiting send was not woken when space was freed";
  ASSERT_TRUE(*waiting);
  ASSERT_TRUE((**waiting)[0]) << (**waiting)[0].error().message;
  auto last = run_until_done(ioc, p.receive(jobs, 10, milliseconds{1000}));
  ASSERT_TRUE(last && *last);
  ASSERT_EQ((*last)->size(), 1u);
  EXPECT_EQ((**last)[0].body, "after the limit");
}

TEST(PersistedProvider, OpenTimeoutFromConfigWaitsThenNamesTheHolder) {
  scratch_dir dir;
  auto first = open_persisted(dir.path());
  ASSERT_TRUE(first);
  auto second = open_persisted(dir.path(), {{"persistence_open_timeout", "30ms"}});
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("in use by another provider of this process"),
            std::string::npos);
  EXPECT_NE(second.error().message.find("waited 30 ms"), std::string::npos)
      << second.error().message;
}

TEST(PersistedProvider, EveryDurabilityModeIsAcceptedAndKeepsDataAcrossACleanClose) {
  for (std::string mode : {"always", "interval", "none"}) {
    scratch_dir dir;
    {
      // sync_interval is the period of durability=interval only (refused with the others).
      auto c = mode == "interval"
                   ? open_persisted(dir.path(), {{"durability", mode}, {"sync_interval", "5ms"}})
                   : open_persisted(dir.path(), {{"durability", mode}});
      ASSERT_TRUE(c) << mode << ": " << c.error().message;
      ASSERT_TRUE(c->create_queue(jobs));
      ASSERT_TRUE(c->send(jobs, text(mode)));
    }
    auto c = open_persisted(dir.path(), {{"durability", mode}});
    ASSERT_TRUE(c);
    auto got = c->receive(jobs, 1, milliseconds{1000});
    ASSERT_TRUE(got);
    ASSERT_EQ(got->size(), 1u) << mode;
    EXPECT_EQ((*got)[0].body, mode);
  }
}

TEST(PersistedProvider, CorruptLogRefusesToStartTheProvider) {
  scratch_dir dir;
  {
    auto c = open_persisted(dir.path());
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->create_queue(jobs));
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(c->send(jobs, text("m" + std::to_string(i))));
  }
  auto files = testing::segment_files(dir.path());
  ASSERT_FALSE(files.empty());
  // Damage the first record after the segment header; intact records follow it.
  const auto& victim = files.back();
  std::string bytes = testing::read_file(victim);
  ASSERT_GT(bytes.size(), segment_header_size + 20);
  bytes[segment_header_size + 14] ^= 0x40;
  testing::write_file(victim, bytes);
  auto c = open_persisted(dir.path());
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find(victim.string()), std::string::npos) << c.error().message;
}

/// Writes into a fresh log under `dir` what `write` appends (records the provider itself would
/// never append: the log stores what it is given), and closes it.
template <class Write>
void craft_log(const std::filesystem::path& dir, Write&& write) {
  auto opened = persistent_log::open(testing::options_for(dir));
  ASSERT_TRUE(opened) << opened.error().message;
  ASSERT_TRUE(opened->log->wait_flushed(write(*opened->log)));
}

// A log is bytes on disk: a record whose checksums match but whose values the provider could
// never have written is refused naming the file, before the provider builds anything from it.
// A queue with no lock duration is one the provider refuses to create.
TEST(PersistedProvider, AQueueRecordWithoutALockDurationRefusesToStartTheProvider) {
  scratch_dir dir;
  queue_options no_lock;
  no_lock.lock_duration = milliseconds{0};
  craft_log(dir.path(), [&](persistent_log& log) { return log.queue_created(jobs, no_lock); });
  auto c = open_persisted(dir.path());
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, errc::protocol_error) << c.error().message;
  EXPECT_NE(c.error().message.find(testing::segment_files(dir.path()).front().string()),
            std::string::npos)
      << c.error().message;
  EXPECT_NE(c.error().message.find("lock duration"), std::string::npos) << c.error().message;
}

// A message numbered at the very end of the sequence space (the provider numbers from 1 and
// could not get there in centuries) would make the queue's table grow past the end of the
// numbers, allocating without end.
TEST(PersistedProvider, AMessageNumberedAtTheEndOfTheSequenceSpaceRefusesToStartTheProvider) {
  scratch_dir dir;
  craft_log(dir.path(), [&](persistent_log& log) {
    log.queue_created(jobs, {});
    return log.enqueued(jobs, testing::make_message(UINT64_MAX, "last"));
  });
  auto c = open_persisted(dir.path());
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, errc::protocol_error) << c.error().message;
  EXPECT_NE(c.error().message.find("impossible sequence"), std::string::npos) << c.error().message;
}

// A message whose log record would be too large (here a huge correlation id, which
// max_message_bytes does not count) is refused before it changes anything: only that send fails,
// and the provider, its log and a reopen go on as if it had never been sent.
TEST(PersistedProvider, MessageTooLargeForOneRecordFailsAloneAndNothingElse) {
  scratch_dir dir;
  {
    auto c = open_persisted(dir.path(), {}, without_retries());
    ASSERT_TRUE(c) << c.error().message;
    ASSERT_TRUE(c->create_queue(jobs));
    ASSERT_TRUE(c->send(jobs, text("before")));
    message huge = text("small body");
    huge.correlation_id.assign(max_payload_size, 'c');
    auto refused = c->send(jobs, huge);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, errc::message_too_large);
    EXPECT_NE(refused.error().message.find("cannot be persisted"), std::string::npos)
        << refused.error().message;
    ASSERT_TRUE(c->send(jobs, text("after")));
    auto got = c->receive(jobs, 10, milliseconds{1000});
    ASSERT_TRUE(got) << got.error().message;
    ASSERT_EQ(got->size(), 2u);
    ASSERT_TRUE(c->complete((*got)[0].receipt)) << "settlements must still work";
  }
  auto c = open_persisted(dir.path());
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(bodies_of(*c, jobs), (std::multiset<std::string>{"after"}));
}

TEST(PersistedProvider, MaxMessageBytesThatCannotBePersistedIsRefusedNamingTheLimit) {
  scratch_dir dir;
  auto refused = open_persisted(dir.path(), {{"max_message_bytes", std::to_string(1u << 30)}});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::configuration_error);
  EXPECT_NE(refused.error().message.find("max_message_bytes"), std::string::npos);
  EXPECT_NE(refused.error().message.find(std::to_string(max_persistable_message_bytes)),
            std::string::npos)
      << refused.error().message;
  // The largest persistable limit is accepted, and without persistence a larger one is too.
  EXPECT_TRUE(open_persisted(
      dir.path(), {{"max_message_bytes", std::to_string(max_persistable_message_bytes)}}));
  EXPECT_TRUE(sync::queue_client::open(
      config{{"provider", "memory"}, {"max_message_bytes", std::to_string(1u << 30)}},
      builtin_providers()));
}

// Dead-letter texts are free text (often an error message): they are cut to a bound, so a huge
// one neither fails the settlement nor makes the record too large, and the cut survives reopen.
TEST(PersistedProvider, HugeDeadLetterTextsAreCutToTheirBoundAndPersisted) {
  scratch_dir dir;
  {
    auto c = open_persisted(dir.path(), {}, without_retries());
    ASSERT_TRUE(c) << c.error().message;
    ASSERT_TRUE(c->create_queue(jobs));
    ASSERT_TRUE(c->send(jobs, text("poison")));
    auto got = c->receive(jobs, 1, milliseconds{1000});
    ASSERT_TRUE(got && got->size() == 1u);
    ASSERT_TRUE(c->dead_letter((*got)[0].receipt, std::string(max_payload_size, 'r'),
                               std::string(max_payload_size, 'd')));
    ASSERT_TRUE(c->send(jobs, text("still working")));
  }
  auto c = open_persisted(dir.path());
  ASSERT_TRUE(c) << c.error().message;
  auto dead = c->receive(jobs.dead_letter(), 10, milliseconds{1000});
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->size(), 1u);
  ASSERT_TRUE((*dead)[0].dead_letter);
  EXPECT_EQ((*dead)[0].dead_letter->reason, std::string(max_dead_letter_reason_bytes, 'r'));
  EXPECT_EQ((*dead)[0].dead_letter->description,
            std::string(max_dead_letter_description_bytes, 'd'));
  EXPECT_EQ(bodies_of(*c, jobs), (std::multiset<std::string>{"still working"}));
}

TEST(PersistedProvider, SessionStateLargerThanMaxMessageBytesIsRefusedAlone) {
  scratch_dir dir;
  auto c = open_persisted(dir.path(), {{"max_message_bytes", "1000"}}, without_retries());
  ASSERT_TRUE(c) << c.error().message;
  queue_options sessions;
  sessions.requires_session = true;
  ASSERT_TRUE(c->create_queue(jobs, sessions));
  auto s = c->accept_session(jobs, session_id::from("s"), milliseconds{0});
  ASSERT_TRUE(s) << s.error().message;
  auto refused = s->set_state(std::string(1001, 's'));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::message_too_large);
  ASSERT_TRUE(s->set_state(std::string(1000, 's')));
  EXPECT_EQ(s->get_state().value(), std::string(1000, 's'));
}

// The log's writer starts as the log opens and writes the new segment's checkpoint at once; on
// a full disk that write fails, and it may fail before the provider has rebuilt its queues from
// what the log replayed. Rebuilding is not an operation the failure refuses: the provider
// starts, and then refuses every call with the disk's error, as after any failed write.
TEST(PersistedProvider, ALogThatFailsBeforeTheQueuesAreRebuiltFailsTheCallsNotTheProcess) {
  scratch_dir dir;
  {
    auto c = open_persisted(dir.path());
    ASSERT_TRUE(c) << c.error().message;
    ASSERT_TRUE(c->create_queue(jobs));
    ASSERT_TRUE(c->send(jobs, text("kept")));
  }
  provider_registry registry;
  registry.add(
      "memory",
      [](const config& cfg, boost::asio::any_io_executor executor) -> result<provider_ptr> {
        auto o = options_from_config(cfg);
        if (!o) return o.error();
        log_options lo;
        lo.directory = o->persistence_path;
        lo.inject_error = [](std::string_view) { return ENOSPC; };
        auto opened = persistent_log::open(std::move(lo));
        if (!opened) return opened.error();
        // Waits until the writer has failed (no write succeeds), so the rebuilding
        // below meets the failure every time rather than by chance.
        EXPECT_FALSE(opened->log->wait_flushed(opened->log->removed(jobs, 1'000'000)));
        return qrt::memory::detail::make_memory_provider(*o, std::move(executor), opened->log,
                                                         std::move(opened->state));
      });
  config cfg{{"provider", "memory"},
             {"enable_persistence", "true"},
             {"persistence_path", dir.path().string()}};
  auto c = sync::queue_client::open(cfg, registry, without_retries());
  ASSERT_TRUE(c) << c.error().message;
  auto sent = c->send(jobs, text("refused"));
  ASSERT_FALSE(sent);
  EXPECT_NE(sent.error().message.find(std::strerror(ENOSPC)), std::string::npos)
      << sent.error().message;
  auto got = c->receive(jobs, 10, milliseconds{0});
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().message.find(std::strerror(ENOSPC)), std::string::npos)
      << got.error().message;
}

// A sync that fails (EIO) after the batch's records were written: none of the batch's operations
// was acknowledged, so the records come off the disk again, and the provider, whose memory
// already holds the failed send, refuses every operation until it is reopened. The reopen
// replays exactly what was acknowledged.
TEST(PersistedProvider, AfterAFailedSyncNothingMoreIsServedAndAReopenReplaysWhatWasAcknowledged) {
  scratch_dir dir;
  std::atomic<int> sync_error{0};
  const auto registry = registry_with_disk_faults(
      [&](std::string_view call) { return call == "fdatasync" ? sync_error.load() : 0; });
  const config cfg{{"provider", "memory"},
                   {"enable_persistence", "true"},
                   {"persistence_path", dir.path().string()}};
  {
    auto c = sync::queue_client::open(cfg, registry, without_retries());
    ASSERT_TRUE(c) << c.error().message;
    ASSERT_TRUE(c->create_queue(jobs));
    for (auto body : {"a", "b", "c"}) ASSERT_TRUE(c->send(jobs, text(body)));
    auto got = c->receive(jobs, 2, milliseconds{1000});
    ASSERT_TRUE(got && got->size() == 2u);
    ASSERT_TRUE(c->complete((*got)[0].receipt));  // "a": gone, acknowledged

    sync_error = EIO;
    auto failed = c->send(jobs, text("d"));
    ASSERT_FALSE(failed);
    EXPECT_NE(failed.error().message.find(std::strerror(EIO)), std::string::npos)
        << failed.error().message;
    sync_error = 0;  // the disk recovers, but the provider's memory no longer matches it
    EXPECT_FALSE(c->send(jobs, text("e")));
    EXPECT_FALSE(c->receive(jobs, 10, milliseconds{0})) << "would hand out the unacknowledged d";
    EXPECT_FALSE(c->complete((*got)[1].receipt));
    EXPECT_FALSE(c->stats(jobs));
  }
  auto c = open_persisted(dir.path());
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(bodies_of(*c, jobs), (std::multiset<std::string>{"b", "c"}));
}

// A send that has to wait for room enqueues in several steps, each its own operation for the
// log. When a later step's write fails, the messages of an earlier step are on disk and are
// acknowledged; only the rest of the send fails. The writer is held inside a write (through the
// disk-fault seam) so that the room-making settlement and the send's second step land in the
// batch that fails.
TEST(PersistedProvider, ASendThatWaitedForRoomFailsOnlyWhatWasNotWritten) {
  scratch_dir dir;
  std::mutex m;
  std::condition_variable changed;
  bool hold_next_write = false, writer_held = false, release_writer = false, disk_full = false;
  const auto registry = registry_with_disk_faults([&](std::string_view call) {
    if (call != "write") return 0;
    std::unique_lock lock(m);
    if (hold_next_write) {
      hold_next_write = false;
      writer_held = true;
      changed.notify_all();
      changed.wait(lock, [&] { return release_writer; });
      return 0;
    }
    return disk_full ? ENOSPC : 0;
  });
  const config cfg{{"provider", "memory"},
                   {"enable_persistence", "true"},
                   {"persistence_path", dir.path().string()}};
  {
    auto c = sync::queue_client::open(cfg, registry, without_retries());
    ASSERT_TRUE(c) << c.error().message;
    queue_options two;
    two.max_size = 2;
    ASSERT_TRUE(c->create_queue(jobs, two));

    std::optional<result<std::vector<send_outcome>>> sent;
    std::thread sender([&] { sent = c->send_batch(jobs, {text("a"), text("b"), text("c")}); });
    auto a = c->receive(jobs, 1, milliseconds{10'000});  // "a" and "b" are in; "c" waits
    ASSERT_TRUE(a && a->size() == 1u);
    ASSERT_TRUE(c->create_queue(jobs, two));  // returns once everything so far is written
    {
      std::lock_guard lock(m);
      hold_next_write = true;
    }
    auto b = c->receive(jobs, 1, milliseconds{0});  // its delivery record: the held batch
    ASSERT_TRUE(b && b->size() == 1u);
    {
      std::unique_lock lock(m);
      changed.wait(lock, [&] { return writer_held; });
    }
    std::optional<result<void>> completed;
    std::thread completer([&] { completed = c->complete((*a)[0].receipt); });  // makes room
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
    for (;;) {  // "c" goes in once "a" has left
      auto stats = c->stats(jobs);
      ASSERT_TRUE(stats);
      if (stats->active == 1) break;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the send never took the room";
      std::this_thread::yield();
    }
    {
      std::lock_guard lock(m);
      disk_full = true;  // the batch after the held one: the complete and "c"
      release_writer = true;
    }
    changed.notify_all();
    completer.join();
    sender.join();
    ASSERT_TRUE(completed);
    EXPECT_FALSE(*completed);
    ASSERT_TRUE(sent && *sent);
    ASSERT_EQ((*sent)->size(), 3u);
    EXPECT_TRUE((**sent)[0]) << "written before the failure";
    EXPECT_TRUE((**sent)[1]) << "written before the failure";
    EXPECT_FALSE((**sent)[2]);
  }
  {
    std::lock_guard lock(m);
    disk_full = false;
  }
  auto c = sync::queue_client::open(cfg, registry, without_retries());
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(bodies_of(*c, jobs), (std::multiset<std::string>{"a", "b"}));
}

/// A small tmpfs mounted for one test (needs root, as CI runs); unmounted when done.
class small_filesystem {
 public:
  explicit small_filesystem(const std::filesystem::path& at, std::size_t bytes) : at_(at) {
    const std::string size = "size=" + std::to_string(bytes);
    mounted_ = ::mount("tmpfs", at.c_str(), "tmpfs", 0, size.c_str()) == 0;
  }
  ~small_filesystem() {
    if (mounted_) ::umount2(at_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  std::filesystem::path at_;
  bool mounted_ = false;
};

// The disk fills up (a real full filesystem when the test may mount one, else the same error
// injected): batches of sends, with settlements between them, until one fails. Partly written
// batches are cut off again, nothing more is served, and once space is back a reopen replays
// exactly the acknowledged sends minus the acknowledged completes, in every durability mode.
TEST(PersistedProvider, FullDiskLeavesMemoryAndDiskAgreeingInEveryDurabilityMode) {
  for (std::string mode : {"always", "interval", "none"}) {
    SCOPED_TRACE(mode);
    scratch_dir dir;
    const auto mount_point = dir.path() / "disk";
    std::filesystem::create_directories(mount_point);
    small_filesystem disk(mount_point, 4u << 20);
    const auto log_dir = mount_point / "log";
    const auto filler = mount_point / "filler";
    // Without a filesystem of our own: the disk "fills" after this many bytes of writes.
    std::atomic<std::int64_t> budget{disk.mounted() ? INT64_MAX : 2'400'000};
    const auto registry = registry_with_disk_faults([&](std::string_view call) {
      return call == "write" && budget.fetch_sub(65'536) <= 0 ? ENOSPC : 0;
    });
    // Freed before the reopen: room for the new log's first segment (and, in `always` mode,
    // the zeros it writes ahead of its records).
    if (disk.mounted()) testing::write_file(filler, std::string(1536 << 10, 'f'));
    config cfg{{"provider", "memory"},
               {"enable_persistence", "true"},
               {"persistence_path", log_dir.string()},
               {"durability", mode}};
    if (mode == "interval") cfg.set("sync_interval", "1ms");

    std::multiset<std::string> acknowledged;
    {
      auto c = sync::queue_client::open(cfg, registry, without_retries());
      ASSERT_TRUE(c) << c.error().message;
      ASSERT_TRUE(c->create_queue(jobs));
      bool full = false;
      for (int batch = 0; batch < 1000 && !full; ++batch) {
        std::vector<message> msgs;
        for (int i = 0; i < 8; ++i) {
          msgs.push_back(
              text(std::to_string(batch) + "-" + std::to_string(i) + std::string(16 << 10, 'x')));
        }
        const auto bodies = msgs;
        auto sent = c->send_batch(jobs, std::move(msgs));
        for (std::size_t i = 0; sent && i < sent->size(); ++i) {
          if ((*sent)[i])
            acknowledged.insert(bodies[i].body);
          else
            full = true;
        }
        if (!sent) full = true;
        if (full) break;
        auto got = c->receive(jobs, 1, milliseconds{1000});
        ASSERT_TRUE(got && got->size() == 1u);
        if (c->complete((*got)[0].receipt)) {
          acknowledged.erase(acknowledged.find((*got)[0].body));
        } else {
          full = true;
        }
      }
      ASSERT_TRUE(full) << "the disk never filled up";
      EXPECT_FALSE(c->send(jobs, text("after the failure")));
      EXPECT_FALSE(c->receive(jobs, 10, milliseconds{0}));
    }
    std::error_code ec;
    std::filesystem::remove(filler, ec);  // room for the reopened log's first segment
    budget = INT64_MAX;
    auto c = sync::queue_client::open(cfg, registry, without_retries());
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(bodies_of(*c, jobs), acknowledged);
  }
}

// Empty names and session ids are refused before they reach the log, straight at the provider
// (past the client's own check): the log keeps only names that parse, and a directory holding
// an empty one would refuse to reopen, every queue in it with it.
TEST(PersistedProvider, EmptyNamesAndSessionIdsNeverReachTheLog) {
  scratch_dir dir;
  {
    auto c = open_persisted(dir.path());
    ASSERT_TRUE(c) << c.error().to_string();
    ASSERT_TRUE(c->create_queue(jobs));
    ASSERT_TRUE(c->send(jobs, text("kept")));
    auto& p = *c->async_client().underlying();
    qrt::runtime rt;
    auto queue = rt.block_on(p.create_queue(queue_name{}, {}));
    ASSERT_FALSE(queue);
    EXPECT_EQ(queue.error().code, errc::invalid_argument) << queue.error().to_string();
    auto topic = rt.block_on(p.create_topic(topic_name{}));
    ASSERT_FALSE(topic);
    EXPECT_EQ(topic.error().code, errc::invalid_argument) << topic.error().to_string();
    std::vector<message> one;
    one.push_back(text("no group"));
    one.back().session = session_id{};
    auto sent = rt.block_on(p.send(jobs, std::move(one), std::chrono::seconds{1}));
    ASSERT_TRUE(sent) << sent.error().to_string();
    ASSERT_EQ(sent->size(), 1u);
    ASSERT_FALSE((*sent)[0]);
    EXPECT_EQ((*sent)[0].error().code, errc::invalid_argument);
  }
  auto reopened = open_persisted(dir.path());
  ASSERT_TRUE(reopened) << reopened.error().to_string();
  EXPECT_EQ(bodies_of(*reopened, jobs), std::multiset<std::string>{"kept"});
}

// After close() every call fails with closed and changes nothing, on disk either: the three
// deliveries held at the close come back on reopen, none completed, abandoned or dead-lettered,
// and the queue and topic are still there.
TEST(PersistedProvider, CallsAfterCloseFailWithClosedAndChangeNothing) {
  scratch_dir dir;
  const auto events = topic_name::from("events");
  {
    auto c = open_persisted(dir.path(), {}, without_retries());
    ASSERT_TRUE(c) << c.error().to_string();
    ASSERT_TRUE(c->create_queue(jobs));
    ASSERT_TRUE(c->create_topic(events));
    for (const char* body : {"a", "b", "c"}) ASSERT_TRUE(c->send(jobs, text(body)));
    auto got = c->receive(jobs, 3, std::chrono::seconds{1}).value();
    ASSERT_EQ(got.size(), 3u);
    c->close();
    auto expect_closed = [](const auto& r, const char* call) {
      ASSERT_FALSE(r) << call << " succeeded after close";
      EXPECT_EQ(r.error().code, errc::closed) << call << ": " << r.error().to_string();
    };
    expect_closed(c->complete(got[0].receipt), "complete");
    expect_closed(c->abandon(got[1].receipt), "abandon");
    expect_closed(c->dead_letter(got[2].receipt, "late"), "dead_letter");
    expect_closed(c->renew_lock(got[0].receipt), "renew_lock");
    expect_closed(c->stats(jobs), "stats");
    expect_closed(c->peek(jobs, 10), "peek");
    expect_closed(c->delete_queue(jobs), "delete_queue");
    expect_closed(c->list_subscriptions(events), "list_subscriptions");
    expect_closed(c->delete_topic(events), "delete_topic");
  }
  auto reopened = open_persisted(dir.path());
  ASSERT_TRUE(reopened) << reopened.error().to_string();
  auto s = reopened->stats(jobs);
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(s->active, 3);
  EXPECT_EQ(s->dead_lettered, 0);
  EXPECT_TRUE(reopened->list_subscriptions(events));
}

// A closed provider lets go of its directory at once: a new provider of the same process opens
// it while the old one still exists, and finds what the old one wrote before closing.
TEST(PersistedProvider, ClosingLetsTheNextProviderOpenTheDirectoryAtOnce) {
  scratch_dir dir;
  auto first = open_persisted(dir.path());
  ASSERT_TRUE(first) << first.error().to_string();
  ASSERT_TRUE(first->create_queue(jobs));
  ASSERT_TRUE(first->send(jobs, text("written before the close")));
  first->close();
  auto second = open_persisted(dir.path());
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_EQ(bodies_of(*second, jobs), std::multiset<std::string>{"written before the close"});
  auto late = first->send(jobs, text("after the close"));
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, errc::closed);
}

// An io_context destroyed while a receive waits in a persisted provider that was never closed:
// the receive is let go with its context, the provider with it, and the directory is free.
TEST(PersistedProvider, AnExecutorDestroyedWithAReceiveWaitingLetsGoOfTheDirectory) {
  scratch_dir dir;
  {
    boost::asio::io_context io;
    options o;
    o.enable_persistence = true;
    o.persistence_path = dir.path().string();
    auto p = make_provider(o, io.get_executor());
    ASSERT_TRUE(p) << p.error().to_string();
    // Created first, run to its end: its wait for the log's writer is not a parked call.
    const queue_options defaults;  // outlives the call, which takes it by reference
    auto created =
        boost::asio::co_spawn(io, (*p)->create_queue(jobs, defaults), boost::asio::use_future);
    while (created.wait_for(std::chrono::seconds{0}) != std::future_status::ready) {
      io.restart();
      io.run_one();
    }
    ASSERT_TRUE(created.get());
    boost::asio::co_spawn(
        io,
        [](provider_ptr p) -> awaitable<void> {
          (void)co_await p->receive(jobs, 1, std::chrono::minutes{10});
        }(*p),
        boost::asio::detached);
    io.restart();
    io.poll();  // the receive runs until it parks
    ASSERT_EQ(qrt::memory::detail::parked_waiters(**p), 1u);
  }
  auto reopened = open_persisted(dir.path());
  ASSERT_TRUE(reopened) << reopened.error().to_string();
  EXPECT_TRUE(reopened->stats(jobs));
}

// An io_context destroyed while one of its coroutines waits for the log to make its operation
// durable: the log's writer, finishing that sync later, must not post the coroutine's wake-up
// to the context that is gone (AddressSanitizer: use after free, before). The waiting call is
// dropped with its context; the operation itself is on disk.
TEST(PersistedProvider, AnExecutorDestroyedWhileACallWaitsForASyncIsNotPostedToAfterwards) {
  scratch_dir dir;
  std::mutex m;
  std::condition_variable changed;
  bool holding = false, release = false;
  const auto registry = registry_with_disk_faults([&](std::string_view call) {
    if (call != "fdatasync") return 0;
    std::unique_lock lock(m);
    if (!release) {
      holding = true;
      changed.notify_all();
      changed.wait(lock, [&] { return release; });
    }
    return 0;
  });
  const config cfg{{"provider", "memory"},
                   {"enable_persistence", "true"},
                   {"persistence_path", dir.path().string()},
                   {"durability", "always"}};
  qrt::runtime rt;  // the provider's own executor outlives the caller's
  auto made = registry.make(cfg, rt.executor());
  ASSERT_TRUE(made) << made.error().to_string();
  provider_ptr kept = *made;
  {
    boost::asio::io_context io;  // the caller's
    const auto& p = made;
    boost::asio::co_spawn(
        io,
        [](provider_ptr p) -> awaitable<void> {
          const queue_options defaults;
          (void)co_await p->create_queue(jobs, defaults);
        }(*p),
        boost::asio::detached);
    io.poll();  // the create runs until it waits for the sync
    std::unique_lock lock(m);
    changed.wait(lock, [&] { return holding; });
  }  // the io_context goes, its coroutine still waiting for the sync
  {
    std::lock_guard lock(m);
    release = true;
  }
  changed.notify_all();
  rt.block_on(kept->close());  // closes the log: the writer finishes the sync first
  kept.reset();
  auto reopened = open_persisted(dir.path());
  ASSERT_TRUE(reopened) << reopened.error().to_string();
  EXPECT_TRUE(reopened->stats(jobs)) << "the queue whose sync was under way is not on disk";
}

}  // namespace
}  // namespace qrt::memory::log
