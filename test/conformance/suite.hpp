// The provider conformance suite: one value-parameterised GoogleTest suite that every provider
// instantiates with a `target` (how to build it, plus a few knobs for its timing and naming).
// Tests skip, with a reason, what the provider's capabilities say it lacks. See README.md here.
//
//   #include "conformance/suite.hpp"
//   QRT_INSTANTIATE_CONFORMANCE(memory, qrt::conformance::target{ .name = "memory", ... });
//
// The tests live in this folder's other .cpp files, compiled into the OBJECT library
// `qrt_conformance_suite`, which every instantiating binary links (so its TEST_Ps are kept).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <qrt/client.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace qrt::conformance {

using std::chrono::milliseconds;

/// A provider under test. Only `name` and `make_provider` are required; the knobs default to
/// values a network provider on loopback meets. An in-process provider sets them shorter.
struct target {
  /// Shown in test names ("memory", "sqs"); letters, digits and '_' only.
  std::string name;
  /// Builds a fresh provider on `executor`; called once per test.
  std::function<result<provider_ptr>(boost::asio::any_io_executor)> make_provider;

  // ---- time -------------------------------------------------------------------------------
  /// Lock duration for the tests that wait for a lock (message or session) to expire or renew
  /// one: the shortest the provider honours (SQS visibility timeouts are whole seconds, >= 1 s).
  milliseconds short_lock{2'000};
  /// How long a receive that must come back empty waits (SQS long polls in whole seconds).
  milliseconds empty_wait{1'000};
  /// Delay used for scheduled delivery, and time-to-live of the messages that must expire.
  milliseconds schedule_delay{2'000};
  /// Upper bound on waiting for something that must happen (a message that should arrive).
  milliseconds event_timeout{10'000};
  /// One call taking longer than this is a hang: the test binary reports it and aborts.
  milliseconds operation_timeout{60'000};
  /// Largest disagreement tolerated between the provider's clock and ours (enqueued time,
  /// scheduled time).
  milliseconds clock_tolerance{1'000};
  /// A lock long enough that nothing in a test is redelivered by lock expiry by accident.
  milliseconds long_lock() const {
    return std::max<milliseconds>(milliseconds{30'000}, event_timeout * 3);
  }

  // ---- queues -----------------------------------------------------------------------------
  /// true: every test creates its own uniquely named queues and deletes them afterwards, so
  /// tests can run in parallel against one server. false: `fixed_queue` supplies pre-existing
  /// queues, which the suite drains before use (then tests must not run in parallel).
  bool create_queues = true;
  /// With create_queues = false: a queue created with (equivalent) options, or nullopt to skip
  /// the test.
  std::function<std::optional<queue_name>(const queue_options&)> fixed_queue;
  /// Appended to the names of session queues (".fifo" for SQS message groups).
  std::string session_queue_suffix;
  /// Whether a queue without sessions delivers in send order and numbers messages with
  /// increasing sequence numbers (SQS standard queues do neither).
  bool ordered_queues = true;
  /// Whether the target creates its own topics (and deletes them afterwards); false: the
  /// topic tests skip. Apart from create_queues: a broker that cannot make queues over its
  /// protocol may still have topics that need no making (RabbitMQ's amq.topic).
  bool create_topics = true;
  /// Whether publishing to a topic nobody created fails with topic_not_found. False where a
  /// topic is only a routing key and needs no creating (a broker then accepts and drops it).
  bool missing_topics_detected = true;

  // ---- load -------------------------------------------------------------------------------
  /// Messages each of the 8 producers sends in the concurrent test (slow network providers
  /// may use fewer).
  std::size_t concurrent_messages_per_producer = 10'000;
  /// Bound on the whole concurrent test.
  milliseconds concurrent_timeout{120'000};
  /// Threads running the io_context that the provider and the tests' coroutines share.
  std::size_t io_threads = 4;

  // ---- deviations --------------------------------------------------------------------------
  /// Tests this target cannot pass for a reason outside the provider under test (an emulator's
  /// known deviation from the service it stands in for, or a limit of the service itself):
  /// test name (without the "/target" suffix) -> the reason, which the test reports as its
  /// skip message. Never a way to hide a provider bug.
  std::map<std::string, std::string> known_deviations;

  // ---- durability -------------------------------------------------------------------------
  /// Builds a new provider over the durable state of the one make_provider last built, which
  /// the suite has closed and released (a persisted provider reopening its directory). Unset:
  /// the provider cannot, and the tests' reopen() steps do nothing.
  std::function<result<provider_ptr>(boost::asio::any_io_executor)> reopen_provider;
};

/// GoogleTest's name for an instantiation: the target's name.
std::string target_name(const ::testing::TestParamInfo<target>& info);
/// How GoogleTest prints a target in failure messages ("target 'memory'").
void PrintTo(const target& t, std::ostream* os);

/// Thrown by the fixture's helpers when an operation that must succeed fails; GoogleTest reports
/// it as a failure of the test, with the operation and the error.
class operation_failed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An io_context run by a few threads, and a way to run awaitables on it from the test's thread.
class io_runner {
 public:
  io_runner(std::size_t threads, milliseconds hang_limit);
  ~io_runner();
  io_runner(const io_runner&) = delete;
  io_runner& operator=(const io_runner&) = delete;

  boost::asio::any_io_executor executor() { return io_.get_executor(); }

  /// Starts a coroutine (a callable returning an awaitable) on the io_context.
  template <class F>
  auto spawn(F&& coroutine_function) {
    return boost::asio::co_spawn(io_, std::forward<F>(coroutine_function), boost::asio::use_future);
  }
  /// Waits for a spawned coroutine; a wait longer than the hang limit aborts the binary (the
  /// coroutine may still use the test's state, so the test cannot safely continue).
  template <class T>
  T wait(std::future<T>& f) {
    if (f.wait_for(hang_limit_) != std::future_status::ready) report_hang_and_abort();
    return f.get();
  }
  template <class T>
  T run(awaitable<T> op) {
    auto f = boost::asio::co_spawn(io_, std::move(op), boost::asio::use_future);
    return wait(f);
  }

  /// Lets the threads finish once no work is left; false if work was still pending after
  /// `limit` (then the io_context is stopped).
  bool finish(milliseconds limit);

 private:
  [[noreturn]] void report_hang_and_abort() const;

  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_;
  milliseconds hang_limit_;
  std::mutex mutex_;
  std::condition_variable idle_;
  std::size_t running_ = 0;
  std::vector<std::thread> threads_;
};

/// The fixture every conformance test runs in: a fresh provider on its own io_context, a
/// queue_client over it, and helpers that turn failures into test failures.
class provider_test : public ::testing::TestWithParam<target> {
 protected:
  void SetUp() override;
  void TearDown() override;

  const target& tgt() const { return GetParam(); }
  const capabilities& caps() const { return client_->caps(); }
  qrt::queue_client& client() { return *client_; }
  io_runner& io() { return *runner_; }

  /// A fresh queue for this test, deleted at the end (or a drained fixed queue). Sessions
  /// queues get the target's session suffix. May skip the test: use QRT_MAKE_QUEUE.
  queue_name make_queue(const queue_options& options = {});
  /// A unique, valid queue name that no queue has yet.
  queue_name unique_queue_name(bool sessions = false) const;
  /// A unique, valid topic name that no topic has yet (built as unique_queue_name is).
  topic_name unique_topic_name() const;
  /// A fresh topic for this test, deleted with its subscriptions at the end. Skips the test
  /// where the target creates no topics (target::create_topics): use QRT_MAKE_TOPIC.
  topic_name make_topic();
  /// Subscription `name` of `topic`, created with `options` (deleted with its topic).
  queue_name make_subscription(const topic_name& topic, std::string_view name,
                               const subscription_options& options = {});

  template <class T>
  T run(awaitable<T> op) {
    return runner_->run(std::move(op));
  }

  // Operations that must succeed: they throw operation_failed naming the operation otherwise.
  message_id send(const queue_name& q, message m);
  message_id publish(const topic_name& t, message m);
  std::vector<send_outcome> send_batch(const queue_name& q, std::vector<message> messages);
  std::vector<received_message> receive(const queue_name& q, std::size_t max, milliseconds wait);
  /// Exactly one message, waiting up to `wait` (event_timeout by default).
  received_message receive_one(const queue_name& q, std::optional<milliseconds> wait = {});
  /// Receives until `count` messages arrived (throws if they did not within event_timeout).
  std::vector<received_message> receive_count(const queue_name& q, std::size_t count);
  /// Like receive_count, but completes each receive's messages before the next receive: for
  /// more messages than a provider hands out before settling (an SQS FIFO group is held while
  /// any of its messages is in flight). The receipts returned are spent.
  std::vector<received_message> receive_and_complete(const queue_name& q, std::size_t count);
  void complete(const receipt_handle& r);
  void complete_all(const std::vector<received_message>& messages);
  /// A receive of `wait` that must return nothing.
  void expect_empty(const queue_name& q, milliseconds wait, std::string_view why);

  /// A restart between two steps, for targets with reopen_provider: closes and releases the
  /// provider, then continues on a new one over the same state. Locks do not survive it: every
  /// unsettled message is ready again with its delivery count, and receipts and sessions from
  /// before are dead (the test must have let go of its session receivers). Returns false, and
  /// changes nothing, for targets that cannot reopen.
  bool reopen();
  bool can_reopen() const { return static_cast<bool>(tgt().reopen_provider); }

  /// Records a skip with `why` (for helpers that cannot use GTEST_SKIP's return).
  void skip(const std::string& why);

 private:
  void drain(const queue_name& q, bool sessions);

  std::unique_ptr<io_runner> runner_;
  std::optional<qrt::queue_client> client_;
  std::vector<queue_name> created_;
  std::vector<topic_name> created_topics_;
};

/// Unwraps a result that must be a success.
template <class T>
T must(result<T> r, std::string_view what) {
  if (!r) throw operation_failed(std::string(what) + " failed: " + r.error().to_string());
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

/// "queue_not_found: ..." for failure messages; "ok" for a success.
template <class T>
std::string describe(const result<T>& r) {
  return r ? std::string("ok") : r.error().to_string();
}

/// How long since `start`, in milliseconds.
inline milliseconds since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
}

/// A message with a body and one attribute naming its place in a sequence.
message numbered(std::string body, std::size_t index);
/// The index numbered() stored, or SIZE_MAX.
std::size_t index_of(const received_message& m);

}  // namespace qrt::conformance

namespace qrt {
/// GoogleTest prints error codes by name ("receipt_expired"), not as bytes.
inline void PrintTo(errc e, std::ostream* os) {
  *os << to_string(e);
}
}  // namespace qrt

/// Declares a queue for the test, or skips the test when the target cannot provide one.
#define QRT_MAKE_QUEUE(var, ...)                         \
  const ::qrt::queue_name var = make_queue(__VA_ARGS__); \
  if (IsSkipped()) return

/// Declares a topic for the test, or skips the test when the target cannot create one.
#define QRT_MAKE_TOPIC(var)                   \
  const ::qrt::topic_name var = make_topic(); \
  if (IsSkipped()) return

/// Skips the test unless the provider declares `cond` (a capability).
#define QRT_REQUIRE(cond, what) \
  if (!(cond))                  \
  GTEST_SKIP() << tgt().name << " does not declare " << what << " (capabilities: " #cond ")"

/// Instantiates the suite for one provider: QRT_INSTANTIATE_CONFORMANCE(memory, make_target()).
/// Use at namespace scope. (GoogleTest matches instantiations to TEST_Ps by the fixture's
/// spelled name, hence the using-declaration.)
#define QRT_INSTANTIATE_CONFORMANCE(prefix, ...)                                  \
  using ::qrt::conformance::provider_test;                                        \
  INSTANTIATE_TEST_SUITE_P(prefix, provider_test, ::testing::Values(__VA_ARGS__), \
                           ::qrt::conformance::target_name)
