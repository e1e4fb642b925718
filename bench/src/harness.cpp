#include <malloc.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <future>
#include <limits>
#include <mutex>
#include <qrt/bench/harness.hpp>
#include <qrt/client.hpp>
#include <qrt/fault_injection.hpp>
#include <qrt/instrumented_provider.hpp>
#include <qrt/memory.hpp>
#include <qrt/qrt.hpp>
#include <thread>
#include <unordered_map>

namespace qrt::bench {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Small shared pieces

namespace {
/// The send time at the start of every body: 16 hex digits, so no body is shorter.
constexpr std::size_t send_time_digits = 16;
/// In session mode the producer's index and the sequence number follow it.
constexpr std::size_t producer_digits = 8;
constexpr std::size_t sequence_digits = 16;
static_assert(send_time_digits + producer_digits + sequence_digits == session_body_bytes);

void put_hex(std::string& body, std::size_t at, std::size_t digits, std::uint64_t value) {
  static constexpr char hex[] = "0123456789abcdef";
  for (std::size_t i = digits; i-- > 0;) {
    body[at + i] = hex[value & 0xF];
    value >>= 4;
  }
}

std::optional<std::uint64_t> get_hex(std::string_view body, std::size_t at, std::size_t digits) {
  if (body.size() < at + digits) return std::nullopt;
  std::uint64_t value = 0;
  for (std::size_t i = at; i < at + digits; ++i) {
    const char c = body[i];
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    value = (value << 4) | static_cast<std::uint64_t>(v);
  }
  return value;
}

/// Where a session-mode message came from: its producer and its place among that producer's
/// messages of the session.
struct session_stamp {
  std::size_t producer = 0;
  std::uint64_t sequence = 0;
};

void stamp_session(std::string& body, std::size_t producer, std::uint64_t sequence) {
  put_hex(body, send_time_digits, producer_digits, producer);
  put_hex(body, send_time_digits + producer_digits, sequence_digits, sequence);
}

std::optional<session_stamp> read_session_stamp(std::string_view body) {
  const auto producer = get_hex(body, send_time_digits, producer_digits);
  const auto sequence = get_hex(body, send_time_digits + producer_digits, sequence_digits);
  if (!producer || !sequence) return std::nullopt;
  return session_stamp{static_cast<std::size_t>(*producer), *sequence};
}
}  // namespace

std::string make_body(std::size_t size, steady::time_point sent) {
  std::string body(std::max(size, send_time_digits), 'x');
  put_hex(body, 0, send_time_digits, static_cast<std::uint64_t>(sent.time_since_epoch().count()));
  return body;
}

std::optional<steady::time_point> read_send_time(std::string_view body) {
  const auto ns = get_hex(body, 0, send_time_digits);
  if (!ns) return std::nullopt;
  return steady::time_point(steady::duration(static_cast<steady::rep>(*ns)));
}

struct session_order::slot {
  std::mutex mutex;
  std::vector<std::uint64_t> next;  // per producer: one past the highest sequence delivered
  std::uint64_t violations = 0;
};

session_order::session_order(std::size_t sessions, std::size_t producers) : producers_(producers) {
  slots_.reserve(sessions);
  for (std::size_t i = 0; i < sessions; ++i) {
    slots_.push_back(std::make_unique<slot>());
    slots_.back()->next.assign(producers, 0);
  }
}

session_order::~session_order() = default;

bool session_order::observe(std::size_t session, std::size_t producer, std::uint64_t sequence,
                            bool redelivered) {
  if (session >= slots_.size() || producer >= producers_) return true;
  auto& s = *slots_[session];
  std::lock_guard lock(s.mutex);
  auto& next = s.next[producer];
  if (sequence >= next) {
    // (Saturating: a foreign body's largest number must not wrap the mark back to 0.)
    next = sequence == std::numeric_limits<std::uint64_t>::max() ? sequence : sequence + 1;
    return true;
  }
  if (redelivered) return true;
  ++s.violations;
  std::int64_t none = -1;
  first_violation_.compare_exchange_strong(none, static_cast<std::int64_t>(session));
  return false;
}

std::uint64_t session_order::violations() const {
  std::uint64_t total = 0;
  for (const auto& s : slots_) {
    std::lock_guard lock(s->mutex);
    total += s->violations;
  }
  return total;
}

std::optional<std::size_t> session_order::first_violation() const {
  const auto first = first_violation_.load();
  if (first < 0) return std::nullopt;
  return static_cast<std::size_t>(first);
}

resource_usage resource_usage::now() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return {secs(ru.ru_utime) + secs(ru.ru_stime), static_cast<std::uint64_t>(ru.ru_maxrss) * 1024};
}

std::uint64_t resident_bytes_now() {
  ::malloc_trim(0);  // freed heap an earlier run left in the allocator is not the run's own
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size_pages = 0;
  std::uint64_t resident_pages = 0;
  statm >> size_pages >> resident_pages;
  return resident_pages * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

latency_summary latency_summary::of(const latency_histogram& h) {
  auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
  latency_summary s;
  s.count = h.count();
  s.p50_us = us(h.percentile(0.50));
  s.p90_us = us(h.percentile(0.90));
  s.p95_us = us(h.percentile(0.95));
  s.p99_us = us(h.percentile(0.99));
  s.p99_9_us = us(h.percentile(0.999));
  s.p99_99_us = us(h.percentile(0.9999));
  s.max_us = us(h.max());
  s.mean_us = h.mean() / 1000.0;
  return s;
}

time_buckets::time_buckets(std::int64_t width_ns, std::size_t max_buckets)
    : width_ns_(std::max<std::int64_t>(width_ns, 1)), max_buckets_(max_buckets) {}

void time_buckets::coarsen_once() {
  std::vector<bucket> merged((buckets_.size() + 1) / 2);
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    auto& m = merged[i / 2];
    const auto& b = buckets_[i];
    m.sent += b.sent;
    m.completed += b.completed;
    m.e2e_count += b.e2e_count;
    m.e2e_sum_ns += b.e2e_sum_ns;
    m.e2e_max_ns = std::max(m.e2e_max_ns, b.e2e_max_ns);
  }
  buckets_ = std::move(merged);
  width_ns_ *= 2;
}

void time_buckets::coarsen_to(std::int64_t width_ns) {
  while (width_ns_ < width_ns) coarsen_once();
}

time_buckets::bucket& time_buckets::at(std::int64_t t_ns) {
  t_ns = std::max<std::int64_t>(t_ns, 0);
  auto index = static_cast<std::size_t>(t_ns / width_ns_);
  while (max_buckets_ > 1 && index >= max_buckets_) {
    coarsen_once();
    index = static_cast<std::size_t>(t_ns / width_ns_);
  }
  if (index >= buckets_.size()) buckets_.resize(index + 1);
  return buckets_[index];
}

void time_buckets::add_sent(std::int64_t t_ns, std::uint64_t n) {
  at(t_ns).sent += n;
}

void time_buckets::add_completed(std::int64_t t_ns, std::uint64_t n, std::uint64_t e2e_count,
                                 std::uint64_t e2e_sum_ns, std::int64_t e2e_max_ns) {
  auto& b = at(t_ns);
  b.completed += n;
  b.e2e_count += e2e_count;
  b.e2e_sum_ns += e2e_sum_ns;
  b.e2e_max_ns = std::max(b.e2e_max_ns, e2e_max_ns);
}

std::vector<sample> to_samples(std::vector<time_buckets> parts, std::int64_t end_ns) {
  std::int64_t width = 1;
  for (const auto& p : parts) width = std::max(width, p.width_ns());
  std::vector<time_buckets::bucket> all;
  for (auto& p : parts) {
    p.coarsen_to(width);
    if (p.buckets().size() > all.size()) all.resize(p.buckets().size());
    for (std::size_t i = 0; i < p.buckets().size(); ++i) {
      const auto& b = p.buckets()[i];
      all[i].sent += b.sent;
      all[i].completed += b.completed;
      all[i].e2e_count += b.e2e_count;
      all[i].e2e_sum_ns += b.e2e_sum_ns;
      all[i].e2e_max_ns = std::max(all[i].e2e_max_ns, b.e2e_max_ns);
    }
  }
  std::vector<sample> out;
  for (std::size_t i = 0; i < all.size(); ++i) {
    const auto begin = static_cast<std::int64_t>(i) * width;
    if (begin >= end_ns && !out.empty()) break;
    const auto finish = std::max(begin + 1, std::min(begin + width, end_ns));
    const double dt = static_cast<double>(finish - begin) / 1e9;
    const auto& b = all[i];
    sample p;
    p.t_s = static_cast<double>(finish) / 1e9;
    p.dt_s = dt;
    p.send_rate = static_cast<double>(b.sent) / dt;
    p.receive_rate = static_cast<double>(b.completed) / dt;
    p.e2e_count = b.e2e_count;
    p.e2e_mean_us = b.e2e_count
                        ? static_cast<double>(b.e2e_sum_ns) / static_cast<double>(b.e2e_count) / 1e3
                        : 0;
    p.e2e_max_us = static_cast<double>(b.e2e_max_ns) / 1e3;
    out.push_back(p);
  }
  return out;
}

