// The generic amqp provider's options as read from a qrt::config: the fields, the bounds and
// the errors that name a bad field without showing a secret.
#include <gtest/gtest.h>

#include <qrt/amqp.hpp>
#include <qrt/config.hpp>
#include <qrt/processor.hpp>
#include <qrt/runtime.hpp>
#include <string>
#include <utility>
#include <vector>

namespace {

TEST(amqp_options, config_fields_are_read_and_bad_ones_named) {
  auto o = qrt::amqp::options_from_config(qrt::config{{"provider", "amqp"},
                                                      {"broker", "rabbitmq"},
                                                      {"endpoint", "amqps://broker.example:5999"},
                                                      {"user", "svc"},
                                                      {"password", "s3cret"},
                                                      {"prefetch", "25"},
                                                      {"max_concurrent_calls", "8"},
                                                      {"verify_queue_exists", "false"}});
  ASSERT_TRUE(o) << o.error().to_string();
  EXPECT_TRUE(o->tls);
  EXPECT_TRUE(o->tls_verify);
  EXPECT_EQ(o->host, "broker.example");
  EXPECT_EQ(o->port, 5999);
  EXPECT_EQ(o->prefetch, 25u);
  EXPECT_EQ(o->address_prefix, "/amq/queue/");
  EXPECT_EQ(o->abandon_with, qrt::amqp::abandon_outcome::released);
  EXPECT_FALSE(o->verify_queue_exists);

  auto typo = qrt::amqp::options_from_config(qrt::config{{"provider", "amqp"}, {"prefech", "1"}});
  ASSERT_FALSE(typo);
  EXPECT_NE(typo.error().message.find("prefech"), std::string::npos);

  auto bad_url = qrt::amqp::options_from_config(
      qrt::config{{"provider", "amqp"}, {"endpoint", "http://u:topsecret@h"}});
  ASSERT_FALSE(bad_url);
  EXPECT_EQ(bad_url.error().code, qrt::errc::configuration_error);
  EXPECT_EQ(bad_url.error().message.find("topsecret"), std::string::npos);

  auto bad_abandon = qrt::amqp::options_from_config(
      qrt::config{{"provider", "amqp"}, {"abandon_outcome", "drop"}});
  ASSERT_FALSE(bad_abandon);
  EXPECT_NE(bad_abandon.error().message.find("abandon_outcome"), std::string::npos);
}

// One configuration describes the client and the runtime it runs on: the provider accepts the
// runtime's key and checks it (so a bad value fails when the client is made), and the runtime
// reads it. Before, the provider refused worker_threads as unknown.
TEST(amqp_options, the_runtime_key_is_accepted_checked_and_read_by_the_runtime) {
  const qrt::config cfg{{"provider", "amqp"}, {"worker_threads", "3"}};
  auto o = qrt::amqp::options_from_config(cfg);
  ASSERT_TRUE(o) << o.error().to_string();
  auto rt = qrt::runtime_configuration::from_config(cfg);
  ASSERT_TRUE(rt) << rt.error().to_string();
  EXPECT_EQ(rt->worker_threads, 3u);
  for (const char* bad : {"0", "1025", "many"}) {
    auto refused =
        qrt::amqp::options_from_config(qrt::config{{"provider", "amqp"}, {"worker_threads", bad}});
    ASSERT_FALSE(refused) << bad;
    EXPECT_EQ(refused.error().code, qrt::errc::configuration_error);
    EXPECT_NE(refused.error().message.find("worker_threads"), std::string::npos)
        << refused.error().message;
  }
}

// One configuration, one preset, as with the other providers: the link's credit follows it, a
// broker's options stay (the preset adjusts them), an explicit prefetch wins, and the runtime
// and the processor built from the same configuration take their presets of the same name.
// Before, the provider refused `preset` as an unknown key, so such a configuration could not be
// used with AMQP at all.
TEST(amqp_options, a_preset_sets_the_link_credit_and_keeps_the_brokers_options) {
  const qrt::config high{
      {"provider", "amqp"}, {"broker", "rabbitmq"}, {"preset", "high_throughput"}};
  auto o = qrt::amqp::options_from_config(high);
  ASSERT_TRUE(o) << o.error().to_string();
  EXPECT_EQ(o->prefetch, 50u);
  EXPECT_EQ(o->address_prefix, "/amq/queue/") << "the preset replaced the broker's options";
  EXPECT_EQ(o->abandon_with, qrt::amqp::abandon_outcome::released);
  EXPECT_TRUE(o->verify_queue_exists);
  EXPECT_EQ(qrt::processor_options::from_config(high).value().max_concurrent_calls,
            qrt::processor_options::for_high_throughput().max_concurrent_calls);
  EXPECT_EQ(qrt::runtime_configuration::from_config(high).value().worker_threads,
            qrt::runtime_configuration::for_high_throughput().worker_threads);

  auto low =
      qrt::amqp::options_from_config(qrt::config{{"provider", "amqp"}, {"preset", "low_latency"}});
  ASSERT_TRUE(low) << low.error().to_string();
  EXPECT_EQ(low->prefetch, 1u);
  EXPECT_EQ(low->address_prefix, qrt::amqp::options{}.address_prefix);

  auto overridden = qrt::amqp::options_from_config(
      qrt::config{{"provider", "amqp"}, {"preset", "high_throughput"}, {"prefetch", "7"}});
  ASSERT_TRUE(overridden) << overridden.error().to_string();
  EXPECT_EQ(overridden->prefetch, 7u);

  for (const char* bad : {"fastest", ""}) {
    auto refused =
        qrt::amqp::options_from_config(qrt::config{{"provider", "amqp"}, {"preset", bad}});
    ASSERT_FALSE(refused) << bad;
    EXPECT_EQ(refused.error().code, qrt::errc::configuration_error);
    EXPECT_NE(refused.error().message.find("preset"), std::string::npos) << refused.error().message;
    EXPECT_NE(refused.error().message.find("high_throughput"), std::string::npos);
  }
}

// The client's bounds: prefetched bytes and links. Defaults bound both; 0 turns a bound off; a
// value out of range is refused by name.
TEST(amqp_options, the_prefetch_byte_budget_and_the_link_cap_are_read_and_checked) {
  auto defaults = qrt::amqp::options_from_config(qrt::config{{"provider", "amqp"}});
  ASSERT_TRUE(defaults) << defaults.error().to_string();
  EXPECT_EQ(defaults->max_prefetch_bytes, 64ull << 20);
  EXPECT_EQ(defaults->max_links, 1000u);

  auto set = qrt::amqp::options_from_config(
      qrt::config{{"provider", "amqp"}, {"max_prefetch_bytes", "1048576"}, {"max_links", "0"}});
  ASSERT_TRUE(set) << set.error().to_string();
  EXPECT_EQ(set->max_prefetch_bytes, 1048576u);
  EXPECT_EQ(set->max_links, 0u);

  for (const auto& [field, value] : std::vector<std::pair<std::string, std::string>>{
           {"max_links", "70000"}, {"max_links", "-1"}, {"max_prefetch_bytes", "lots"}}) {
    auto bad = qrt::amqp::options_from_config(qrt::config{{"provider", "amqp"}, {field, value}});
    ASSERT_FALSE(bad) << field << "=" << value;
    EXPECT_EQ(bad.error().code, qrt::errc::configuration_error);
    EXPECT_NE(bad.error().message.find(field), std::string::npos) << bad.error().message;
  }
}

}  // namespace

