// The conformance fixture: per-test provider, io_context and queues; helpers shared by the tests.
#include "conformance/suite.hpp"

#include <cstdio>
#include <cstdlib>
#include <random>

namespace qrt::conformance {

std::string target_name(const ::testing::TestParamInfo<target>& info) {
  std::string out;
  for (char c : info.param.name) {
    const bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    out.push_back(word ? c : '_');
  }
  return out.empty() ? "unnamed" : out;
}

void PrintTo(const target& t, std::ostream* os) {
  *os << "target '" << t.name << "'";
}

// ---- io_runner ----

io_runner::io_runner(std::size_t threads, milliseconds hang_limit)
    : guard_(io_.get_executor()), hang_limit_(hang_limit), running_(threads) {
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) {
    threads_.emplace_back([this] {
      io_.run();
      std::lock_guard lock(mutex_);
      --running_;
      idle_.notify_all();
    });
  }
}

io_runner::~io_runner() {
  guard_.reset();
  io_.stop();
  for (auto& t : threads_) t.join();
}

bool io_runner::finish(milliseconds limit) {
  guard_.reset();
  bool idle = false;
  {
    std::unique_lock lock(mutex_);
    idle = idle_.wait_for(lock, limit, [this] { return running_ == 0; });
  }
  if (!idle) io_.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  return idle;
}

void io_runner::report_hang_and_abort() const {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::fprintf(stderr,
               "\nconformance: %s.%s: an operation did not complete within %lld ms: the provider "
               "hangs. Aborting (the operation may still touch the test's state).\n",
               info ? info->test_suite_name() : "?", info ? info->name() : "?",
               static_cast<long long>(hang_limit_.count()));
  std::fflush(stderr);
  std::abort();
}

// ---- provider_test ----

void provider_test::SetUp() {
  std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  test = test.substr(0, test.find('/'));
  if (auto deviation = tgt().known_deviations.find(test);
      deviation != tgt().known_deviations.end()) {
    GTEST_SKIP() << tgt().name << ": " << deviation->second;
  }
  runner_ = std::make_unique<io_runner>(std::max<std::size_t>(1, tgt().io_threads),
                                        tgt().operation_timeout);
  ASSERT_TRUE(tgt().make_provider) << "target '" << tgt().name << "' has no make_provider";
  auto made = tgt().make_provider(runner_->executor());
  ASSERT_TRUE(made) << "make_provider for '" << tgt().name << "': " << made.error().to_string();
  ASSERT_TRUE(*made) << "make_provider for '" << tgt().name << "' returned no provider";
  client_.emplace(std::move(*made));
}

void provider_test::TearDown() {
  if (client_) {
    for (const auto& t : created_topics_) {
      auto deleted = run(client_->delete_topic(t));
      if (!deleted) ADD_FAILURE() << "delete_topic " << t.str() << ": " << describe(deleted);
    }
    for (const auto& q : created_) {
      auto deleted = run(client_->delete_queue(q));
      if (!deleted) ADD_FAILURE() << "delete_queue " << q.str() << ": " << describe(deleted);
    }
    run(client_->close());
    client_.reset();
  }
  // close() stops the provider's background work; what is left on the executor after that is
  // a leak (a timer, a socket) that would keep a service's io_context from finishing.
  if (runner_ && !runner_->finish(tgt().operation_timeout)) {
    ADD_FAILURE() << "the provider left work pending on its executor "
                  << tgt().operation_timeout.count() << " ms after close()";
  }
  runner_.reset();
}

bool provider_test::reopen() {
  if (!can_reopen()) return false;
  run(client_->close());
  client_.reset();  // the last reference: the provider goes, and with it its hold on the state
  auto made = tgt().reopen_provider(runner_->executor());
  if (!made) throw operation_failed("reopen: " + made.error().to_string());
  client_.emplace(std::move(*made));
  return true;
}

void provider_test::skip(const std::string& why) {
  GTEST_SKIP() << why;
}

queue_name provider_test::unique_queue_name(bool sessions) const {
  static std::mutex mutex;
  static std::mt19937_64 random{
      std::random_device{}() ^
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())};
  std::uint64_t r = 0;
  {
    std::lock_guard lock(mutex);
    r = random();
  }
  // The test's name keeps a leaked queue traceable; the random part keeps parallel runs (and
  // reruns against a shared server) apart. SQS allows 80 characters, ".fifo" included.
  std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  test = test.substr(0, test.find('/'));
  std::string base;
  for (char c : test) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    base.push_back(ok ? c : '_');
  }
  base.resize(std::min<std::size_t>(base.size(), 40));
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(r));
  std::string name = "qrt-" + base + "-" + std::string(hex, 10);
  if (sessions) name += tgt().session_queue_suffix;
  return queue_name::from(name);
}

topic_name provider_test::unique_topic_name() const {
  // Queue and topic names follow the same rules; a topic's name never clashes with a queue's
  // either (both carry the random part).
  return topic_name::from(unique_queue_name().str());
}

topic_name provider_test::make_topic() {
  if (!tgt().create_topics) {
    skip("target '" + tgt().name + "' creates no topics");
    return {};
  }
  auto name = unique_topic_name();
  must(run(client().create_topic(name)), "create_topic " + name.str());
  created_topics_.push_back(name);
  return name;
}

queue_name provider_test::make_subscription(const topic_name& topic, std::string_view name,
                                            const subscription_options& options) {
  auto subscription = must(queue_name::subscription(topic, name), "subscription name");
  must(run(client().create_subscription(subscription, options)),
       "create_subscription " + subscription.to_string());
  return subscription;
}

message_id provider_test::publish(const topic_name& t, message m) {
  return must(run(client().publish(t, std::move(m))), "publish to " + t.str());
}