namespace {

std::chrono::nanoseconds thread_cpu_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

}  // namespace

void burn_cpu(std::chrono::microseconds cost) {
  if (cost.count() <= 0) return;
  const auto until = thread_cpu_now() + cost;
  while (thread_cpu_now() < until) {
  }
}

namespace {

constexpr std::size_t max_sessions = 100'000;
// The order check keeps a sequence number per session and producer.
constexpr std::size_t max_session_marks = std::size_t{1} << 24;

std::size_t default_threads(std::size_t requested) {
  if (requested > 0) return requested;
  return std::max(1u, std::thread::hardware_concurrency());
}

error invalid(std::string what) {
  return fail(errc::invalid_argument, std::move(what));
}

result<void> validate(const bench_options& o) {
  if (o.message_size < 16)
    return invalid("message size must be at least 16 bytes (the body carries its send time)");
  // Each producer builds a batch of bodies: a size no provider takes must not exhaust memory.
  if (o.message_size > (std::size_t{64} << 20))
    return invalid("message size must be at most 64 MiB (67108864 bytes)");
  if (o.producers == 0) return invalid("producers must be at least 1");
  if (o.consumers == 0) return invalid("consumers must be at least 1");
  if (o.send_batch == 0) return invalid("send batch must be at least 1");
  if (o.receive_batch == 0) return invalid("receive batch must be at least 1");
  if (!o.duration && o.messages == 0)
    return invalid("message count must be at least 1 (or give a duration)");
  if (o.duration && o.duration->count() <= 0) return invalid("duration must be positive");
  if (o.rate < 0 || !std::isfinite(o.rate))
    return invalid("rate must be a positive number of messages/s");
  if (o.sessions > 0) {
    if (o.message_size < session_body_bytes) {
      return invalid("message size must be at least " + std::to_string(session_body_bytes) +
                     " bytes with sessions (the body carries its send time, producer and "
                     "sequence number)");
    }
    if (o.sessions > max_sessions) {
      return invalid("sessions must be at most " + std::to_string(max_sessions));
    }
    if (o.producers > max_session_marks / o.sessions) {
      return invalid("sessions x producers must be at most " + std::to_string(max_session_marks) +
                     " (the order check keeps a sequence number for each)");
    }
    if (o.session_idle_wait.count() <= 0) return invalid("session idle wait must be positive");
    if (o.session_hold.count() < 0) return invalid("session hold must be 0 (no bound) or more");
  }
  return {};
}

// The session ids of a session run: "bench-0" .. "bench-<n-1>".
std::vector<session_id> bench_session_ids(std::size_t n) {
  std::vector<session_id> ids;
  ids.reserve(n);
  for (std::size_t i = 0; i < n; ++i) ids.push_back(session_id::from("bench-" + std::to_string(i)));
  return ids;
}

// Sessions need a provider that has them: said before the queue is touched, naming it.
result<void> refuse_without_sessions(const provider& p) {
  if (p.caps().sessions != session_support::none) return {};
  return fail(errc::unsupported,
              "the session benchmark needs a provider with sessions, and provider '" +
                  std::string(p.name()) + "' has none");
}

// An existing queue (one the run did not make) must hand out sessions: a queue made without
// requires_session refuses accept_session, which would fail the run only after its messages
// were sent. An accept that waits for nothing tells: timing out is the answer of a session
// queue with nothing in it.
awaitable<result<void>> refuse_unless_session_queue(provider& p, const queue_name& q) {
  auto probe = co_await p.accept_session(q, std::nullopt, milliseconds{0});
  if (probe) {
    co_await (*probe)->close();
    co_return result<void>{};
  }
  if (probe.error().code == errc::timeout) co_return result<void>{};
  error e = probe.error();
  e.message = "queue '" + q.str() + "' cannot be read by session: " + e.message;
  co_return e;
}

// An io_context run by a pool of threads for the provider, producers and consumers.
class runtime {
 public:
  explicit runtime(std::size_t threads)
      : io_(static_cast<int>(threads)), guard_(io_.get_executor()) {
    for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  ~runtime() { shutdown(); }

  asio::io_context& io() { return io_; }

  template <class T>
  std::future<T> spawn(awaitable<T> task) {
    return asio::co_spawn(io_, std::move(task), asio::use_future);
  }
  template <class T>
  T run(awaitable<T> task) {
    return spawn(std::move(task)).get();
  }

  void shutdown() {
    if (threads_.empty()) return;
    for (auto& p : to_close_) run(p->close());
    to_close_.clear();
    guard_.reset();
    io_.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  void close_at_end(provider_ptr p) { to_close_.push_back(std::move(p)); }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::vector<std::thread> threads_;
  std::vector<provider_ptr> to_close_;
};

result<provider_ptr> build_provider(runtime& rt, const config& cfg) {
  auto p = builtin_providers().make(cfg, rt.io().get_executor());
  if (!p) return p.error();
  rt.close_at_end(*p);
  return *p;
}

// Creates the queue a run uses when it is missing; true when this call made it. Only a queue the
// run made is deleted at its end: `--queue` may name a queue that was there before (a user's on
// SQS or Service Bus, one in a persisted store), and create_queue keeps an existing queue
// without saying so, so whether it was there is asked first. A queue whose existence cannot be
// told (stats unsupported or failing) counts as not made: it is kept.
awaitable<result<bool>> prepare_queue(provider& p, const queue_name& q,
                                      const queue_options& options = {}) {
  auto there = co_await p.stats(q);
  if (there) co_return false;
  auto r = co_await p.create_queue(q, options);
  if (!r && r.error().code != errc::unsupported) co_return r.error();
  co_return r.has_value() && there.error().code == errc::queue_not_found;
}

// How many messages `depth` says a queue holds: "40 messages (40 ready, 0 locked, 0 scheduled)",
// "" when it says none, nullopt when it knows none of the figures.
std::optional<std::string> messages_held(const queue_stats& depth) {
  const std::pair<std::int64_t, const char*> figures[] = {
      {depth.active, "ready"}, {depth.in_flight, "locked"}, {depth.scheduled, "scheduled"}};
  std::int64_t held = 0;
  bool known = false;
  std::string parts;
  for (const auto& [count, what] : figures) {
    if (count < 0) continue;
    known = true;
    held += count;
    parts += (parts.empty() ? "" : ", ") + std::to_string(count) + " " + what;
  }
  if (!known) return std::nullopt;
  if (held == 0) return std::string();
  return std::to_string(held) + (held == 1 ? " message (" : " messages (") + parts + ")";
}

error not_empty(const queue_name& q, const std::string& holds) {
  return invalid("queue '" + q.str() + "' already holds " + holds +
                 ": the benchmark receives and completes every message on its queue, so it runs "
                 "only on an empty one (empty it, or name another with --queue)");
}

// The benchmark receives and completes whatever its queue holds, so a queue that already holds
// messages (a user's on a broker, one in a persisted store) would lose them to it: refused, with
// how many it holds. Where the depth is unknown (AMQP 1.0 reports none) a peek tells, if the
// provider has one; with neither, nothing can tell, and --queue must name a queue for benchmarks
// only (docs/bench-report.md).
awaitable<result<void>> refuse_unless_empty(provider& p, const queue_name& q) {
  if (auto depth = co_await p.stats(q)) {
    const auto held = messages_held(*depth);
    if (held && !held->empty()) co_return not_empty(q, *held);
    if (held) co_return result<void>{};
  }
  if (p.caps().peek) {
    auto first = co_await p.peek(q, 1, 0);
    if (first && !first->empty()) co_return not_empty(q, "messages");
  }
  co_return result<void>{};
}

std::int64_t ns_since(steady::time_point start, steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t - start).count();
}

void atomic_max(std::atomic<std::int64_t>& a, std::int64_t v) {
  auto cur = a.load(std::memory_order_relaxed);
  while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

// Everything the producers, consumers and progress line of one run share.
struct run_state {
  const bench_options& o;
  queue_client& client;
  queue_name queue;
  steady::time_point start;
  std::optional<steady::time_point> deadline;  // sustained mode

  std::atomic<std::uint64_t> claimed{0};  // count mode: messages producers have taken on
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> received{0};
  std::atomic<std::uint64_t> send_errors{0}, receive_errors{0}, complete_errors{0}, duplicates{0};
  std::atomic<std::uint64_t> send_calls{0}, receive_calls{0}, received_raw{0};
  // Calls that failed in whole or in part (every call is counted by its worker's latency
  // histogram: a shared counter would add a contended cache line to every call).
  std::atomic<std::uint64_t> failed_calls{0};
  std::atomic<bool> producers_done{false};
  std::atomic<bool> finished{false};
  std::atomic<std::int64_t> last_send_end_ns{0}, first_receive_ns{-1}, last_complete_ns{0};
  std::atomic<std::int64_t> last_progress_ns{0};
  // With an outage: when it began and ends (-1 before it began), the first completion after its
  // end, the messages it held up, and the messages sent again.
  std::atomic<std::int64_t> outage_start_ns{-1}, outage_end_ns{-1}, first_after_outage_ns{-1};
  std::atomic<std::uint64_t> late{0}, resent{0};

  metrics::processing_series* processing = nullptr;  // handler-level metrics, when asked for

  std::mutex error_mutex;
  std::optional<error> fatal;        // first permanent failure: the run stops
  std::optional<error> first_error;  // first failure of any kind

  struct producer_stats {
    latency_histogram send;
    time_buckets series;
  };
  struct consumer_stats {
    latency_histogram e2e, receive, complete, accept;
    time_buckets series;
    // Session mode: sessions taken, the run's messages completed in them, sessions released.
    std::uint64_t sessions_accepted, session_messages, releases;
  };
  std::vector<producer_stats> producers;
  std::vector<consumer_stats> consumers;

  // Session mode: the ids, each one's index, and the order check.
  std::vector<session_id> session_ids;
  std::unordered_map<std::string, std::size_t> session_index;
  session_order order;

  run_state(const bench_options& opts, queue_client& c, queue_name q)
      : o(opts),
        client(c),
        queue(std::move(q)),
        producers(opts.producers, producer_stats{{}, buckets_for(opts)}),
        consumers(opts.consumers, consumer_stats{{}, {}, {}, {}, buckets_for(opts), 0, 0, 0}),
        session_ids(bench_session_ids(opts.sessions)),
        order(opts.sessions, opts.producers) {
    for (std::size_t i = 0; i < session_ids.size(); ++i) session_index[session_ids[i].str()] = i;
  }

  /// The index of a session of this run; nullopt for any other.
  std::optional<std::size_t> index_of(const session_id& id) const {
    auto it = session_index.find(id.str());
    if (it == session_index.end()) return std::nullopt;
    return it->second;
  }

  static time_buckets buckets_for(const bench_options& o) {
    if (o.sample_interval.count() > 0) {
      return time_buckets(std::chrono::nanoseconds(o.sample_interval).count(), 0);
    }
    return time_buckets(1'000'000, std::max<std::size_t>(o.max_samples, 4));
  }

  void stop_with(const error& e) {
    std::lock_guard lock(error_mutex);
    if (!fatal) fatal = e;
    finished = true;
  }
  /// A failure the run goes on after (a message refused, a transient error): the first one is
  /// kept, to say why if nothing gets through.
  void note(const error& e) {
    std::lock_guard lock(error_mutex);
    if (!first_error) first_error = e;
  }
};

awaitable<void> produce(run_state& s, std::size_t index) {
  auto& stats = s.producers[index];
  const double per_producer_rate = s.o.rate > 0 ? s.o.rate / static_cast<double>(s.o.producers) : 0;
  std::uint64_t mine = 0;
  // Session mode: the producer's messages go round robin over the sessions, each producer
  // starting at another one, and are numbered per session in the order they are sent.
  const std::size_t sessions = s.session_ids.size();
  std::size_t next_session = sessions > 0 ? index % sessions : 0;
  std::vector<std::uint64_t> next_sequence(sessions, 0);
  asio::steady_timer pacer(co_await asio::this_coro::executor);
  const auto resend_policy = s.o.retry.value_or(retry_policy::client_default());
  while (!s.finished) {
    std::size_t n = s.o.send_batch;
    if (s.deadline) {
      if (steady::now() >= *s.deadline) break;
    } else {
      const auto first = s.claimed.fetch_add(n);
      if (first >= s.o.messages) break;
      n = static_cast<std::size_t>(std::min<std::uint64_t>(n, s.o.messages - first));
    }
    std::optional<steady::time_point> due;
    if (per_producer_rate > 0) {
      due = s.start + std::chrono::duration_cast<steady::duration>(
                          std::chrono::duration<double>(mine / per_producer_rate));
      if (*due > steady::now()) {
        pacer.expires_at(*due);
        co_await pacer.async_wait(asio::use_awaitable);
      }
    }
    std::vector<message> batch(n);
    const auto stamp = due && s.o.resend_failed ? *due : steady::now();
    for (auto& m : batch) m.body = make_body(s.o.message_size, stamp);
    if (sessions > 0) {
      for (auto& m : batch) {
        m.session = s.session_ids[next_session];
        stamp_session(m.body, index, next_sequence[next_session]++);
        next_session = (next_session + 1) % sessions;
      }
    }
    mine += n;
    // With resend_failed, what failed transiently goes again until it is sent: the messages
    // offered are not lost to a failure the run caused on purpose.
    for (std::uint32_t failures = 1; !batch.empty() && !s.finished; ++failures) {
      std::vector<message> kept;
      if (s.o.resend_failed) kept = batch;  // send_batch takes the batch
      const auto count = batch.size();
      const auto t0 = steady::now();
      auto r = co_await s.client.send_batch(s.queue, std::move(batch));
      batch.clear();  // moved from: what goes again is put back below
      const auto t1 = steady::now();
      stats.send.record(t1 - t0);
      s.send_calls.fetch_add(1, std::memory_order_relaxed);
      std::optional<error> failed;
      std::uint64_t ok = 0;
      if (!r) {
        s.failed_calls.fetch_add(1, std::memory_order_relaxed);
        if (!r.error().is_transient()) {
          s.send_errors += count;
          s.stop_with(r.error());
          co_return;
        }
        s.note(r.error());
        failed = r.error();
        if (s.o.resend_failed) batch = std::move(kept);
      } else {
        for (std::size_t i = 0; i < r->size(); ++i) {
          const auto& outcome = (*r)[i];
          if (outcome) {
            ++ok;
            continue;
          }
          if (!failed) failed = outcome.error();
          if (s.o.resend_failed && i < kept.size() && outcome.error().is_transient())
            batch.push_back(std::move(kept[i]));
        }
        if (failed) {
          s.note(*failed);
          s.failed_calls.fetch_add(1, std::memory_order_relaxed);
        }
        s.sent.fetch_add(ok, std::memory_order_relaxed);
        stats.series.add_sent(ns_since(s.start, t1), ok);
        atomic_max(s.last_send_end_ns, ns_since(s.start, t1));
      }
      s.send_errors += count - ok - batch.size();
      if (batch.empty()) break;
      s.resent += batch.size();
      pacer.expires_after(resend_policy.delay_after(*failed, failures));
      co_await pacer.async_wait(asio::use_awaitable);
    }
  }
}

// After the producers stopped, a consumer that finds nothing gives up once nothing has moved for
// a while (the remaining messages are lost, and the report shows it).
bool drain_given_up(const run_state& s) {
  constexpr auto drain_timeout = std::chrono::seconds(10);
  return s.producers_done &&
         steady::now() - (s.start + std::chrono::nanoseconds(s.last_progress_ns.load())) >
             drain_timeout;
}

// One handled batch's end-to-end figures, for its time bucket once it is settled.
struct batch_figures {
  std::uint64_t sum_ns = 0, count = 0;
  std::int64_t max_ns = 0;
  // With an outage: the run's messages in the batch that were sent before it ended.
  std::uint64_t sent_before_outage_end = 0;
};

// Where a batch came from in session mode: the held session's index among the run's (nullopt
// for a session the run did not make, whose messages are then none of its own).
struct from_session {
  std::optional<std::size_t> index;
};

// Handles a received batch: counts it, runs each message's handler, and fills `settles` (a
// completion each) and `mine` (per settlement: a message of this run). From a session, each of
// the run's messages goes through the order check too.
batch_figures handle_batch(run_state& s, run_state::consumer_stats& stats,
                           std::vector<received_message>& batch, steady::time_point received_at,
                           std::vector<settlement>& settles, std::vector<bool>& mine,
                           const from_session* session) {
  s.receive_calls.fetch_add(1, std::memory_order_relaxed);
  s.received_raw.fetch_add(batch.size(), std::memory_order_relaxed);
  std::int64_t expected = -1;
  s.first_receive_ns.compare_exchange_strong(expected, ns_since(s.start, received_at));

  // The last batch's vector went to settle(): reserved, it is one allocation, not five.
  settles.clear();
  settles.reserve(batch.size());
  mine.clear();
  batch_figures f;
  const auto outage_end = s.outage_end_ns.load();
  // A handler that costs nothing starts when the receive returns, so one clock read serves
  // the whole batch; reading it per message was 6 % of the run's CPU (the raw queue's
  // consumer, in baseline.cpp, reads it the same way).
  const bool handlers_take_time = s.o.handler_cost.count() > 0;
  for (auto& m : batch) {
    const auto handler_start = handlers_take_time ? steady::now() : received_at;
    // Only this run's messages count, stamped since its start. The run starts only on an empty
    // queue where the provider can tell (refuse_unless_empty), but another sender may still
    // put messages on it, stamped by another process's clock or not at all: those are
    // completed and left out of every figure.
    const auto sent_at = read_send_time(m.body);
    bool ours = sent_at && *sent_at >= s.start && *sent_at <= handler_start;
    if (ours && session) {
      const auto stamp = read_session_stamp(m.body);
      ours = stamp && session->index && stamp->producer < s.o.producers;
      if (ours)
        s.order.observe(*session->index, stamp->producer, stamp->sequence, m.delivery_count > 1);
    }
    mine.push_back(ours);
    settles.push_back(settlement::complete(std::move(m.receipt)));
    if (!ours) continue;
    const auto e2e = std::chrono::duration_cast<std::chrono::nanoseconds>(handler_start - *sent_at);
    stats.e2e.record(e2e);
    f.sum_ns += static_cast<std::uint64_t>(e2e.count());
    f.max_ns = std::max<std::int64_t>(f.max_ns, e2e.count());
    ++f.count;
    if (m.delivery_count > 1) ++s.duplicates;
    if (outage_end >= 0 && ns_since(s.start, *sent_at) < outage_end) ++f.sent_before_outage_end;
    burn_cpu(s.o.handler_cost);
  }
  if (s.processing) s.processing->record_batch_processed(f.count, steady::now() - received_at);
  return f;
}

// Counts what the settle call of a handled batch did, which ended at `settled_at`; returns the
// run's messages it completed.
std::uint64_t count_settled(run_state& s, run_state::consumer_stats& stats,
                            const std::vector<result<void>>& results, const std::vector<bool>& mine,
                            const batch_figures& f, steady::time_point settled_at) {
  // The call failed if any settlement in it did, this run's message or not.
  if (std::any_of(results.begin(), results.end(), [](const auto& x) { return !x; }))
    s.failed_calls.fetch_add(1, std::memory_order_relaxed);
  std::uint64_t ok = 0, failures = 0;
  std::optional<error> failed;
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (i >= mine.size() || !mine[i]) continue;
    if (results[i]) {
      ++ok;
    } else {
      ++failures;
      if (!failed) failed = results[i].error();
    }
  }
  if (failed) s.note(*failed);
  s.complete_errors += failures;
  s.received.fetch_add(ok, std::memory_order_relaxed);
  const auto at = ns_since(s.start, settled_at);
  // With an outage: the messages it held up, and the first completion after it ended.
  if (const auto outage_end = s.outage_end_ns.load();
      outage_end >= 0 && at > outage_end && ok > 0) {
    s.late += std::min(ok, f.sent_before_outage_end);
    auto first = s.first_after_outage_ns.load();
    while ((first < 0 || at < first) && !s.first_after_outage_ns.compare_exchange_weak(first, at)) {
    }
  }
  stats.series.add_completed(at, ok, f.count, f.sum_ns, f.max_ns);
  atomic_max(s.last_complete_ns, at);
  s.last_progress_ns.store(at, std::memory_order_relaxed);
  return ok;
}

// A failed receive: counted and kept; a permanent failure stops the run. True when it did.
bool receive_failed(run_state& s, const error& e) {
  s.failed_calls.fetch_add(1, std::memory_order_relaxed);
  ++s.receive_errors;
  s.note(e);
  if (e.is_transient()) return false;
  s.stop_with(e);
  return true;
}

awaitable<void> consume(run_state& s, std::size_t index) {
  auto& stats = s.consumers[index];
  std::vector<settlement> settles;
  std::vector<bool> mine;  // per settlement: a message of this run
  while (!s.finished) {
    if (s.producers_done && s.received.load() >= s.sent.load()) break;
    const auto t0 = steady::now();
    auto r = co_await s.client.receive(s.queue, s.o.receive_batch, s.o.receive_wait);
    const auto t1 = steady::now();
    stats.receive.record(t1 - t0);
    if (!r) {
      if (receive_failed(s, r.error())) break;
      continue;
    }
    if (r->empty()) {
      if (drain_given_up(s)) break;
      continue;
    }
    const auto f = handle_batch(s, stats, *r, t1, settles, mine, nullptr);
    const auto c0 = steady::now();
    auto results = co_await s.client.settle(std::move(settles));
    settles = {};
    const auto c1 = steady::now();
    stats.complete.record(c1 - c0);
    count_settled(s, stats, results, mine, f, c1);
  }
}

// Session mode: takes any session with messages, receives from it until it has nothing for
// session_idle_wait or, with session_hold, until it has been held that long (each batch
// completed before the next receive, so a session lost midway gives back only the batch in
// hand, in order), then releases it and takes the next. The
// session processor would do the same, but one message per handler call and with its own
// back-off and lock renewal in the path; calling the provider directly, as the plain consumers
// do, measures the provider's session calls and settles a batch in one call.
awaitable<void> consume_sessions(run_state& s, std::size_t index) {
  auto& stats = s.consumers[index];
  std::vector<settlement> settles;
  std::vector<bool> mine;
  while (!s.finished) {
    if (s.producers_done && s.received.load() >= s.sent.load()) break;
    const auto a0 = steady::now();
    auto held = co_await s.client.accept_session(s.queue, std::nullopt, s.o.receive_wait);
    stats.accept.record(steady::now() - a0);
    if (!held) {
      // A timeout is the answer "no session had messages within the wait", as an empty receive.
      if (held.error().code == errc::timeout) {
        if (drain_given_up(s)) break;
        continue;
      }
      if (receive_failed(s, held.error())) break;
      continue;
    }
    ++stats.sessions_accepted;
    const auto held_since = steady::now();
    const from_session session{s.index_of(held->id())};
    while (!s.finished) {
      const auto t0 = steady::now();
      auto r = co_await held->receive(s.o.receive_batch, s.o.session_idle_wait);
      const auto t1 = steady::now();
      stats.receive.record(t1 - t0);
      if (!r) {
        // A lost session lock ends this hold, not the run: its messages go to the next holder.
        if (r.error().code == errc::session_lock_lost) {
          s.failed_calls.fetch_add(1, std::memory_order_relaxed);
          ++s.receive_errors;
          s.note(r.error());
        } else {
          receive_failed(s, r.error());
        }
        break;
      }
      if (r->empty()) break;
      const auto f = handle_batch(s, stats, *r, t1, settles, mine, &session);
      const auto c0 = steady::now();
      auto results = co_await held->settle(std::move(settles));
      settles = {};
      const auto c1 = steady::now();
      stats.complete.record(c1 - c0);
      stats.session_messages += count_settled(s, stats, results, mine, f, c1);
      if (s.o.session_hold.count() > 0 && c1 - held_since >= s.o.session_hold) break;
    }
    ++stats.releases;
    if (auto released = co_await held->close(); !released) {
      s.failed_calls.fetch_add(1, std::memory_order_relaxed);
      s.note(released.error());
    }
  }
}

// The progress line (when asked for) from a thread of its own, a few times a second; the time
// series needs no sampler: producers and consumers count into their own time buckets.
struct progress_thread {
  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
  std::thread thread;