namespace {

// The endpoint URL as URLs are written: an IPv6 address in brackets, a user name and password
// percent-encoded; what cannot be a broker's address is refused naming the problem, never the
// password.
TEST(amqp_options, endpoint_urls_take_ipv6_brackets_and_percent_encoded_credentials) {
  auto read = [](const std::string& url) {
    return qrt::amqp::options_from_config(qrt::config{{"provider", "amqp"}, {"endpoint", url}});
  };
  auto v6 = read("amqp://[::1]:45222");
  ASSERT_TRUE(v6) << v6.error().to_string();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 45222);
  auto v6_default_port = read("amqps://[fe80::1]");
  ASSERT_TRUE(v6_default_port) << v6_default_port.error().to_string();
  EXPECT_EQ(v6_default_port->host, "fe80::1");
  EXPECT_TRUE(v6_default_port->tls);

  auto encoded = read("amqp://svc%40corp:pa%2Fss%25w@broker:5672");
  ASSERT_TRUE(encoded) << encoded.error().to_string();
  EXPECT_EQ(encoded->user, "svc@corp");
  EXPECT_EQ(encoded->password, "pa/ss%w");
  EXPECT_EQ(encoded->host, "broker");

  for (const auto& [url, why] : std::vector<std::pair<std::string, std::string>>{
           {"amqp://u:topsecret@[::1", "unclosed"},
           {"amqp://u:topsecret@[::1]x", "after the host"},
           {"amqp://u:topsecret@::1:5672", "brackets"},
           {"amqp://:topsecret@broker", "without a user"},
           {"amqp://u:top%zzsecret@broker", "two hex digits"},
           {"amqp://u:topsecret@broker:5672?x=", "query"},
           {"amqp://u:top/secret@broker", "%2F"}}) {
    auto r = read(url);
    ASSERT_FALSE(r) << url;
    EXPECT_EQ(r.error().code, qrt::errc::configuration_error) << url;
    EXPECT_NE(r.error().message.find(why), std::string::npos) << url << ": " << r.error().message;
    EXPECT_EQ(r.error().message.find("secret"), std::string::npos) << r.error().message;
  }
}

