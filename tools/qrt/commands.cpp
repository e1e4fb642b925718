#include "commands.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <ostream>

#include "core/redaction.hpp"

namespace qrt::cli {

result<config> build_config(const provider_flags& flags, const config& environment) {
  config cfg = environment;
  if (!flags.config_file.empty()) {
    auto file = config::from_yaml_file(flags.config_file);
    if (!file) return file.error();
    cfg.merge(*file);
  }
  auto pairs = config::from_pairs(flags.settings);
  if (!pairs) return pairs.error();
  cfg.merge(*pairs);
  if (!flags.provider.empty()) cfg.set("provider", flags.provider);
  if (!flags.endpoint.empty()) cfg.set("endpoint", flags.endpoint);
  if (!flags.region.empty()) cfg.set("region", flags.region);
  if (!flags.connection_string.empty()) cfg.set("connection_string", flags.connection_string);
  if (!flags.persistence_path.empty()) {
    cfg.set("enable_persistence", "true");
    cfg.set("persistence_path", flags.persistence_path);
  }
  if (!flags.durability.empty()) cfg.set("durability", flags.durability);
  if (!cfg.contains("provider")) {
    return fail(errc::configuration_error,
                "no provider: pass --provider memory|sqs|servicebus|amqp, set QRT_PROVIDER, or "
                "put provider: in the --config file");
  }
  // A subscription is created with `qrt subscription create`, never implied.
  if (cfg.get("provider") == "memory" && flags.declares_queue && !flags.queue.empty() &&
      !cfg.contains("queues")) {
    cfg.set("queues", flags.queue);
  }
  return cfg;
}

result<void> require_lasting_queues(const config& cfg) {
  if (cfg.get("provider") != "memory") return {};
  auto persistent = cfg.get_bool("enable_persistence", false);
  if (!persistent) return persistent.error();
  if (*persistent) return {};
  return fail(errc::configuration_error,
              "the embedded provider without persistence keeps its queues inside this qrt "
              "process, so what one command sends is gone when it exits: give "
              "--persistence-path DIR (or enable_persistence=true and persistence_path=DIR) so "
              "that commands share their queues");
}

result<queue_name> queue_of(const provider_flags& flags) {
  const bool queue = !flags.queue.empty();
  const bool subscription = !flags.topic.empty() || !flags.subscription.empty();
  if (queue == subscription) {
    return fail(errc::invalid_argument,
                "give exactly one of --queue Q or --topic T --subscription S");
  }
  if (queue) return queue_name::parse(flags.queue);
  if (flags.topic.empty() || flags.subscription.empty()) {
    return fail(errc::invalid_argument,
                "--topic and --subscription go together (a subscription of a topic)");
  }
  auto topic = topic_name::parse(flags.topic);
  if (!topic) return topic.error();
  return queue_name::subscription(*topic, flags.subscription);
}

result<std::pair<std::string, std::string>> parse_attribute(std::string_view text) {
  const auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return fail(errc::invalid_argument,
                "--attribute '" + std::string(text) + "' must look like key=value");
  }
  return std::pair{std::string(text.substr(0, eq)), std::string(text.substr(eq + 1))};
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char table[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const auto n = (std::uint32_t(std::uint8_t(bytes[i])) << 16) |
                   (std::uint32_t(std::uint8_t(bytes[i + 1])) << 8) | std::uint8_t(bytes[i + 2]);
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += table[(n >> 6) & 63];
    out += table[n & 63];
  }
  if (i + 1 == bytes.size()) {
    const auto n = std::uint32_t(std::uint8_t(bytes[i])) << 16;
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const auto n = (std::uint32_t(std::uint8_t(bytes[i])) << 16) |
                   (std::uint32_t(std::uint8_t(bytes[i + 1])) << 8);
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += table[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

namespace {

/// The length of the well-formed UTF-8 sequence that starts at `text[i]` (no overlong forms,
/// surrogates or code points past U+10FFFF), or 0 when none does.
std::size_t utf8_sequence_at(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const auto continuation = [&](std::size_t k) {
    return k < text.size() && (byte(k) & 0xC0) == 0x80;
  };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF && continuation(i + 1)) return 2;
  if (c >= 0xE0 && c <= 0xEF && continuation(i + 1) && continuation(i + 2)) {
    const unsigned char second = byte(i + 1);
    return (c == 0xE0 && second < 0xA0) || (c == 0xED && second > 0x9F) ? 0 : 3;
  }
  if (c >= 0xF0 && c <= 0xF4 && continuation(i + 1) && continuation(i + 2) && continuation(i + 3)) {
    const unsigned char second = byte(i + 1);
    return (c == 0xF0 && second < 0x90) || (c == 0xF4 && second > 0x8F) ? 0 : 4;
  }
  return 0;
}

}  // namespace

std::string command_line_without_secrets(const std::vector<std::string>& args) {
  // Shown as configuration errors and config::to_string() show settings: a secret key's value
  // redacted (config::is_secret_key), any URL without its user and password.
  auto setting = [](std::string_view kv) {
    const auto eq = kv.find('=');
    if (eq == std::string_view::npos) return detail::without_userinfo(kv);
    return std::string(kv.substr(0, eq + 1)) +
           config::printable_value(kv.substr(0, eq), kv.substr(eq + 1));
  };
  std::string out;
  bool hide_next = false;
  bool in_settings = false;  // after --set: it takes every value up to the next flag
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg.starts_with('-')) in_settings = false;
    if (hide_next) {
      arg = config::printable_value("connection_string", arg);
    } else if (in_settings) {
      arg = setting(arg);
    } else if (arg.starts_with("--connection-string=")) {
      arg = "--connection-string=" + config::printable_value("connection_string", arg);
    } else if (arg.starts_with("--set=")) {
      arg = "--set=" + setting(arg.substr(6));
    } else {
      arg = detail::without_userinfo(arg);
    }
    hide_next = arg == "--connection-string";
    if (arg == "--set") in_settings = true;
    if (arg.find_first_of(" \t'\"$<>") != std::string::npos) arg = "'" + arg + "'";
    out += (i ? " " : "") + arg;
  }
  return out;
}

