// The workload the crash test kills: sends and settles through a persisted embedded provider
// (durability=always) from several threads, and publishes to a topic with two subscriptions
// nobody reads, and reports on stdout each operation that returned success: "S <body>" for a
// send, "P <body>" for a publish, "C <body>" for a completion, and "R <body>" just before a
// completion is attempted. Runs until killed.
//
//   qrt_log_crash_child DIR CYCLE
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <qrt/memory.hpp>
#include <qrt/qrt.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

void report(char kind, const std::string& body) {
  // One write() per line: the parent never sees half a line from a completed operation.
  const std::string line = std::string(1, kind) + " " + body + "\n";
  if (::write(STDOUT_FILENO, line.data(), line.size()) < 0) std::_Exit(3);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s DIR CYCLE\n", argv[0]);
    return 2;
  }
  const std::string cycle = argv[2];
  qrt::config cfg{{"provider", "memory"},
                  {"enable_persistence", "true"},
                  {"persistence_path", argv[1]},
                  {"durability", "always"},
                  {"max_queue_size", "100000"}};
  auto client = qrt::sync::queue_client::open(cfg, qrt::builtin_providers());
  if (!client) {
    std::fprintf(stderr, "open failed: %s\n", client.error().message.c_str());
    return 1;
  }
  const auto queue = qrt::queue_name::from("crash");
  qrt::queue_options options;
  options.max_delivery_count = 0;  // never dead-letter: every message stays checkable
  if (auto r = client->create_queue(queue, options); !r) {
    std::fprintf(stderr, "create_queue failed: %s\n", r.error().message.c_str());
    return 1;
  }

  // Created by every run (idempotent), so a kill between the steps leaves no half setup.
  const auto topic = qrt::topic_name::from("crash-topic");
  for (auto r : {client->create_topic(topic),
                 client->create_subscription(qrt::queue_name::subscription(topic, "a").value()),
                 client->create_subscription(qrt::queue_name::subscription(topic, "b").value())}) {
    if (!r) {
      std::fprintf(stderr, "topic setup failed: %s\n", r.error().message.c_str());
      return 1;
    }
  }

  constexpr int senders = 4;
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    for (std::uint64_t i = 0;; ++i) {
      qrt::message m;
      m.body = cycle + ":p:" + std::to_string(i);
      m.body.resize(m.body.size() + 64, '.');
      const std::string body = m.body;
      if (client->publish(topic, std::move(m))) report('P', body);
    }
  });
  for (int s = 0; s < senders; ++s) {
    threads.emplace_back([&, s] {
      const std::string session = "s" + std::to_string(s);
      for (std::uint64_t i = 0;; ++i) {
        // Batches of 1-3 exercise one sync for several records.
        const std::size_t batch = 1 + i % 3;
        std::vector<qrt::message> msgs;
        for (std::size_t k = 0; k < batch; ++k) {
          qrt::message m;
          m.body = cycle + ":" + session + ":" + std::to_string(i * 3 + k);
          m.session = qrt::session_id::from(session);
          m.body.resize(m.body.size() + 64, '.');  // some payload, same shape every time
          msgs.push_back(std::move(m));
        }
        std::vector<std::string> bodies;
        for (const auto& m : msgs) bodies.push_back(m.body);
        auto outcomes = client->send_batch(queue, std::move(msgs));
        if (!outcomes) std::_Exit(4);
        for (std::size_t k = 0; k < outcomes->size(); ++k)
          if ((*outcomes)[k]) report('S', bodies[k]);
      }
    });
  }
  threads.emplace_back([&] {
    for (std::uint64_t n = 0;; ++n) {
      auto got = client->receive(queue, 8, qrt::milliseconds{50});
      if (!got) std::_Exit(5);
      for (const auto& m : *got) {
        // Abandon some, so redelivery and delivery counts are in the log too.
        if ((n + m.sequence_number) % 5 == 0) {
          (void)client->abandon(m.receipt);
        } else {
          // Said before completing: a message can vanish from the log only if it got this far.
          report('R', m.body);
          if (client->complete(m.receipt)) report('C', m.body);
        }
      }
    }
  });
  for (auto& t : threads) t.join();
}
