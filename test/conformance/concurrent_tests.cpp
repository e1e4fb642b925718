// Many producers and consumers on one queue: nothing lost, nothing duplicated. Runs under TSan
// (ctest label "concurrent").
#include <cstdio>
#include <unordered_set>

#include "conformance/suite.hpp"

namespace qrt::conformance {
namespace {

using namespace std::chrono_literals;

constexpr int producers = 8;
constexpr int consumers = 8;

std::string body_of(int producer, std::size_t index) {
  return "p" + std::to_string(producer) + "-" + std::to_string(index);
}

/// What producers and consumers did, shared between their coroutines (on several threads).
struct ledger {
  std::mutex mutex;
  std::unordered_set<std::string> delivered;  ///< bodies received at least once
  std::unordered_set<std::string> completed;  ///< bodies completed successfully
  std::size_t sent = 0;
  std::size_t redelivered = 0;      ///< a body received a second time
  std::size_t completed_twice = 0;  ///< a body completed a second time
  std::size_t unknown = 0;          ///< a body nobody sent
  std::size_t failures = 0;
  std::vector<std::string> first_errors;
  std::atomic<std::size_t> done{0};

  void error(std::string what) {
    std::lock_guard lock(mutex);
    ++failures;
    if (first_errors.size() < 5) first_errors.push_back(std::move(what));
  }
};

bool well_formed(const std::string& body, std::size_t per_producer) {
  int p = -1;
  unsigned long long i = 0;
  char tail = 0;
  if (std::sscanf(body.c_str(), "p%d-%llu%c", &p, &i, &tail) != 2) return false;
  return p >= 0 && p < producers && i < per_producer && body == body_of(p, i);
}

awaitable<void> produce(qrt::queue_client& client, queue_name q, int producer,
                        std::size_t per_producer, std::size_t chunk, ledger& book) {
  for (std::size_t first = 0; first < per_producer; first += chunk) {
    std::vector<message> batch;
    for (std::size_t i = first; i < std::min(per_producer, first + chunk); ++i) {
      batch.push_back(message{.body = body_of(producer, i)});
    }
    auto outcomes = co_await client.send_batch(q, std::move(batch));
    if (!outcomes) {
      book.error("send_batch: " + outcomes.error().to_string());
      co_return;
    }
    std::size_t ok = 0;
    for (const auto& o : *outcomes) {
      if (o)
        ++ok;
      else
        book.error("send: " + o.error().to_string());
    }
    std::lock_guard lock(book.mutex);
    book.sent += ok;
  }
}

awaitable<void> consume(qrt::queue_client& client, queue_name q, std::size_t total,
                        std::size_t per_producer, std::size_t max, milliseconds poll,
                        std::chrono::steady_clock::time_point deadline, ledger& book) {
  while (book.done.load() < total && std::chrono::steady_clock::now() < deadline) {
    auto got = co_await client.receive(q, max, poll);
    if (!got) {
      book.error("receive: " + got.error().to_string());
      co_return;
    }
    if (got->empty()) continue;
    std::vector<settlement> settlements;
    {
      std::lock_guard lock(book.mutex);
      for (const auto& m : *got) {
        if (!well_formed(m.body, per_producer)) ++book.unknown;
        if (!book.delivered.insert(m.body).second) ++book.redelivered;
        settlements.push_back(settlement::complete(m.receipt));
      }
    }
    auto results = co_await client.settle(std::move(settlements));
    if (results.size() != got->size()) {
      book.error("settle returned a wrong number of results");
      co_return;
    }
    std::size_t completed = 0;
    for (std::size_t k = 0; k < results.size(); ++k) {
      if (!results[k]) {
        book.error("complete: " + results[k].error().to_string());
        continue;
      }
      std::lock_guard lock(book.mutex);
      if (!book.completed.insert((*got)[k].body).second) ++book.completed_twice;
      ++completed;
    }
    book.done += completed;
  }
}

// Contract C36: safe for many producers and consumers: 8 producers and 8 consumers moving
// 10,000 messages each, every message completed exactly once, none lost, none duplicated. The
// per-producer count is a target knob.
TEST_P(provider_test, Concurrent_EightProducersEightConsumersExactlyOnce) {
  const std::size_t per_producer = tgt().concurrent_messages_per_producer;
  const std::size_t total = per_producer * producers;
  // The lock outlasts the test: any redelivery would be a duplicate, not a lock expiry.
  QRT_MAKE_QUEUE(
      q, queue_options{.lock_duration = tgt().concurrent_timeout * 2, .max_delivery_count = 0});
  const std::size_t batch_limit = caps().max_batch_messages == 0 ? 64 : caps().max_batch_messages;
  const std::size_t chunk = std::min<std::size_t>(100, batch_limit * 4);
  const std::size_t max_receive = std::min<std::size_t>(32, batch_limit);
  const auto deadline = std::chrono::steady_clock::now() + tgt().concurrent_timeout;

  ledger book;
  std::vector<std::future<void>> running;
  for (int c = 0; c < consumers; ++c) {
    running.push_back(io().spawn([&, q] {
      return consume(client(), q, total, per_producer, max_receive, tgt().empty_wait, deadline,
                     book);
    }));
  }
  for (int p = 0; p < producers; ++p) {
    running.push_back(
        io().spawn([&, q, p] { return produce(client(), q, p, per_producer, chunk, book); }));
  }
  for (auto& f : running) io().wait(f);

  EXPECT_EQ(book.failures, 0u) << (book.first_errors.empty() ? "" : book.first_errors.front());
  EXPECT_EQ(book.sent, total) << "not every message was sent";
  EXPECT_EQ(book.unknown, 0u) << "received messages nobody sent";
  EXPECT_EQ(book.redelivered, 0u) << "messages delivered twice while locked";
  EXPECT_EQ(book.completed_twice, 0u) << "messages completed twice";
  EXPECT_EQ(book.completed.size(), total) << "messages lost";
  EXPECT_EQ(book.done.load(), total);
  expect_empty(q, tgt().empty_wait, "messages left over after every one was completed");
  // Stats must answer; a provider that does not know the counts reports them as -1.
  if (const auto s = must(run(client().stats(q)), "stats"); s.active >= 0) {
    EXPECT_EQ(s.active, 0);
    EXPECT_EQ(s.in_flight, 0);
  }
}

}  // namespace
}  // namespace qrt::conformance