TEST(amqp_options, an_endpoint_port_is_plain_decimal_digits_from_1_to_65535) {
  auto read = [](const std::string& url) {
    return qrt::amqp::options_from_config(qrt::config{{"provider", "amqp"}, {"endpoint", url}});
  };
  for (const auto& [url, port] : std::vector<std::pair<std::string, std::uint16_t>>{
           {"amqp://broker:1", 1}, {"amqp://broker:65535", 65535}, {"amqp://broker:05672", 5672}}) {
    auto r = read(url);
    ASSERT_TRUE(r) << url << ": " << r.error().to_string();
    EXPECT_EQ(r->port, port) << url;
  }
  // strtoul would read each of these as a port (a sign, spaces, a wrapped negative number).
  for (const std::string port : {"+5672", " 5672", "\t5672", "5672 ", "-5672", "0x1628", "0",
                                 "65536", "99999999999999999999", "5,672", ""}) {
    const std::string url = "amqp://user:topsecret@broker:" + port;
    auto r = read(url);
    ASSERT_FALSE(r) << "accepted port '" << port << "'";
    EXPECT_EQ(r.error().code, qrt::errc::configuration_error) << url;
    EXPECT_NE(r.error().message.find("port"), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.find("secret"), std::string::npos) << r.error().message;
    if (port.size() > 1 && port.find('\t') == std::string::npos) {
      EXPECT_NE(r.error().message.find("'" + port + "'"), std::string::npos)
          << "the error does not name the port: " << r.error().message;
    }
  }
  // Without a user part, what reads as the port may be a password (the host forgotten).
  for (const std::string url : {"amqp://admin:topsecret", "amqp://admin:+secret"}) {
    auto r = read(url);
    ASSERT_FALSE(r) << url;
    EXPECT_EQ(r.error().message.find("secret"), std::string::npos) << r.error().message;
  }
}

// The endpoint decides host, port and TLS over the separate keys (make_provider applies it
// last): the options read are the ones the connection uses, and a TLS setting next to an
// amqp:// endpoint is refused as it is with tls off, not accepted and then never used.
TEST(amqp_options, an_endpoint_decides_tls_and_tls_settings_beside_amqp_are_refused) {
  auto o = qrt::amqp::options_from_config(qrt::config{
      {"provider", "amqp"}, {"endpoint", "amqp://broker:5672"}, {"tls", "true"}, {"port", "1"}});
  ASSERT_TRUE(o) << o.error().to_string();
  EXPECT_FALSE(o->tls) << "the options say TLS, the connection would go without it";
  EXPECT_EQ(o->port, 5672);

  for (const char* key : {"tls_ca_file", "tls_verify"}) {
    auto r = qrt::amqp::options_from_config(
        qrt::config{{"provider", "amqp"},
                    {"endpoint", "amqp://broker:5672"},
                    {"tls", "true"},
                    {key, key == std::string("tls_verify") ? "false" : "/etc/ssl/ca.pem"}});
    ASSERT_FALSE(r) << key << " was accepted for a connection without TLS";
    EXPECT_EQ(r.error().code, qrt::errc::configuration_error);
    EXPECT_NE(r.error().message.find(key), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("amqps://"), std::string::npos) << r.error().message;
  }

  auto secure = qrt::amqp::options_from_config(qrt::config{{"provider", "amqp"},
                                                           {"endpoint", "amqps://broker"},
                                                           {"tls", "false"},
                                                           {"tls_ca_file", "/etc/ssl/ca.pem"}});
  ASSERT_TRUE(secure) << secure.error().to_string();
  EXPECT_TRUE(secure->tls);
}

}  // namespace

// preset=low_resource sizes only the runtime built from the configuration (two threads, 1 MiB
// stacks): the provider accepts it and keeps its link credit, where an unknown preset is
// refused.
TEST(amqp_options, the_low_resource_preset_sizes_the_runtime_only) {
  const qrt::config cfg{{"provider", "amqp"}, {"preset", "low_resource"}};
  auto o = qrt::amqp::options_from_config(cfg);
  ASSERT_TRUE(o) << o.error().to_string();
  EXPECT_EQ(o->prefetch, qrt::amqp::options{}.prefetch);
  auto rt = qrt::runtime_configuration::from_config(cfg);
  ASSERT_TRUE(rt) << rt.error().to_string();
  EXPECT_EQ(rt->worker_threads, 2u);
  EXPECT_EQ(rt->thread_stack_size, std::size_t{1} << 20);
  EXPECT_EQ(qrt::processor_options::from_config(cfg).value().max_concurrent_calls,
            qrt::processor_options{}.max_concurrent_calls);
  auto unknown =
      qrt::amqp::options_from_config(qrt::config{{"provider", "amqp"}, {"preset", "low_res"}});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("'low_res'"), std::string::npos)
      << unknown.error().message;
}
