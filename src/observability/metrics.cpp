#include <charconv>
#include <cmath>
#include <qrt/metrics.hpp>

namespace qrt::metrics {

namespace detail {
std::size_t this_thread_shard() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t shard = next.fetch_add(1, std::memory_order_relaxed) % shard_count;
  return shard;
}
}  // namespace detail

std::uint64_t counter::value() const noexcept {
  std::uint64_t total = 0;
  for (const auto& s : shards_) total += s.value.load(std::memory_order_relaxed);
  return total;
}

double gauge::value() const noexcept {
  double total = base_.value.load(std::memory_order_relaxed);
  for (const auto& s : deltas_) total += s.value.load(std::memory_order_relaxed);
  return total;
}

histogram::histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  for (auto& s : shards_) {
    s.counts = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
    for (std::size_t i = 0; i <= bounds_.size(); ++i) s.counts[i].store(0);
  }
}

histogram::snapshot histogram::read() const {
  snapshot out;
  out.upper_bounds = bounds_;
  std::vector<std::uint64_t> per_bucket(bounds_.size() + 1, 0);
  for (const auto& s : shards_) {
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
      per_bucket[i] += s.counts[i].load(std::memory_order_relaxed);
    }
    out.sum += s.sum.load(std::memory_order_relaxed);
  }
  std::uint64_t running = 0;
  for (auto c : per_bucket) {
    running += c;
    out.cumulative.push_back(running);
  }
  out.count = running;
  return out;
}

namespace {

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

bool valid_label_name(std::string_view n) {
  if (n.empty() || n.starts_with("__")) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return n != "le";  // reserved for histogram buckets
}

void append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, end);
  }
}

// Help text escapes backslash and newline; label values also escape the double quote.
void append_escaped(std::string& out, std::string_view text, bool is_label_value) {
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && is_label_value) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

void append_label(std::string& out, bool& first, std::string_view name, std::string_view value) {
  if (!first) out += ',';
  first = false;
  out += name;
  out += "=\"";
  append_escaped(out, value, true);
  out += '"';
}

// A `queue` label naming a topic's subscription ("<topic>/Subscriptions/<name>", its dead-letter
// queue too) is exposed with `topic` and `subscription` labels beside it, so dashboards can
// select by topic; the topic's own series (publish), recorded under "<topic>/Subscriptions",
// which no queue or subscription is named, carry the `topic` label instead of `queue`
// (docs/adr/0050-topics-and-subscriptions.md).
void append_queue_label(std::string& out, bool& first, std::string_view value) {
  constexpr std::string_view marker = "/Subscriptions";
  const auto at = value.find(marker);
  if (at == std::string_view::npos || at == 0) {
    append_label(out, first, "queue", value);
    return;
  }
  const auto topic = value.substr(0, at);
  const auto rest = value.substr(at + marker.size());
  if (rest.empty()) {
    append_label(out, first, "topic", topic);
    return;
  }
  append_label(out, first, "queue", value);
  if (rest.front() != '/') return;
  auto subscription = rest.substr(1);
  subscription = subscription.substr(0, subscription.find('/'));
  append_label(out, first, "topic", topic);
  append_label(out, first, "subscription", subscription);
}

void append_labels(std::string& out, const std::vector<std::string>& names,
                   const std::vector<std::string>& values, std::string_view extra_name = {},
                   std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return;
  out += '{';
  bool first = true;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == "queue") {
      append_queue_label(out, first, values[i]);
    } else {
      append_label(out, first, names[i], values[i]);
    }
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out += '"';
  }
  out += '}';
}

