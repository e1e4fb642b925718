#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <qrt/config.hpp>
#include <qrt/registry.hpp>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using qrt::config;
using qrt::errc;

TEST(Config, YamlNestedMapsFlattenToDottedKeys) {
  auto c = config::from_yaml("provider: sqs\nsqs:\n  region: eu-west-1\n  queues: [a, b]\n");
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->get("provider"), "sqs");
  EXPECT_EQ(c->get("sqs.region"), "eu-west-1");
  EXPECT_EQ(c->get("sqs.queues"), "a,b");
}

// A YAML list is handed on as one comma-separated value: an item holding a comma would come out
// as two items (queues: ["a,b"] declared the queues a and b). It is refused, naming the field.
TEST(Config, AYamlListItemHoldingACommaIsRefused) {
  auto c = config::from_yaml("queues: [orders, \"audit,billing\"]\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, errc::configuration_error);
  EXPECT_NE(c.error().message.find("'queues'"), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("comma"), std::string::npos) << c.error().message;
  // Nor is a secret shown when one is in a list.
  auto secret = config::from_yaml("sqs:\n  secret_keys: [\"Zm9v,YmFy\"]\n");
  ASSERT_FALSE(secret);
  EXPECT_EQ(secret.error().message.find("Zm9v"), std::string::npos) << secret.error().message;
}

// A key given twice, directly or once dotted and once nested, is refused by name: which value
// wins is not qrt's to guess (a second secret_access_key was taken silently).
TEST(Config, AKeyGivenTwiceInYamlIsRefusedByName) {
  for (const char* text : {"provider: sqs\nregion: eu-west-1\nregion: us-east-1\n",
                           "sqs.region: eu-west-1\nsqs:\n  region: us-east-1\n"}) {
    auto c = config::from_yaml(text);
    ASSERT_FALSE(c) << text;
    EXPECT_EQ(c.error().code, errc::configuration_error);
    EXPECT_NE(c.error().message.find("region"), std::string::npos) << c.error().message;
    EXPECT_NE(c.error().message.find("more than once"), std::string::npos) << c.error().message;
  }
}

// A file of several YAML documents (two files concatenated, a "---" left in) was read up to the
// end of its first document: the settings after it were dropped without a word. A configuration
// is one document; more is refused, and so is anything after an end-of-document marker.
TEST(Config, YamlWithMoreThanOneDocumentIsRefused) {
  for (const char* text :
       {"provider: memory\n---\nprovider: sqs\nmax_queue_size: 5\n",
        "provider: memory\n...\nmax_queue_size: 5\n", "provider: memory\n...\ngarbage: [\n",
        "provider: memory\n---\n", "%YAML 1.2\n---\nprovider: memory\n...\n%YAML 1.2\n---\n"}) {
    auto c = config::from_yaml(text);
    ASSERT_FALSE(c) << text;
    EXPECT_EQ(c.error().code, errc::configuration_error);
  }
  auto two = config::from_yaml("provider: memory\n---\nprovider: sqs\n");
  ASSERT_FALSE(two);
  EXPECT_NE(two.error().message.find("more than one YAML document"), std::string::npos)
      << two.error().message;
  // However many documents follow, at most two are looked at, and none is built.
  std::string many = "provider: memory\n";
  for (int i = 0; i < 10'000; ++i) many += "---\nx: [1, 2, {a: b}]\n";
  EXPECT_FALSE(config::from_yaml(many));
  // One document, with its markers or none, is read as before.
  for (const char* text : {"---\nprovider: memory\n", "%YAML 1.2\n---\nprovider: memory\n...\n",
                           "provider: memory\n", "provider: memory # the end\n\n"}) {
    auto c = config::from_yaml(text);
    ASSERT_TRUE(c) << text << ": " << c.error().message;
    EXPECT_EQ(c->get("provider"), "memory");
  }
  for (const char* text : {"", "# nothing\n", "---\n"}) {
    auto c = config::from_yaml(text);
    ASSERT_TRUE(c) << text << ": " << c.error().message;
    EXPECT_TRUE(c->values().empty());
  }
}

// A ',' outside brackets is no YAML the parser reads, yet it read as an empty document: the
// file was taken as an empty configuration, its provider and settings gone without a word.
TEST(Config, YamlThatReadsAsNoValueIsRefusedNotTakenAsEmpty) {
  for (const char* text : {",", ",\nprovider: memory\n", "  ,"}) {
    auto c = config::from_yaml(text);
    ASSERT_FALSE(c) << text << " read as " << c->to_string();
    EXPECT_EQ(c.error().code, errc::configuration_error);
    EXPECT_NE(c.error().message.find("malformed YAML"), std::string::npos) << c.error().message;
  }
}

// YAML can write a NUL byte ("\0"), which no setting holds: a path, a host or a file name with one
// would be cut short where it reaches the system (persistence_path "/data/q\0x" opened
// "/data/q"). A key or a value holding one is refused, naming the field.
TEST(Config, YamlKeysAndValuesWithANulByteAreRefused) {
  auto value = config::from_yaml("persistence_path: \"/data/q\\0/elsewhere\"\n");
  ASSERT_FALSE(value);
  EXPECT_EQ(value.error().code, errc::configuration_error);
  EXPECT_NE(value.error().message.find("'persistence_path'"), std::string::npos)
      << value.error().message;
  EXPECT_NE(value.error().message.find("NUL"), std::string::npos) << value.error().message;
  auto in_list = config::from_yaml("queues: [a, \"b\\0c\"]\n");
  ASSERT_FALSE(in_list);
  EXPECT_NE(in_list.error().message.find("'queues'"), std::string::npos) << in_list.error().message;
  auto key = config::from_yaml("\"provider\\0x\": memory\n");
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code, errc::configuration_error);
  EXPECT_EQ(key.error().message.find('\0'), std::string::npos);
}

TEST(Config, MalformedYamlIsAConfigurationError) {
  auto c = config::from_yaml("provider: [unclosed");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, errc::configuration_error);
  EXPECT_NE(c.error().message.find("malformed YAML"), std::string::npos);
}

