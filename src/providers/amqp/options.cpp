// The amqp provider's configuration keys: one table (known_keys(), the refusal of any other key
// and docs/amqp.md's key list are checked against it), the endpoint URL parser and the presets.
#include "providers/amqp/options.hpp"

#include <cctype>
#include <charconv>
#include <optional>
#include <string>

#include "core/config_binder.hpp"
#include "core/name_checks.hpp"

namespace qrt::amqp {

options options::for_rabbitmq() {
  options o;
  o.address_prefix = "/amq/queue/";
  o.declare_prefix = "/queue/";
  o.topic_prefix = "/topic/";
  o.abandon_with = abandon_outcome::released;
  o.verify_queue_exists = true;
  return o;
}

options options::for_high_throughput() {
  options o;
  o.prefetch = 50;
  return o;
}

options options::for_low_latency() {
  options o;
  o.prefetch = 1;
  return o;
}

namespace detail {

/// `text` with each "%XY" (two hex digits) turned into that byte, as a URL's user name and
/// password are written; nullopt when a '%' is not followed by two hex digits.
static std::optional<std::string> percent_decoded(std::string_view text) {
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int high = hex(text[i + 1]), low = hex(text[i + 2]);
    if (high < 0 || low < 0) return std::nullopt;
    out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return out;
}

result<void> apply_url(options& o, std::string_view url) {
  const auto bad = [](std::string why) {
    // The URL may hold a password: never echo it.
    return fail(errc::configuration_error, "amqp: field 'endpoint' is malformed: " + why);
  };
  std::string_view rest = url;
  if (rest.starts_with("amqps://")) {
    o.tls = true;
    rest.remove_prefix(8);
  } else if (rest.starts_with("amqp://")) {
    o.tls = false;
    rest.remove_prefix(7);
  } else {
    return bad("the scheme must be amqp:// or amqps://");
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('?') != std::string_view::npos || rest.find('#') != std::string_view::npos) {
    return bad("query strings and fragments are not supported (use the provider's settings)");
  }
  if (rest.find('/') != std::string_view::npos) {
    return bad("paths are not supported (use virtual_host; a '/' in a password is written %2F)");
  }
  const bool has_userinfo = rest.rfind('@') != std::string_view::npos;
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    const auto colon = userinfo.find(':');
    auto user = percent_decoded(userinfo.substr(0, colon));
    if (!user) return bad("the user name has a '%' that is not followed by two hex digits");
    if (user->empty() && colon != std::string_view::npos) {
      return bad("a password without a user name");
    }
    o.user = std::move(*user);
    if (colon != std::string_view::npos) {
      auto password = percent_decoded(userinfo.substr(colon + 1));
      if (!password) return bad("the password has a '%' that is not followed by two hex digits");
      o.password = std::move(*password);
    }
  }
  // An IPv6 address is written in brackets, "[::1]" or "[::1]:5672"; the host is what is inside.
  std::string_view host = rest;
  std::optional<std::string_view> port_text;
  if (rest.starts_with('[')) {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("unclosed '[' in the host");
    host = rest.substr(1, close - 1);
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty() && !after.starts_with(':')) return bad("text after the host's ']'");
    if (!after.empty()) port_text = after.substr(1);
  } else if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return bad("an IPv6 address goes in brackets, as in amqp://[::1]:5672");
    }
  }
  if (port_text) {
    // Decimal digits and nothing else: a sign, a space or a hex prefix is refused, not read
    // past. The port is shown only after a user part: in "amqp://user:password" (the host
    // forgotten) what reads as the port is the password.
    const std::string_view text = *port_text;
    unsigned long port = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
    if (text.empty() || !std::isdigit(static_cast<unsigned char>(text.front())) ||
        ec != std::errc{} || end != text.data() + text.size() || port == 0 || port > 65535) {
      return bad(has_userinfo ? "the port '" + qrt::detail::printable_name(text) +
                                    "' is not a number from 1 to 65535"
                              : std::string("the port is not a number from 1 to 65535"));
    }
    o.port = static_cast<std::uint16_t>(port);
  }
  if (host.empty()) return bad("the host is missing");
  o.host = std::string(host);
  return {};
}

}  // namespace detail