std::string_view type_name(metric_type t) {
  switch (t) {
    case metric_type::counter:
      return "counter";
    case metric_type::gauge:
      return "gauge";
    case metric_type::histogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

struct registry::entry {
  metric_type type;
  std::unique_ptr<counter_family> counters;
  std::unique_ptr<gauge_family> gauges;
  std::unique_ptr<histogram_family> histograms;

  const std::string& name() const {
    return counters ? counters->name() : gauges ? gauges->name() : histograms->name();
  }
  const std::vector<std::string>& label_names() const {
    return counters ? counters->label_names()
           : gauges ? gauges->label_names()
                    : histograms->label_names();
  }
};

registry::registry() = default;
registry::~registry() = default;

registry::entry& registry::find_or_add(metric_type type, std::string name, std::string help,
                                       std::vector<std::string> label_names,
                                       std::vector<double> buckets, bool sampled) {
  auto reject = [&](const std::string& why) {
    throw qrt::exception(qrt::fail(errc::invalid_argument, "metric '" + name + "': " + why));
  };
  if (!valid_metric_name(name)) reject("not a valid Prometheus metric name");
  for (const auto& l : label_names) {
    if (!valid_label_name(l)) reject("label '" + l + "' is not a valid Prometheus label name");
  }
  if (type == metric_type::histogram) {
    if (buckets.empty()) reject("a histogram needs at least one bucket");
    for (std::size_t i = 0; i < buckets.size(); ++i) {
      if (!std::isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
        reject("bucket bounds must be finite and strictly increasing");
      }
    }
  }

  std::lock_guard lock(mutex_);
  for (auto& e : entries_) {
    if (e->name() != name) continue;
    if (e->type != type) reject("already registered as a " + std::string(type_name(e->type)));
    if ((e->gauges != nullptr) != (sampled || type == metric_type::gauge)) {
      reject(sampled ? "already registered as a counter of whole increments"
                     : "already registered as a sampled counter");
    }
    if (e->label_names() != label_names) reject("already registered with other labels");
    if (type == metric_type::histogram && e->histograms->buckets_ != buckets) {
      reject("already registered with other buckets");
    }
    return *e;
  }
  auto e = std::make_unique<entry>();
  e->type = type;
  switch (type) {
    case metric_type::counter:
      if (sampled) {
        e->gauges.reset(
            new gauge_family(std::move(name), std::move(help), std::move(label_names), {}));
        break;
      }
      e->counters.reset(
          new counter_family(std::move(name), std::move(help), std::move(label_names), {}));
      break;
    case metric_type::gauge:
      e->gauges.reset(
          new gauge_family(std::move(name), std::move(help), std::move(label_names), {}));
      break;
    case metric_type::histogram:
      e->histograms.reset(new histogram_family(std::move(name), std::move(help),
                                               std::move(label_names), std::move(buckets)));
      break;
  }
  entries_.push_back(std::move(e));
  return *entries_.back();
}

counter_family& registry::add_counter(std::string name, std::string help,
                                      std::vector<std::string> label_names) {
  return *find_or_add(metric_type::counter, std::move(name), std::move(help),
                      std::move(label_names), {})
              .counters;
}

gauge_family& registry::add_gauge(std::string name, std::string help,
                                  std::vector<std::string> label_names) {
  return *find_or_add(metric_type::gauge, std::move(name), std::move(help), std::move(label_names),
                      {})
              .gauges;
}

gauge_family& registry::add_sampled_counter(std::string name, std::string help,
                                            std::vector<std::string> label_names) {
  return *find_or_add(metric_type::counter, std::move(name), std::move(help),
                      std::move(label_names), {}, true)
              .gauges;
}

histogram_family& registry::add_histogram(std::string name, std::string help,
                                          std::vector<double> upper_bounds,
                                          std::vector<std::string> label_names) {
  return *find_or_add(metric_type::histogram, std::move(name), std::move(help),
                      std::move(label_names), std::move(upper_bounds))
              .histograms;
}

std::uint64_t registry::add_collector(std::function<void()> collect) {
  std::lock_guard lock(collectors_mutex_);
  const auto id = next_collector_++;
  collectors_.emplace(id, std::move(collect));
  return id;
}

void registry::remove_collector(std::uint64_t id) {
  std::lock_guard lock(collectors_mutex_);
  collectors_.erase(id);
}

std::string registry::expose() const {
  {
    std::lock_guard collecting(collectors_mutex_);
    for (const auto& [id, collect] : collectors_) {
      try {
        collect();
      } catch (...) {  // NOLINT(bugprone-empty-catch): a failing collector leaves its series as
      }                // they were; exposition goes on
    }
  }
  std::string out;
  std::lock_guard lock(mutex_);
  for (const auto& e : entries_) {
    auto header = [&](const auto& fam) {
      out += "# HELP ";
      out += fam.name();
      out += ' ';
      append_escaped(out, fam.help(), false);
      out += "\n# TYPE ";
      out += fam.name();
      out += ' ';
      out += type_name(e->type);
      out += '\n';
    };
    auto gauge_samples = [&] {
      header(*e->gauges);
      e->gauges->for_each([&](const auto& values, const gauge& g) {
        out += e->gauges->name();
        append_labels(out, e->gauges->label_names(), values);
        out += ' ';
        append_number(out, g.value());
        out += '\n';
      });
    };
    switch (e->type) {
      case metric_type::counter:
        if (e->gauges) {  // a sampled counter
          gauge_samples();
          break;
        }
        header(*e->counters);
        e->counters->for_each([&](const auto& values, const counter& c) {
          out += e->counters->name();
          append_labels(out, e->counters->label_names(), values);
          out += ' ';
          out += std::to_string(c.value());
          out += '\n';
        });
        break;
      case metric_type::gauge:
        gauge_samples();
        break;
      case metric_type::histogram: {
        const auto& fam = *e->histograms;
        header(fam);
        fam.for_each([&](const auto& values, const histogram& h) {
          const auto snap = h.read();
          for (std::size_t i = 0; i <= snap.upper_bounds.size(); ++i) {
            std::string le;
            if (i < snap.upper_bounds.size()) {
              append_number(le, snap.upper_bounds[i]);
            } else {
              le = "+Inf";
            }
            out += fam.name();
            out += "_bucket";
            append_labels(out, fam.label_names(), values, "le", le);
            out += ' ';
            out += std::to_string(snap.cumulative[i]);
            out += '\n';
          }
          out += fam.name();
          out += "_sum";
          append_labels(out, fam.label_names(), values);
          out += ' ';
          append_number(out, snap.sum);
          out += '\n';
          out += fam.name();
          out += "_count";
          append_labels(out, fam.label_names(), values);
          out += ' ';
          out += std::to_string(snap.count);
          out += '\n';
        });
        break;
      }
    }
  }
  return out;
}

std::vector<double> processing_duration_buckets() {
  return {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0};
}

std::vector<double> batch_size_buckets() {
  return {1, 2, 5, 10, 20, 50, 100};
}

std::vector<double> operation_latency_buckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,    0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0};
}