TEST(Config, YamlAliasesCannotMultiplyTheConfiguration) {
  // Each level names the one before twice: 22 levels in under 600 bytes flatten to 2^22 fields.
  std::string bomb = "a0: &a0 {x: 1, y: 2}\n";
  for (int i = 1; i < 22; ++i) {
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " {p: *a" +
            std::to_string(i - 1) + ", q: *a" + std::to_string(i - 1) + "}\n";
  }
  auto c = config::from_yaml(bomb);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, errc::configuration_error);
  EXPECT_NE(c.error().message.find("flattens to more than"), std::string::npos)
      << c.error().message;

  // An alias inside the map it names nests without end.
  auto cycle = config::from_yaml("d: &d {x: 1, again: *d}\n");
  ASSERT_FALSE(cycle);
  EXPECT_EQ(cycle.error().code, errc::configuration_error);

  // Anchors that repeat a little are fine.
  auto ok = config::from_yaml("defaults: &d {wait: 20s, batch: 10}\norders: *d\n");
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(ok->get("orders.wait"), "20s");
}

TEST(Config, NotANumberIsNotADuration) {
  // from_chars reads "nan" as a double; converting NaN to milliseconds is undefined.
  EXPECT_FALSE(qrt::parse_duration("nan"));
  EXPECT_FALSE(qrt::parse_duration("nans"));
  EXPECT_FALSE(qrt::parse_duration("inf"));
  EXPECT_FALSE((config{{"wait", "nan"}}.get_duration("wait", 1s)));
}

TEST(Config, TypedGettersNameTheFieldOnBadInput) {  // contract C34
  config c{{"max_queue_size", "lots"}, {"lock_duration", "5 fortnights"}, {"flag", "maybe"}};
  auto n = c.get_uint("max_queue_size", 1);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code, errc::configuration_error);
  EXPECT_NE(n.error().message.find("'max_queue_size'"), std::string::npos);
  EXPECT_NE(n.error().message.find("'lots'"), std::string::npos);
  auto d = c.get_duration("lock_duration", 1s);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("'lock_duration'"), std::string::npos);
  EXPECT_FALSE(c.get_bool("flag", false));
}

