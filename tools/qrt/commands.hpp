// The qrt CLI's commands, separate from argument parsing so tests run them in-process against
// a real provider and read what they print.
#pragma once

#include <iosfwd>
#include <map>
#include <optional>
#include <qrt/config.hpp>
#include <qrt/sync_client.hpp>
#include <string>
#include <vector>

namespace qrt::cli {

/// Provider selection shared by every command. Flags override the --config file, which
/// overrides QRT_* environment variables.
struct provider_flags {
  std::string provider;
  std::string queue;
  std::string topic;         ///< a topic, or with `subscription` one of its subscriptions
  std::string subscription;  ///< read instead of a queue (with `topic`)
  std::string endpoint;
  std::string region;
  std::string connection_string;
  std::string persistence_path;  ///< memory: persist to this directory (one process at a time)
  std::string durability;        ///< memory with persistence: always | interval | none
  std::string config_file;
  std::vector<std::string> settings;  ///< --set key=value
  /// The command puts work on the queue or waits for it (send, process): for the embedded
  /// provider the queue is created if it is missing. Commands that read what is there (receive,
  /// peek, stats, dlq) leave it false, so that a mistyped name fails as queue_not_found instead
  /// of creating an empty queue in the store.
  bool declares_queue = false;
};

/// The merged configuration (the file, then --set, then the flags over the environment).
result<config> build_config(const provider_flags& flags, const config& environment);

/// Fails for the embedded provider without persistence: its queues live inside this process,
/// so a message a command sends is gone when the command exits and a receive can only find an
/// empty queue. Every command but `bench` (which runs its own producers and consumers) needs a
/// store that outlives it.
result<void> require_lasting_queues(const config& cfg);

enum class output_format { text, json };

struct send_options {
  std::string body;
  std::map<std::string, std::string> attributes;
  std::optional<std::string> session;
  std::string correlation_id;
  std::string subject;  ///< what subscription filters match on (and Service Bus's label)
  std::string content_type;
  std::uint64_t count = 1;
  output_format output = output_format::text;
};

struct receive_options {
  std::size_t max = 1;
  milliseconds wait{5000};
  bool complete = true;
  std::optional<std::string> session;
  output_format output = output_format::text;
};

/// The queue a reading command reads: --queue Q, or --topic T --subscription S (the
/// subscription, read as a queue); exactly one of the two forms, else invalid_argument.
result<queue_name> queue_of(const provider_flags& flags);

/// "key=value" -> {key, value}; the key must be non-empty.
result<std::pair<std::string, std::string>> parse_attribute(std::string_view text);

std::string base64_encode(std::string_view bytes);
/// The command line as run (`args` from argv[0]), for a benchmark report's history, with the
/// values that may hold secrets replaced by "<redacted>" as configuration errors show them
/// (config::printable_value): a connection string, a --set of a secret setting
/// (config::is_secret_key), a URL's user and password.
std::string command_line_without_secrets(const std::vector<std::string>& args);
/// `text` safe to print on a terminal: control characters (ESC, CR, BEL, ...), DEL, C1 controls
/// and bytes that are not UTF-8 become visible escapes (\x1b, \r, \u009b), so a message cannot
/// move the cursor, rewrite earlier lines or drive the terminal. Newlines and tabs are kept only
/// when `multiline` (a body printed on its own lines); valid UTF-8 is kept as it is. For exact
/// bytes use --output json.
std::string printable_text(std::string_view text, bool multiline = false);
/// One line of JSON: id, body_base64, attributes, session_id, correlation_id, subject,
/// content_type, delivery_count, enqueued_time (ISO 8601 UTC), plus sequence_number and, in a DLQ,
/// dead_letter_reason. A text field that is not UTF-8 is written as `<field>_base64` instead, and
/// an attribute whose name or value is not goes to `attributes_base64` (`name_base64`,
/// `value_base64`): the line stays valid JSON and carries the exact bytes.
std::string message_json(const received_message& m);
/// `{"attributes": {...}}`, plus `"attributes_base64"` for pairs that are not UTF-8: the
/// attributes' part of message_json, exact for any bytes.
std::string attributes_json(const std::map<std::string, std::string>& attributes);
/// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
/// U+10FFFF).
bool is_utf8(std::string_view text);

// Every command writes to `out` and flushes it before it settles anything that depends on the
// output: when writing fails (a full disk, a closed pipe), what is left is abandoned (it stays in
// the queue) and the command fails naming the write error.

result<void> send(sync::queue_client& c, const queue_name& q, const send_options& o,
                  std::ostream& out);
/// As send, to every subscription of `t` (qrt publish); prints "published <id>".
result<void> publish(sync::queue_client& c, const topic_name& t, const send_options& o,
                     std::ostream& out);
result<void> create_queue(sync::queue_client& c, const queue_name& q, std::ostream& out);
result<void> delete_queue(sync::queue_client& c, const queue_name& q, std::ostream& out);
result<void> create_topic(sync::queue_client& c, const topic_name& t, std::ostream& out);
result<void> delete_topic(sync::queue_client& c, const topic_name& t, std::ostream& out);
result<void> create_subscription(sync::queue_client& c, const queue_name& s,
                                 const subscription_filter& filter, std::ostream& out);
result<void> delete_subscription(sync::queue_client& c, const queue_name& s, std::ostream& out);
/// One line per subscription: its name and filter (JSON: subscription, subject, attributes; a
/// subject or attribute that is not UTF-8 as in message_json, `subject_base64`,
/// `attributes_base64`).
result<std::size_t> list_subscriptions(sync::queue_client& c, const topic_name& t, output_format f,
                                       std::ostream& out);

/// Prints each message and flushes, then completes it unless o.complete is false; a message is
/// completed only once its output was written. Returns how many.
result<std::size_t> receive(sync::queue_client& c, const queue_name& q, const receive_options& o,
                            std::ostream& out);
result<std::size_t> peek(sync::queue_client& c, const queue_name& q, std::size_t max,
                         std::int64_t from_sequence, output_format f, std::ostream& out);
/// Moves up to `max` messages from q's dead-letter queue back to q: each is sent first and only
/// then completed in the DLQ, so a failure leaves it in the DLQ (at worst sent twice). On any
/// failure the messages received but not yet moved are abandoned: they stay in the DLQ. A
/// subscription cannot be sent to (only its topic, which would reach every subscription), so
/// for one it refuses with invalid_argument before receiving anything.
result<std::size_t> dlq_replay(sync::queue_client& c, const queue_name& q, std::size_t max,
                               milliseconds wait, std::ostream& out);
result<void> stats(sync::queue_client& c, const queue_name& q, output_format f, std::ostream& out);

/// `qrt process`: a worker that runs a shell command per message.
struct process_options {
  std::string command;  ///< run as `/bin/sh -c command` for each message
  /// Commands running at once; 0: the configuration's max_concurrent_calls (its preset's), else 1.
  std::size_t concurrency = 0;
  std::uint64_t max_messages = 0;         ///< stop after this many were processed; 0: no limit
  std::optional<milliseconds> idle_exit;  ///< stop after this long without a processed message
  milliseconds abandon_delay{0};          ///< hold a failed message this long before giving it back
  std::string metrics_listen;             ///< "host:port": serve /metrics and /health while running
  /// With metrics_listen: how often the queue's depth (queue_runtime_queue_depth) is read.
  milliseconds depth_interval{5'000};
};
/// What a `qrt process` run did.
struct process_report {
  std::uint64_t completed = 0;  ///< the command exited 0 and the message was completed
  std::uint64_t failed = 0;     ///< the command failed: abandoned (or dead-lettered)
  std::uint64_t settle_failures = 0;
  std::string metrics;  ///< the metrics' exposition (Prometheus text) when the run ended
};
/// The environment `qrt process` runs its command in: qrt's own without any QRT_MSG_* variable,
/// then QRT_MSG_ID, QRT_MSG_DELIVERY_COUNT and, when the message has them,
/// QRT_MSG_CORRELATION_ID, QRT_MSG_SESSION_ID, QRT_MSG_SUBJECT, QRT_MSG_CONTENT_TYPE; one
/// QRT_MSG_ATTR_<NAME> per attribute (the name upper-cased, other characters than letters and
/// digits as '_'), except where two names meet in one variable, which is then left out; and
/// QRT_MSG_ATTRIBUTES, every attribute exactly (attributes_json). A value stops at its first
/// NUL byte: environment strings are C strings.
std::vector<std::string> process_environment(const received_message& m);
/// Runs a qrt::processor on `q` of the provider `cfg` names. Each message's body goes to the
/// command's stdin; the rest of it goes to the command's environment (process_environment); its
/// stdout and stderr are qrt's. Exit status 0 completes the message; any
/// other status, or a signal, abandons it (the queue's max delivery count then dead-letters it).
/// Runs until max_messages, idle_exit, or SIGINT/SIGTERM, then stops the processor gracefully.
/// With metrics_listen it serves the runtime's metrics (processing outcomes, handler time,
/// provider calls, and the queue's depth, read every depth_interval) while it runs; `log` gets
/// one line when serving starts, and one for each failed depth reading.
result<process_report> process(const config& cfg, const queue_name& q, const process_options& o,
                               std::ostream& log);

}  // namespace qrt::cli