namespace {

using binder = qrt::detail::config_binder<options>;

// Every key options_from_config() accepts, read in this order (broker first: it replaces the
// options; preset next: it adjusts them; endpoint before host, port and tls, which override it only
// until make_provider applies it again); known_keys() and the refusal of any other key come from
// here. Each one acts (test/integration/amqp/amqp_config_keys_test.cpp shows how, key by key).
const binder& keys() {
  static const binder table{
      binder::accepted("provider", "amqp: selects this provider"),
      binder::custom(
          "broker",
          [](std::string_view name, options& o) -> result<void> {
            if (name == "rabbitmq") {
              o = options::for_rabbitmq();
            } else if (name != "generic") {
              return qrt::detail::config_field_error("broker", "unknown value '" +
                                                                   std::string(name.substr(0, 64)) +
                                                                   "' (one of: generic, rabbitmq)");
            }
            return {};
          },
          "generic, or rabbitmq (starts from options::for_rabbitmq())"),
      // After broker (which replaces the options) and before prefetch (which overrides it): a
      // preset tunes the broker's options rather than replacing them. The runtime and the
      // processor built from the same configuration read it too (one thread per core, and the
      // processor's preset of the same name).
      binder::custom(
          "preset",
          [](std::string_view name, options& o) -> result<void> {
            // Only what the preset is about: the link credit.
            if (name == "high_throughput") {
              o.prefetch = options::for_high_throughput().prefetch;
            } else if (name == "low_latency") {
              o.prefetch = options::for_low_latency().prefetch;
            } else if (name == qrt::detail::runtime_only_preset) {
              // Sizes the runtime only: the link credit stays.
            } else {
              return qrt::detail::config_field_error(
                  "preset", "unknown preset '" + std::string(name.substr(0, 64)) +
                                "' (one of: high_throughput, low_latency, low_resource)");
            }
            return {};
          },
          "high_throughput (link credit 50), low_latency (link credit 1) or low_resource (the "
          "credit unchanged; a runtime of two threads); prefetch overrides it"),
      binder::custom(
          "endpoint",
          [](std::string_view url, options& o) -> result<void> {
            if (auto r = detail::apply_url(o, url); !r) return r.error();
            o.url = url;
            return {};
          },
          "amqp[s]://[user:password@]host[:port]: sets host, port and tls (the CLI's "
          "--endpoint)"),
      binder::text("host", &options::host, "the broker's host"),
      binder::integer("port", &options::port, 0, 65535, "0: 5672, or 5671 with tls"),
      binder::flag("tls", &options::tls, "amqps: TLS through OpenSSL"),
      binder::flag("tls_verify", &options::tls_verify,
                   "certificate chain and host name (off only for test brokers)"),
      binder::text("tls_ca_file", &options::tls_ca_file,
                   "PEM file with the CAs to trust (empty: the system's)"),
      binder::text("user", &options::user, "empty: SASL ANONYMOUS; else SASL PLAIN"),
      binder::text("password", &options::password, "secret: never printed"),
      binder::text("sasl_mechanisms", &options::sasl_mechanisms,
                   "overrides the mechanism list, e.g. PLAIN"),
      binder::text("virtual_host", &options::virtual_host,
                   "the open frame's hostname (RabbitMQ: vhost:NAME)"),
      binder::integer("prefetch", &options::prefetch, 0, 100'000,
                      "messages a receiver link may hold locked without being asked (link "
                      "credit, for every receive; not a processor's prefetch_count)"),
      binder::processing("max_concurrent_calls"),
      binder::processing(
          "prefetch_count",
          "messages a qrt::processor built from this config (processor_options::from_config) "
          "receives ahead of a free handler; the provider only checks it (the link's own "
          "read-ahead is prefetch)"),
      binder::processing(
          "max_auto_lock_renewal_duration",
          "how long a qrt::processor built from this config renews a running handler's lock; "
          "an AMQP lock lasts as long as the link, so the processor renews nothing here: "
          "accepted so one config serves every provider"),
      binder::processing("max_concurrent_sessions", qrt::detail::session_key_doc),
      binder::processing("session_idle_timeout", qrt::detail::session_key_doc),
      binder::processing("max_session_hold", qrt::detail::session_key_doc),
      binder::runtime("worker_threads"),
      binder::runtime("thread_stack_size"),
      binder::text("address_prefix", &options::address_prefix,
                   "prepended to queue names to form link addresses"),
      binder::text("declare_prefix", &options::declare_prefix,
                   "where create_queue attaches to declare a queue (empty: unsupported)"),
      binder::text("topic_prefix", &options::topic_prefix,
                   "prepended to topic names to form publish and subscription addresses "
                   "(empty: no topics)"),
      binder::choice(
          "abandon_outcome", &options::abandon_with,
          {{"modified", abandon_outcome::modified}, {"released", abandon_outcome::released}},
          "what abandon sends: modified (counts a delivery) or released"),
      binder::flag("verify_queue_exists", &options::verify_queue_exists,
                   "attach to a queue before the first send, after each accepted one and "
                   "after an empty receive, so a missing or deleted queue fails the call"),
      binder::integer("max_message_bytes", &options::max_message_bytes, 1, 1ull << 30,
                      "one message, body plus attributes"),
      binder::integer("max_prefetch_bytes", &options::max_prefetch_bytes, 0, 1ull << 40,
                      "bytes of prefetched messages held or asked for (0: no bound)"),
      binder::integer("max_links", &options::max_links, 0, 65'535,
                      "AMQP links held on the connection (0: no bound)"),
      binder::duration("connect_timeout", &options::connect_timeout,
                       "bound on TCP, TLS, SASL and open"),
      binder::duration("idle_timeout", &options::idle_timeout,
                       "heartbeats keep the connection alive within this"),
      binder::duration("reconnect_max_delay", &options::reconnect_max_delay,
                       "longest back-off between reconnect attempts"),
  };
  return table;
}

}  // namespace