TEST(Config, RangeChecksAndDefaults) {
  config c{{"n", "0"}};
  EXPECT_FALSE(c.get_uint("n", 5, 1, 10));
  EXPECT_EQ(c.get_uint("missing", 5, 1, 10).value(), 5u);
  EXPECT_EQ((config{{"d", "250ms"}}.get_duration("d", 1s).value()), 250ms);
  EXPECT_EQ((config{{"d", "2m"}}.get_duration("d", 1s).value()), 120s);
  EXPECT_EQ((config{{"d", "1.5s"}}.get_duration("d", 1s).value()), 1500ms);
}

TEST(Config, UnknownFieldsAreRefusedByName) {
  config c{{"provider", "memory"}, {"max_queue_sise", "10"}};
  auto r = c.reject_unknown({"provider", "max_queue_size"});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("'max_queue_sise'"), std::string::npos);
}

// Keys come from files and flags too: an unknown one is named as a refused queue name is (its
// first 64 bytes, anything but printable ASCII as \xHH), so a stray blob cannot flood the error
// or drive the terminal that shows it.
TEST(Config, AnUnknownKeyIsNamedShortAndPrintable) {
  const std::string key = "\x1b[2J\x1b]0;owned\x07" + std::string(100'000, 'k');
  auto c = config::from_pairs({key + "=1"});
  ASSERT_TRUE(c);
  auto r = c->reject_unknown({"provider"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::configuration_error);
  EXPECT_EQ(r.error().message.find('\x1b'), std::string::npos);
  EXPECT_NE(r.error().message.find("field '\\x1b[2J"), std::string::npos) << r.error().message;
  EXPECT_LT(r.error().message.size(), 200u);
}

TEST(Config, SecretsAreRedactedInTextAndErrors) {
  const std::string secret = "s3cr3t-Zm9vYmFy";
  config c{{"connection_string", "Endpoint=sb://x/;SharedAccessKey=" + secret},
           {"secret_access_key", secret},
           {"access_key_id", "AKIDEXAMPLE"},
           {"sas_token_ttl", "not-a-duration-" + secret}};
  const auto text = c.to_string();
  EXPECT_EQ(text.find(secret), std::string::npos) << text;
  EXPECT_NE(text.find("AKIDEXAMPLE"), std::string::npos);
  auto bad = c.get_duration("sas_token_ttl", 1s);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().to_string().find(secret), std::string::npos);
}

TEST(Config, EnvironmentVariablesMapToKeys) {
  ::setenv("QRTTEST_PROVIDER", "sqs", 1);
  ::setenv("QRTTEST_SQS__REGION", "us-east-2", 1);
  auto c = config::from_environment("QRTTEST_").value();
  EXPECT_EQ(c.get("provider"), "sqs");
  EXPECT_EQ(c.get("sqs.region"), "us-east-2");
  ::unsetenv("QRTTEST_PROVIDER");
  ::unsetenv("QRTTEST_SQS__REGION");
}

// Names are read case-insensitively, so QRT_REGION and QRT_Region both set "region", and which
// value won depended on the order of the environment. Two variables for one key are refused,
// naming the key and both variables but neither value (a value may be a secret).
TEST(Config, TwoEnvironmentVariablesForOneKeyAreRefusedNamingBoth) {
  ::setenv("QRTDUP_REGION", "value-eu-west-1", 1);
  ::setenv("QRTDUP_Region", "value-us-east-1", 1);
  auto region = config::from_environment("QRTDUP_");
  ::unsetenv("QRTDUP_REGION");
  ::unsetenv("QRTDUP_Region");
  ASSERT_FALSE(region);
  EXPECT_EQ(region.error().code, errc::configuration_error);
  const auto& said = region.error().message;
  EXPECT_NE(said.find("'region'"), std::string::npos) << said;
  EXPECT_NE(said.find("QRTDUP_REGION and QRTDUP_Region"), std::string::npos) << said;
  EXPECT_EQ(said.find("value-"), std::string::npos) << said;

  // A nested key, and a secret one: its values are not shown either.
  ::setenv("QRTDUP_SQS__SECRET_ACCESS_KEY", "hunter2", 1);
  ::setenv("QRTDUP_sqs__secret_access_key", "hunter3", 1);
  auto secret = config::from_environment("QRTDUP_");
  ::unsetenv("QRTDUP_SQS__SECRET_ACCESS_KEY");
  ::unsetenv("QRTDUP_sqs__secret_access_key");
  ASSERT_FALSE(secret);
  EXPECT_NE(secret.error().message.find("'sqs.secret_access_key'"), std::string::npos)
      << secret.error().message;
  EXPECT_NE(secret.error().message.find("QRTDUP_SQS__SECRET_ACCESS_KEY and "
                                        "QRTDUP_sqs__secret_access_key"),
            std::string::npos)
      << secret.error().message;
  EXPECT_EQ(secret.error().message.find("hunter"), std::string::npos) << secret.error().message;

  // One variable per key reads as before.
  ::setenv("QRTDUP_Region", "us-east-1", 1);
  auto one = config::from_environment("QRTDUP_");
  ::unsetenv("QRTDUP_Region");
  ASSERT_TRUE(one) << one.error().message;
  EXPECT_EQ(one->get("region"), "us-east-1");
}

TEST(Config, PairsNeedAnEqualsSign) {
  EXPECT_TRUE(config::from_pairs({"a=1", "b="}));
  auto r = config::from_pairs({"novalue"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::configuration_error);
}

// A key given twice in flags (--set region=a ... --set region=b) took the last value silently,
// where the same key twice in a YAML file is refused: it is refused by name here too, without
// showing a secret's value.
TEST(Config, AKeyGivenTwiceInFlagsIsRefusedByName) {
  auto twice = config::from_pairs({"provider=sqs", "region=eu-west-1", "region=us-east-1"});
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, errc::configuration_error);
  EXPECT_NE(twice.error().message.find("'region'"), std::string::npos) << twice.error().message;
  EXPECT_NE(twice.error().message.find("more than once"), std::string::npos)
      << twice.error().message;
  auto secret = config::from_pairs({"secret_access_key=hunter2", "secret_access_key=hunter3"});
  ASSERT_FALSE(secret);
  EXPECT_EQ(secret.error().message.find("hunter"), std::string::npos) << secret.error().message;
  // Flags still win over a file or the environment: that is merge(), not a repeated flag.
  auto file = config::from_yaml("region: eu-west-1\n").value();
  file.merge(config::from_pairs({"region=us-east-1"}).value());
  EXPECT_EQ(file.get("region"), "us-east-1");
}

// A setting written without its '=' (secret_access_key:..., "password hunter2" in one quoted
// flag) was shown whole in the refusal, secret and all. One that names a secret setting is not
// shown, nor is what follows an '=' with no key before it; any other is, to say what is wrong.
TEST(Config, APairWithoutAKeyAndValueIsRefusedWithoutShowingASecret) {
  for (const char* pair :
       {"secret_access_key:hunter2", "password hunter2", "=hunter2", "SAS_KEY hunter2"}) {
    auto c = config::from_pairs({pair});
    ASSERT_FALSE(c) << pair;
    EXPECT_EQ(c.error().code, errc::configuration_error);
    EXPECT_NE(c.error().message.find("key=value"), std::string::npos) << c.error().message;
    EXPECT_EQ(c.error().message.find("hunter2"), std::string::npos) << c.error().message;
  }
  auto plain = config::from_pairs({"region:eu-west-1"});
  ASSERT_FALSE(plain);
  EXPECT_NE(plain.error().message.find("'region:eu-west-1'"), std::string::npos)
      << plain.error().message;
}

// The environment is shared with deployment tools, shells and CI systems: a QRT_* variable qrt
// does not know is ignored with one warning naming it (never its value), while the same unknown
// key in a file or a flag stays an error, since there it is most likely a typo.
TEST(Config, UnknownEnvironmentVariablesAreIgnoredWithOneWarningNamingThem) {
  ::setenv("QRTENV_PROVIDER", "memory", 1);
  ::setenv("QRTENV_DEPLOY_REVISION", "value-that-must-not-print", 1);
  auto env = config::from_environment("QRTENV_").value();
  ::unsetenv("QRTENV_PROVIDER");
  ::unsetenv("QRTENV_DEPLOY_REVISION");

  EXPECT_EQ(env.unknown_environment_variables({"provider"}),
            (std::vector<std::string>{"QRTENV_DEPLOY_REVISION"}));
  testing::internal::CaptureStderr();
  EXPECT_TRUE(env.reject_unknown({"provider"}));
  EXPECT_TRUE(env.reject_unknown({"provider"}));  // a second reader of the same config
  const std::string warned = testing::internal::GetCapturedStderr();
  EXPECT_NE(warned.find("QRTENV_DEPLOY_REVISION"), std::string::npos) << warned;
  EXPECT_EQ(warned.find("value-that-must-not-print"), std::string::npos) << warned;
  EXPECT_EQ(std::count(warned.begin(), warned.end(), '\n'), 1) << warned;

  // Known keys from the environment are still checked.
  config bad_env = env;
  ::setenv("QRTENV_MAX_QUEUE_SIZE", "lots", 1);
  bad_env.merge(config::from_environment("QRTENV_").value());
  ::unsetenv("QRTENV_MAX_QUEUE_SIZE");
  EXPECT_FALSE(bad_env.get_uint("max_queue_size", 1));

  // The same key from a flag or a file is an error, also when it overrides the environment.
  config from_flag = env;
  from_flag.merge(config::from_pairs({"deploy_revision=7"}).value());
  auto refused = from_flag.reject_unknown({"provider"});
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("'deploy_revision'"), std::string::npos);
  config from_file = config::from_yaml("deploy_revision: 7\n").value();
  EXPECT_FALSE(from_file.reject_unknown({"provider"}));
}