std::string printable_text(std::string_view text, bool multiline) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  std::size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = byte(i);
    if (c < 0x80) {
      if (c >= 0x20 && c != 0x7F) {
        out += static_cast<char>(c);
      } else if ((c == '\n' || c == '\t') && multiline) {
        out += static_cast<char>(c);
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else {
        out += "\\x";
        out += hex[c >> 4];
        out += hex[c & 0xF];
      }
      ++i;
      continue;
    }
    const std::size_t length = utf8_sequence_at(text, i);
    if (length == 0) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xF];
      ++i;
      continue;
    }
    if (length == 2 && c == 0xC2 && byte(i + 1) <= 0x9F) {  // U+0080..U+009F: C1 controls
      out += "\\u00";
      out += hex[byte(i + 1) >> 4];
      out += hex[byte(i + 1) & 0xF];
    } else {
      out.append(text.substr(i, length));
    }
    i += length;
  }
  return out;
}

namespace {

/// The error for output that could not be written; `err` is errno after the failed write.
error output_failed(int err) {
  return fail(errc::provider_error, std::string("cannot write the output") +
                                        (err != 0 ? ": " + std::string(std::strerror(err)) : ""));
}

/// Flushes `out` and reports whether everything written so far got out. A write can already
/// have failed inside `<<` (a message larger than the stream's buffer): its errno is kept, so
/// callers clear errno before writing what they check here.
result<void> flushed(std::ostream& out) {
  if (out) {
    errno = 0;
    out.flush();
  }
  if (!out) return output_failed(errno);
  return {};
}

std::string iso8601(time_point t) {
  if (t == time_point{}) return "";
  const auto ms = std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

// Everything in a message came from whoever sent it: escaped, so it cannot drive the terminal.
void print_text(const received_message& m, std::ostream& out) {
  out << "id=" << printable_text(m.id) << " sequence=" << m.sequence_number
      << " delivery=" << m.delivery_count << " enqueued=" << iso8601(m.enqueued_time);
  if (m.session) out << " session=" << printable_text(m.session->str());
  if (!m.correlation_id.empty()) out << " correlation=" << printable_text(m.correlation_id);
  if (!m.subject.empty()) out << " subject=" << printable_text(m.subject);
  if (!m.content_type.empty()) out << " content_type=" << printable_text(m.content_type);
  for (const auto& [k, v] : m.attributes)
    out << ' ' << printable_text(k) << '=' << printable_text(v);
  if (m.dead_letter) out << " dead_letter_reason=" << printable_text(m.dead_letter->reason);
  out << '\n' << printable_text(m.body, true) << '\n';
}

/// Writes one message and flushes: the caller settles it only once this succeeded.
result<void> print(const received_message& m, output_format f, std::ostream& out) {
  errno = 0;
  if (f == output_format::json) {
    out << message_json(m) << '\n';
  } else {
    print_text(m, out);
  }
  return flushed(out);
}

/// Gives back the messages of `batch` from `first` on, so they return to the queue at once
/// rather than when their locks expire; returns how many were given back.
template <class Receiver>
std::size_t abandon_from(Receiver& receiver, const std::vector<received_message>& batch,
                         std::size_t first) {
  std::size_t abandoned = 0;
  for (std::size_t i = first; i < batch.size(); ++i) {
    if (receiver.abandon(batch[i].receipt)) ++abandoned;
  }
  return abandoned;
}

}  // namespace

bool is_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t length = utf8_sequence_at(text, i);
    if (length == 0) return false;
    i += length;
  }
  return true;
}

