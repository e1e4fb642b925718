// Topics in the persistence log (format version 2, docs/adr/0003-persistence-format.md): the
// records round-trip, a publish is one record naming every subscription it went to, topics and
// filters survive reopen and the deletion of the segments that declared them, published copies
// are carried forward by compaction, a log written in version 1 still recovers, and a publish
// the disk refused is in no subscription after a restart.
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <qrt/memory.hpp>
#include <qrt/qrt.hpp>
#include <set>

#include "log_test_support.hpp"
#include "providers/memory/memory_provider.hpp"

namespace qrt::memory::log {
namespace {

using testing::make_message;
using testing::open_or_die;
using testing::options_for;
using testing::read_file;
using testing::scratch_dir;
using testing::segment_files;
using testing::write_file;

const topic_name events = topic_name::from("events");
const queue_name audit = queue_name::subscription(events, "audit").value();
const queue_name billing = queue_name::subscription(events, "billing").value();

subscription_filter eu_orders() {
  subscription_filter f;
  f.subject = "order.created";
  f.attributes = {{"region", "eu"}};
  return f;
}

/// Every record of every segment under `dir`, in order.
std::vector<record> records_in(const std::filesystem::path& dir) {
  std::vector<record> out;
  for (const auto& file : segment_files(dir)) {
    const std::string data = read_file(file);
    std::string_view rest = std::string_view(data).substr(segment_header_size);
    while (!rest.empty()) {
      const frame_view f = read_frame(rest);
      if (f.status != frame_status::ok) break;
      auto r = decode_record(f.payload);
      EXPECT_TRUE(r) << r.error().message;
      if (r) out.push_back(std::move(*r));
      rest.remove_prefix(f.frame_size);
    }
  }
  return out;
}

TEST(TopicRecords, EachNewRecordRoundTripsAndEveryTruncationIsRefused) {
  stored_message m = make_message(0, "hello");
  m.content.subject = "order.created";
  m.content.attributes = {{"region", "eu"}};
  std::string frames;
  ASSERT_TRUE(append_topic_created(frames, events));
  ASSERT_TRUE(
      append_subscription_created(frames, audit, {.max_delivery_count = 3}, 5, eu_orders()));
  ASSERT_TRUE(append_published(frames, events, m, {{audit, 5}, {billing, 9}}));
  ASSERT_TRUE(append_topic_deleted(frames, events));
  std::string_view rest = frames;
  std::vector<record> decoded;
  while (!rest.empty()) {
    const frame_view f = read_frame(rest);
    ASSERT_EQ(f.status, frame_status::ok) << f.problem;
    auto r = decode_record(f.payload);
    ASSERT_TRUE(r) << r.error().message;
    // Every shorter payload is refused with a reason, never misread.
    for (std::size_t cut = 0; cut < f.payload.size(); ++cut) {
      auto shorter = decode_record(f.payload.substr(0, cut));
      ASSERT_FALSE(shorter) << "payload cut at " << cut << " decoded";
      EXPECT_FALSE(shorter.error().message.empty());
    }
    decoded.push_back(std::move(*r));
    rest.remove_prefix(f.frame_size);
  }
  ASSERT_EQ(decoded.size(), 4u);
  EXPECT_EQ(std::get<topic_created_record>(decoded[0]).topic, events);
  const auto& sub = std::get<subscription_created_record>(decoded[1]);
  EXPECT_EQ(sub.subscription, audit);
  EXPECT_EQ(sub.options.max_delivery_count, 3u);
  EXPECT_EQ(sub.next_sequence, 5u);
  EXPECT_EQ(sub.filter, eu_orders());
  const auto& pub = std::get<published_record>(decoded[2]);
  EXPECT_EQ(pub.topic, events);
  EXPECT_EQ(pub.message.content.body, "hello");
  EXPECT_EQ(pub.message.content.subject, "order.created");
  ASSERT_EQ(pub.copies.size(), 2u);
  EXPECT_EQ(pub.copies[0], std::make_pair(audit, std::uint64_t{5}));
  EXPECT_EQ(pub.copies[1], std::make_pair(billing, std::uint64_t{9}));
  EXPECT_EQ(std::get<topic_deleted_record>(decoded[3]).topic, events);
}

TEST(TopicRecords, APublishedRecordIsTheSizeItsCheckSays) {
  stored_message m = make_message(0, "hello");
  m.content.subject = "order.created";
  m.content.attributes = {{"region", "eu"}, {"tier", "gold"}};
  m.content.session = session_id::from("s-1");
  m.content.time_to_live = std::chrono::seconds(5);
  std::string frame;
  ASSERT_TRUE(append_published(frame, events, m, {{audit, 5}, {billing, 9}}));
  const frame_view f = read_frame(frame);
  ASSERT_EQ(f.status, frame_status::ok);
  EXPECT_EQ(f.payload.size(), published_payload_size(events, m.content, {audit, billing}));
}

TEST(TopicLog, APublishWhoseRecordWouldExceedTheLargestIsRefusedBeforeAnythingChanges) {
  // A body that fits one subscription's record (dead-letter texts included) fits a publish to
  // a few; to hundreds, the copies' names push the one record past the largest.
  scratch_dir dir;
  auto opened = open_or_die(options_for(dir.path()));
  auto& log = *opened.log;
  message big;
  big.id = "id-1";
  big.body = std::string(max_persistable_message_bytes, 'x');
  ASSERT_FALSE(log.refuse(audit, big)) << "one subscription's record must fit";
  EXPECT_FALSE(log.refuse_publish(events, big, {audit, billing}));
  std::vector<queue_name> many;
  for (int i = 0; i < 20'000; ++i) {  // names of 50 characters: 62 bytes a copy, 1.2 MiB
    std::string name = "subscription-" + std::to_string(i);
    name.resize(50, 'x');
    many.push_back(queue_name::subscription(events, name).value());
  }
  const auto refused = log.refuse_publish(events, big, many);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->code, errc::message_too_large);
  EXPECT_NE(refused->message.find("20000 subscriptions"), std::string::npos) << refused->message;
  EXPECT_FALSE(log.failure()) << "a refused publish must not stop the log";
}

TEST(TopicRecords, ASubscriptionRecordForAQueueNameIsRefused) {
  std::string frame;
  ASSERT_TRUE(append_subscription_created(frame, queue_name::from("orders"), {}, 0, {}));
  const frame_view f = read_frame(frame);
  ASSERT_EQ(f.status, frame_status::ok);
  auto r = decode_record(f.payload);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not a subscription"), std::string::npos);
}

TEST(TopicLog, TopicsSubscriptionsFiltersAndPublishedCopiesSurviveReopen) {
  scratch_dir dir;
  {
    auto o = open_or_die(options_for(dir.path()));
    auto& log = *o.log;
    log.topic_created(events);
    log.topic_created(topic_name::from("empty"));
    log.subscription_created(audit, {.filter = eu_orders(), .queue = {.max_delivery_count = 4}});
    log.subscription_created(billing, {});
    log.published(events, make_message(0, "one"), {{audit, 1}, {billing, 1}});
    log.published(events, make_message(0, "two"), {{billing, 2}});
    log.delivered(billing, 1, 1);
    ASSERT_TRUE(log.wait_flushed(log.removed(audit, 1)));
  }
  auto o = open_or_die(options_for(dir.path()));
  EXPECT_EQ(o.state.topics, (std::set<topic_name>{events, topic_name::from("empty")}));
  ASSERT_EQ(o.state.size(), 2u);
  const auto& a = o.state.at(audit);
  ASSERT_TRUE(a.filter.has_value());
  EXPECT_EQ(*a.filter, eu_orders());
  EXPECT_EQ(a.options.max_delivery_count, 4u);
  EXPECT_TRUE(a.messages.empty());
  EXPECT_EQ(a.next_sequence, 2u);
  const auto& b = o.state.at(billing);
  ASSERT_TRUE(b.filter.has_value());
  EXPECT_TRUE(b.filter->empty());
  ASSERT_EQ(b.messages.size(), 2u);
  EXPECT_EQ(b.messages[0].content.body, "one");
  EXPECT_EQ(b.messages[0].delivery_count, 1u);
  EXPECT_EQ(b.messages[1].content.body, "two");
  EXPECT_EQ(b.messages[1].sequence, 2u);
}

TEST(TopicLog, ADeletedTopicTakesItsSubscriptionsAndTheirMessages) {
  scratch_dir dir;
  {
    auto o = open_or_die(options_for(dir.path()));
    auto& log = *o.log;
    log.topic_created(events);
    log.subscription_created(audit, {});
    log.published(events, make_message(0, "one"), {{audit, 1}});
    log.queue_deleted(audit);
    ASSERT_TRUE(log.wait_flushed(log.topic_deleted(events)));
  }
  auto o = open_or_die(options_for(dir.path()));
  EXPECT_TRUE(o.state.topics.empty());
  EXPECT_TRUE(o.state.empty());
}

TEST(TopicLog, DefinitionsSurviveTheDeletionOfTheSegmentsThatDeclaredThem) {
  scratch_dir dir;
  auto opts = options_for(dir.path());
  opts.segment_bytes = 4096;
  {
    auto o = open_or_die(opts);
    auto& log = *o.log;
    log.topic_created(events);
    log.subscription_created(audit, {.filter = eu_orders()});
    detail::lsn last = 0;
    for (std::uint64_t seq = 1; seq <= 100; ++seq) {
      log.published(events, make_message(0, std::string(200, 'y')), {{audit, seq}});
      last = log.removed(audit, seq);
    }
    ASSERT_TRUE(log.wait_flushed(last));
    EXPECT_LE(log.segment_count(), 3u);
  }
  auto o = open_or_die(opts);
  EXPECT_EQ(o.state.topics, std::set<topic_name>{events});
  const auto& a = o.state.at(audit);
  ASSERT_TRUE(a.filter.has_value());
  EXPECT_EQ(*a.filter, eu_orders());
  EXPECT_TRUE(a.messages.empty());
  EXPECT_EQ(a.next_sequence, 101u);
}

TEST(TopicLog, CompactionCarriesEveryLiveCopyOfAPublishForward) {
  scratch_dir dir;
  auto opts = options_for(dir.path());
  opts.segment_bytes = 4096;
  {
    auto o = open_or_die(opts);
    auto& log = *o.log;
    log.topic_created(events);
    log.subscription_created(audit, {});
    log.subscription_created(billing, {});
    // One publish to both; audit settles its copy, billing's stays (delivered twice).
    log.published(events, make_message(0, "stays in billing"), {{audit, 1}, {billing, 1}});
    log.removed(audit, 1);
    ASSERT_TRUE(log.wait_flushed(log.delivered(billing, 1, 2)));
    const auto first_segment = segment_files(dir.path()).front();
    detail::lsn last = 0;
    for (std::uint64_t seq = 2; seq <= 300; ++seq) {
      log.published(events, make_message(0, std::string(300, 'f')), {{audit, seq}});
      last = log.removed(audit, seq);
    }
    ASSERT_TRUE(log.wait_flushed(last));
    ASSERT_TRUE(log.wait_flushed(log.delivered(billing, 1, 2)));
    EXPECT_FALSE(std::filesystem::exists(first_segment));
  }
  auto o = open_or_die(opts);
  EXPECT_TRUE(o.state.at(audit).messages.empty());
  const auto& b = o.state.at(billing);
  ASSERT_EQ(b.messages.size(), 1u);
  EXPECT_EQ(b.messages[0].sequence, 1u);
  EXPECT_EQ(b.messages[0].content.body, "stays in billing");
  EXPECT_EQ(b.messages[0].delivery_count, 2u);
}

TEST(TopicLog, ALogWrittenInVersionOneStillRecoversAndNewSegmentsAreVersionTwo) {
  scratch_dir dir;
  // A segment exactly as version 1 wrote it: its magic, and records of types 1-6 only.
  std::string v1(segment_magic_v1);
  for (int i = 0; i < 8; ++i) v1 += '\0';  // segment index 0, little-endian
  const auto orders = queue_name::from("orders");
  ASSERT_TRUE(append_queue_created(v1, orders, {.max_delivery_count = 7}, 0));
  ASSERT_TRUE(append_enqueued(v1, orders, make_message(1, "from version 1")));
  ASSERT_TRUE(append_enqueued(v1, orders, make_message(2, "settled")));
  ASSERT_TRUE(append_delivered(v1, orders, 1, 1));
  ASSERT_TRUE(append_removed(v1, orders, 2));
  write_file(dir.path() / segment_file_name(0), v1);
  {
    auto o = open_or_die(options_for(dir.path()));
    const auto& q = o.state.at(orders);
    EXPECT_EQ(q.options.max_delivery_count, 7u);
    ASSERT_EQ(q.messages.size(), 1u);
    EXPECT_EQ(q.messages[0].content.body, "from version 1");
    EXPECT_EQ(q.messages[0].delivery_count, 1u);
    // New records go to a new segment, written in version 2.
    ASSERT_TRUE(o.log->wait_flushed(o.log->topic_created(events)));
  }
  const auto files = segment_files(dir.path());
  ASSERT_GE(files.size(), 2u);
  EXPECT_EQ(read_file(files.back()).substr(0, segment_magic.size()), segment_magic);
  auto o = open_or_die(options_for(dir.path()));
  EXPECT_EQ(o.state.at(orders).messages.size(), 1u);
  EXPECT_EQ(o.state.topics, std::set<topic_name>{events});
}

// Through the provider: one publish is one record, whichever subscriptions it reached; after a
// restart the topic, its filters and every copy are there, and publishing goes on.
TEST(PersistedTopics, APublishIsOneRecordAndEverythingSurvivesARestart) {
  scratch_dir dir;
  const config cfg{{"provider", "memory"},
                   {"enable_persistence", "true"},
                   {"persistence_path", dir.path().string()}};
  {
    auto c = sync::queue_client::open(cfg, builtin_providers()).value();
    ASSERT_TRUE(c.caps().topics);
    ASSERT_TRUE(c.caps().durable_subscriptions);
    ASSERT_TRUE(c.create_topic(events));
    ASSERT_TRUE(c.create_subscription(audit));
    ASSERT_TRUE(c.create_subscription(billing, {.filter = {.subject = "order.created"}}));
    message m;
    m.body = "created";
    m.subject = "order.created";
    ASSERT_TRUE(c.publish(events, m));
    message other;
    other.body = "shipped";
    other.subject = "order.shipped";
    ASSERT_TRUE(c.publish(events, other));
    auto got = c.receive(audit, 1, milliseconds{0});
    ASSERT_TRUE(got);
    ASSERT_EQ(got->size(), 1u);
    ASSERT_TRUE(c.dead_letter(got->front().receipt, "Rejected"));
    c.close();
  }
  std::size_t published = 0, enqueued_into_subscriptions = 0;
  for (const auto& r : records_in(dir.path())) {
    if (const auto* p = std::get_if<published_record>(&r)) {
      ++published;
      if (p->message.content.body == "created") {
        EXPECT_EQ(p->copies.size(), 2u);
      } else {
        EXPECT_EQ(p->copies.size(), 1u);
      }
    }
    if (const auto* e = std::get_if<enqueued_record>(&r)) {
      if (e->queue.is_subscription() && !e->queue.is_dead_letter()) ++enqueued_into_subscriptions;
    }
  }
  EXPECT_EQ(published, 2u);
  EXPECT_EQ(enqueued_into_subscriptions, 0u);

  auto c = sync::queue_client::open(cfg, builtin_providers()).value();
  auto listed = c.list_subscriptions(events);
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[1].filter.subject, std::optional<std::string>("order.created"));
  auto audit_left = c.receive(audit, 10, milliseconds{0});
  ASSERT_TRUE(audit_left);
  ASSERT_EQ(audit_left->size(), 1u);
  EXPECT_EQ(audit_left->front().body, "shipped");
  auto dead = c.receive(audit.dead_letter(), 10, milliseconds{0});
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ(dead->front().body, "created");
  auto billed = c.receive(billing, 10, milliseconds{0});
  ASSERT_TRUE(billed);
  ASSERT_EQ(billed->size(), 1u);
  EXPECT_EQ(billed->front().body, "created");
  // The filter still applies, and sequences go on from where they were.
  message again;
  again.body = "created again";
  again.subject = "order.created";
  ASSERT_TRUE(c.publish(events, again));
  auto next = c.receive(billing, 10, milliseconds{0});
  ASSERT_TRUE(next);
  ASSERT_EQ(next->size(), 1u);
  EXPECT_GT(next->front().sequence_number, billed->front().sequence_number);
  c.close();
}