TEST(Config, UrlUserinfoIsRedactedInTextAndErrors) {
  config c{{"endpoint", "amqps://alice:pw-Zm9vYmFy@broker.example:5671/vhost"},
           {"url", "http://token-Zm9vYmFy@127.0.0.1:4566"},
           {"region", "eu-west-1"}};
  const auto text = c.to_string();
  EXPECT_EQ(text.find("Zm9vYmFy"), std::string::npos) << text;
  EXPECT_EQ(text.find("alice"), std::string::npos) << text;
  EXPECT_NE(text.find("endpoint=amqps://<redacted>@broker.example:5671/vhost"), std::string::npos)
      << text;
  EXPECT_NE(text.find("url=http://<redacted>@127.0.0.1:4566"), std::string::npos) << text;
  EXPECT_NE(text.find("region=eu-west-1"), std::string::npos) << text;
  auto bad = c.get_uint("endpoint", 0);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().to_string().find("Zm9vYmFy"), std::string::npos) << bad.error().to_string();
  // Without userinfo, or with an '@' only in the path, nothing changes.
  EXPECT_EQ(config::printable_value("endpoint", "https://sqs.eu-west-1.amazonaws.com/a@b"),
            "https://sqs.eu-west-1.amazonaws.com/a@b");
}

// A password is often a base64 key, where '/' and '+' are common, and people paste it into a URL
// without percent-encoding it: the '/' does not end the userinfo, and the password is still
// hidden, in the printout and in errors.
TEST(Config, UrlUserinfoWithASlashInThePasswordIsRedacted) {
  const std::string password = "Zm9v/YmFy+cXV4?eA#y=";
  config c{{"endpoint", "amqps://RootManageSharedAccessKey:" + password + "@ns.example:5671"},
           {"endpoints", "amqp://a:b/c@h1:5672,amqp://d:e?f@h2:5672"},
           {"url", "amqp://u:Zm9v@YmFy/cXV4@h3"}};
  const auto text = c.to_string();
  EXPECT_EQ(text.find("Zm9v"), std::string::npos) << text;
  EXPECT_EQ(text.find("RootManage"), std::string::npos) << text;
  EXPECT_NE(text.find("endpoint=amqps://<redacted>@ns.example:5671"), std::string::npos) << text;
  EXPECT_NE(text.find("endpoints=amqp://<redacted>@h1:5672,amqp://<redacted>@h2:5672"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("url=amqp://<redacted>@h3"), std::string::npos) << text;
  auto bad = c.get_uint("endpoint", 0);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().to_string().find("Zm9v"), std::string::npos) << bad.error().to_string();
  // An '@' in a path, after a host that has no userinfo, is still left as it is.
  EXPECT_EQ(config::printable_value("endpoint", "https://sqs.example/000000000000/a@b,c"),
            "https://sqs.example/000000000000/a@b,c");
}