queue_name provider_test::make_queue(const queue_options& options) {
  if (tgt().create_queues) {
    auto name = unique_queue_name(options.requires_session);
    must(run(client().create_queue(name, options)), "create_queue " + name.str());
    created_.push_back(name);
    return name;
  }
  std::optional<queue_name> fixed;
  if (tgt().fixed_queue) fixed = tgt().fixed_queue(options);
  if (!fixed) {
    skip("target '" + tgt().name + "' creates no queues and has no fixed queue for these options");
    return {};
  }
  drain(*fixed, options.requires_session);
  return *fixed;
}

void provider_test::drain(const queue_name& q, bool sessions) {
  auto drain_one = [&](const queue_name& which) {
    for (;;) {
      auto got = receive(which, 10, tgt().empty_wait);
      if (got.empty()) return;
      complete_all(got);
    }
  };
  if (sessions) {
    for (;;) {
      auto s = run(client().accept_session(q, std::nullopt, tgt().empty_wait));
      if (!s) break;
      for (;;) {
        auto got = must(run(s->receive(10, tgt().empty_wait)), "drain: session receive");
        if (got.empty()) break;
        for (const auto& m : got) must(run(s->complete(m.receipt)), "drain: session complete");
      }
      must(run(s->close()), "drain: session close");
    }
  } else {
    drain_one(q);
  }
  if (caps().dead_letter_queue) drain_one(q.dead_letter());
}

message_id provider_test::send(const queue_name& q, message m) {
  return must(run(client().send(q, std::move(m))), "send to " + q.to_string());
}

std::vector<send_outcome> provider_test::send_batch(const queue_name& q,
                                                    std::vector<message> messages) {
  return must(run(client().send_batch(q, std::move(messages))), "send_batch to " + q.to_string());
}

std::vector<received_message> provider_test::receive(const queue_name& q, std::size_t max,
                                                     milliseconds wait) {
  return must(run(client().receive(q, max, wait)), "receive from " + q.to_string());
}

received_message provider_test::receive_one(const queue_name& q, std::optional<milliseconds> wait) {
  const milliseconds limit = wait.value_or(tgt().event_timeout);
  auto got = receive(q, 1, limit);
  if (got.empty()) {
    throw operation_failed("expected a message on " + q.to_string() + " within " +
                           std::to_string(limit.count()) + " ms; none arrived");
  }
  if (got.size() != 1) {
    throw operation_failed("receive(max_messages = 1) returned " + std::to_string(got.size()) +
                           " messages");
  }
  return std::move(got.front());
}

std::vector<received_message> provider_test::receive_count(const queue_name& q, std::size_t count) {
  std::vector<received_message> out;
  const auto deadline = std::chrono::steady_clock::now() + tgt().event_timeout;
  const std::size_t per_call = caps().max_batch_messages == 0 ? 100 : caps().max_batch_messages;
  while (out.size() < count) {
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= milliseconds::zero()) {
      throw operation_failed("expected " + std::to_string(count) + " messages on " + q.to_string() +
                             " within " + std::to_string(tgt().event_timeout.count()) +
                             " ms; got " + std::to_string(out.size()));
    }
    auto got = receive(q, std::min(per_call, count - out.size()), left);
    for (auto& m : got) out.push_back(std::move(m));
  }
  return out;
}

std::vector<received_message> provider_test::receive_and_complete(const queue_name& q,
                                                                  std::size_t count) {
  std::vector<received_message> out;
  const auto deadline = std::chrono::steady_clock::now() + tgt().event_timeout;
  const std::size_t per_call = caps().max_batch_messages == 0 ? 100 : caps().max_batch_messages;
  while (out.size() < count) {
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= milliseconds::zero()) {
      throw operation_failed("expected " + std::to_string(count) + " messages on " + q.to_string() +
                             " within " + std::to_string(tgt().event_timeout.count()) +
                             " ms; got " + std::to_string(out.size()));
    }
    auto got = receive(q, std::min(per_call, count - out.size()), left);
    complete_all(got);
    for (auto& m : got) out.push_back(std::move(m));
  }
  return out;
}

void provider_test::complete(const receipt_handle& r) {
  must(run(client().complete(r)), "complete");
}

void provider_test::complete_all(const std::vector<received_message>& messages) {
  if (messages.empty()) return;
  std::vector<settlement> settlements;
  for (const auto& m : messages) settlements.push_back(settlement::complete(m.receipt));
  auto results = run(client().settle(std::move(settlements)));
  if (results.size() != messages.size()) {
    throw operation_failed("settle returned " + std::to_string(results.size()) + " results for " +
                           std::to_string(messages.size()) + " settlements");
  }
  for (std::size_t i = 0; i < results.size(); ++i) {
    must(std::move(results[i]), "complete of message " + std::to_string(i) + " in a batch");
  }
}

void provider_test::expect_empty(const queue_name& q, milliseconds wait, std::string_view why) {
  auto got = receive(q, 10, wait);
  EXPECT_TRUE(got.empty()) << why << ": receive on " << q.to_string() << " returned " << got.size()
                           << " message(s); first body: '"
                           << (got.empty() ? std::string() : got.front().body.substr(0, 64))
                           << "', delivery count "
                           << (got.empty() ? 0u : got.front().delivery_count);
}

message numbered(std::string body, std::size_t index) {
  message m;
  m.body = std::move(body);
  m.attributes["index"] = std::to_string(index);
  return m;
}

std::size_t index_of(const received_message& m) {
  auto it = m.attributes.find("index");
  if (it == m.attributes.end()) return SIZE_MAX;
  try {
    return static_cast<std::size_t>(std::stoull(it->second));
  } catch (const std::exception&) {
    return SIZE_MAX;
  }
}

}  // namespace qrt::conformance
