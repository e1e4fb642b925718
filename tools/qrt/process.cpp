// `qrt process`: a qrt::processor that runs a shell command per message (commands.hpp).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <qrt/instrumented_provider.hpp>
#include <qrt/metrics.hpp>
#include <qrt/metrics_server.hpp>
#include <qrt/processor.hpp>
#include <qrt/qrt.hpp>
#include <qrt/runtime.hpp>
#include <string>
#include <vector>

#include "commands.hpp"

extern char** environ;

namespace qrt::cli {
namespace {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;

/// QRT_MSG_ATTR_ and the attribute's name upper-cased, every character but letters and digits
/// made '_': a shell variable name whatever the sender chose.
std::string attribute_variable(std::string_view name) {
  std::string out = "QRT_MSG_ATTR_";
  for (unsigned char c : name) {
    if (c >= 'a' && c <= 'z') {
      out += static_cast<char>(c - 'a' + 'A');
    } else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
      out += static_cast<char>(c);
    } else {
      out += '_';
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> process_environment(const received_message& m) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "QRT_MSG_", 8) != 0) env.emplace_back(*e);
  }
  auto add = [&env](const std::string& name, std::string_view value) {
    env.push_back(name + "=" + std::string(value.substr(0, value.find('\0'))));
  };
  add("QRT_MSG_ID", m.id);
  add("QRT_MSG_DELIVERY_COUNT", std::to_string(m.delivery_count));
  if (!m.correlation_id.empty()) add("QRT_MSG_CORRELATION_ID", m.correlation_id);
  if (m.session) add("QRT_MSG_SESSION_ID", m.session->str());
  if (!m.subject.empty()) add("QRT_MSG_SUBJECT", m.subject);
  if (!m.content_type.empty()) add("QRT_MSG_CONTENT_TYPE", m.content_type);
  // Names that differ only in case or punctuation ("a-b", "a_b", "A.B") meet in one variable;
  // which value the command saw would depend on the order of the environment. Such a variable
  // is left out, and every attribute stays readable, exactly, in QRT_MSG_ATTRIBUTES.
  std::map<std::string, std::size_t> uses;
  for (const auto& entry : m.attributes) ++uses[attribute_variable(entry.first)];
  for (const auto& [name, value] : m.attributes) {
    auto variable = attribute_variable(name);
    if (uses[variable] == 1) add(variable, value);
  }
  add("QRT_MSG_ATTRIBUTES", attributes_json(m.attributes));
  return env;
}

namespace {

/// Runs `/bin/sh -c command` with the message's body on its stdin and its variables in its
/// environment, and waits for it. Blocking: runs on the command pool, never on the processor's
/// threads (which renew locks).
result<void> run_command(const std::string& command, const received_message& m) {
  int in[2];
  if (::pipe2(in, O_CLOEXEC) != 0) {
    return fail(errc::provider_error, std::string("process: pipe: ") + std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  // qrt blocks SIGINT/SIGTERM (it waits for them) and ignores SIGPIPE; the command gets the
  // defaults.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  const auto env = process_environment(m);
  std::vector<char*> envp;
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  std::string shell = "/bin/sh", dash_c = "-c", script = command;
  char* argv[] = {shell.data(), dash_c.data(), script.data(), nullptr};
  pid_t pid = 0;
  const int spawned = ::posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(in[0]);
  if (spawned != 0) {
    ::close(in[1]);
    return fail(errc::provider_error,
                std::string("process: cannot run /bin/sh: ") + std::strerror(spawned));
  }
  // The body; a command that exits without reading it all closes the pipe (EPIPE, SIGPIPE is
  // ignored): its exit status decides.
  const char* data = m.body.data();
  std::size_t left = m.body.size();
  while (left > 0) {
    const ssize_t n = ::write(in[1], data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data += n;
    left -= static_cast<std::size_t>(n);
  }
  ::close(in[1]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return fail(errc::provider_error, std::string("process: waitpid: ") + std::strerror(errno));
    }
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  error e = fail(errc::provider_error,
                 WIFEXITED(status)
                     ? "the command exited with status " + std::to_string(WEXITSTATUS(status))
                     : "the command was killed by signal " + std::to_string(WTERMSIG(status)));
  e.kind = error_kind::transient;  // abandoned: delivered again, dead-lettered by the queue
  return e;
}

/// Whether a failure the processor reports means this worker can never receive anything, so
/// retrying only hides it: the queue or topic does not exist, credentials were refused, the
/// configuration or the request is wrong, or the provider cannot do it.
bool cannot_work(const error& e) {
  switch (e.code) {
    case errc::queue_not_found:
    case errc::topic_not_found:
    case errc::permission:
    case errc::configuration_error:
    case errc::invalid_argument:
    case errc::unsupported:
      return true;
    default:
      return false;
  }
}

/// "host:port" -> server options; the port must be a number (0: any free one).
result<metrics::server_options> listen_address(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    return fail(errc::invalid_argument,
                "--metrics-listen '" + text + "' is not HOST:PORT (e.g. 127.0.0.1:9464)");
  }
  metrics::server_options o;
  o.address = text.substr(0, colon);
  const std::string port = text.substr(colon + 1);
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) > 65535) {
    return fail(errc::invalid_argument, "--metrics-listen port '" + port + "' is not 0-65535");
  }
  o.port = static_cast<std::uint16_t>(std::stoul(port));
  return o;
}

}  // namespace