// Durations are added to clock readings in nanoseconds: anything that would overflow there (or
// is not a number at all) is refused where it is read.
TEST(Config, DurationsThatWouldOverflowOrAreNotNumbersAreRefused) {
  EXPECT_FALSE(qrt::parse_duration("nan"));
  EXPECT_FALSE(qrt::parse_duration("inf"));
  EXPECT_FALSE(qrt::parse_duration("1e300"));
  EXPECT_FALSE(qrt::parse_duration("1000000h"));                          // about 114 years
  EXPECT_EQ(qrt::parse_duration("200000h"), std::chrono::hours{200000});  // about 23 years
  EXPECT_FALSE((config{{"ratio", "nan"}}.get_double("ratio", 1)));
  EXPECT_FALSE((config{{"ratio", "inf"}}.get_double("ratio", 1)));
}

TEST(Config, ConfigurationFileLargerThanAMegabyteIsRefusedUnread) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("qrt-config-test-" + std::to_string(::getpid()) + ".yaml");
  {
    std::ofstream out(path);
    out << "provider: memory\n# " << std::string(2 << 20, 'x') << '\n';
  }
  auto c = config::from_yaml_file(path.string());
  std::filesystem::remove(path);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, errc::configuration_error);
  EXPECT_NE(c.error().message.find("at most 1048576"), std::string::npos) << c.error().message;
}

