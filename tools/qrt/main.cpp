// qrt: send, receive, peek, inspect and replay dead-letter queues, show stats,
// and benchmark any provider, and compare two benchmark reports. Exit codes: 0
// success, 1 the provider or run failed, 2 bad input, 3 a performance target
// was missed (bench --fail-on-miss), 4 a figure regressed (bench compare
// --fail-on-regression).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <qrt/bench/compare.hpp>
#include <qrt/bench/harness.hpp>
#include <qrt/bench/report.hpp>
#include <qrt/metrics.hpp>
#include <qrt/qrt.hpp>
#include <sstream>

#include "commands.hpp"

namespace {

using namespace qrt;

constexpr int exit_failed = 1;
constexpr int exit_usage = 2;
constexpr int exit_target_missed = 3;
constexpr int exit_regressed = 4;

// One line on stderr; bad input (usage, configuration, arguments) exits 2, the
// rest 1.
int report_error(const error& e) {
  std::cerr << "qrt: " << e.to_string() << '\n';
  const bool bad_input = e.code == errc::configuration_error || e.code == errc::invalid_argument ||
                         e.code == errc::message_too_large;
  return bad_input ? exit_usage : exit_failed;
}

void add_provider_flags(CLI::App& cmd, cli::provider_flags& f, bool queue_required = true) {
  cmd.add_option("--provider", f.provider, "memory | sqs | servicebus | amqp (or QRT_PROVIDER)")
      ->check(CLI::IsMember({"memory", "sqs", "servicebus", "amqp"}));
  auto* q = cmd.add_option("--queue", f.queue, "queue name");
  if (queue_required) q->required();
  cmd.add_option("--endpoint", f.endpoint, "URL of an SQS endpoint or an AMQP broker");
  cmd.add_option("--region", f.region, "AWS region (sqs)");
  cmd.add_option("--connection-string", f.connection_string,
                 "Service Bus connection string (never printed)");
  cmd.add_option("--persistence-path", f.persistence_path,
                 "memory: keep queues in this directory, so separate runs share them");
  cmd.add_option("--durability", f.durability,
                 "memory with --persistence-path: always (default) | interval | none");
  cmd.add_option("--config", f.config_file, "YAML file with provider settings (flags win)")
      ->check(CLI::ExistingFile);
  cmd.add_option("--set", f.settings, "any provider setting as key=value (repeatable)");
}

void add_output_flag(CLI::App& cmd, std::string& output) {
  cmd.add_option("--output", output, "text (default) or json: one JSON object per line")
      ->check(CLI::IsMember({"text", "json"}));
}

cli::output_format format_of(const std::string& s) {
  return s == "json" ? cli::output_format::json : cli::output_format::text;
}

result<milliseconds> seconds_flag(double seconds, std::string_view name) {
  // 100 years at most, like durations in configuration: a longer wait would
  // overflow once added to a clock reading.
  constexpr double longest = 100.0 * 365.25 * 24 * 3600;
  if (!(seconds >= 0 && seconds <= longest)) {
    return fail(
        errc::invalid_argument,
        std::string(name) + " must be a number of seconds from 0 to 3155760000 (100 years)");
  }
  return milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000)));
}

struct opened {
  sync::queue_client client;
  queue_name queue;
};

result<opened> open(const cli::provider_flags& flags) {
  auto cfg = cli::build_config(flags, config::from_environment());
  if (!cfg) return cfg.error();
  auto q = queue_name::parse(flags.queue);
  if (!q) return q.error();
  auto c = sync::queue_client::open(*cfg, builtin_providers());
  if (!c) return c.error();
  return opened{std::move(*c), *q};
}

