// Writes a seed corpus for record_fuzz: one valid payload of each record type (version 2's
// topic records included), and a segment body of several frames, so the fuzzer starts from the
// real format.
#include <fstream>
#include <string>

#include "providers/memory/log/record.hpp"

using namespace qrt::memory::log;

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  const auto q = qrt::queue_name::from("orders");
  stored_message m;
  m.sequence = 7;
  m.content.body = "hello";
  m.content.attributes = {{"k", "v"}};
  m.content.session = qrt::session_id::from("s1");
  m.content.time_to_live = qrt::milliseconds{1000};
  m.dead_letter = qrt::dead_letter_info{"r", "d"};
  const auto topic = qrt::topic_name::from("events");
  const auto audit = qrt::queue_name::subscription(topic, "audit").value();
  qrt::subscription_filter filter;
  filter.subject = "order.created";
  filter.attributes = {{"region", "eu"}};
  stored_message published = m;
  published.sequence = 0;
  published.dead_letter.reset();
  std::string frames[10];
  (void)append_queue_created(frames[0], q, {}, 3);
  (void)append_queue_deleted(frames[1], q);
  (void)append_enqueued(frames[2], q.dead_letter(), m);
  (void)append_delivered(frames[3], q, 7, 2);
  (void)append_removed(frames[4], q, 7);
  (void)append_session_state(frames[5], q, qrt::session_id::from("s1"), "state");
  // Version 2: topics, subscriptions (named by their path) and a published message.
  (void)append_topic_created(frames[6], topic);
  (void)append_subscription_created(frames[7], audit, {}, 1, filter);
  (void)append_published(
      frames[8], topic, published,
      {{audit, 1}, {qrt::queue_name::subscription(topic, "billing").value(), 4}});
  (void)append_topic_deleted(frames[9], topic);
  std::string all;
  for (int i = 0; i < 10; ++i) {
    std::ofstream(dir + "/payload-" + std::to_string(i), std::ios::binary)
        << frames[i].substr(frame_header_size);
    all += frames[i];
  }
  std::ofstream(dir + "/frames", std::ios::binary) << all;
}