std::vector<double> recovery_time_buckets() {
  return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0};
}

std::vector<double> message_latency_buckets() {
  return {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0};
}

std::vector<double> session_duration_buckets() {
  return {0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0};
}

std::string_view to_string(operation op) noexcept {
  switch (op) {
    case operation::send:
      return "send";
    case operation::receive:
      return "receive";
    case operation::complete:
      return "complete";
    case operation::abandon:
      return "abandon";
    case operation::dead_letter:
      return "dead_letter";
    case operation::renew:
      return "renew";
    case operation::peek:
      return "peek";
    case operation::stats:
      return "stats";
    case operation::process:
      return "process";
    case operation::publish:
      return "publish";
  }
  return "unknown";
}

runtime_metrics::runtime_metrics(registry& r)
    : owner(r),
      messages_processed(r.add_counter("queue_runtime_messages_processed_total",
                                       "Total number of messages processed",
                                       {"queue", "provider", "outcome"})),
      processing_duration(r.add_histogram("queue_runtime_processing_duration_seconds",
                                          "Time spent processing messages",
                                          processing_duration_buckets(), {"queue", "provider"})),
      message_latency(r.add_histogram("queue_runtime_message_latency_seconds",
                                      "From a message's enqueued time to its settlement",
                                      message_latency_buckets(), {"queue", "provider"})),
      batch_sizes(r.add_histogram("queue_runtime_batch_sizes", "Distribution of batch sizes",
                                  batch_size_buckets(), {"queue", "provider", "operation"})),
      errors(r.add_counter("queue_runtime_errors_total", "Total number of processing errors",
                           {"queue", "provider", "operation", "error"})),
      operation_duration(r.add_histogram("queue_runtime_operation_duration_seconds",
                                         "Latency of provider calls", operation_latency_buckets(),
                                         {"queue", "provider", "operation"})),
      operations(r.add_counter("queue_runtime_operations_total", "Provider calls made",
                               {"queue", "provider", "operation"})),
      messages_sent(r.add_counter("queue_runtime_messages_sent_total",
                                  "Messages the provider accepted", {"queue", "provider"})),
      messages_received(r.add_counter("queue_runtime_messages_received_total",
                                      "Messages handed out by receive calls",
                                      {"queue", "provider"})),
      retries(r.add_counter("queue_runtime_retries_total", "Operations retried after a failure",
                            {"queue", "provider", "operation"})),
      breaker_transitions(r.add_counter("queue_runtime_circuit_breaker_transitions_total",
                                        "Circuit breaker state changes, by the state entered",
                                        {"provider", "state"})),
      breaker_state(r.add_gauge("queue_runtime_circuit_breaker_state",
                                "Circuit breaker state: 0 closed, 1 half-open, 2 open",
                                {"provider"})),
      dead_lettered(r.add_counter("queue_runtime_dead_lettered_total",
                                  "Messages moved to the dead-letter queue by this client",
                                  {"queue", "provider"})),
      in_flight(r.add_gauge("queue_runtime_in_flight_messages",
                            "Messages received and not yet settled by this client",
                            {"queue", "provider"})),
      queue_depth(r.add_gauge("queue_runtime_queue_depth",
                              "Messages in the queue as the provider last reported, by state",
                              {"queue", "provider", "state"})),
      active_sessions(r.add_gauge("queue_runtime_active_sessions",
                                  "Sessions a session processor holds now", {"queue", "provider"})),
      session_lock_renewals(r.add_counter("queue_runtime_session_lock_renewals_total",
                                          "Session locks renewed by session processors",
                                          {"queue", "provider"})),
      session_acquisition(r.add_histogram("queue_runtime_session_acquisition_seconds",
                                          "How long accepting a session took",
                                          operation_latency_buckets(), {"queue", "provider"})),
      session_duration(r.add_histogram("queue_runtime_session_duration_seconds",
                                       "How long session processors held each session",
                                       session_duration_buckets(), {"queue", "provider"})),
      connection_bytes(r.add_counter("queue_runtime_connection_bytes_total",
                                     "Bytes written to and read from the provider's connections",
                                     {"provider", "direction"})),
      connections_opened(r.add_counter("queue_runtime_connections_opened_total",
                                       "Connections to the provider established", {"provider"})),
      connection_failures(r.add_counter(
          "queue_runtime_connection_failures_total",
          "Connects that failed and connections that broke or timed out", {"provider"})),
      connection_recovery(r.add_histogram(
          "queue_runtime_connection_recovery_seconds",
          "From a connection outage's first failure to the next connection established",
          recovery_time_buckets(), {"provider"})),
      memory_held(r.add_gauge("queue_runtime_memory_held_bytes",
                              "Message bytes the provider holds in this process, as its byte "
                              "budget counts them",
                              {"provider"})),
      memory_limit(r.add_gauge("queue_runtime_memory_limit_bytes",
                               "The provider's byte budget (max_memory_bytes)", {"provider"})) {}