  void finish() {
    {
      std::lock_guard lock(mutex);
      stop = true;
    }
    wake.notify_all();
    if (thread.joinable()) thread.join();
  }
  ~progress_thread() { finish(); }
};

void progress_loop(run_state& s, progress_thread& pt) {
  auto next = s.start;
  for (bool stopping = false; !stopping;) {
    next += std::chrono::milliseconds(250);
    {
      std::unique_lock lock(pt.mutex);
      stopping = pt.wake.wait_until(lock, next, [&] { return pt.stop; });
    }
    const auto now = steady::now();
    s.o.on_progress(progress{std::chrono::duration<double>(now - s.start).count(), s.sent.load(),
                             s.received.load(), s.deadline ? 0 : s.o.messages});
  }
}

}  // namespace

std::optional<network_figures> network_between(const connection_stats& before,
                                               const connection_stats& after, double wall_s,
                                               std::uint64_t completed) {
  if (after.connections_opened == 0 && after.connection_failures == 0) return std::nullopt;
  // Every field only grows; a provider that breaks that gives 0, not a wrapped-around count.
  const auto grew = [](std::uint64_t b, std::uint64_t a) { return a - std::min(a, b); };
  network_figures n;
  n.bytes_sent = grew(before.bytes_sent, after.bytes_sent);
  n.bytes_received = grew(before.bytes_received, after.bytes_received);
  if (wall_s > 0) {
    n.bytes_sent_per_s = static_cast<double>(n.bytes_sent) / wall_s;
    n.bytes_received_per_s = static_cast<double>(n.bytes_received) / wall_s;
  }
  if (completed > 0) {
    n.bytes_per_message =
        static_cast<double>(n.bytes_sent + n.bytes_received) / static_cast<double>(completed);
  }
  n.connection_failures = grew(before.connection_failures, after.connection_failures);
  n.recoveries = grew(before.recoveries, after.recoveries);
  if (n.recoveries > 0) {
    const auto total =
        after.recovery_time_total - std::min(before.recovery_time_total, after.recovery_time_total);
    n.mean_recovery_s =
        std::chrono::duration<double>(total).count() / static_cast<double>(n.recoveries);
  }
  return n;
}

result<bench_result> run_benchmark(const bench_options& o) {
  if (auto v = validate(o); !v) return v.error();
  auto queue = queue_name::parse(o.queue);
  if (!queue) return queue.error();

  runtime rt(default_threads(o.threads));
  auto raw = build_provider(rt, o.provider_config);
  if (!raw) return raw.error();
  std::optional<metrics::processing_series> s_processing;
  provider_ptr p = o.decorate ? o.decorate(*raw) : *raw;
  if (o.metrics) p = metrics::instrument(p, *o.metrics);
  client_options with_retry;
  with_retry.retry = o.retry;
  queue_client client(p, with_retry);
  if (o.metrics) {
    s_processing.emplace(o.metrics->for_processing(queue->to_string(), std::string(p->name())));
  }
  if (o.sessions > 0) {
    if (auto has = refuse_without_sessions(*p); !has) return has.error();
  }
  queue_options queue_settings;
  queue_settings.requires_session = o.sessions > 0;
  bool made_queue = false;
  if (o.create_queue) {
    auto made = rt.run(prepare_queue(*p, *queue, queue_settings));
    if (!made) return made.error();
    made_queue = *made;
  }
  if (!made_queue) {
    if (auto empty = rt.run(refuse_unless_empty(*p, *queue)); !empty) return empty.error();
    if (o.sessions > 0) {
      if (auto by_session = rt.run(refuse_unless_session_queue(*p, *queue)); !by_session)
        return by_session.error();
    }
  }

  run_state s(o, client, *queue);
  s.processing = s_processing ? &*s_processing : nullptr;
  // Setting the queue up may have opened the first connection: that one is not the run's.
  const auto connections_before = p->connections();
  const auto usage_before = resource_usage::now();
  s.start = steady::now();
  if (o.duration) s.deadline = s.start + *o.duration;

  progress_thread progress_line;
  if (o.on_progress) progress_line.thread = std::thread([&] { progress_loop(s, progress_line); });
  // The outage begins from a thread of its own too, at its time, unless the run ended first.
  progress_thread outage_timer;
  if (o.outage && o.outage->begin) {
    outage_timer.thread = std::thread([&] {
      {
        std::unique_lock lock(outage_timer.mutex);
        if (outage_timer.wake.wait_until(lock, s.start + o.outage->at,
                                         [&] { return outage_timer.stop; })) {
          return;
        }
      }
      const auto begun = steady::now();
      s.outage_start_ns = ns_since(s.start, begun);
      o.outage->begin(o.outage->length);
      s.outage_end_ns = ns_since(s.start, begun + o.outage->length);
    });
  }
  std::vector<std::future<void>> consumers, producers;
  for (std::size_t i = 0; i < o.consumers; ++i) {
    consumers.push_back(rt.spawn(o.sessions > 0 ? consume_sessions(s, i) : consume(s, i)));
  }
  for (std::size_t i = 0; i < o.producers; ++i) producers.push_back(rt.spawn(produce(s, i)));
  for (auto& f : producers) f.get();
  s.last_progress_ns = ns_since(s.start, steady::now());
  s.producers_done = true;
  for (auto& f : consumers) f.get();
  const auto end = steady::now();
  s.finished = true;
  progress_line.finish();
  outage_timer.finish();
  if (o.outage && o.outage->finished) o.outage->finished();
  const auto usage_after = resource_usage::now();
  const auto connections_after = p->connections();

  if (made_queue) rt.run(p->delete_queue(*queue));
  rt.shutdown();
  if (s.fatal) return *s.fatal;
  // Order per session is what sessions promise (docs/contract.md): figures of a run that broke
  // it would pass for a working provider.
  if (const auto violations = s.order.violations(); violations > 0) {
    const auto first = s.order.first_violation().value_or(0);
    return fail(errc::provider_error,
                std::to_string(violations) + " message(s) came out of order in the session run, " +
                    "the first in session '" + s.session_ids[first].str() +
                    "': a message was received before an earlier one of the same producer and "
                    "session");
  }
  // Figures of a run in which no message went through measure nothing: say why instead.
  if (s.received == 0 && s.first_error) {
    error e = *s.first_error;
    e.message = "no message got through the benchmark: " + e.message;
    return e;
  }

  bench_result out;
  out.provider = std::string(p->name());
  out.messages_sent = s.sent;
  out.messages_received = s.received;
  out.send_errors = s.send_errors;
  out.receive_errors = s.receive_errors;
  out.complete_errors = s.complete_errors;
  out.duplicates = s.duplicates;
  out.message_size = o.message_size;
  out.producers = o.producers;
  out.consumers = o.consumers;
  out.send_batch = o.send_batch;
  out.receive_batch = o.receive_batch;
  out.rate_target = o.rate;
  out.wall_s = std::chrono::duration<double>(end - s.start).count();
  out.send_s = s.last_send_end_ns / 1e9;
  out.receive_s = s.first_receive_ns >= 0 ? (s.last_complete_ns - s.first_receive_ns) / 1e9 : 0;
  out.send_throughput = out.send_s > 0 ? out.messages_sent / out.send_s : 0;
  out.receive_throughput = out.receive_s > 0 ? out.messages_received / out.receive_s : 0;
  // Start to the last completion: consumers notice the end only when their last receive call
  // times out, which is not part of moving the messages.
  const double e2e_s = s.last_complete_ns > 0 ? s.last_complete_ns / 1e9 : out.wall_s;
  out.e2e_throughput = e2e_s > 0 ? out.messages_received / e2e_s : 0;
  out.mean_send_batch =
      s.send_calls ? static_cast<double>(out.messages_sent + out.send_errors) / s.send_calls : 0;
  out.mean_receive_batch =
      s.receive_calls ? static_cast<double>(s.received_raw) / s.receive_calls : 0;

  latency_histogram e2e, send, receive, complete, accept;
  std::uint64_t releases = 0, session_messages = 0;
  for (auto& c : s.consumers) {
    e2e.merge(c.e2e);
    receive.merge(c.receive);
    complete.merge(c.complete);
    accept.merge(c.accept);
    out.sessions_accepted += c.sessions_accepted;
    session_messages += c.session_messages;
    releases += c.releases;
  }
  for (auto& pr : s.producers) send.merge(pr.send);
  out.e2e = latency_summary::of(e2e);
  out.send_call = latency_summary::of(send);
  out.receive_call = latency_summary::of(receive);
  out.complete_call = latency_summary::of(complete);
  out.sessions = o.sessions;
  out.accept_call = latency_summary::of(accept);
  out.mean_messages_per_session =
      out.sessions_accepted
          ? static_cast<double>(session_messages) / static_cast<double>(out.sessions_accepted)
          : 0;

  out.cpu_s = usage_after.cpu_s - usage_before.cpu_s;
  out.cpu_s_per_message = out.messages_received ? out.cpu_s / out.messages_received : 0;
  out.cpu_utilisation =
      out.wall_s > 0 ? out.cpu_s / (out.wall_s * std::max(1u, std::thread::hardware_concurrency()))
                     : 0;
  out.peak_rss_bytes = usage_after.peak_rss_bytes;
  out.provider_calls =
      send.count() + receive.count() + complete.count() + accept.count() + releases;
  out.failed_calls = s.failed_calls;
  // A provider that never opened nor tried to open a connection has none (the embedded one):
  // no network figures, and no pool whose reuse could be measured.
  out.network =
      network_between(connections_before, connections_after, out.wall_s, out.messages_received);
  if (out.network) {
    out.connections_opened =
        connections_after.connections_opened -
        std::min(connections_before.connections_opened, connections_after.connections_opened);
  }
  if (s.outage_end_ns >= 0) {
    outage_timing t;
    t.start_s = static_cast<double>(s.outage_start_ns) / 1e9;
    t.end_s = static_cast<double>(s.outage_end_ns) / 1e9;
    if (s.first_after_outage_ns >= 0)
      t.first_completion_s = static_cast<double>(s.first_after_outage_ns - s.outage_end_ns) / 1e9;
    t.late = s.late;
    t.resent = s.resent;
    out.outage = t;
  }
  // The series ends with the last message moved, not when consumers noticed the end.
  std::vector<time_buckets> parts;
  for (auto& pr : s.producers) parts.push_back(std::move(pr.series));
  for (auto& c : s.consumers) parts.push_back(std::move(c.series));
  // (One nanosecond past the last completion, which belongs to the series.)
  const auto series_end = std::max<std::int64_t>(s.last_complete_ns, s.last_send_end_ns) + 1;
  out.series = to_samples(std::move(parts), series_end > 1 ? series_end : ns_since(s.start, end));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Scaling and overhead: a prefilled queue, consumers only.

namespace {

config with_room_for(config cfg, std::uint64_t messages) {
  // The embedded provider bounds each queue; make room for the prefill unless told otherwise.
  if (cfg.get("provider").value_or("") == "memory" && !cfg.contains("max_queue_size")) {
    cfg.set("max_queue_size", std::to_string(std::max<std::uint64_t>(messages * 2, 10'000)));
  }
  return cfg;
}

// What the scaling and overhead runs send: `stored` counts each message the queue took, for
// take_back. `run` names the run in the error of a queue that cannot hold the whole prefill.
awaitable<result<void>> prefill(queue_client& client, const queue_name& q, std::uint64_t count,
                                std::size_t size, std::atomic<std::int64_t>& stored,
                                std::string_view run) {
  constexpr std::size_t chunk = 100;
  for (std::uint64_t done = 0; done < count;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, count - done));
    std::vector<message> batch(n);
    for (auto& m : batch) m.body = make_body(size, steady::now());
    auto r = co_await client.send_batch(q, std::move(batch));
    if (!r) co_return r.error();
    std::optional<error> failed;
    for (auto& outcome : *r) {
      if (outcome) {
        ++stored;
      } else if (!failed) {
        failed = outcome.error();
      }
    }
    if (failed) {
      if (failed->code == errc::queue_full) {
        failed->message = std::string(run) + " holds " + std::to_string(count) +
                          " messages on queue '" + q.str() + "' at once (its prefill), and the " +
                          "queue took " + std::to_string(stored.load()) + ": " + failed->message;
      }
      co_return *failed;
    }
    done += n;
  }
  co_return result<void>{};
}

// The client a prefill sends with. Nothing takes messages off the queue while it fills, so the
// embedded provider's wait for room could only end in queue_full after the send timeout (30 s):
// its prefill does not wait. A network provider's send timeout also bounds the call itself, so
// theirs stays as it is.
client_options prefill_client_options(const provider& p) {
  client_options co;
  if (p.name() == "memory") co.send_timeout = milliseconds(0);
  return co;
}

// Whether a message is one the scaling or overhead run sent: its body carries a send time from
// `since` (the run's start) to `now`. Only those are completed: the queue may be a user's.
bool sent_by_run(std::string_view body, steady::time_point since, steady::time_point now) {
  const auto sent = read_send_time(body);
  return sent && *sent >= since && *sent <= now;
}

// The settlements of one received batch: the run's own messages completed, any other released
// at once (abandon), or left to its lock where the provider cannot release it. `mine` says,
// per settlement, which are the run's.
struct own_settlements {
  std::vector<settlement> settles;
  std::vector<bool> mine;
  std::size_t own = 0;
};
own_settlements settle_own(const queue_client& client, std::vector<received_message>& batch,
                           steady::time_point since) {
  own_settlements out;
  out.settles.reserve(batch.size());
  const auto now = steady::now();
  for (auto& m : batch) {
    const bool ours = sent_by_run(m.body, since, now);
    if (!ours && !client.caps().abandon) continue;
    out.mine.push_back(ours);
    out.own += ours ? 1 : 0;
    out.settles.push_back(ours ? settlement::complete(std::move(m.receipt))
                               : settlement::abandon(std::move(m.receipt)));
  }
  return out;
}

// Takes what a run sent (`on_queue` of its messages) back off a queue it did not make, a user's:
// its own messages are completed, anything else released. Fails, saying how many are left, when
// none of them has come for 5 s.
awaitable<result<void>> take_back(queue_client& client, const queue_name& q, std::size_t batch,
                                  steady::time_point since, std::atomic<std::int64_t>& on_queue) {
  std::optional<error> last_error;
  for (int idle = 0; on_queue.load() > 0 && idle < 50;) {
    auto r = co_await client.receive(q, batch, milliseconds(100));
    if (!r) {
      last_error = r.error();
      if (!r.error().is_transient()) break;
      ++idle;
      continue;
    }
    auto own = settle_own(client, *r, since);
    idle = own.own > 0 ? 0 : idle + 1;
    if (own.settles.empty()) continue;
    auto results = co_await client.settle(std::move(own.settles));
    for (std::size_t i = 0; i < results.size() && i < own.mine.size(); ++i) {
      if (!results[i]) {
        last_error = results[i].error();
      } else if (own.mine[i]) {
        --on_queue;
      }
    }
  }
  const auto left = on_queue.load();
  if (left <= 0) co_return result<void>{};
  error e = last_error ? *last_error : fail(errc::timeout, "");
  e.message = std::to_string(left) + " message(s) the run sent are still on queue '" + q.str() +
              "': they stopped arriving while it took them back" +
              (last_error ? " (" + last_error->message + ")" : "");
  co_return e;
}

// Receives and completes until `deadline`; counts completions that finished before it.
struct handler_time {
  std::chrono::nanoseconds cpu{0};
  std::chrono::nanoseconds wall{0};
};

// Only the run's own messages (sent since `since`) are handled and completed; `on_queue` counts
// down as they are, whether or not before the deadline.
awaitable<std::uint64_t> drain_until(queue_client& client, const queue_name& q, std::size_t batch,
                                     steady::time_point deadline, std::chrono::microseconds cost,
                                     std::atomic<std::uint64_t>& remaining, handler_time& handler,
                                     steady::time_point since,
                                     std::atomic<std::int64_t>& on_queue) {
  std::uint64_t done = 0;
  int idle = 0;  // consecutive receives of none of the run's: 5 s of them and the queue is drained
  while (steady::now() < deadline && remaining.load() > 0 && idle < 50) {
    auto r = co_await client.receive(q, batch, milliseconds(100));
    if (!r || r->empty()) {
      ++idle;
      continue;
    }
    auto own = settle_own(client, *r, since);
    idle = own.own > 0 ? 0 : idle + 1;
    for (std::size_t i = 0; i < own.own; ++i) {
      const auto wall0 = steady::now();
      const auto cpu0 = thread_cpu_now();
      burn_cpu(cost);
      handler.cpu += thread_cpu_now() - cpu0;
      handler.wall += steady::now() - wall0;
    }
    if (own.settles.empty()) continue;
    auto results = co_await client.settle(std::move(own.settles));
    const bool in_time = steady::now() <= deadline;
    for (std::size_t i = 0; i < results.size() && i < own.mine.size(); ++i) {
      if (!results[i] || !own.mine[i]) continue;
      --on_queue;
      if (in_time) {
        ++done;
        remaining.fetch_sub(1);
      }
    }
    if (!in_time) break;
  }
  co_return done;
}

// Ends a scaling round or the overhead run on `q`, whether it went through or failed: what it
// sent goes with the queue when the run made it, else (a user's queue) it is taken back.
result<void> tidy_up(runtime& rt, queue_client& client, const queue_name& q, bool made,
                     std::size_t batch, steady::time_point since,
                     std::atomic<std::int64_t>& on_queue) {
  if (!made) return rt.run(take_back(client, q, batch, since, on_queue));
  auto r = rt.run(client.delete_queue(q));
  if (!r && r.error().code != errc::unsupported) return r.error();
  return {};
}

// The first error of a run, and what tidying up after it could not do.
error with_tidy_up(error e, const result<void>& tidied) {
  if (!tidied) e.message += "; and " + tidied.error().message;
  return e;
}

}  // namespace

namespace {

// Each consumer completes at most receive_batch messages per receive + settle round trip.
double scaling_ceiling_per_consumer(const scaling_options& so) {
  return so.base.receive_batch / (2.0 * std::chrono::duration<double>(so.injected_latency).count());
}

// Messages prefilled for `consumers`: half as many again as they could complete in the window.
double scaling_prefill(const scaling_options& so, std::size_t consumers) {
  return scaling_ceiling_per_consumer(so) * static_cast<double>(consumers) *
             std::chrono::duration<double>(so.window).count() * 1.5 +
         100;
}

// As a count: what a round prefills, and what the refusals name.
std::uint64_t scaling_fill(const scaling_options& so, std::size_t consumers) {
  return static_cast<std::uint64_t>(std::llround(scaling_prefill(so, consumers)));
}

// A count bound the configuration gives the embedded provider's queues: with_room_for keeps it,
// so a run's prefill must fit in it. nullopt when none is given (or it is malformed: the
// provider refuses that by name once it is built).
std::optional<std::uint64_t> given_max_queue_size(const config& cfg) {
  if (cfg.get("provider").value_or("") != "memory" || !cfg.contains("max_queue_size")) {
    return std::nullopt;
  }
  auto n = cfg.get_uint("max_queue_size", 0);
  if (!n) return std::nullopt;
  return *n;
}

// A given max_queue_size below what `run` holds on its queue at once: refused before anything is
// sent, since nothing frees room during a prefill.
result<void> refuse_unless_room(const config& cfg, std::uint64_t held, const std::string& run) {
  const auto bound = given_max_queue_size(cfg);
  if (!bound || *bound >= held) return {};
  return invalid("max_queue_size " + std::to_string(*bound) + " is below the " +
                 std::to_string(held) + " messages " + run +
                 " holds on its queue at once (its prefill): raise max_queue_size to at least " +
                 std::to_string(held) + ", or leave it out and the run makes room");
}

// The most the scaling and overhead runs prefill (the queue holds it all at once): within the
// embedded provider's max_queue_size, which is given twice as much room, and the bytes
// --memory-budget may fill.
constexpr std::uint64_t largest_prefill = std::uint64_t{1} << 29;
constexpr std::uint64_t largest_prefill_bytes = std::uint64_t{8} << 30;

// Whether a prefill of `messages` of `size` bytes stays within both bounds.
bool prefill_fits(double messages, std::size_t size) {
  return messages <= static_cast<double>(largest_prefill) &&
         messages * static_cast<double>(size) <= static_cast<double>(largest_prefill_bytes);
}

// The bounds, as the refusals state them.
std::string prefill_bounds() {
  return "at most " + std::to_string(largest_prefill) + " messages and " +
         std::to_string(largest_prefill_bytes >> 30) + " GiB";
}

}  // namespace

result<void> validate_scaling(const scaling_options& so) {
  if (so.max_consumers == 0) return invalid("max consumers must be at least 1");
  if (so.base.receive_batch == 0) return invalid("receive batch must be at least 1");
  if (so.injected_latency.count() <= 0) {
    return invalid(
        "the scaling run's injected latency must be at least 1 ms (its ceiling, "
        "receive batch / (2 x latency) per consumer, is what it measures against)");
  }
  if (2 * so.injected_latency >= so.window) {
    return invalid("the scaling run's injected latency (" +
                   std::to_string(so.injected_latency.count()) +
                   " ms) must be under half its window (" + std::to_string(so.window.count()) +
                   " ms): a receive and its settle must fit in it");
  }
  const double most = scaling_prefill(so, so.max_consumers);
  if (!prefill_fits(most, so.base.message_size)) {
    return invalid("the scaling run would prefill " + std::to_string(std::llround(most)) +
                   " messages of " + std::to_string(so.base.message_size) + " bytes for " +
                   std::to_string(so.max_consumers) +
                   " consumers (1.5 windows of receive batch / (2 x injected latency) each): " +
                   prefill_bounds() +
                   "; lower the receive batch or the most consumers, or raise the injected "
                   "latency");
  }
  return refuse_unless_room(
      so.base.provider_config, scaling_fill(so, so.max_consumers),
      "the scaling run with " + std::to_string(so.max_consumers) + " consumers");
}

result<std::vector<scaling_point>> run_scaling(const scaling_options& so) {
  const auto& o = so.base;
  auto queue = queue_name::parse(o.queue);
  if (!queue) return queue.error();
  if (auto v = validate_scaling(so); !v) return v.error();

  const double per_consumer = scaling_ceiling_per_consumer(so);
  const double window_s = std::chrono::duration<double>(so.window).count();
  const auto most = scaling_fill(so, so.max_consumers);

  runtime rt(default_threads(o.threads));
  auto raw = build_provider(rt, with_room_for(o.provider_config, most));
  if (!raw) return raw.error();
  queue_client direct(*raw);
  queue_client filler(*raw, prefill_client_options(**raw));
  // The team's fault injector, latency only: every call waits (asynchronously) before it runs.
  queue_client delayed(make_fault_injecting_provider(*raw, {.latency = so.injected_latency}));
  const auto since = steady::now();  // every message the run sends is stamped after this

  std::vector<scaling_point> points;
  for (std::size_t n = 1; n <= so.max_consumers; n *= 2) {
    auto made = rt.run(prepare_queue(**raw, *queue));
    if (!made) return made.error();
    // The run completes what its queue holds: one it did not make must hold nothing before the
    // first round. Later rounds find it as the one before left it, having taken back its own.
    if (!*made && points.empty()) {
      if (auto empty = rt.run(refuse_unless_empty(**raw, *queue)); !empty) return empty.error();
    }
    const auto fill = scaling_fill(so, n);
    std::atomic<std::int64_t> on_queue{0};
    auto round = [&]() -> result<scaling_point> {
      if (auto r =
              rt.run(prefill(filler, *queue, fill, o.message_size, on_queue, "the scaling run"));
          !r) {
        return r.error();
      }
      std::atomic<std::uint64_t> remaining{fill};
      const auto start = steady::now();
      const auto deadline = start + so.window;
      std::vector<std::future<std::uint64_t>> workers;
      std::vector<handler_time> handler_times(n);
      for (std::size_t i = 0; i < n; ++i) {
        workers.push_back(
            rt.spawn(drain_until(delayed, *queue, o.receive_batch, deadline, o.handler_cost,
                                 remaining, handler_times[i], since, on_queue)));
      }
      std::uint64_t done = 0;
      for (auto& w : workers) done += w.get();
      const double elapsed =
          std::min(window_s, std::chrono::duration<double>(steady::now() - start).count());
      scaling_point pt;
      pt.consumers = n;
      pt.throughput = done / elapsed;
      // Against a first round that completed nothing there is no efficiency to give.
      pt.efficiency = points.empty() ? 1.0
                      : points.front().throughput > 0
                          ? pt.throughput / (n * points.front().throughput)
                          : 0;
      pt.of_ideal = pt.throughput / (per_consumer * static_cast<double>(n));
      if (o.on_progress) o.on_progress(progress{elapsed, fill, done, fill});
      return pt;
    };
    auto pt = round();
    // Each round ends with messages left (the prefill is 1.5 windows' worth), and a failed one
    // with what it stored: none of them may stay on a user's queue, nor start the next round.
    const auto tidied = tidy_up(rt, direct, *queue, *made, o.receive_batch, since, on_queue);
    if (!pt) return with_tidy_up(pt.error(), tidied);
    if (!tidied) return tidied.error();
    points.push_back(*pt);
  }
  rt.shutdown();
  return points;
}

result<void> validate_overhead(const bench_options& o, std::uint64_t messages) {
  if (messages == 0) return invalid("overhead run needs at least 1 message");
  if (!prefill_fits(static_cast<double>(messages), o.message_size)) {
    return invalid("the overhead run would prefill " + std::to_string(messages) + " messages of " +
                   std::to_string(o.message_size) +
                   " bytes (--overhead-messages times --size): " + prefill_bounds());
  }
  return refuse_unless_room(o.provider_config, messages, "the overhead run");
}

result<overhead_result> run_overhead(const bench_options& o, std::uint64_t messages,
                                     std::chrono::microseconds handler_cost) {
  auto queue = queue_name::parse(o.queue);
  if (!queue) return queue.error();
  if (auto v = validate_overhead(o, messages); !v) return v.error();
  runtime rt(default_threads(o.threads));
  auto raw = build_provider(rt, with_room_for(o.provider_config, messages));
  if (!raw) return raw.error();
  const provider_ptr decorated = o.decorate ? o.decorate(*raw) : *raw;
  queue_client client(decorated);
  queue_client filler(decorated, prefill_client_options(**raw));
  auto made = rt.run(prepare_queue(**raw, *queue));
  if (!made) return made.error();
  // The run completes what its queue holds: one it did not make must hold nothing yet.
  if (!*made) {
    if (auto empty = rt.run(refuse_unless_empty(**raw, *queue)); !empty) return empty.error();
  }
  const auto since = steady::now();  // every message the run sends is stamped after this
  std::atomic<std::int64_t> on_queue{0};
  if (auto r =
          rt.run(prefill(filler, *queue, messages, o.message_size, on_queue, "the overhead run"));
      !r) {
    return with_tidy_up(r.error(),
                        tidy_up(rt, client, *queue, *made, o.receive_batch, since, on_queue));
  }

  std::atomic<std::uint64_t> remaining{messages};
  handler_time handler;
  const auto cpu_before = resource_usage::now().cpu_s;
  const auto start = steady::now();
  const auto done = rt.run(drain_until(client, *queue, o.receive_batch, steady::time_point::max(),
                                       handler_cost, remaining, handler, since, on_queue));
  const auto wall = std::chrono::duration<double>(steady::now() - start).count();
  const auto cpu = resource_usage::now().cpu_s - cpu_before;
  if (auto tidied = tidy_up(rt, client, *queue, *made, o.receive_batch, since, on_queue); !tidied) {
    return tidied.error();
  }
  rt.shutdown();

  overhead_result out;
  out.messages = done;
  out.handler_cost = handler_cost;
  out.wall_s = wall;
  out.handler_wall_s = std::chrono::duration<double>(handler.wall).count();
  out.cpu_s = cpu;
  out.handler_cpu_s = std::chrono::duration<double>(handler.cpu).count();
  out.qrt_share = cpu > 0 ? std::max(0.0, (cpu - out.handler_cpu_s) / cpu) : 0;
  out.qrt_share_wall = wall > 0 ? std::max(0.0, (wall - out.handler_wall_s) / wall) : 0;
  return out;
}

result<void> validate_memory_budget(const bench_options& o, std::uint64_t budget) {
  // The body the run sends (make_body), as the embedded provider counts it.
  const std::uint64_t one_message =
      std::max(o.message_size, send_time_digits) + qrt::memory::stored_message_overhead_bytes;
  if (budget < one_message) {
    return invalid("--memory-budget " + std::to_string(budget) +
                   " bytes cannot hold a single message of --size " +
                   std::to_string(o.message_size) + " bytes (" + std::to_string(one_message) +
                   " bytes with the embedded provider's bookkeeping)");
  }
  return {};
}

result<memory_budget_result> run_memory_budget(const bench_options& o, std::uint64_t budget) {
  if (o.provider_config.get("provider").value_or("") != "memory")
    return fail(errc::unsupported, "the memory budget run is for the embedded provider");
  if (auto v = validate_memory_budget(o, budget); !v) return v.error();
  auto queue = queue_name::parse(o.queue);
  if (!queue) return queue.error();
  config cfg = o.provider_config;
  cfg.set("max_memory_bytes", std::to_string(budget));
  // Only the byte budget may stop the sends, never the count bound.
  cfg.set("max_queue_size", std::to_string(budget / std::max<std::size_t>(o.message_size, 1) + 1));
  runtime rt(default_threads(o.threads));
  auto raw = build_provider(rt, cfg);
  if (!raw) return raw.error();
  provider& p = **raw;
  auto made = rt.run(prepare_queue(p, *queue));
  if (!made) return made.error();

  memory_budget_result out;
  out.budget_bytes = budget;
  out.message_size = o.message_size;
  out.baseline_rss_bytes = resident_bytes_now();
  constexpr std::size_t batch = 100;
  constexpr std::uint64_t refusals_to_see = 10 * batch;  // the budget holds, not one unlucky wait
  while (out.refused < refusals_to_see) {
    std::vector<message> messages(batch);
    for (auto& m : messages) m.body = make_body(o.message_size, steady::now());
    auto sent = rt.run(p.send(*queue, std::move(messages), milliseconds(5)));
    if (!sent) return sent.error();
    for (const auto& outcome : *sent) {
      if (outcome) {
        ++out.accepted;
      } else if (outcome.error().code == errc::queue_full) {
        if (out.refusal.empty()) out.refusal = outcome.error().message;
        ++out.refused;
      } else {
        return outcome.error();
      }
    }
  }
  out.full_rss_bytes = resident_bytes_now();

  for (;;) {
    auto got =
        rt.run(p.receive(*queue, std::max<std::size_t>(o.receive_batch, 1), milliseconds(0)));
    if (!got) return got.error();
    if (got->empty()) break;
    std::vector<settlement> done;
    for (auto& m : *got) done.push_back(settlement::complete(m.receipt));
    for (const auto& r : rt.run(p.settle(std::move(done)))) {
      if (!r) return r.error();
      ++out.drained;
    }
  }
  if (*made) rt.run(p.delete_queue(*queue));
  rt.shutdown();
  return out;
}

// ---------------------------------------------------------------------------------------------
// The outage run: a paced run through a disconnect, and how long it takes to get back.

retry_policy outage_options::default_outage_retry() {
  auto p = retry_policy::exponential_backoff(milliseconds{50}, milliseconds{1000}, 2.0);
  p.max_attempts = std::numeric_limits<std::uint32_t>::max();
  return p;
}

std::optional<double> time_back_to_rate(const std::vector<sample>& series, double from_s,
                                        double bucket_s, double rate) {
  // A bucket within a microsecond of its full length is whole (its ends are rounded to ns).
  constexpr double slack_s = 1e-6;
  for (const auto& b : series) {
    if (b.t_s - b.dt_s < from_s - slack_s || b.dt_s < bucket_s - slack_s) continue;
    if (b.receive_rate >= rate) return b.t_s - from_s;
  }
  return std::nullopt;
}

result<void> validate_outage(const outage_options& oo) {
  if (!(oo.base.rate > 0))
    return invalid("the outage run needs a rate to offer (messages/s above 0)");
  if (oo.outage.count() <= 0) return invalid("the outage must last longer than 0 ms");
  if (oo.outage > std::chrono::hours(1)) return invalid("the outage must last at most 1 hour");
  if (oo.lead.count() <= 0) return invalid("the outage run's lead must be longer than 0 ms");
  if (oo.bucket.count() <= 0 || oo.bucket > oo.tail)
    return invalid("the outage run's bucket must be longer than 0 ms and at most its tail");
  if (oo.tail < 2 * oo.retry.max_delay) {
    return invalid("the outage run's tail (" + std::to_string(oo.tail.count()) +
                   " ms) must be at least twice its retry policy's max_delay (" +
                   std::to_string(oo.retry.max_delay.count()) +
                   " ms): a recovery it allows could not be seen otherwise");
  }
  if (!(oo.recovered_share > 0 && oo.recovered_share <= 1))
    return invalid("the outage run's recovered share must be in (0, 1]");
  return {};
}

result<outage_result> run_outage(const outage_options& oo) {
  if (auto v = validate_outage(oo); !v) return v.error();
  auto o = oo.base;
  o.duration = oo.lead + oo.outage + oo.tail;
  o.sample_interval = oo.bucket;
  o.retry = oo.retry;
  o.resend_failed = true;
  std::shared_ptr<fault_injecting_provider> faults;
  std::uint64_t refused = 0;
  o.decorate = [&faults, wrap = oo.base.decorate](provider_ptr p) -> provider_ptr {
    if (wrap) p = wrap(std::move(p));
    faults = make_fault_injecting_provider(std::move(p));
    return faults;
  };
  outage_plan plan;
  plan.at = oo.lead;
  plan.length = oo.outage;
  plan.begin = [&faults](milliseconds length) { faults->disconnect_for(length); };
  // Read before the provider is closed; the run's own reference then goes with the run.
  plan.finished = [&faults, &refused] {
    refused = faults->stats().disconnected_calls;
    faults.reset();
  };
  o.outage = std::move(plan);
  auto r = run_benchmark(o);
  faults.reset();
  if (!r) return r.error();
  if (!r->outage) {
    return fail(errc::provider_error, "the outage run ended before its outage began (" +
                                          std::to_string(r->wall_s) + " s)");
  }
  outage_result out;
  out.outage = oo.outage;
  out.offered_rate = oo.base.rate;
  out.max_retry_delay = oo.retry.max_delay;
  out.start_s = r->outage->start_s;
  out.end_s = r->outage->end_s;
  out.first_completion_s = r->outage->first_completion_s;
  const double bucket_s = std::chrono::duration<double>(oo.bucket).count();
  out.recovery_s =
      time_back_to_rate(r->series, out.end_s, bucket_s, oo.recovered_share * oo.base.rate);
  out.recovered_share = oo.recovered_share;
  // The rate before: whole buckets that ended before the outage, the first second left out as
  // the ramp-up when the lead is longer.
  const double skip_s = out.start_s > 2 ? 1.0 : 0.0;
  double moved = 0, over = 0;
  for (const auto& b : r->series) {
    if (b.t_s > out.start_s || b.t_s - b.dt_s < skip_s) continue;
    moved += b.receive_rate * b.dt_s;
    over += b.dt_s;
  }
  out.rate_before = over > 0 ? moved / over : 0;
  out.refused_calls = refused;
  out.late = r->outage->late;
  out.resent = r->outage->resent;
  out.sent = r->messages_sent;
  out.completed = r->messages_received;
  out.redeliveries = r->duplicates;
  return out;
}

}  // namespace qrt::bench