std::string with_thousands(std::uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// The command line as run, for the report's history, with the values that may
// hold secrets (a connection string, a --set of a key, secret, password or
// token, a URL's user and password) replaced by "***".
std::string command_line_without_secrets(int argc, char** argv) {
  auto secret_setting = [](std::string_view kv) {
    std::string key(kv.substr(0, kv.find('=')));
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (const char* word : {"key", "secret", "password", "token", "connection", "sas"}) {
      if (key.find(word) != std::string::npos) return true;
    }
    return false;
  };
  std::string out;
  bool hide_next = false;
  bool setting_next = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (hide_next) {
      arg = "***";
    } else if (setting_next && secret_setting(arg)) {
      arg = arg.substr(0, arg.find('=')) + "=***";
    } else if (arg.starts_with("--connection-string=")) {
      arg = "--connection-string=***";
    } else if (arg.starts_with("--set=") && secret_setting(arg.substr(6))) {
      arg = "--set=" + arg.substr(6, arg.find('=', 6) - 6) + "=***";
    }
    // A URL's user and password (amqp://user:pass@host).
    if (const auto scheme = arg.find("://"); scheme != std::string::npos) {
      if (const auto at = arg.find('@', scheme); at != std::string::npos) {
        arg = arg.substr(0, scheme + 3) + "***" + arg.substr(at);
      }
    }
    hide_next = arg == "--connection-string";
    setting_next = arg == "--set";
    if (arg.find_first_of(" \t'\"$") != std::string::npos) arg = "'" + arg + "'";
    out += (i ? " " : "") + arg;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "qrt: one command line for message queues (embedded, AWS SQS, Azure "
      "Service Bus, AMQP 1.0).\n"
      "Every command takes the provider from --provider and its flags, from a "
      "YAML file\n"
      "(--config FILE), or from QRT_* environment variables "
      "(QRT_PROVIDER=sqs,\n"
      "QRT_REGION=eu-west-1, ...); flags win over the file, the file over the "
      "environment.\n\n"
      "Examples:\n"
      "  qrt bench --provider memory --report-dir reports/now\n"
      "  qrt send --provider sqs --endpoint http://127.0.0.1:4566 --region "
      "us-east-1 \\\n"
      "           --queue orders --body '{\"id\":1}' --attribute tenant=acme\n"
      "  qrt receive --provider sqs ... --queue orders --max 10 --wait 5 "
      "--output json\n"
      "  qrt dlq list --provider servicebus --connection-string \"$SB\" "
      "--queue orders\n"};
  app.name("qrt");
  app.require_subcommand(1);

  // send
  cli::provider_flags send_flags;
  cli::send_options send_opts;
  std::string send_body_file, send_output = "text", send_session;
  std::vector<std::string> send_attributes;
  auto* send = app.add_subcommand("send", "Send a message");
  add_provider_flags(*send, send_flags);
  auto* body_opt = send->add_option("--body", send_opts.body, "message body (text)");
  auto* body_file_opt =
      send->add_option("--body-file", send_body_file, "read the body (any bytes) from a file")
          ->check(CLI::ExistingFile);
  body_opt->excludes(body_file_opt);
  send->add_option("--attribute", send_attributes, "key=value user attribute (repeatable)");
  send->add_option("--session", send_session, "session id (ordered group)");
  send->add_option("--correlation-id", send_opts.correlation_id, "correlation id");
  send->add_option("--count", send_opts.count, "send the message this many times")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1'000'000'000}));
  add_output_flag(*send, send_output);

  // receive
  cli::provider_flags recv_flags;
  cli::receive_options recv_opts;
  double recv_wait = 5;
  std::string recv_output = "text", recv_session;
  bool no_complete = false;
  auto* receive = app.add_subcommand("receive", "Receive messages, print them, then complete them");
  add_provider_flags(*receive, recv_flags);
  receive->add_option("--max", recv_opts.max, "most messages to receive (default 1)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}));
  receive->add_option("--wait", recv_wait, "seconds to wait for messages (default 5)");
  receive->add_flag("--no-complete", no_complete,
                    "leave messages locked; they return to the queue when the lock expires");
  receive->add_option("--session", recv_session, "receive from this session only");
  add_output_flag(*receive, recv_output);

  // peek
  cli::provider_flags peek_flags;
  std::size_t peek_max = 10;
  std::int64_t peek_from = 0;
  std::string peek_output = "text";
  auto* peek = app.add_subcommand("peek", "Show messages without locking or removing them");
  add_provider_flags(*peek, peek_flags);
  peek->add_option("--max", peek_max, "most messages to show (default 10)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}));
  peek->add_option("--from-sequence", peek_from, "start at this sequence number (default: oldest)");
  add_output_flag(*peek, peek_output);

  // dlq list / dlq replay
  auto* dlq = app.add_subcommand("dlq", "Inspect or replay a queue's dead-letter queue");
  dlq->require_subcommand(1);
  cli::provider_flags dlq_list_flags, dlq_replay_flags;
  std::size_t dlq_list_max = 10, dlq_replay_max = 100;
  std::string dlq_output = "text";
  double dlq_wait = 1;
  auto* dlq_list =
      dlq->add_subcommand("list", "Show dead-lettered messages (with reasons), not removing them");
  add_provider_flags(*dlq_list, dlq_list_flags);
  dlq_list->add_option("--max", dlq_list_max, "most messages to show (default 10)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}));
  add_output_flag(*dlq_list, dlq_output);
  auto* dlq_replay =
      dlq->add_subcommand("replay",
                          "Move dead-lettered messages back to the queue (send first, "
                          "then remove from the DLQ)");
  add_provider_flags(*dlq_replay, dlq_replay_flags);
  dlq_replay->add_option("--max", dlq_replay_max, "most messages to move (default 100)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}));
  dlq_replay->add_option("--wait", dlq_wait, "seconds to wait for the first message (default 1)");

  // stats
  cli::provider_flags stats_flags;
  std::string stats_output = "text";
  auto* stats = app.add_subcommand(
      "stats", "Show a queue's depth: active, in flight, scheduled, dead-lettered");
  add_provider_flags(*stats, stats_flags);
  add_output_flag(*stats, stats_output);

  // process
  cli::provider_flags process_flags;
  cli::process_options process_opts;
  double process_idle_exit = -1;
  auto* processcmd =
      app.add_subcommand("process",
                         "Run a worker: each message's body goes to a shell command's "
                         "stdin; exit 0 completes it, "
                         "any other status abandons it");
  add_provider_flags(*processcmd, process_flags);
  processcmd
      ->add_option("--exec", process_opts.command,
                   "shell command run per message (/bin/sh -c); message id, delivery "
                   "count, "
                   "correlation id, session id and attributes in QRT_MSG_* variables")
      ->required();
  processcmd->add_option("--concurrency", process_opts.concurrency,
                         "commands running at once (default: the configuration's "
                         "max_concurrent_calls, else 1)");
  processcmd->add_option("--max-messages", process_opts.max_messages,
                         "stop after this many messages (default: no limit)");
  processcmd->add_option("--idle-exit", process_idle_exit,
                         "stop after this many seconds without a message");
  processcmd->add_option("--metrics-listen", process_opts.metrics_listen,
                         "HOST:PORT to serve /metrics on while running");

  // bench
  cli::provider_flags bench_flags;
  bench_flags.provider = "";
  bench_flags.queue = "qrt-bench";
  bench::bench_options bo;
  std::string duration_text, targets_file, environment, report_dir, bench_output = "text";
  std::size_t batch = 0;
  bool fail_on_miss = false, no_baseline = false, scaling = false, half_rate = false;
  std::int64_t handler_cost_us = 0, overhead_us = 0, scaling_latency_ms = 10;
  std::uint64_t memory_budget = 0;
  std::uint64_t overhead_messages = 2000;
  std::size_t scaling_max = 32;
  std::size_t repeat = 1;
  bool with_metrics = false;
  auto* benchcmd = app.add_subcommand("bench",
                                      "Measure throughput, latency, CPU and memory "
                                      "of a provider (default: the embedded one),\n"
                                      "against a raw lock-free queue in the same "
                                      "run, and check performance targets");
  add_provider_flags(*benchcmd, bench_flags, false);
  benchcmd->add_option("--messages", bo.messages, "messages to send (default 100000)");
  benchcmd->add_option("--duration", duration_text,
                       "sustained mode: send for this long (30s, 5m, 1h)");
  benchcmd->add_option("--rate", bo.rate,
                       "messages/s over all producers (default: as fast as possible)");
  benchcmd->add_option("--size", bo.message_size,
                       "body bytes per message (default 256, at least 16)");
  benchcmd->add_option("--producers", bo.producers, "concurrent producers (default 1)");
  benchcmd->add_option("--consumers", bo.consumers, "concurrent consumers (default 1)");
  benchcmd->add_option("--batch", batch, "messages per send and per receive call (sets both)");
  benchcmd->add_option("--send-batch", bo.send_batch, "messages per send call (default 10)");
  benchcmd->add_option("--receive-batch", bo.receive_batch,
                       "messages per receive call (default 10)");
  benchcmd->add_option("--threads", bo.threads, "threads running the provider (default: cores)");
  benchcmd->add_option("--handler-cost", handler_cost_us,
                       "microseconds of CPU each message's handler burns (default 0)");
  benchcmd->add_flag("--no-baseline", no_baseline, "skip the raw-queue baseline");
  benchcmd
      ->add_option("--repeat", repeat,
                   "rounds of provider + baseline; the median-ratio round is "
                   "reported (default 1)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100}));
  benchcmd->add_flag("--half-rate", half_rate,
                     "also run at half the measured rate and report that run's latency");
  benchcmd->add_flag("--scaling", scaling,
                     "also run the consumer scaling benchmark (1..32 consumers)");
  benchcmd->add_option("--scaling-latency", scaling_latency_ms,
                       "ms added to each provider call when scaling (default 10)");
  benchcmd->add_option("--scaling-max", scaling_max, "most consumers when scaling (default 32)");
  benchcmd->add_option("--overhead", overhead_us,
                       "also measure client overhead with a handler of this many microseconds");
  benchcmd->add_option("--overhead-messages", overhead_messages,
                       "messages for --overhead (default 2000)");
  benchcmd->add_option("--memory-budget", memory_budget,
                       "also fill a queue of the embedded provider held to this many bytes "
                       "(max_memory_bytes) and report resident memory against it");
  benchcmd->add_option("--targets", targets_file, "performance targets YAML (format: ADR 0071)")
      ->check(CLI::ExistingFile);
  benchcmd
      ->add_option("--environment", environment,
                   "which targets: production (default) or development")
      ->check(CLI::IsMember({"production", "development"}));
  benchcmd->add_flag("--fail-on-miss", fail_on_miss, "exit 3 when a target is missed");
  benchcmd->add_option("--report-dir", report_dir, "write report.json and chart.html here");
  benchcmd->add_flag("--metrics", with_metrics,
                     "instrument the provider and write the Prometheus "
                     "exposition (metrics.prom in "
                     "--report-dir, else after the table)");
  add_output_flag(*benchcmd, bench_output);

  // bench compare
  std::string compare_old, compare_new, compare_out;
  double compare_threshold = 10;
  bool fail_on_regression = false;
  auto* comparecmd =
      benchcmd->add_subcommand("compare",
                               "Compare two benchmark reports: each figure side by side with "
                               "its change, regressions\n"
                               "(throughput down, latency, CPU per message, memory or errors "
                               "up) beyond a threshold "
                               "flagged");
  comparecmd->add_option("old", compare_old, "the earlier run's report.json (or its directory)")
      ->required();
  comparecmd->add_option("new", compare_new, "the later run's report.json (or its directory)")
      ->required();
  comparecmd->add_option("--threshold", compare_threshold,
                         "percent a figure may get worse before it is a regression (default 10)");
  comparecmd->add_flag("--fail-on-regression", fail_on_regression,
                       "exit 4 when any figure regressed");
  comparecmd->add_option("--out", compare_out, "write compare.html (a chart of the changes) here");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    std::cerr << "qrt: " << msg << " (see qrt --help)\n";
    return exit_usage;
  }

  try {
    if (send->parsed()) {
      if (body_opt->count() == 0 && body_file_opt->count() == 0) {
        return report_error(fail(errc::invalid_argument, "send needs --body or --body-file"));
      }
      if (!send_body_file.empty()) {
        // Checked before reading: no provider takes a message over 1 GiB, so a
        // larger file would only be read into memory to be refused.
        constexpr std::uintmax_t largest_body = std::uintmax_t{1} << 30;
        std::error_code ec;
        const auto size = std::filesystem::file_size(send_body_file, ec);
        if (!ec && size > largest_body) {
          return report_error(fail(errc::invalid_argument,
                                   "--body-file " + send_body_file + " is " + std::to_string(size) +
                                       " bytes; no provider accepts a message over " +
                                       std::to_string(largest_body) + " bytes"));
        }
        std::ifstream in(send_body_file, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        if (!in && !in.eof()) {
          return report_error(
              fail(errc::invalid_argument, "cannot read --body-file " + send_body_file));
        }
        send_opts.body = ss.str();
      }
      for (const auto& a : send_attributes) {
        auto kv = cli::parse_attribute(a);
        if (!kv) return report_error(kv.error());
        send_opts.attributes[kv->first] = kv->second;
      }
      if (!send_session.empty()) send_opts.session = send_session;
      send_opts.output = format_of(send_output);
      auto o = open(send_flags);
      if (!o) return report_error(o.error());
      if (auto r = cli::send(o->client, o->queue, send_opts, std::cout); !r)
        return report_error(r.error());
      return 0;
    }
    if (receive->parsed()) {
      auto wait = seconds_flag(recv_wait, "--wait");
      if (!wait) return report_error(wait.error());
      recv_opts.wait = *wait;
      recv_opts.complete = !no_complete;
      if (!recv_session.empty()) recv_opts.session = recv_session;
      recv_opts.output = format_of(recv_output);
      auto o = open(recv_flags);
      if (!o) return report_error(o.error());
      auto n = cli::receive(o->client, o->queue, recv_opts, std::cout);
      if (!n) return report_error(n.error());
      if (*n == 0 && recv_opts.output == cli::output_format::text)
        std::cerr << "qrt: no messages\n";
      return 0;
    }
    if (peek->parsed()) {
      auto o = open(peek_flags);
      if (!o) return report_error(o.error());
      auto n =
          cli::peek(o->client, o->queue, peek_max, peek_from, format_of(peek_output), std::cout);
      if (!n) return report_error(n.error());
      return 0;
    }
    if (dlq_list->parsed()) {
      auto o = open(dlq_list_flags);
      if (!o) return report_error(o.error());
      auto n = cli::peek(o->client, o->queue.dead_letter(), dlq_list_max, 0, format_of(dlq_output),
                         std::cout);
      if (!n) return report_error(n.error());
      return 0;
    }
    if (dlq_replay->parsed()) {
      auto wait = seconds_flag(dlq_wait, "--wait");
      if (!wait) return report_error(wait.error());
      auto o = open(dlq_replay_flags);
      if (!o) return report_error(o.error());
      auto n = cli::dlq_replay(o->client, o->queue, dlq_replay_max, *wait, std::cout);
      if (!n) return report_error(n.error());
      std::cerr << "qrt: replayed " << *n << " message(s)\n";
      return 0;
    }
    if (processcmd->parsed()) {
      if (process_idle_exit >= 0) {
        auto idle = seconds_flag(process_idle_exit, "--idle-exit");
        if (!idle) return report_error(idle.error());
        process_opts.idle_exit = *idle;
      }
      auto cfg = cli::build_config(process_flags, config::from_environment());
      if (!cfg) return report_error(cfg.error());
      auto q = queue_name::parse(process_flags.queue);
      if (!q) return report_error(q.error());
      auto r = cli::process(*cfg, *q, process_opts, std::cerr);
      if (!r) return report_error(r.error());
      std::cerr << "qrt: processed " << r->completed + r->failed << " message(s): " << r->completed
                << " completed, " << r->failed << " failed\n";
      return 0;
    }
    if (stats->parsed()) {
      auto o = open(stats_flags);
      if (!o) return report_error(o.error());
      if (auto r = cli::stats(o->client, o->queue, format_of(stats_output), std::cout); !r) {
        return report_error(r.error());
      }
      return 0;
    }
    if (comparecmd->parsed()) {
      if (!(compare_threshold >= 0 && compare_threshold < 1e6)) {
        return report_error(
            fail(errc::invalid_argument, "--threshold must be a percentage of 0 or more"));
      }
      auto old_run = bench::load_report_figures(compare_old);
      if (!old_run) return report_error(old_run.error());
      auto new_run = bench::load_report_figures(compare_new);
      if (!new_run) return report_error(new_run.error());
      const auto c = bench::compare_reports(*old_run, *new_run, compare_threshold / 100);
      std::cout << bench::format_comparison(c);
      std::cout.flush();
      if (!compare_out.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(compare_out, ec);
        const auto path = (std::filesystem::path(compare_out) / "compare.html").string();
        std::ofstream html(path, std::ios::binary);
        html << bench::render_comparison_html(c);
        if (ec || !html.good()) {
          return report_error(fail(errc::invalid_argument, "cannot write " + path));
        }
        std::cerr << "qrt: comparison chart written to " << path << '\n';
      }
      if (fail_on_regression && c.any_regression()) {
        std::cerr << "qrt: " << c.regressions().size() << " figure(s) regressed\n";
        return exit_regressed;
      }
      return 0;
    }
    if (benchcmd->parsed()) {
      if (bench_flags.provider.empty() && !std::getenv("QRT_PROVIDER") &&
          bench_flags.config_file.empty()) {
        bench_flags.provider = "memory";
      }
      // The harness creates its own queue; the embedded provider needs none at
      // start.
      cli::provider_flags without_queue = bench_flags;
      without_queue.queue.clear();
      auto cfg = cli::build_config(without_queue, config::from_environment());
      if (!cfg) return report_error(cfg.error());
      bo.provider_config = *cfg;
      bo.queue = bench_flags.queue;
      if (!duration_text.empty()) {
        auto d = parse_duration(duration_text);
        if (!d)
          return report_error(
              fail(errc::invalid_argument,
                   "--duration '" + duration_text + "' is not a duration like 30s, 5m or 1h"));
        bo.duration = *d;
      }
      if (batch > 0) bo.send_batch = bo.receive_batch = batch;
      if (handler_cost_us < 0 || overhead_us < 0) {
        return report_error(
            fail(errc::invalid_argument, "--handler-cost and --overhead must be >= 0"));
      }
      bo.handler_cost = std::chrono::microseconds(handler_cost_us);
      std::optional<bench::performance_targets> targets;
      if (!targets_file.empty()) {
        auto t = bench::load_targets(targets_file, environment);
        if (!t) return report_error(t.error());
        targets = *t;
      }
      const bool tty = ::isatty(STDERR_FILENO) == 1;
      if (tty) {
        bo.on_progress = [](const bench::progress& p) {
          if (p.target > 0) {
            std::fprintf(stderr, "\r  %6.1f s  sent %s / %s  completed %s   ", p.elapsed_s,
                         with_thousands(p.sent).c_str(), with_thousands(p.target).c_str(),
                         with_thousands(p.received).c_str());
          } else {
            std::fprintf(stderr, "\r  %6.1f s  sent %s  completed %s   ", p.elapsed_s,
                         with_thousands(p.sent).c_str(), with_thousands(p.received).c_str());
          }
        };
      }
      auto clear_progress = [&] {
        if (tty) std::fprintf(stderr, "\r%80s\r", "");
      };

      metrics::registry metric_registry;
      metrics::runtime_metrics runtime_metrics(metric_registry);
      if (with_metrics) bo.metrics = &runtime_metrics;

      // Each round runs the provider, then the raw queue; with --repeat the
      // round with the median ratio is reported (a shared machine makes single
      // rounds noisy).
      const bool with_baseline = !no_baseline && bo.provider_config.get("provider") == "memory";
      std::vector<bench::report> rounds;
      for (std::size_t round = 0; round < std::max<std::size_t>(repeat, 1); ++round) {
        auto run = bench::run_benchmark(bo);
        clear_progress();
        if (!run) return report_error(run.error());
        bench::report r;
        r.run = std::move(*run);
        if (with_baseline) {
          auto base_opts = bo;
          base_opts.messages = std::max<std::uint64_t>(r.run.messages_sent, 1);
          base_opts.duration.reset();
          r.baseline = bench::run_baseline(base_opts);
        }
        rounds.push_back(std::move(r));
      }
      std::vector<double> ratios;
      for (const auto& r : rounds)
        ratios.push_back(with_baseline ? r.baseline_ratio() : r.run.e2e_throughput);
      std::vector<std::size_t> order(rounds.size());
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](auto a, auto b) { return ratios[a] < ratios[b]; });
      bench::report rep = std::move(rounds[order[order.size() / 2]]);
      if (rounds.size() > 1) rep.round_ratios = ratios;

      if (half_rate && rep.run.e2e_throughput > 0) {
        auto half = bo;
        half.rate = rep.run.e2e_throughput / 2;
        half.duration.reset();
        half.messages = std::max<std::uint64_t>(static_cast<std::uint64_t>(half.rate * 2), 1000);
        auto h = bench::run_benchmark(half);
        clear_progress();
        if (!h) return report_error(h.error());
        rep.half_rate = std::move(*h);
      }
      if (scaling) {
        bench::scaling_options so;
        so.base = bo;
        so.base.on_progress = nullptr;
        so.base.receive_batch = bo.receive_batch;
        so.injected_latency = milliseconds(scaling_latency_ms);
        so.max_consumers = scaling_max;
        auto s = bench::run_scaling(so);
        if (!s) return report_error(s.error());
        rep.scaling = std::move(*s);
      }
      if (overhead_us > 0) {
        auto ov = bo;
        ov.on_progress = nullptr;
        auto r = bench::run_overhead(ov, overhead_messages, std::chrono::microseconds(overhead_us));
        if (!r) return report_error(r.error());
        rep.overhead = *r;
      }
      if (memory_budget > 0) {
        auto mb = bo;
        mb.on_progress = nullptr;
        auto r = bench::run_memory_budget(mb, memory_budget);
        if (!r) return report_error(r.error());
        rep.memory_budget = std::move(*r);
      }
      rep.load_average = bench::read_load_average();
      rep.finished_at = bench::utc_now();
      rep.command = command_line_without_secrets(argc, argv);
      if (targets) {
        rep.checks = bench::check_targets(*targets, rep.run);
        rep.targets_environment = targets->environment;
      }

      if (bench_output == "json") {
        std::cout << bench::to_json(rep) << '\n';
      } else {
        std::cout << bench::format_table(rep);
      }
      if (with_metrics && report_dir.empty()) std::cout << '\n' << metric_registry.expose();
      std::cout.flush();
      if (!std::cout) return report_error(fail(errc::provider_error, "cannot write the output"));
      if (!report_dir.empty()) {
        if (auto w = bench::write_report_dir(rep, report_dir); !w) return report_error(w.error());
        if (with_metrics) {
          std::ofstream prom(report_dir + "/metrics.prom", std::ios::binary);
          prom << metric_registry.expose();
          if (!prom.good()) {
            return report_error(
                fail(errc::invalid_argument, "cannot write " + report_dir + "/metrics.prom"));
          }
        }
        std::cerr << "qrt: report written to " << report_dir << "/report.json and " << report_dir
                  << "/chart.html\n";
      }
      if (fail_on_miss && bench::any_miss(rep.checks)) {
        std::cerr << "qrt: a performance target was missed\n";
        return exit_target_missed;
      }
      return 0;
    }
  } catch (const qrt::exception& e) {
    return report_error(e.get());
  } catch (const std::exception& e) {
    std::cerr << "qrt: " << e.what() << '\n';
    return exit_failed;
  }
  return exit_usage;
}
