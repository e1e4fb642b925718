// qrt: send, publish, receive, peek, inspect and replay dead-letter queues, show stats, manage
// topics and subscriptions, and benchmark any provider, and compare two benchmark reports. Exit
// codes: 0 success, 1 the provider or run failed, 2 bad input, 3 a performance target was missed
// (bench --fail-on-miss), 4 a figure regressed (bench compare
// --fail-on-regression).
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <qrt/bench/compare.hpp>
#include <qrt/bench/extra_runs.hpp>
#include <qrt/bench/harness.hpp>
#include <qrt/bench/machine.hpp>
#include <qrt/bench/report.hpp>
#include <qrt/metrics.hpp>
#include <qrt/qrt.hpp>
#include <sstream>

#include "commands.hpp"
#include "core/bounded_file.hpp"

namespace {

using namespace qrt;

constexpr int exit_failed = 1;
constexpr int exit_usage = 2;
constexpr int exit_target_missed = 3;         ///< bench --fail-on-miss
constexpr int exit_some_commands_failed = 3;  ///< process: a command failed or a settle was refused
constexpr int exit_regressed = 4;

// One line on stderr; bad input (usage, configuration, arguments) exits 2, the
// rest 1.
int report_error(const error& e) {
  // An error's text may carry what a server or a file said: escaped, like message contents, so
  // it cannot drive the terminal or forge log lines.
  std::cerr << "qrt: " << cli::printable_text(e.to_string()) << '\n';
  const bool bad_input = e.code == errc::configuration_error || e.code == errc::invalid_argument ||
                         e.code == errc::message_too_large;
  return bad_input ? exit_usage : exit_failed;
}

/// What a command names besides the provider.
enum class names {
  queue,                  ///< --queue Q (required)
  optional_queue,         ///< --queue Q, optional (bench)
  queue_or_subscription,  ///< --queue Q, or --topic T --subscription S (reading commands)
  none,                   ///< neither (the command adds its own, e.g. --topic)
};

// An empty value stands for "not given" in the flags' strings, so one given empty would be
// dropped without a word: an empty --endpoint would send to the provider's default (AWS
// itself rather than the emulator meant), an empty --session would read every session.
const CLI::Validator non_empty(
    [](std::string& value) {
      return value.empty() ? std::string("must not be empty") : std::string();
    },
    "NONEMPTY");

void add_provider_flags(CLI::App& cmd, cli::provider_flags& f, names n = names::queue) {
  cmd.add_option("--provider", f.provider, "memory | sqs | servicebus | amqp (or QRT_PROVIDER)")
      ->check(CLI::IsMember({"memory", "sqs", "servicebus", "amqp"}));
  if (n != names::none) {
    auto* q = cmd.add_option("--queue", f.queue, "queue name")->check(non_empty);
    if (n == names::queue) q->required();
  }
  if (n == names::queue_or_subscription) {
    cmd.add_option("--topic", f.topic, "with --subscription: read a topic's subscription")
        ->check(non_empty);
    cmd.add_option("--subscription", f.subscription, "the subscription of --topic to read")
        ->check(non_empty);
  }
  cmd.add_option("--endpoint", f.endpoint, "URL of an SQS endpoint or an AMQP broker")
      ->check(non_empty);
  cmd.add_option("--region", f.region, "AWS region (sqs)")->check(non_empty);
  cmd.add_option("--connection-string", f.connection_string,
                 "Service Bus connection string (never printed)")
      ->check(non_empty);
  cmd.add_option("--persistence-path", f.persistence_path,
                 "memory: keep queues in this directory, so separate runs share them "
                 "(required by every command but bench)")
      ->check(non_empty);
  cmd.add_option("--durability", f.durability,
                 "memory with --persistence-path: always (default) | interval | none")
      ->check(non_empty);
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

// The QRT_* environment, then the --config file and the flags over it; two variables that name
// one setting (QRT_REGION and QRT_Region) are refused before anything else is read.
result<config> configuration(const cli::provider_flags& flags) {
  auto environment = config::from_environment();
  if (!environment) return environment.error();
  return cli::build_config(flags, *environment);
}

struct opened {
  sync::queue_client client;
  queue_name queue;
};

// The provider is built before the store is checked, so that a mistake in its settings is
// reported as one.
result<sync::queue_client> open_client(const cli::provider_flags& flags) {
  auto cfg = configuration(flags);
  if (!cfg) return cfg.error();
  auto client = sync::queue_client::open(*cfg, builtin_providers());
  if (!client) return client.error();
  if (auto lasting = cli::require_lasting_queues(*cfg); !lasting) return lasting.error();
  return client;
}

// The queue (or subscription) is checked before the provider is built, so a usage error is
// reported as one.
result<opened> open(const cli::provider_flags& flags) {
  auto q = cli::queue_of(flags);
  if (!q) return q.error();
  auto c = open_client(flags);
  if (!c) return c.error();
  return opened{std::move(*c), *q};
}

result<topic_name> topic_of(const cli::provider_flags& flags) {
  if (flags.topic.empty()) return fail(errc::invalid_argument, "--topic T is required");
  return topic_name::parse(flags.topic);
}

std::string with_thousands(std::uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// ---- subcommands: each registers its flags with the parser and runs when it was chosen ----

// `send` to a queue, or `publish` to a topic: the same input options.
class send_command {
  static constexpr std::size_t largest_body = std::size_t{1} << 30;

 public:
  explicit send_command(CLI::App& app, bool publish = false)
      : publish_(publish),
        cmd_(publish ? app.add_subcommand("publish",
                                          "Publish a message to a topic: every subscription "
                                          "whose filter it matches gets a copy")
                     : app.add_subcommand("send", "Send a message")) {
    if (publish_) {
      add_provider_flags(*cmd_, flags_, names::none);
      cmd_->add_option("--topic", flags_.topic, "topic name")->required();
    } else {
      flags_.declares_queue = true;
      add_provider_flags(*cmd_, flags_);
    }
    body_opt_ = cmd_->add_option("--body", opts_.body, "message body (text)");
    body_file_opt_ =
        cmd_->add_option("--body-file", body_file_, "read the body (any bytes) from a file")
            ->check(CLI::ExistingFile);
    body_opt_->excludes(body_file_opt_);
    cmd_->add_option("--attribute", attributes_, "key=value user attribute (repeatable)");
    cmd_->add_option("--session", session_, "session id (ordered group)")->check(non_empty);
    cmd_->add_option("--correlation-id", opts_.correlation_id, "correlation id");
    cmd_->add_option("--subject", opts_.subject, "subject (what subscription filters match on)");
    cmd_->add_option("--content-type", opts_.content_type, "content type, e.g. application/json");
    cmd_->add_option("--count", opts_.count, "send the message this many times")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1'000'000'000}));
    add_output_flag(*cmd_, output_);
  }
  CLI::App* parser() const { return cmd_; }

  int run() {
    if (body_opt_->count() == 0 && body_file_opt_->count() == 0) {
      return report_error(fail(errc::invalid_argument,
                               std::string(cmd_->get_name()) + " needs --body or --body-file"));
    }
    if (!body_file_.empty()) {
      // Checked before anything is opened: no provider takes a message over 1 GiB, so a
      // larger file is refused by its size.
      std::error_code ec;
      const auto size = std::filesystem::file_size(body_file_, ec);
      if (!ec && size > largest_body) {
        return report_error(fail(errc::invalid_argument,
                                 "--body-file " + body_file_ + " is " + std::to_string(size) +
                                     " bytes; no provider accepts a message over " +
                                     std::to_string(largest_body) + " bytes"));
      }
    }
    for (const auto& a : attributes_) {
      auto kv = cli::parse_attribute(a);
      if (!kv) return report_error(kv.error());
      opts_.attributes[kv->first] = kv->second;
    }
    if (!session_.empty()) opts_.session = session_;
    opts_.output = format_of(output_);
    if (publish_) {
      auto topic = topic_of(flags_);
      if (!topic) return report_error(topic.error());
      auto c = open_client(flags_);
      if (!c) return report_error(c.error());
      if (auto b = read_body_file(*c); !b) return report_error(b.error());
      if (auto r = cli::publish(*c, *topic, opts_, std::cout); !r) return report_error(r.error());
      return 0;
    }
    auto o = open(flags_);
    if (!o) return report_error(o.error());
    if (auto b = read_body_file(o->client); !b) return report_error(b.error());
    if (auto r = cli::send(o->client, o->queue, opts_, std::cout); !r) {
      return report_error(r.error());
    }
    return 0;
  }

 private:
  // Read once the provider is open, and no more of it than the largest message the provider
  // takes: a pipe or a device (/dev/stdin, /dev/zero) has no size to check beforehand and may
  // never end, and reading it whole would exhaust memory first.
  result<void> read_body_file(sync::queue_client& client) {
    if (body_file_.empty()) return {};
    const std::size_t most = client.caps().max_message_bytes;
    const std::size_t limit = most == 0 ? largest_body : std::min<std::size_t>(most, largest_body);
    auto body = detail::read_file_at_most(body_file_, limit, "--body-file");
    if (!body && body.error().code == errc::message_too_large) {
      return fail(errc::message_too_large,
                  "--body-file " + body_file_ + " holds more than " + std::to_string(limit) +
                      " bytes, the largest message " +
                      std::string(client.async_client().provider_name()) + " takes");
    }
    if (!body) return body.error();
    opts_.body = std::move(*body);
    return {};
  }

  bool publish_;
  CLI::App* cmd_;
  cli::provider_flags flags_;
  cli::send_options opts_;
  std::string body_file_, output_ = "text", session_;
  std::vector<std::string> attributes_;
  CLI::Option* body_opt_ = nullptr;
  CLI::Option* body_file_opt_ = nullptr;
};

class receive_command {
 public:
  explicit receive_command(CLI::App& app)
      : cmd_(app.add_subcommand("receive", "Receive messages, print them, then complete them")) {
    add_provider_flags(*cmd_, flags_, names::queue_or_subscription);
    cmd_->add_option("--max", opts_.max, "most messages to receive (default 1)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}));
    cmd_->add_option("--wait", wait_, "seconds to wait for messages (default 5)");
    cmd_->add_flag("--no-complete", no_complete_,
                   "leave messages locked; they return to the queue when the lock expires");
    cmd_->add_option("--session", session_, "receive from this session only")->check(non_empty);
    add_output_flag(*cmd_, output_);
  }
  CLI::App* parser() const { return cmd_; }

  int run() {
    auto wait = seconds_flag(wait_, "--wait");
    if (!wait) return report_error(wait.error());
    opts_.wait = *wait;
    opts_.complete = !no_complete_;
    if (!session_.empty()) opts_.session = session_;
    opts_.output = format_of(output_);
    auto o = open(flags_);
    if (!o) return report_error(o.error());
    auto n = cli::receive(o->client, o->queue, opts_, std::cout);
    if (!n) return report_error(n.error());
    if (*n == 0 && opts_.output == cli::output_format::text) std::cerr << "qrt: no messages\n";
    return 0;
  }

 private:
  CLI::App* cmd_;
  cli::provider_flags flags_;
  cli::receive_options opts_;
  double wait_ = 5;
  std::string output_ = "text", session_;
  bool no_complete_ = false;
};

class peek_command {
 public:
  explicit peek_command(CLI::App& app)
      : cmd_(app.add_subcommand("peek", "Show messages without locking or removing them")) {
    add_provider_flags(*cmd_, flags_, names::queue_or_subscription);
    cmd_->add_option("--max", max_, "most messages to show (default 10)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}));
    cmd_->add_option("--from-sequence", from_, "start at this sequence number (default: oldest)");
    add_output_flag(*cmd_, output_);
  }
  CLI::App* parser() const { return cmd_; }

  int run() {
    // 0 means the oldest and sequence numbers only grow: a negative one names no message, and
    // peeking from the oldest instead would answer a question that was not asked. The client
    // refuses it too (src/core/peek_checks.hpp), for every caller, but only once a provider is
    // built, and naming its parameter: checked here as well, it is a usage error reported as
    // one, before the provider (as the queue name is, in open()), and naming the flag.
    if (from_ < 0) {
      return report_error(
          fail(errc::invalid_argument,
               "--from-sequence must be 0 (the oldest) or more, got " + std::to_string(from_)));
    }
    auto o = open(flags_);
    if (!o) return report_error(o.error());
    auto n = cli::peek(o->client, o->queue, max_, from_, format_of(output_), std::cout);
    if (!n) return report_error(n.error());
    return 0;
  }

 private:
  CLI::App* cmd_;
  cli::provider_flags flags_;
  std::size_t max_ = 10;
  std::int64_t from_ = 0;
  std::string output_ = "text";
};

// `dlq list` and `dlq replay`, under `dlq`.
class dlq_commands {
 public:
  explicit dlq_commands(CLI::App& app)
      : dlq_(app.add_subcommand("dlq", "Inspect or replay a queue's dead-letter queue")) {
    dlq_->require_subcommand(1);
    list_ = dlq_->add_subcommand("list",
                                 "Show dead-lettered messages (with reasons), not removing them");
    add_provider_flags(*list_, list_flags_, names::queue_or_subscription);
    list_->add_option("--max", list_max_, "most messages to show (default 10)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}));
    add_output_flag(*list_, output_);
    replay_ = dlq_->add_subcommand("replay",
                                   "Move dead-lettered messages back to the queue (send first, "
                                   "then remove from the DLQ)");
    add_provider_flags(*replay_, replay_flags_, names::queue_or_subscription);
    replay_->add_option("--max", replay_max_, "most messages to move (default 100)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}));
    replay_->add_option("--wait", wait_, "seconds to wait for the first message (default 1)");
  }
  CLI::App* list_parser() const { return list_; }
  CLI::App* replay_parser() const { return replay_; }

  int list() {
    auto o = open(list_flags_);
    if (!o) return report_error(o.error());
    auto n =
        cli::peek(o->client, o->queue.dead_letter(), list_max_, 0, format_of(output_), std::cout);
    if (!n) return report_error(n.error());
    return 0;
  }

  int replay() {
    auto wait = seconds_flag(wait_, "--wait");
    if (!wait) return report_error(wait.error());
    auto o = open(replay_flags_);
    if (!o) return report_error(o.error());
    auto n = cli::dlq_replay(o->client, o->queue, replay_max_, *wait, std::cout);
    if (!n) return report_error(n.error());
    std::cerr << "qrt: replayed " << *n << " message(s)\n";
    return 0;
  }

 private:
  CLI::App* dlq_;
  CLI::App* list_ = nullptr;
  CLI::App* replay_ = nullptr;
  cli::provider_flags list_flags_, replay_flags_;
  std::size_t list_max_ = 10, replay_max_ = 100;
  std::string output_ = "text";
  double wait_ = 1;
};

class stats_command {
 public:
  explicit stats_command(CLI::App& app)
      : cmd_(app.add_subcommand(
            "stats", "Show a queue's depth: active, in flight, scheduled, dead-lettered")) {
    add_provider_flags(*cmd_, flags_, names::queue_or_subscription);
    add_output_flag(*cmd_, output_);
  }
  CLI::App* parser() const { return cmd_; }

  int run() {
    auto o = open(flags_);
    if (!o) return report_error(o.error());
    if (auto r = cli::stats(o->client, o->queue, format_of(output_), std::cout); !r) {
      return report_error(r.error());
    }
    return 0;
  }

 private:
  CLI::App* cmd_;
  cli::provider_flags flags_;
  std::string output_ = "text";
};

class process_command {
 public:
  explicit process_command(CLI::App& app)
      : cmd_(app.add_subcommand("process",
                                "Run a worker: each message's body goes to a shell command's "
                                "stdin; exit 0 completes it, "
                                "any other status abandons it. Exits 3 when a command "
                                "failed or a settlement was refused")) {
    flags_.declares_queue = true;  // a worker may start before anything was sent
    add_provider_flags(*cmd_, flags_, names::queue_or_subscription);
    cmd_->add_option("--exec", opts_.command,
                     "shell command run per message (/bin/sh -c); message id, delivery "
                     "count, correlation id, session id, subject, content type and attributes "
                     "in QRT_MSG_* variables")
        ->required();
    // Neither takes 0: unset is what means "the default" and "no limit", and a 0 typed by
    // hand (meaning none) must not drain the queue.
    cmd_->add_option("--concurrency", opts_.concurrency,
                     "commands running at once (default: the configuration's "
                     "max_concurrent_calls, else 1)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1024}));
    cmd_->add_option("--max-messages", opts_.max_messages,
                     "handle this many messages, then stop; qrt takes no more than that from the "
                     "queue (default: no limit)")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1'000'000'000'000}));
    cmd_->add_option("--idle-exit", idle_exit_, "stop after this many seconds without a message");
    cmd_->add_option("--abandon-delay", abandon_delay_,
                     "seconds to hold a message whose command failed (lock renewed) before "
                     "giving it back, so a failing command is not rerun at once (default 0)");
    cmd_->add_option("--metrics-listen", opts_.metrics_listen,
                     "HOST:PORT to serve /metrics on while running");
    cmd_->add_option("--depth-interval", depth_interval_,
                     "with --metrics-listen: seconds between readings of the queue's depth "
                     "(default 5)");
  }
  CLI::App* parser() const { return cmd_; }

  int run() {
    if (abandon_delay_) {
      auto delay = seconds_flag(*abandon_delay_, "--abandon-delay");
      if (!delay) return report_error(delay.error());
      opts_.abandon_delay = *delay;
    }
    if (idle_exit_) {
      auto idle = seconds_flag(*idle_exit_, "--idle-exit");
      if (!idle) return report_error(idle.error());
      opts_.idle_exit = *idle;
    }
    if (depth_interval_) {
      auto interval = seconds_flag(*depth_interval_, "--depth-interval");
      if (!interval) return report_error(interval.error());
      opts_.depth_interval = *interval;
    }
    auto cfg = configuration(flags_);
    if (!cfg) return report_error(cfg.error());
    auto q = cli::queue_of(flags_);
    if (!q) return report_error(q.error());
    if (auto lasting = cli::require_lasting_queues(*cfg); !lasting)
      return report_error(lasting.error());
    auto r = cli::process(*cfg, *q, opts_, std::cerr);
    if (!r) return report_error(r.error());
    // Deliveries, not messages: one message whose command failed twice is counted twice.
    std::cerr << "qrt: ran the command for " << r->completed + r->failed
              << " deliveries: " << r->completed << " completed, " << r->failed << " failed";
    if (r->settle_failures > 0)
      std::cerr << "; " << r->settle_failures
                << " settlement(s) refused by the provider (those messages come back)";
    std::cerr << '\n';
    // A run whose commands failed is not a success, for a script or a supervisor to see.
    return r->failed > 0 || r->settle_failures > 0 ? exit_some_commands_failed : 0;
  }

 private:
  CLI::App* cmd_;
  cli::provider_flags flags_;
  cli::process_options opts_;
  std::optional<double> idle_exit_;  // unset: no idle exit; a negative value is refused
  std::optional<double> abandon_delay_;
  std::optional<double> depth_interval_;  // unset: process_options' default
};

// `queue create|delete Q` and `topic create|delete T`: a name, made or removed.
template <class Name>
class create_delete_commands {
 public:
  struct kind {
    const char* noun;  ///< the subcommand and the positional's name: "queue", "topic"
    const char* about;
    const char* create_about;
    const char* delete_about;
    result<Name> (*parse)(const std::string&);
    result<void> (*create)(sync::queue_client&, const Name&, std::ostream&);
    result<void> (*remove)(sync::queue_client&, const Name&, std::ostream&);
  };

  create_delete_commands(CLI::App& app, const kind& k)
      : kind_(k), group_(app.add_subcommand(k.noun, k.about)) {
    group_->require_subcommand(1);
    create_ = group_->add_subcommand("create", k.create_about);
    delete_ = group_->add_subcommand("delete", k.delete_about);
    for (auto* cmd : {create_, delete_}) {
      add_provider_flags(*cmd, flags_, names::none);
      // The name as every other command takes it (--queue Q, --topic T) or, shorter, as the
      // one positional argument.
      cmd->add_option(std::string(k.noun) + ",--" + k.noun, name_,
                      std::string(k.noun) + " name (or --" + k.noun + " NAME)")
          ->required();
    }
  }
  CLI::App* create_parser() const { return create_; }
  CLI::App* delete_parser() const { return delete_; }

  int run(bool create) {
    auto name = kind_.parse(name_);
    if (!name) return report_error(name.error());
    auto c = open_client(flags_);
    if (!c) return report_error(c.error());
    auto r = (create ? kind_.create : kind_.remove)(*c, *name, std::cout);
    return r ? 0 : report_error(r.error());
  }

 private:
  kind kind_;
  CLI::App* group_;
  CLI::App* create_ = nullptr;
  CLI::App* delete_ = nullptr;
  std::string name_;
  cli::provider_flags flags_;  // one set: only one of the two subcommands runs
};

const create_delete_commands<queue_name>::kind queue_kind{
    "queue",
    "Create or delete a queue",
    "Create a queue (an existing one is kept)",
    "Delete a queue with its messages",
    [](const std::string& n) { return queue_name::parse(n); },
    cli::create_queue,
    cli::delete_queue};

const create_delete_commands<topic_name>::kind topic_kind{
    "topic",
    "Create or delete a topic",
    "Create a topic (nothing happens if it exists)",
    "Delete a topic with its subscriptions",
    [](const std::string& n) { return topic_name::parse(n); },
    cli::create_topic,
    cli::delete_topic};

// `subscription create|delete|list --topic T [--subscription S] [--filter-...]`.
class subscription_commands {
 public:
  explicit subscription_commands(CLI::App& app)
      : sub_(app.add_subcommand("subscription", "Create, delete or list a topic's subscriptions")) {
    sub_->require_subcommand(1);
    create_ = sub_->add_subcommand(
        "create", "Create a subscription; with filters it gets only the messages that match");
    delete_ = sub_->add_subcommand("delete", "Delete a subscription with its messages");
    list_ = sub_->add_subcommand("list", "List a topic's subscriptions and their filters");
    for (auto* cmd : {create_, delete_, list_}) {
      add_provider_flags(*cmd, flags_, names::none);
      cmd->add_option("--topic", flags_.topic, "topic name")->required();
    }
    for (auto* cmd : {create_, delete_}) {
      cmd->add_option("--subscription", flags_.subscription, "subscription name")->required();
    }
    create_->add_option("--filter-subject", subject_, "only messages with this subject");
    create_->add_option("--filter-attribute", attributes_,
                        "only messages with this attribute, as key=value (repeatable: all must "
                        "match)");
    add_output_flag(*list_, output_);
  }
  CLI::App* create_parser() const { return create_; }
  CLI::App* delete_parser() const { return delete_; }
  CLI::App* list_parser() const { return list_; }

  int create() {
    subscription_filter filter;
    if (!subject_.empty()) filter.subject = subject_;
    for (const auto& a : attributes_) {
      auto kv = cli::parse_attribute(a);
      if (!kv) return report_error(kv.error());
      filter.attributes[kv->first] = kv->second;
    }
    auto o = open(flags_);
    if (!o) return report_error(o.error());
    auto r = cli::create_subscription(o->client, o->queue, filter, std::cout);
    return r ? 0 : report_error(r.error());
  }
  int remove() {
    auto o = open(flags_);
    if (!o) return report_error(o.error());
    auto r = cli::delete_subscription(o->client, o->queue, std::cout);
    return r ? 0 : report_error(r.error());
  }
  int list() {
    auto topic = topic_of(flags_);
    if (!topic) return report_error(topic.error());
    auto c = open_client(flags_);
    if (!c) return report_error(c.error());
    auto n = cli::list_subscriptions(*c, *topic, format_of(output_), std::cout);
    if (!n) return report_error(n.error());
    if (*n == 0 && format_of(output_) == cli::output_format::text) {
      std::cerr << "qrt: no subscriptions\n";
    }
    return 0;
  }

 private:
  CLI::App* sub_;
  CLI::App* create_ = nullptr;
  CLI::App* delete_ = nullptr;
  CLI::App* list_ = nullptr;
  cli::provider_flags flags_;
  std::string subject_, output_ = "text";
  std::vector<std::string> attributes_;
};

// `bench compare`, under `bench`.
class compare_command {
 public:
  explicit compare_command(CLI::App& bench)
      : cmd_(bench.add_subcommand("compare",
                                  "Compare two benchmark reports: each figure side by side with "
                                  "its change, regressions\n"
                                  "(throughput down, latency, CPU per message, memory or errors "
                                  "up) beyond a threshold "
                                  "flagged")) {
    cmd_->add_option("old", old_, "the earlier run's report.json (or its directory)")->required();
    cmd_->add_option("new", new_, "the later run's report.json (or its directory)")->required();
    cmd_->add_option("--threshold", threshold_,
                     "percent a figure may get worse before it is a regression (default 10)");
    cmd_->add_flag("--fail-on-regression", fail_on_regression_, "exit 4 when any figure regressed");
    cmd_->add_option("--out", out_, "write compare.html (a chart of the changes) here");
  }
  CLI::App* parser() const { return cmd_; }

  int run() {
    if (!(threshold_ >= 0 && threshold_ < 1e6)) {
      return report_error(
          fail(errc::invalid_argument, "--threshold must be a percentage of 0 or more"));
    }
    auto old_run = bench::load_report_figures(old_);
    if (!old_run) return report_error(old_run.error());
    auto new_run = bench::load_report_figures(new_);
    if (!new_run) return report_error(new_run.error());
    const auto c = bench::compare_reports(*old_run, *new_run, threshold_ / 100);
    std::cout << bench::format_comparison(c);
    std::cout.flush();
    if (!out_.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(out_, ec);
      const auto path = (std::filesystem::path(out_) / "compare.html").string();
      std::ofstream html(path, std::ios::binary);
      html << bench::render_comparison_html(c);
      if (ec || !html.good()) {
        return report_error(fail(errc::invalid_argument, "cannot write " + path));
      }
      std::cerr << "qrt: comparison chart written to " << path << '\n';
    }
    if (fail_on_regression_ && c.any_regression()) {
      std::cerr << "qrt: " << c.regressions().size() << " figure(s) regressed\n";
      return exit_regressed;
    }
    return 0;
  }

 private:
  CLI::App* cmd_;
  std::string old_, new_, out_;
  double threshold_ = 10;
  bool fail_on_regression_ = false;
};

class bench_command {
  static constexpr std::size_t most_workers = 1024;
  static constexpr std::size_t largest_batch = 1'000'000;
  static constexpr std::int64_t an_hour_us = std::int64_t{3'600} * 1'000'000;
  /// The scaling run's receive + settle round trip (twice the latency) fits in its window.
  static inline const std::int64_t longest_scaling_latency_ms =
      (std::chrono::milliseconds(bench::scaling_options{}.window).count() - 1) / 2;

 public:
  // `command_line`: the command as run, secrets hidden, for the report's history.
  bench_command(CLI::App& app, std::string command_line)
      : command_line_(std::move(command_line)),
        cmd_(app.add_subcommand("bench",
                                "Measure throughput, latency, CPU and memory "
                                "of a provider (default: the embedded one),\n"
                                "against a raw lock-free queue in the same "
                                "run, and check performance targets")) {
    flags_.provider = "";
    flags_.queue = "qrt-bench";
    add_provider_flags(*cmd_, flags_, names::optional_queue);
    cmd_->get_option("--queue")->description(
        "queue name (default qrt-bench): made when missing and then deleted at the end; an "
        "existing queue is used and kept, and must be empty (every message on it is received and "
        "completed, so one holding messages is refused)");
    // Every count and time has a range: CLI11 reads "-1" or a number past the type's largest
    // into an unsigned as its largest value (a run that never ends, 2^64 producers), and a
    // time past its range overflows once converted to nanoseconds.
    cmd_->add_option("--messages", bo_.messages, "messages to send (default 100000)")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1'000'000'000'000}));
    cmd_->add_option("--duration", duration_text_,
                     "sustained mode: send for this long (30s, 5m, 1h)");
    cmd_->add_option("--rate", rate_,
                     "messages/s over all producers (default: as fast as possible)");
    cmd_->add_option("--size", bo_.message_size,
                     "body bytes per message (default 256, at least 16)");
    cmd_->add_option("--producers", bo_.producers, "concurrent producers (default 1)")
        ->check(CLI::Range(std::size_t{1}, most_workers));
    cmd_->add_option("--consumers", bo_.consumers, "concurrent consumers (default 1)")
        ->check(CLI::Range(std::size_t{1}, most_workers));
    cmd_->add_option("--batch", batch_, "messages per send and per receive call (sets both)");
    cmd_->add_option("--send-batch", bo_.send_batch, "messages per send call (default 10)")
        ->check(CLI::Range(std::size_t{1}, largest_batch));
    cmd_->add_option("--receive-batch", bo_.receive_batch, "messages per receive call (default 10)")
        ->check(CLI::Range(std::size_t{1}, largest_batch));
    cmd_->add_option("--threads", threads_, "threads running the provider (default: cores)");
    cmd_->add_option("--handler-cost", handler_cost_us_,
                     "microseconds of CPU each message's handler burns (default 0)")
        ->check(CLI::Range(std::int64_t{0}, an_hour_us));
    cmd_->add_option("--sessions", bo_.sessions,
                     "session mode: spread the messages over this many session ids; consumers "
                     "take sessions and read each until it is idle (the provider needs sessions)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{100'000}));
    cmd_->add_option("--session-idle-wait", session_idle_wait_ms_,
                     "with --sessions: ms a held session may have nothing before it is released "
                     "(default 10)")
        ->check(CLI::Range(std::int64_t{1}, std::int64_t{60'000}));
    cmd_->add_option("--session-hold", session_hold_ms_,
                     "with --sessions: ms a busy session is held before it is released after "
                     "its batch, so other sessions get a turn (default 0: until idle)")
        ->check(CLI::Range(std::int64_t{0}, std::int64_t{3'600'000}));
    cmd_->add_flag("--no-baseline", no_baseline_, "skip the raw-queue baseline");
    cmd_->add_option("--repeat", repeat_,
                     "rounds of provider + baseline, and of the half-rate run; the "
                     "median round of each is reported (default 1)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{100}));
    cmd_->add_flag("--half-rate", half_rate_,
                   "also run at half the measured rate, then the raw queue at that pace, "
                   "and report both runs' latency");
    cmd_->add_flag("--scaling", scaling_,
                   "also run the consumer scaling benchmark (1..32 consumers)");
    cmd_->add_option("--scaling-latency", scaling_latency_ms_,
                     "ms added to each provider call when scaling (default 10)")
        ->check(CLI::Range(std::int64_t{1}, longest_scaling_latency_ms));
    cmd_->add_option("--scaling-max", scaling_max_, "most consumers when scaling (default 32)")
        ->check(CLI::Range(std::size_t{1}, most_workers));
    cmd_->add_option("--overhead", overhead_us_,
                     "also measure client overhead with a handler of this many microseconds")
        ->check(CLI::Range(std::int64_t{0}, an_hour_us));
    // At most 2^29: the overhead run prefills its queue, and makes room for twice the count in
    // the embedded provider's max_queue_size, whose range ends at 2^30. More was refused only
    // after the main run, by a setting the user never gave.
    cmd_->add_option("--overhead-messages", overhead_messages_,
                     "messages for --overhead (default 2000, at most 536870912)")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 29));
    // At most 8 GiB: the run bounds the queue's count by budget / message size as well, and
    // that must stay within max_queue_size's range (2^30) for the smallest message (16 bytes).
    cmd_->add_option("--memory-budget", memory_budget_,
                     "also fill a queue of the embedded provider held to this many bytes "
                     "(max_memory_bytes) and report resident memory against it")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{8} << 30));
    cmd_->add_option("--outage", outage_text_,
                     "also run paced (--rate, else half the measured rate) through an outage "
                     "this long (2s, 500ms): every provider call fails until it ends; reports "
                     "the time back to 90% of the offered rate");
    cmd_->add_option("--targets", targets_file_, "performance targets YAML (format: ADR 0071)")
        ->check(CLI::ExistingFile);
    cmd_->add_option("--environment", environment_,
                     "which targets: production (default) or development")
        ->check(CLI::IsMember({"production", "development"}));
    cmd_->add_flag("--fail-on-miss", fail_on_miss_, "exit 3 when a target is missed");
    cmd_->add_option("--report-dir", report_dir_, "write report.json and chart.html here");
    cmd_->add_flag("--metrics", with_metrics_,
                   "instrument the provider and write the Prometheus "
                   "exposition (metrics.prom in "
                   "--report-dir, else after the table)");
    add_output_flag(*cmd_, output_);
  }
  CLI::App* parser() const { return cmd_; }

  int run() {
    if (flags_.provider.empty() && !std::getenv("QRT_PROVIDER") && flags_.config_file.empty()) {
      flags_.provider = "memory";
    }
    // The harness creates its own queue; the embedded provider needs none at
    // start.
    cli::provider_flags without_queue = flags_;
    without_queue.queue.clear();
    auto cfg = configuration(without_queue);
    if (!cfg) return report_error(cfg.error());
    bo_.provider_config = *cfg;
    bo_.queue = flags_.queue;
    if (!duration_text_.empty()) {
      auto d = parse_duration(duration_text_);
      if (!d)
        return report_error(
            fail(errc::invalid_argument,
                 "--duration '" + duration_text_ + "' is not a duration like 30s, 5m or 1h"));
      bo_.duration = *d;
    }
    // Zero is what the options hold for "not given"; given explicitly it is refused by name
    // rather than read as the default.
    if (batch_) {
      if (*batch_ == 0 || *batch_ > largest_batch) {
        return report_error(fail(errc::invalid_argument, "--batch must be >= 1 and at most " +
                                                             std::to_string(largest_batch)));
      }
      bo_.send_batch = bo_.receive_batch = *batch_;
    }
    if (rate_) {
      // Bounded on both sides: below, the time a batch is due (its index / rate) overflows the
      // clock and pacing is silently lost; above, the report's figures overflow.
      if (!(*rate_ >= 0.001 && *rate_ <= 1e9)) {
        return report_error(fail(errc::invalid_argument,
                                 "--rate must be a positive number of messages/s from 0.001 to "
                                 "1000000000 (leave it out for as fast as possible)"));
      }
      bo_.rate = *rate_;
    }
    if (threads_) {
      if (*threads_ == 0 || *threads_ > 1024)
        return report_error(fail(errc::invalid_argument, "--threads must be 1 to 1024"));
      bo_.threads = *threads_;
    }
    bo_.handler_cost = std::chrono::microseconds(handler_cost_us_);
    bo_.session_idle_wait = milliseconds(session_idle_wait_ms_);
    bo_.session_hold = milliseconds(session_hold_ms_);
    std::optional<bench::performance_targets> targets;
    if (!targets_file_.empty()) {
      auto t = bench::load_targets(targets_file_, environment_);
      if (!t) return report_error(t.error());
      targets = *t;
    }
    const bool tty = ::isatty(STDERR_FILENO) == 1;
    if (tty) {
      bo_.on_progress = [](const bench::progress& p) {
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

    // What the extra runs and the report directory would refuse only after the main run is
    // refused now, before anything is measured: a run is not lost for a setting.
    bench::scaling_options so;
    so.base = bo_;
    so.base.on_progress = nullptr;
    so.injected_latency = milliseconds(scaling_latency_ms_);
    so.max_consumers = scaling_max_;
    if (scaling_) {
      if (auto v = bench::validate_scaling(so); !v) return report_error(v.error());
    }
    if (overhead_us_ > 0) {
      if (auto v = bench::validate_overhead(bo_, overhead_messages_); !v) {
        return report_error(v.error());
      }
    }
    std::optional<milliseconds> outage;
    if (!outage_text_.empty()) {
      auto d = parse_duration(outage_text_);
      if (!d || d->count() <= 0 || *d > std::chrono::hours(1)) {
        return report_error(fail(
            errc::invalid_argument,
            "--outage '" + outage_text_ + "' is not a duration from 1ms to 1h like 2s or 500ms"));
      }
      outage = std::chrono::duration_cast<milliseconds>(*d);
    }
    if (memory_budget_ > 0 && bo_.provider_config.get("provider") != "memory") {
      return report_error(fail(errc::invalid_argument,
                               "--memory-budget is for the embedded provider (--provider memory)"));
    }
    if (memory_budget_ > 0) {
      if (auto v = bench::validate_memory_budget(bo_, memory_budget_); !v) {
        return report_error(v.error());
      }
    }
    // The directories made for the report go again, while still empty, when the run fails.
    struct made_for_the_report {
      std::filesystem::path dir, topmost;  // the report's, the first that had to be made
      ~made_for_the_report() {
        std::error_code ec;
        for (auto p = dir; !topmost.empty() && std::filesystem::remove(p, ec); p = p.parent_path())
          if (p == topmost) break;
      }
    } made;
    if (!report_dir_.empty()) {
      made.dir = std::filesystem::path(report_dir_).lexically_normal();
      if (!made.dir.has_filename()) made.dir = made.dir.parent_path();  // "reports/now/"
      std::error_code ec;
      for (auto p = made.dir; !p.empty() && p != p.parent_path(); p = p.parent_path()) {
        if (std::filesystem::exists(p, ec)) break;
        made.topmost = p;
      }
      if (auto ready = bench::prepare_report_dir(report_dir_); !ready) {
        return report_error(ready.error());
      }
    }

    metrics::registry metric_registry;
    metrics::runtime_metrics runtime_metrics(metric_registry);
    if (with_metrics_) bo_.metrics = &runtime_metrics;

    // Each round runs the provider, then the raw queue; with --repeat the
    // round with the median ratio is reported (a shared machine makes single
    // rounds noisy).
    const bool with_baseline = !no_baseline_ && bo_.provider_config.get("provider") == "memory";
    // The machine's level before and after (a virtual machine's vCPUs move between host cores
    // within seconds): the report says which one its figures were measured at.
    const auto round_trip_before = bench::cross_cpu_round_trip_ns();
    std::vector<bench::report> rounds;
    for (std::size_t round = 0; round < std::max<std::size_t>(repeat_, 1); ++round) {
      auto run = bench::run_benchmark(bo_);
      clear_progress();
      if (!run) return report_error(run.error());
      bench::report r;
      r.run = std::move(*run);
      if (with_baseline) {
        auto base_opts = bo_;
        base_opts.messages = std::max<std::uint64_t>(r.run.messages_sent, 1);
        base_opts.duration.reset();
        r.baseline = bench::run_baseline(base_opts);
      }
      rounds.push_back(std::move(r));
    }
    std::vector<double> ratios;
    for (const auto& r : rounds)
      ratios.push_back(with_baseline ? r.baseline_ratio() : r.run.e2e_throughput);
    bench::report rep = std::move(rounds[bench::median_index(ratios)]);
    if (rounds.size() > 1) rep.round_ratios = ratios;

    // An extra run that fails does not throw the main run away: the runs after it are skipped,
    // the table and report of what was measured are written, then its error is reported.
    bench::extra_runs extras;
    extras.half_rate = half_rate_;
    extras.rounds = std::max<std::size_t>(repeat_, 1);
    extras.with_baseline = with_baseline;
    extras.after_half_rate_round = clear_progress;
    if (scaling_) extras.scaling = so;
    extras.overhead_handler_cost = std::chrono::microseconds(overhead_us_);
    extras.overhead_messages = overhead_messages_;
    extras.memory_budget = memory_budget_;
    extras.outage = outage;
    const std::optional<error> extra_failed = bench::run_extra_runs(rep, bo_, extras);
    rep.cross_cpu_round_trip_before_ns = round_trip_before;
    rep.cross_cpu_round_trip_after_ns = bench::cross_cpu_round_trip_ns();
    rep.available_memory = bench::memory_available();
    rep.load_average = bench::read_load_average();
    rep.finished_at = bench::utc_now();
    rep.command = command_line_;
    if (targets) {
      rep.checks = bench::check_targets(*targets, rep.run, rep.memory_budget, rep.outage,
                                        rep.available_memory);
      rep.targets_environment = targets->environment;
    }

    if (output_ == "json") {
      std::cout << bench::to_json(rep) << '\n';
    } else {
      std::cout << bench::format_table(rep);
    }
    if (with_metrics_ && report_dir_.empty()) std::cout << '\n' << metric_registry.expose();
    std::cout.flush();
    if (!std::cout) return report_error(fail(errc::provider_error, "cannot write the output"));
    if (!report_dir_.empty()) {
      if (auto w = bench::write_report_dir(rep, report_dir_); !w) return report_error(w.error());
      if (with_metrics_) {
        std::ofstream prom(report_dir_ + "/metrics.prom", std::ios::binary);
        prom << metric_registry.expose();
        if (!prom.good()) {
          return report_error(
              fail(errc::invalid_argument, "cannot write " + report_dir_ + "/metrics.prom"));
        }
      }
      std::cerr << "qrt: report written to " << report_dir_ << "/report.json and " << report_dir_
                << "/chart.html\n";
    }
    if (extra_failed) return report_error(*extra_failed);
    if (fail_on_miss_ && bench::any_miss(rep.checks)) {
      std::cerr << "qrt: a performance target was missed\n";
      return exit_target_missed;
    }
    return 0;
  }

 private:
  std::string command_line_;
  CLI::App* cmd_;
  cli::provider_flags flags_;
  bench::bench_options bo_;
  std::string duration_text_, outage_text_, targets_file_, environment_, report_dir_,
      output_ = "text";
  std::optional<std::size_t> batch_;
  std::optional<double> rate_;
  std::optional<std::size_t> threads_;
  bool fail_on_miss_ = false, no_baseline_ = false, scaling_ = false, half_rate_ = false;
  std::int64_t handler_cost_us_ = 0, overhead_us_ = 0, scaling_latency_ms_ = 10,
               session_idle_wait_ms_ = 10, session_hold_ms_ = 0;
  std::uint64_t memory_budget_ = 0;
  std::uint64_t overhead_messages_ = 2000;
  std::size_t scaling_max_ = 32;
  std::size_t repeat_ = 1;
  bool with_metrics_ = false;
};

/// A chosen subcommand's parser, and what runs it.
struct dispatch_entry {
  CLI::App* parser;
  std::function<int()> run;
};

}  // namespace

int main(int argc, char** argv) {
  // A standard descriptor left closed (qrt receive >&-) would be the number the next open()
  // returns: the store's LOCK file or a segment would become stdout, and a message printed into
  // it counted as written, then completed and lost. Each closed one is held by /dev/null opened
  // read-only, so that writing to it fails as writing to a closed descriptor does. A closed
  // stdin is closed again once the others are held: it is only read as --body-file /dev/stdin,
  // which must then fail as a missing file, not read as an empty body.
  bool stdin_closed = false;
  for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; ++fd) {
    if (::fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
      if (::open("/dev/null", O_RDONLY) != fd) return exit_failed;
      stdin_closed = stdin_closed || fd == STDIN_FILENO;
    }
  }
  if (stdin_closed) ::close(STDIN_FILENO);
  // A reader that goes away (`qrt receive | head`) must fail the write, not kill qrt: killed, a
  // receive or dlq replay could not give back what it had not written, which a service then
  // keeps locked until the lock expires, and a script would see no error line.
  ::signal(SIGPIPE, SIG_IGN);
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
      "--queue orders\n"
      "  qrt publish --provider memory --persistence-path /tmp/q --topic events --body hi\n"
      "  qrt receive --provider memory --persistence-path /tmp/q --topic events "
      "--subscription audit\n"};
  app.name("qrt");
  app.require_subcommand(1);

  // Registered in the order `qrt --help` lists them.
  send_command send(app);
  send_command publish(app, true);
  receive_command receive(app);
  peek_command peek(app);
  dlq_commands dlq(app);
  stats_command stats(app);
  process_command process(app);
  create_delete_commands<queue_name> queues(app, queue_kind);
  create_delete_commands<topic_name> topic(app, topic_kind);
  subscription_commands subscription(app);
  bench_command benchmark(
      app, cli::command_line_without_secrets(std::vector<std::string>(argv, argv + argc)));
  compare_command compare(*benchmark.parser());

  // The first entry whose parser was chosen runs: `bench compare` before `bench`, which is
  // chosen with it.
  const dispatch_entry commands[] = {
      {send.parser(), [&] { return send.run(); }},
      {publish.parser(), [&] { return publish.run(); }},
      {receive.parser(), [&] { return receive.run(); }},
      {peek.parser(), [&] { return peek.run(); }},
      {dlq.list_parser(), [&] { return dlq.list(); }},
      {dlq.replay_parser(), [&] { return dlq.replay(); }},
      {process.parser(), [&] { return process.run(); }},
      {stats.parser(), [&] { return stats.run(); }},
      {queues.create_parser(), [&] { return queues.run(true); }},
      {queues.delete_parser(), [&] { return queues.run(false); }},
      {topic.create_parser(), [&] { return topic.run(true); }},
      {topic.delete_parser(), [&] { return topic.run(false); }},
      {subscription.create_parser(), [&] { return subscription.create(); }},
      {subscription.delete_parser(), [&] { return subscription.remove(); }},
      {subscription.list_parser(), [&] { return subscription.list(); }},
      {compare.parser(), [&] { return compare.run(); }},
      {benchmark.parser(), [&] { return benchmark.run(); }},
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    std::cerr << "qrt: " << cli::printable_text(msg) << " (see qrt --help)\n";
    return exit_usage;
  }

  try {
    for (const auto& command : commands) {
      if (command.parser->parsed()) return command.run();
    }
  } catch (const qrt::exception& e) {
    return report_error(e.get());
  } catch (const std::exception& e) {
    std::cerr << "qrt: " << e.what() << '\n';
    return exit_failed;
  }
  return exit_usage;
}