namespace {

/// `o[name] = text` when it is UTF-8; otherwise `o[name + "_base64"]`, so that the line stays
/// valid JSON (a JSON text is UTF-8) and the exact bytes can still be read back.
void put_text(boost::json::object& o, const std::string& name, std::string_view text) {
  if (is_utf8(text)) {
    o[name] = text;
  } else {
    o[name + "_base64"] = base64_encode(text);
  }
}

/// `o["attributes"]` holds the pairs that are UTF-8; a pair whose name or value is not goes to
/// `o["attributes_base64"]` (name_base64, value_base64), for the reason put_text gives.
void put_attributes(boost::json::object& o, const std::map<std::string, std::string>& attributes) {
  boost::json::object attrs;
  boost::json::array binary_attrs;
  for (const auto& [k, v] : attributes) {
    if (is_utf8(k) && is_utf8(v)) {
      attrs[k] = v;
    } else {
      binary_attrs.push_back(boost::json::object{{"name_base64", base64_encode(k)},
                                                 {"value_base64", base64_encode(v)}});
    }
  }
  o["attributes"] = std::move(attrs);
  if (!binary_attrs.empty()) o["attributes_base64"] = std::move(binary_attrs);
}

}  // namespace

std::string attributes_json(const std::map<std::string, std::string>& attributes) {
  boost::json::object o;
  put_attributes(o, attributes);
  return boost::json::serialize(o);
}

std::string message_json(const received_message& m) {
  boost::json::object o;
  put_text(o, "id", m.id);
  o["body_base64"] = base64_encode(m.body);
  put_attributes(o, m.attributes);
  if (m.session) {
    put_text(o, "session_id", m.session->str());
  } else {
    o["session_id"] = nullptr;
  }
  put_text(o, "correlation_id", m.correlation_id);
  put_text(o, "subject", m.subject);
  put_text(o, "content_type", m.content_type);
  o["delivery_count"] = m.delivery_count;
  o["enqueued_time"] = iso8601(m.enqueued_time);
  o["sequence_number"] = m.sequence_number;
  if (m.dead_letter) {
    put_text(o, "dead_letter_reason", m.dead_letter->reason);
    put_text(o, "dead_letter_description", m.dead_letter->description);
  }
  return boost::json::serialize(o);
}

namespace {

// send and publish: the same message `o.count` times, each id printed and flushed before the
// next; `deliver` hands one message to the provider.
template <class Deliver>
result<void> deliver_each(const send_options& o, std::string_view verb, std::ostream& out,
                          Deliver deliver) {
  message m;
  m.body = o.body;
  m.attributes = o.attributes;
  m.correlation_id = o.correlation_id;
  m.subject = o.subject;
  m.content_type = o.content_type;
  if (o.session) {
    auto s = session_id::parse(*o.session);
    if (!s) return s.error();
    m.session = *s;
  }
  for (std::uint64_t i = 0; i < o.count; ++i) {
    auto id = deliver(m);
    if (!id) return id.error();
    errno = 0;
    if (o.output == output_format::json) {
      out << boost::json::serialize(boost::json::object{{"id", *id}}) << '\n';
    } else {
      out << verb << ' ' << printable_text(*id) << '\n';
    }
    if (auto w = flushed(out); !w) {
      auto e = w.error();
      e.message =
          std::string(verb) + " " + std::to_string(i + 1) + " message(s), then " + e.message;
      return e;
    }
  }
  return {};
}

}  // namespace

result<void> send(sync::queue_client& c, const queue_name& q, const send_options& o,
                  std::ostream& out) {
  return deliver_each(o, "sent", out, [&](const message& m) { return c.send(q, m); });
}