result<process_report> process(const config& cfg, const queue_name& q, const process_options& o,
                               std::ostream& log) {
  if (o.command.empty()) return fail(errc::invalid_argument, "process needs --exec COMMAND");
  if (o.concurrency > 1024) return fail(errc::invalid_argument, "--concurrency must be 1-1024");
  // The processor and its runtime come from the same configuration as the provider.
  auto configured = processor_options::from_config(cfg);
  if (!configured) return configured.error();
  processor_options po = *configured;
  if (o.concurrency > 0) {
    po.max_concurrent_calls = o.concurrency;
  } else if (!cfg.contains("max_concurrent_calls") && !cfg.contains("preset")) {
    // Commands are not assumed safe to run side by side: one at a time unless asked.
    po.max_concurrent_calls = 1;
  }
  auto threads = runtime_configuration::from_config(cfg);
  if (!threads) return threads.error();
  std::optional<metrics::server_options> listen;
  if (!o.metrics_listen.empty()) {
    auto l = listen_address(o.metrics_listen);
    if (!l) return l.error();
    listen = *l;
    if (o.depth_interval < milliseconds{1}) {
      return fail(errc::invalid_argument, "--depth-interval must be at least 0.001 seconds");
    }
  }
  // SIGINT/SIGTERM are waited for below, in this thread: blocked before any thread starts, so
  // every thread inherits the mask. A command that stops reading its stdin must not kill qrt.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigset_t previous;
  ::pthread_sigmask(SIG_BLOCK, &stop_signals, &previous);
  struct restore_mask {
    sigset_t mask;
    ~restore_mask() { ::pthread_sigmask(SIG_SETMASK, &mask, nullptr); }
  } restore{previous};
  ::signal(SIGPIPE, SIG_IGN);

  metrics::registry registry;
  metrics::runtime_metrics metrics(registry);
  std::unique_ptr<metrics::metrics_server> server;
  if (listen) {
    // Resource alerts (monitoring/qrt-alerts.yml) watch the process as a whole.
    metrics::add_process_metrics(registry);
    auto s = metrics::metrics_server::start(registry, *listen);
    if (!s) return s.error();
    server = std::move(*s);
    log << "qrt: serving /metrics on " << listen->address << ':' << server->port() << '\n'
        << std::flush;
  }

  runtime rt(*threads);
  auto built = builtin_providers().make(cfg, rt.executor());
  if (!built) return built.error();
  const std::string provider_name(std::string((*built)->name()));
  queue_client client(metrics::instrument(*built, metrics),
                      client_options{.on_retry = metrics::count_retries(metrics, provider_name)});
  asio::thread_pool commands(po.max_concurrent_calls);

  std::atomic<std::uint64_t> processed{0};
  std::atomic<std::int64_t> last_processed_ns{steady::now().time_since_epoch().count()};
  po.prefetch_count = 0;             // a message waits for a free command, not in qrt's buffer
  po.max_messages = o.max_messages;  // the rest stay in the queue, their delivery counts untouched
  // Where the broker redelivers at once and counts no deliveries (RabbitMQ's classic queues), a
  // command that always fails would otherwise be rerun in a tight loop.
  po.abandon_delay = o.abandon_delay;
  auto record = metrics::record_processing(metrics, provider_name);
  po.on_processed = [&](const processed_message& p) {
    record(p);
    last_processed_ns = steady::now().time_since_epoch().count();
    ++processed;
  };
  // A worker that can never receive (a queue that does not exist, refused credentials, a
  // provider that cannot serve this queue) stops at once and says why, instead of retrying
  // forever and exiting 0 at the end. Other failures are logged and retried.
  std::mutex fatal_mutex;
  std::optional<error> fatal;
  std::atomic<bool> stop_now{false};
  std::mutex log_mutex;  // the processor and the depth watch report from their own strands
  po.on_error = [&](const error& e) {
    if (cannot_work(e)) {
      std::lock_guard lock(fatal_mutex);
      if (!fatal) fatal = e;
      stop_now = true;
      return;
    }
    std::lock_guard lock(log_mutex);
    log << "qrt: " << printable_text(e.to_string()) << '\n' << std::flush;
  };
  const std::string command = o.command;
  processor worker(
      client, q,
      [&commands, command](const received_message& m) -> awaitable<result<void>> {
        co_return co_await asio::co_spawn(
            commands,
            [&command, &m]() -> awaitable<result<void>> { co_return run_command(command, m); },
            asio::use_awaitable);
      },
      po);
  // Scraped, the queue's depth must be current: nothing else calls stats() while processing.
  std::optional<metrics::depth_watch> depth;
  if (server) {
    metrics::depth_watch_options wo;
    wo.interval = o.depth_interval;
    wo.on_error = [&](const queue_name& queue, const error& e) {
      std::lock_guard lock(log_mutex);
      log << "qrt: cannot read the depth of " << printable_text(queue.to_string()) << ": "
          << printable_text(e.to_string()) << '\n'
          << std::flush;
    };
    depth.emplace(client, std::vector<queue_name>{q}, wo);
    depth->start(rt.executor());
  }
  worker.start(rt.executor());

  // Until a stop signal, max_messages, idle_exit or an error no retry can fix: the signal wait
  // doubles as the clock.
  for (;;) {
    if (stop_now) break;
    if (o.max_messages > 0 && processed.load() >= o.max_messages) break;
    auto slice = std::chrono::milliseconds(200);
    // A command still running is work, not idleness: the idle time counts from when it ends.
    if (worker.stats().in_flight > 0) last_processed_ns = steady::now().time_since_epoch().count();
    if (o.idle_exit) {
      const auto idle_since = steady::time_point(steady::duration(last_processed_ns.load()));
      const auto left = idle_since + *o.idle_exit - steady::now();
      if (left <= steady::duration::zero()) break;
      slice = std::min(slice, std::chrono::duration_cast<std::chrono::milliseconds>(left) +
                                  std::chrono::milliseconds(1));
    }
    timespec wait{};
    wait.tv_sec = static_cast<time_t>(slice.count() / 1000);
    wait.tv_nsec = static_cast<long>((slice.count() % 1000) * 1'000'000);
    if (::sigtimedwait(&stop_signals, nullptr, &wait) > 0) break;
  }
  // What runs is finished, however long it takes (its lock renewed meanwhile): a command's
  // success must not be thrown away by a deadline of qrt's. Prefetched messages go back.
  rt.block_on(worker.stop(milliseconds::max()));
  commands.join();
  if (depth) {
    rt.block_on(depth->stop());
    // One last reading, so that the last scrape and the report show the queue as the run
    // left it rather than as the watch last saw it. A failure was counted and is of no use now.
    (void)rt.block_on(client.stats(q));
  }
  rt.block_on(client.close());
  {
    std::lock_guard lock(fatal_mutex);
    if (fatal) return *fatal;
  }
  const auto s = worker.stats();
  process_report r;
  r.completed = s.completed;
  r.failed = s.handler_failures;
  r.settle_failures = s.settle_failures;
  r.metrics = registry.expose();
  return r;
}

}  // namespace qrt::cli