retry_observer count_retries(runtime_metrics& metrics, std::string provider) {
  return [&metrics, provider = std::move(provider)](std::string_view operation,
                                                    const queue_name* queue, const error&) {
    metrics.retries.with({queue ? queue->str() : "unknown", provider, std::string(operation)})
        .inc();
  };
}

processing_series runtime_metrics::for_processing(const std::string& queue,
                                                  const std::string& provider) {
  return {messages_processed.with({queue, provider, "completed"}),
          processing_duration.with({queue, provider}),
          batch_sizes.with({queue, provider, "process"})};
}

processing_observer record_processing(runtime_metrics& metrics, std::string provider) {
  return [&metrics, provider = std::move(provider)](const processed_message& m) {
    const std::string queue = m.queue.str();
    metrics.messages_processed.with({queue, provider, std::string(to_string(m.outcome))}).inc();
    metrics.processing_duration.with({queue, provider}).observe(m.handler_duration);
    if (m.since_enqueued) {
      metrics.message_latency.with({queue, provider}).observe(*m.since_enqueued);
    }
    if (m.handler_error) {
      metrics.errors
          .with({queue, provider, "process", std::string(to_string(m.handler_error->code))})
          .inc();
    }
  };
}

session_observer record_sessions(runtime_metrics& metrics, std::string provider) {
  return [&metrics, provider = std::move(provider)](const session_event& e) {
    const std::string queue = e.queue.str();
    switch (e.what) {
      case session_event_kind::accepted:
        metrics.active_sessions.with({queue, provider}).inc();
        metrics.session_acquisition.with({queue, provider}).observe(e.waited);
        break;
      case session_event_kind::lock_renewed:
        metrics.session_lock_renewals.with({queue, provider}).inc();
        break;
      case session_event_kind::released:
        metrics.active_sessions.with({queue, provider}).dec();
        metrics.session_duration.with({queue, provider}).observe(e.held);
        break;
    }
  };
}

std::function<void(breaker_state, breaker_state)> record_breaker(runtime_metrics& metrics,
                                                                 std::string provider) {
  return [&metrics, provider = std::move(provider)](breaker_state, breaker_state to) {
    metrics.breaker_transitions.with({provider, std::string(to_string(to))}).inc();
    double value = 0;
    if (to == breaker_state::half_open) value = 1;
    if (to == breaker_state::open) value = 2;
    metrics.breaker_state.with({provider}).set(value);
  };
}

}  // namespace qrt::metrics