result<void> publish(sync::queue_client& c, const topic_name& t, const send_options& o,
                     std::ostream& out) {
  return deliver_each(o, "published", out, [&](const message& m) { return c.publish(t, m); });
}

result<void> create_queue(sync::queue_client& c, const queue_name& q, std::ostream& out) {
  if (auto r = c.create_queue(q); !r) return r;
  out << "created queue " << q.to_string() << " (an existing one is kept as it is)\n";
  return flushed(out);
}

result<void> delete_queue(sync::queue_client& c, const queue_name& q, std::ostream& out) {
  if (auto r = c.delete_queue(q); !r) return r;
  out << "deleted queue " << q.to_string() << " and its messages\n";
  return flushed(out);
}

result<void> create_topic(sync::queue_client& c, const topic_name& t, std::ostream& out) {
  if (auto r = c.create_topic(t); !r) return r;
  out << "created topic " << t.str() << '\n';
  return flushed(out);
}

result<void> delete_topic(sync::queue_client& c, const topic_name& t, std::ostream& out) {
  if (auto r = c.delete_topic(t); !r) return r;
  out << "deleted topic " << t.str() << " and its subscriptions\n";
  return flushed(out);
}

result<void> create_subscription(sync::queue_client& c, const queue_name& s,
                                 const subscription_filter& filter, std::ostream& out) {
  const auto& client = c.async_client();
  if (client.caps().topics && !client.caps().durable_subscriptions) {
    // It would report success for a subscription gone the moment this command exits.
    return fail(errc::unsupported,
                std::string(client.provider_name()) +
                    "'s subscriptions last only as long as the connection that made them "
                    "(caps().durable_subscriptions), so one made by this command would be gone "
                    "when it exits: create it in the program that reads it");
  }
  subscription_options options;
  options.filter = filter;
  if (auto r = c.create_subscription(s, options); !r) return r;
  out << "created subscription " << s.to_string() << '\n';
  return flushed(out);
}

result<void> delete_subscription(sync::queue_client& c, const queue_name& s, std::ostream& out) {
  if (auto r = c.delete_subscription(s); !r) return r;
  out << "deleted subscription " << s.to_string() << '\n';
  return flushed(out);
}

result<std::size_t> list_subscriptions(sync::queue_client& c, const topic_name& t, output_format f,
                                       std::ostream& out) {
  auto listed = c.list_subscriptions(t);
  if (!listed) return listed.error();
  for (const auto& s : *listed) {
    if (f == output_format::json) {
      // A filter set by another client may hold any bytes: written as receive writes a message.
      boost::json::object line{{"subscription", std::string(s.name.subscription_name())},
                               {"topic", t.str()}};
      put_attributes(line, s.filter.attributes);
      if (s.filter.subject) put_text(line, "subject", *s.filter.subject);
      out << boost::json::serialize(line) << '\n';
    } else {
      out << printable_text(s.name.subscription_name());
      if (s.filter.empty()) out << "  (every message)";
      if (s.filter.subject) out << "  subject=" << printable_text(*s.filter.subject);
      for (const auto& [k, v] : s.filter.attributes) {
        out << "  " << printable_text(k) << '=' << printable_text(v);
      }
      out << '\n';
    }
  }
  if (auto w = flushed(out); !w) return w.error();
  return listed->size();
}

result<std::size_t> receive(sync::queue_client& c, const queue_name& q, const receive_options& o,
                            std::ostream& out) {
  using steady = std::chrono::steady_clock;
  std::optional<sync::session> session;
  if (o.session) {
    auto id = session_id::parse(*o.session);
    if (!id) return id.error();
    auto s = c.accept_session(q, *id, o.wait);
    if (!s) return s.error();
    session.emplace(std::move(*s));
  }
  const auto deadline = steady::now() + o.wait;
  std::size_t got = 0;
  while (got < o.max) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - steady::now());
    if (left.count() <= 0 && got > 0) break;
    const auto wait = std::max(left, milliseconds(0));
    auto batch = session ? session->receive(o.max - got, wait) : c.receive(q, o.max - got, wait);
    if (!batch) return batch.error();
    if (batch->empty()) break;
    const auto give_back = [&](std::size_t from) {
      return session ? abandon_from(*session, *batch, from) : abandon_from(c, *batch, from);
    };
    for (std::size_t i = 0; i < batch->size(); ++i) {
      const auto& m = (*batch)[i];
      if (auto printed = print(m, o.output, out); !printed) {
        const std::size_t unwritten = batch->size() - i;
        const std::size_t abandoned = give_back(i);
        auto e = printed.error();
        e.message += "; the " + std::to_string(unwritten) +
                     " message(s) not written were abandoned and stay in the queue";
        if (abandoned < unwritten) {
          e.message += " (" + std::to_string(unwritten - abandoned) +
                       " could not be abandoned and return when their lock expires)";
        }
        return e;
      }
      ++got;
      if (o.complete) {
        auto done = session ? session->complete(m.receipt) : c.complete(m.receipt);
        if (!done) {
          give_back(i + 1);
          auto e = done.error();
          e.message = "printed message " + printable_text(m.id) +
                      " but could not complete it: " + e.message;
          return e;
        }
      }
    }
  }
  if (session) (void)session->close();
  return got;
}