// A configuration "file" may be a pipe (--config <(...)) or a device, whose size is not known
// before reading: it is read no further than a file would be, and a directory is refused by name
// rather than read as an empty configuration.
TEST(Config, ConfigurationFromAPipeIsReadNoFurtherThanAMegabyte) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("qrt-config-pipe-" + std::to_string(::getpid()));
  std::filesystem::create_directory(dir);
  const auto fifo = dir / "config.yaml";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  auto feed = [&fifo](std::string text) {
    return std::thread([&fifo, text = std::move(text)] {
      // The reader stops early: the write then fails with EPIPE instead of a signal.
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      ::pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
      const int fd = ::open(fifo.c_str(), O_WRONLY);
      for (std::size_t done = 0; fd >= 0 && done < text.size();) {
        const auto n = ::write(fd, text.data() + done, text.size() - done);
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
      }
      if (fd >= 0) ::close(fd);
    });
  };

  auto small = feed("provider: memory\n");
  auto ok = config::from_yaml_file(fifo.string());
  small.join();
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(ok->get("provider"), "memory");

  std::string big = "provider: memory\n";
  while (big.size() <= (2u << 20)) big += "# " + std::string(1000, 'x') + "\n";
  auto writer = feed(big);
  auto refused = config::from_yaml_file(fifo.string());
  writer.join();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::configuration_error);
  EXPECT_NE(refused.error().message.find("at most 1048576"), std::string::npos)
      << refused.error().message;

  auto directory = config::from_yaml_file(dir.string());
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error().code, errc::configuration_error);
  EXPECT_NE(directory.error().message.find(dir.string()), std::string::npos)
      << directory.error().message;
  EXPECT_NE(directory.error().message.find("directory"), std::string::npos)
      << directory.error().message;
  std::filesystem::remove_all(dir);
}

// The provider's name comes from a flag, a file or QRT_PROVIDER: an unknown one is shown in the
// error as names are (at most 64 bytes, anything but printable ASCII as \xHH), so a pasted
// value cannot fill the terminal or drive it with escape sequences.
TEST(ProviderRegistry, AnUnknownProviderIsNamedShortAndPrintable) {
  qrt::provider_registry registry;
  registry.add("memory", [](const config&, boost::asio::any_io_executor) {
    return qrt::result<qrt::provider_ptr>(qrt::fail(errc::unsupported, "not made here"));
  });
  boost::asio::io_context io;
  const std::string pasted = "\x1b]0;owned\x07\x1b[2J" + std::string(10'000, 'x');
  auto made = registry.make(config{{"provider", pasted}}, io.get_executor());
  ASSERT_FALSE(made);
  EXPECT_EQ(made.error().code, errc::configuration_error);
  const auto& message = made.error().message;
  EXPECT_EQ(message.find('\x1b'), std::string::npos) << message;
  EXPECT_EQ(message.find('\x07'), std::string::npos) << message;
  EXPECT_NE(message.find("\\x1b]0;owned"), std::string::npos) << message;
  EXPECT_LT(message.size(), 200u) << message;
  EXPECT_NE(message.find("one of: memory"), std::string::npos) << message;
}