// A publish whose record could not be written is reported failed and is in no subscription
// after a restart: never half there, never there while its caller was told it failed (C38).
TEST(PersistedTopics, APublishTheDiskRefusedIsInNoSubscriptionAfterARestart) {
  scratch_dir dir;
  std::atomic<bool> disk_full{false};
  provider_registry registry;
  registry.add(
      "memory",
      [&](const config& cfg, boost::asio::any_io_executor executor) -> result<provider_ptr> {
        auto o = options_from_config(cfg);
        if (!o) return o.error();
        log_options lo;
        lo.directory = o->persistence_path;
        lo.mode = durability::always;
        lo.inject_error = [&](std::string_view call) {
          return call == "write" && disk_full ? ENOSPC : 0;
        };
        auto opened = persistent_log::open(std::move(lo));
        if (!opened) return opened.error();
        return detail::make_memory_provider(*o, std::move(executor), opened->log,
                                            std::move(opened->state));
      });
  const config cfg{{"provider", "memory"},
                   {"enable_persistence", "true"},
                   {"persistence_path", dir.path().string()}};
  client_options no_retries;
  no_retries.retry = std::nullopt;
  {
    auto c = sync::queue_client::open(cfg, registry, no_retries).value();
    ASSERT_TRUE(c.create_topic(events));
    ASSERT_TRUE(c.create_subscription(audit));
    ASSERT_TRUE(c.create_subscription(billing));
    message kept;
    kept.body = "kept";
    ASSERT_TRUE(c.publish(events, kept));
    disk_full = true;
    message lost;
    lost.body = "refused by the disk";
    auto r = c.publish(events, lost);
    ASSERT_FALSE(r) << "a publish whose record was never written was acknowledged";
    c.close();
  }
  disk_full = false;
  auto c = sync::queue_client::open(cfg, registry, no_retries).value();
  for (const auto& subscription : {audit, billing}) {
    auto got = c.receive(subscription, 10, milliseconds{0});
    ASSERT_TRUE(got) << got.error().to_string();
    ASSERT_EQ(got->size(), 1u) << subscription.to_string();
    EXPECT_EQ(got->front().body, "kept");
  }
  c.close();
}

}  // namespace
}  // namespace qrt::memory::log