std::span<const std::string_view> known_keys() noexcept {
  return keys().keys();
}

result<options> options_from_config(const config& cfg) {
  options o;
  if (auto r = keys().bind(cfg, o); !r) return r.error();
  if (cfg.get("broker") == "rabbitmq" && o.abandon_with == abandon_outcome::modified) {
    // RabbitMQ 3.10's AMQP 1.0 plugin answers a modified outcome by ending the link's session
    // (amqp:invalid-field): the abandon would not count a delivery, it would cost the link.
    return fail(
        errc::configuration_error,
        "amqp: field 'abandon_outcome': RabbitMQ refuses the 'modified' outcome (it ends "
        "the link's session); use 'released', or broker=generic for a broker that takes it");
  }
  // The endpoint wins over host, port and tls (make_provider applies it again, last): applied
  // here too, the options read are the ones the connection uses, and the checks below see them.
  if (!o.url.empty()) {
    if (auto r = detail::apply_url(o, o.url); !r) return r.error();
  }
  if (o.host.empty()) return fail(errc::configuration_error, "amqp: field 'host' is empty");
  if (!o.tls) {
    // Certificate checks of a connection without TLS would be taken and do nothing.
    for (std::string_view key : {"tls_verify", "tls_ca_file"}) {
      if (cfg.contains(key)) {
        return fail(errc::configuration_error,
                    "amqp: field '" + std::string(key) + "' configures TLS, which is off (" +
                        (o.url.empty() ? "set tls=true or an amqps:// endpoint"
                                       : "the endpoint's amqp:// decides over tls: use amqps://") +
                        ")");
      }
    }
  }
  if (!o.user.empty() && o.password.empty() && o.sasl_mechanisms.empty()) {
    return fail(errc::configuration_error,
                "amqp: field 'password' is required with 'user' (SASL PLAIN)");
  }
  return o;
}

}  // namespace qrt::amqp
