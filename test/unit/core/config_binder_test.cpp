// The table-driven reading of a provider's configuration (src/core/config_binder.hpp): each kind
// of value parses into its field, a bad value is refused naming its key, and the table is the
// one list of keys (what it names is accepted, anything else is refused).
#include "core/config_binder.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>
#include <qrt/config.hpp>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using qrt::config;
using qrt::errc;

namespace {

enum class mode { fast, safe };

struct inner {
  std::chrono::milliseconds lock{30s};
};

struct settings {
  std::string name = "default";
  bool on = false;
  std::uint16_t port = 0;
  int retries = 3;
  std::chrono::milliseconds timeout{5s};
  std::chrono::seconds wait{20};
  std::optional<std::chrono::seconds> visibility;
  mode m = mode::safe;
  std::vector<std::string> items;
  inner nested;
};

using binder = qrt::detail::config_binder<settings>;

const binder& table() {
  static const binder t{
      binder::accepted("provider", "selects the provider"),
      binder::custom(
          "preset",
          [](std::string_view v, settings& s) -> qrt::result<void> {
            if (v != "quick") {
              return qrt::detail::config_field_error("preset", "unknown preset");
            }
            s = settings{};
            s.m = mode::fast;
            return {};
          },
          "replaces every setting"),
      binder::text("name", &settings::name, "a name"),
      binder::flag("on", &settings::on, "a switch"),
      binder::integer("port", &settings::port, 1, 65535, "a port"),
      binder::integer("retries", &settings::retries, 0, 20, "retries"),
      binder::duration("timeout", &settings::timeout, "a timeout", qrt::detail::positive_duration),
      binder::duration("wait", &settings::wait, "a wait", {0s, 20s, true}),
      binder::duration("visibility", &settings::visibility, "a visibility", {0s, 12h, true}),
      binder::duration("lock", [](settings & s) -> auto& { return s.nested.lock; }, "nested",
                       {1min}),
      binder::choice("mode", &settings::m, {{"fast", mode::fast}, {"safe", mode::safe}}, "a mode"),
      binder::custom(
          "items",
          [](std::string_view v, settings& s) -> qrt::result<void> {
            s.items.emplace_back(v);
            return {};
          },
          "custom parsing"),
      binder::processing("max_concurrent_calls"),
      binder::runtime("worker_threads"),
  };
  return t;
}

qrt::result<settings> bind(const config& cfg) {
  settings s;
  if (auto r = table().bind(cfg, s); !r) return r.error();
  return s;
}

// The bind of `cfg` fails with a configuration error whose message names `key` and `what`.
void expect_refused(const config& cfg, std::string_view key, std::string_view what) {
  auto r = bind(cfg);
  ASSERT_FALSE(r) << "accepted " << cfg.to_string();
  EXPECT_EQ(r.error().code, errc::configuration_error);
  EXPECT_NE(r.error().message.find("'" + std::string(key) + "'"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find(what), std::string::npos) << r.error().message;
}

}  // namespace

TEST(ConfigBinder, KeysAreTheTableInItsOrder) {
  const std::vector<std::string_view> expected{"provider",
                                               "preset",
                                               "name",
                                               "on",
                                               "port",
                                               "retries",
                                               "timeout",
                                               "wait",
                                               "visibility",
                                               "lock",
                                               "mode",
                                               "items",
                                               "max_concurrent_calls",
                                               "worker_threads"};
  auto keys = table().keys();
  EXPECT_EQ(std::vector<std::string_view>(keys.begin(), keys.end()), expected);
  ASSERT_EQ(table().entries().size(), expected.size());
  for (const auto& e : table().entries()) EXPECT_FALSE(e.doc.empty()) << e.key;
}

TEST(ConfigBinder, KeysNotSetLeaveTheirFieldsAsTheyWere) {
  auto s = bind(config{{"provider", "x"}});
  ASSERT_TRUE(s) << s.error().to_string();
  const settings defaults;
  EXPECT_EQ(s->name, defaults.name);
  EXPECT_EQ(s->port, defaults.port);
  EXPECT_EQ(s->timeout, defaults.timeout);
  EXPECT_FALSE(s->visibility);
  EXPECT_EQ(s->m, mode::safe);
}

TEST(ConfigBinder, EachKindParsesIntoItsField) {
  auto s = bind(config{{"name", "orders"},
                       {"on", "yes"},
                       {"port", "5672"},
                       {"retries", "7"},
                       {"timeout", "250ms"},
                       {"wait", "5s"},
                       {"visibility", "2m"},
                       {"lock", "1h"},
                       {"mode", "fast"},
                       {"items", "a"},
                       {"max_concurrent_calls", "8"},
                       {"worker_threads", "4"}});
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(s->name, "orders");
  EXPECT_TRUE(s->on);
  EXPECT_EQ(s->port, 5672);
  EXPECT_EQ(s->retries, 7);
  EXPECT_EQ(s->timeout, 250ms);
  EXPECT_EQ(s->wait, 5s);
  EXPECT_EQ(s->visibility, std::optional<std::chrono::seconds>(120s));
  EXPECT_EQ(s->nested.lock, 1h);
  EXPECT_EQ(s->m, mode::fast);
  EXPECT_EQ(s->items, std::vector<std::string>{"a"});
}

TEST(ConfigBinder, TheTableOrderLetsAPresetComeBeforeTheKeysThatAdjustIt) {
  // The preset replaces every setting; a key after it in the table still applies on top.
  auto s = bind(config{{"name", "mine"}, {"preset", "quick"}});
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(s->m, mode::fast);
  EXPECT_EQ(s->name, "mine");
}

TEST(ConfigBinder, UnknownKeysAreRefusedNamingThem) {
  expect_refused(config{{"name", "x"}, {"nmae", "y"}}, "nmae", "unknown field");
}

TEST(ConfigBinder, MalformedValuesAreRefusedNamingTheKey) {
  expect_refused(config{{"on", "maybe"}}, "on", "true or false");
  expect_refused(config{{"port", "http"}}, "port", "whole number");
  expect_refused(config{{"retries", "-1"}}, "retries", "whole number");
  expect_refused(config{{"timeout", "soon"}}, "timeout", "");
  expect_refused(config{{"mode", "turbo"}}, "mode", "one of: fast, safe");
  expect_refused(config{{"preset", "slow"}}, "preset", "unknown preset");
  expect_refused(config{{"max_concurrent_calls", "many"}}, "max_concurrent_calls", "whole number");
}

// A refused value comes from a file, a flag or the environment and reaches a library caller's
// log as it is: shown cut and with its control bytes escaped, as a refused name is. Before, it
// was shown whole and raw (a terminal escape, a megabyte pasted into a number's field).
TEST(ConfigBinder, ARefusedValueIsShownCutAndEscaped) {
  const std::string escape = "\x1b[31mred";
  for (const auto& [key, value] : {std::pair<std::string, std::string>{"mode", escape},
                                   {"port", escape},
                                   {"port", std::string(100'000, '7') + "x"},
                                   {"on", std::string(100'000, 'y')}}) {
    auto r = bind(config{{key, value}});
    ASSERT_FALSE(r) << key;
    const auto& message = r.error().message;
    EXPECT_EQ(message.find('\x1b'), std::string::npos) << key << ": " << message;
    EXPECT_LT(message.size(), 1'000u) << key;
    if (value == escape) {
      EXPECT_NE(message.find("\\x1b[31mred"), std::string::npos) << message;
    }
  }
}

TEST(ConfigBinder, OutOfRangeValuesAreRefusedNamingTheKeyAndTheRange) {
  expect_refused(config{{"port", "0"}}, "port", "between 1 and 65535");
  expect_refused(config{{"port", "65536"}}, "port", "between 1 and 65535");
  expect_refused(config{{"retries", "21"}}, "retries", "between 0 and 20");
  expect_refused(config{{"timeout", "0"}}, "timeout", "must be positive");
  expect_refused(config{{"wait", "21s"}}, "wait", "whole seconds between 0s and 20s");
  expect_refused(config{{"wait", "1500ms"}}, "wait", "whole seconds");
  expect_refused(config{{"visibility", "13h"}}, "visibility", "between 0s and 12h");
  expect_refused(config{{"lock", "59s"}}, "lock", "at least 1m");
  expect_refused(config{{"max_concurrent_calls", "0"}}, "max_concurrent_calls", "between 1 and");
  expect_refused(config{{"worker_threads", "0"}}, "worker_threads", "between 1 and 1024");
  expect_refused(config{{"worker_threads", "1025"}}, "worker_threads", "between 1 and 1024");
}

// The runtime keys are checked on their own too, as the processing keys are: what a provider's
// table refuses, check_runtime_keys() refuses, naming the key; an absent key is no error.
TEST(ConfigBinder, TheRuntimeKeysAreCheckedAsTheTableChecksThem) {
  EXPECT_TRUE(qrt::check_runtime_keys(config{{"provider", "x"}}));
  EXPECT_TRUE(qrt::check_runtime_keys(config{{"worker_threads", "1024"}}));
  for (const char* bad : {"0", "1025", "many"}) {
    auto r = qrt::check_runtime_keys(config{{"worker_threads", bad}});
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, errc::configuration_error);
    EXPECT_NE(r.error().message.find("'worker_threads'"), std::string::npos) << r.error().message;
  }
  // A stack size is a plain byte count from the platform's least to 1 GiB.
  const std::string least = std::to_string(PTHREAD_STACK_MIN);
  EXPECT_TRUE(qrt::check_runtime_keys(config{{"thread_stack_size", least}}));
  EXPECT_TRUE(qrt::check_runtime_keys(config{{"thread_stack_size", "1073741824"}}));
  EXPECT_TRUE(qrt::check_runtime_keys(config{{"thread_stack_size", "0"}}));  // the default
  for (const std::string& bad :
       {std::to_string(PTHREAD_STACK_MIN - 1), std::string("1"), std::string("00"),
        std::string("1073741825"), std::string("2MiB"), std::string("-1")}) {
    auto r = qrt::check_runtime_keys(config{{"thread_stack_size", bad}});
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, errc::configuration_error);
    EXPECT_NE(r.error().message.find("'thread_stack_size'"), std::string::npos)
        << r.error().message;
    EXPECT_NE(r.error().message.find(bad), std::string::npos) << r.error().message;
  }
}

// A whole-seconds field with no upper bound was refused as "between <its least> and <the refused
// value>", as if the value refused were the bound. It now states only the bound it has; a field
// with both bounds still states both.
TEST(ConfigBinder, AWholeSecondsRefusalStatesOnlyTheBoundsTheFieldHas) {
  const binder open_ended{
      binder::duration("wait", &settings::wait, "a wait with no upper bound", {1s, {}, true})};
  for (const char* refused : {"1500ms", "0s"}) {
    settings s;
    auto r = open_ended.bind(config{{"wait", refused}}, s);
    ASSERT_FALSE(r) << refused;
    EXPECT_EQ(r.error().code, errc::configuration_error);
    EXPECT_NE(r.error().message.find("field 'wait': must be whole seconds, at least 1s"),
              std::string::npos)
        << r.error().message;
    EXPECT_EQ(r.error().message.find("between"), std::string::npos) << r.error().message;
  }
  settings s;
  ASSERT_TRUE(open_ended.bind(config{{"wait", "90000s"}}, s));
  EXPECT_EQ(s.wait, 90000s);

  expect_refused(config{{"wait", "1500ms"}}, "wait", "must be whole seconds between 0s and 20s");
  expect_refused(config{{"visibility", "43200500ms"}}, "visibility",
                 "must be whole seconds between 0s and 12h");
}

TEST(ConfigBinder, AcceptedKeysAreTakenAndLeftToTheirReader) {
  auto s = bind(config{{"provider", "anything"}});
  ASSERT_TRUE(s) << s.error().to_string();
}

TEST(ConfigBinder, AnUnknownChoiceIsNotEchoedAtLength) {
  auto r = bind(config{{"mode", std::string(1000, 'x')}});
  ASSERT_FALSE(r);
  EXPECT_LT(r.error().message.size(), 200u) << r.error().message;
}