result<std::size_t> peek(sync::queue_client& c, const queue_name& q, std::size_t max,
                         std::int64_t from_sequence, output_format f, std::ostream& out) {
  auto batch = c.peek(q, max, from_sequence);
  if (!batch) return batch.error();
  for (const auto& m : *batch) {
    if (auto printed = print(m, f, out); !printed) return printed.error();
  }
  return batch->size();
}

result<std::size_t> dlq_replay(sync::queue_client& c, const queue_name& q, std::size_t max,
                               milliseconds wait, std::ostream& out) {
  if (q.is_subscription()) {
    return fail(errc::invalid_argument,
                "dlq replay cannot send into a subscription (publishing to its topic would "
                "reach every subscription): read " +
                    q.dead_letter().to_string() + " with dlq list, and publish again yourself");
  }
  const auto dlq = q.dead_letter();
  std::size_t moved = 0;
  while (moved < max) {
    auto batch = c.receive(dlq, std::min<std::size_t>(max - moved, 100),
                           moved == 0 ? wait : milliseconds(0));
    if (!batch) return batch.error();
    if (batch->empty()) break;
    for (std::size_t i = 0; i < batch->size(); ++i) {
      const auto& m = (*batch)[i];
      message copy;
      copy.body = m.body;
      copy.attributes = m.attributes;
      copy.session = m.session;
      copy.correlation_id = m.correlation_id;
      copy.content_type = m.content_type;
      copy.subject = m.subject;
      auto sent = c.send(q, std::move(copy));
      if (!sent) {
        abandon_from(c, *batch, i);  // this one and the rest stay in the DLQ
        auto e = sent.error();
        e.message = "replayed " + std::to_string(moved) + "; message " + printable_text(m.id) +
                    " and the rest stay in the dead-letter queue: " + e.message;
        return e;
      }
      if (auto done = c.complete(m.receipt); !done) {
        abandon_from(c, *batch, i + 1);
        auto e = done.error();
        e.message = "message " + printable_text(m.id) + " was sent to " + q.to_string() + " as " +
                    printable_text(*sent) + " but is still in the dead-letter queue: " + e.message;
        return e;
      }
      ++moved;
      errno = 0;
      out << "replayed " << printable_text(m.id) << " -> " << printable_text(*sent) << '\n';
      if (auto w = flushed(out); !w) {
        abandon_from(c, *batch, i + 1);  // not moved: they stay in the DLQ
        auto e = w.error();
        e.message = "replayed " + std::to_string(moved) +
                    " message(s) (the last not reported), then " + e.message +
                    "; the rest stay in the dead-letter queue";
        return e;
      }
    }
  }
  return moved;
}

result<void> stats(sync::queue_client& c, const queue_name& q, output_format f, std::ostream& out) {
  auto s = c.stats(q);
  if (!s) return s.error();
  if (f == output_format::json) {
    out << boost::json::serialize(boost::json::object{{"queue", q.to_string()},
                                                      {"active", s->active},
                                                      {"in_flight", s->in_flight},
                                                      {"scheduled", s->scheduled},
                                                      {"dead_lettered", s->dead_lettered},
                                                      {"expired", s->expired}})
        << '\n';
  } else {
    auto show = [](std::int64_t v) { return v < 0 ? std::string("unknown") : std::to_string(v); };
    out << "queue " << q.to_string() << "\n  active         " << show(s->active)
        << "\n  in flight      " << show(s->in_flight) << "\n  scheduled      "
        << show(s->scheduled) << "\n  dead-lettered  " << show(s->dead_lettered)
        << "\n  expired        " << s->expired << '\n';
  }
  return flushed(out);
}

}  // namespace qrt::cli
