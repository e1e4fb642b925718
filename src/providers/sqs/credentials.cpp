#include "credentials.hpp"

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <utility>

#include "net/http.hpp"

namespace qrt::sqs::detail {

namespace json = boost::json;
using net::http_pool;
using net::http_request;
using net::http_response;
using net::http_settings;
using net::parse_endpoint;

environment_lookup process_environment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
  };
}

namespace {

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// The file's text; nullopt when it does not exist; an error when it is a directory, cannot be
// read, or is larger than `limit` (only `limit` + 1 bytes are ever read).
result<std::optional<std::string>> read_file(const std::string& path, std::size_t limit) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || status.type() == std::filesystem::file_type::not_found) {
    return std::optional<std::string>{};
  }
  if (status.type() == std::filesystem::file_type::directory) {
    return fail(errc::configuration_error, "'" + path + "' is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(errc::configuration_error, "'" + path + "' cannot be read");
  std::string text(limit + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return fail(errc::configuration_error, "'" + path + "' cannot be read");
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > limit) {
    return fail(errc::configuration_error,
                "'" + path + "' is larger than " + std::to_string(limit) + " bytes");
  }
  return std::optional<std::string>(std::move(text));
}

bool printable_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c > 0x20 && c < 0x7f;
  });
}

const std::map<std::string, std::string>* section(const ini_file& f, const std::string& name) {
  auto it = f.find(name);
  return it == f.end() ? nullptr : &it->second;
}

std::optional<aws_credentials> keys_in(const std::map<std::string, std::string>* s) {
  if (s == nullptr) return std::nullopt;
  auto id = s->find("aws_access_key_id");
  auto secret = s->find("aws_secret_access_key");
  if (id == s->end() || secret == s->end() || id->second.empty() || secret->second.empty()) {
    return std::nullopt;
  }
  aws_credentials c{id->second, secret->second, {}};
  if (auto t = s->find("aws_session_token"); t != s->end()) c.session_token = t->second;
  return c;
}

const std::map<std::string, std::string>* config_section(const ini_file& config,
                                                         const std::string& profile) {
  if (auto s = section(config, "profile " + profile)) return s;
  return profile == "default" ? section(config, "default") : nullptr;
}

/// For a source where only one of the two keys is set: which one, and which one it lacks, so
/// that a half-finished configuration is not reported as none at all. Empty when both or
/// neither are set (never the values: either may be a secret).
std::string half_of_a_key_pair(bool has_id, bool has_secret, std::string_view id_name,
                               std::string_view secret_name) {
  if (has_id == has_secret) return {};
  const auto [set, missing] =
      has_id ? std::pair(id_name, secret_name) : std::pair(secret_name, id_name);
  return std::string(set) + " is set but " + std::string(missing) + " is not";
}

std::string half_of_a_profile_pair(const std::map<std::string, std::string>* s) {
  if (s == nullptr) return {};
  auto has = [s](const char* key) {
    auto it = s->find(key);
    return it != s->end() && !it->second.empty();
  };
  return half_of_a_key_pair(has("aws_access_key_id"), has("aws_secret_access_key"),
                            "aws_access_key_id", "aws_secret_access_key");
}

}  // namespace

ini_file parse_ini(std::string_view text) {
  ini_file out;
  std::string current;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    auto end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string line = trim(text.substr(pos, end - pos));
    pos = end + 1;
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[') {
      auto close = line.find(']');
      current = trim(line.substr(1, close == std::string::npos ? std::string::npos : close - 1));
      out[current];
      continue;
    }
    auto eq = line.find('=');
    if (eq == std::string::npos || current.empty()) continue;
    out[current][lower(trim(line.substr(0, eq)))] = trim(line.substr(eq + 1));
  }
  return out;
}

std::optional<aws_credentials> profile_credentials(const ini_file& credentials_file,
                                                   const ini_file& config_file,
                                                   const std::string& profile) {
  if (auto c = keys_in(section(credentials_file, profile))) return c;
  return keys_in(config_section(config_file, profile));
}

std::string profile_region(const ini_file& credentials_file, const ini_file& config_file,
                           const std::string& profile) {
  for (auto s : {config_section(config_file, profile), section(credentials_file, profile)}) {
    if (s == nullptr) continue;
    if (auto it = s->find("region"); it != s->end() && !it->second.empty()) return it->second;
  }
  return {};
}

std::optional<std::chrono::system_clock::time_point> parse_iso8601(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)
  auto num = [&](std::size_t at, std::size_t len) -> std::optional<int> {
    if (at + len > text.size()) return std::nullopt;
    int v = 0;
    auto [p, ec] = std::from_chars(text.data() + at, text.data() + at + len, v);
    if (ec != std::errc{} || p != text.data() + at + len) return std::nullopt;
    return v;
  };
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != ' ') || text[13] != ':' || text[16] != ':') {
    return std::nullopt;
  }
  auto y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2),
       s = num(17, 2);
  if (!y || !mo || !d || !h || !mi || !s) return std::nullopt;
  std::size_t i = 19;
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  }
  int offset_minutes = 0;
  if (i < text.size() && (text[i] == 'Z' || text[i] == 'z')) {
    ++i;
  } else if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
    auto oh = num(i + 1, 2), om = num(i + 4, 2);
    if (!oh || !om || i + 3 >= text.size() || text[i + 3] != ':') return std::nullopt;
    offset_minutes = (*oh * 60 + *om) * (text[i] == '+' ? 1 : -1);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != text.size()) return std::nullopt;
  using namespace std::chrono;
  const year_month_day ymd{year{*y}, month{static_cast<unsigned>(*mo)},
                           day{static_cast<unsigned>(*d)}};
  if (!ymd.ok() || *h > 23 || *mi > 59 || *s > 60) return std::nullopt;
  const sys_seconds at =
      sys_days{ymd} + hours{*h} + minutes{*mi} + seconds{*s} - minutes{offset_minutes};
  // Only a time the clock can hold (years 1678-2261): another would wrap around.
  if (at < ceil<seconds>(system_clock::time_point::min()) ||
      at > floor<seconds>(system_clock::time_point::max())) {
    return std::nullopt;
  }
  return system_clock::time_point{at};
}

result<void> check_credentials(const aws_credentials& keys, std::string_view source) {
  auto refuse = [&](std::string_view field, std::string_view rule) {
    return fail(errc::permission, std::string(source) + " credentials have a " +
                                      std::string(field) + " " + std::string(rule));
  };
  for (auto [field, value] :
       {std::pair<std::string_view, const std::string*>{"access key id", &keys.access_key_id},
        {"secret access key", &keys.secret_access_key}}) {
    if (value->empty() || value->size() > 256 || !printable_ascii(*value)) {
      return refuse(field, "that is not 1-256 printable ASCII characters");
    }
  }
  const auto& token = keys.session_token;
  const bool token_ok =
      token.size() <= 16 * 1024 && std::all_of(token.begin(), token.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c >= 0x20 && c != 0x7f;
      });
  if (!token_ok) return refuse("session token", "over 16 KiB or with control characters");
  return {};
}

result<std::string> parse_imds_token(std::string_view body) {
  const std::string token = trim(body);
  if (token.empty() || token.size() > 4096 || !printable_ascii(token)) {
    return fail(errc::permission,
                "imds answered the token request with something that is not "
                "a token (1-4096 printable ASCII characters)");
  }
  return token;
}

result<std::string> parse_imds_role_name(std::string_view body) {
  std::string role = trim(body.substr(0, body.find('\n')));
  const bool ok =
      role.size() <= 128 && std::all_of(role.begin(), role.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return std::isalnum(c) || std::string_view("+=,.@_-").find(ch) != std::string_view::npos;
      });
  if (!ok) {
    return fail(errc::permission,
                "imds listed an instance role name that is not a valid IAM "
                "role name");
  }
  return role;
}

result<expiring_credentials> parse_credentials_document(std::string_view body, std::string source) {
  boost::system::error_code ec;
  // A credentials document is one flat object: anything nested deeper is not one.
  json::parse_options options;
  options.max_depth = 8;
  auto v = json::parse(body, ec, {}, options);
  if (ec || !v.is_object()) {
    return fail(errc::permission,
                source + " answered with something that is not a credentials document");
  }
  const auto& o = v.as_object();
  auto str = [&](std::string_view key) -> std::string {
    auto it = o.find(key);
    return it != o.end() && it->value().is_string() ? std::string(it->value().as_string())
                                                    : std::string{};
  };
  expiring_credentials c;
  c.source = std::move(source);
  c.keys.access_key_id = str("AccessKeyId");
  c.keys.secret_access_key = str("SecretAccessKey");
  c.keys.session_token = str("Token");
  if (c.keys.access_key_id.empty() || c.keys.secret_access_key.empty()) {
    return fail(errc::permission, c.source + " answered without AccessKeyId/SecretAccessKey");
  }
  if (auto ok = check_credentials(c.keys, c.source); !ok) return ok.error();
  if (auto exp = str("Expiration"); !exp.empty()) {
    auto t = parse_iso8601(exp);
    if (!t) return fail(errc::permission, c.source + " answered with an unreadable Expiration");
    c.expiration = *t;
  }
  return c;
}

shared_files load_shared_files(const environment_lookup& env, const std::string& profile) {
  shared_files f;
  f.profile = !profile.empty() ? profile : env("AWS_PROFILE").value_or("default");
  const std::string home = env("HOME").value_or("");
  const std::string creds_path =
      env("AWS_SHARED_CREDENTIALS_FILE").value_or(home.empty() ? "" : home + "/.aws/credentials");
  const std::string config_path =
      env("AWS_CONFIG_FILE").value_or(home.empty() ? "" : home + "/.aws/config");
  for (auto [path, into] : {std::pair{&creds_path, &f.credentials}, {&config_path, &f.config}}) {
    if (path->empty()) continue;
    auto text = read_file(*path, max_shared_file_bytes);
    if (!text) {
      if (!f.skipped.empty()) f.skipped += ", ";
      f.skipped += text.error().message;
    } else if (*text) {
      *into = parse_ini(**text);
    }
  }
  return f;
}

std::string resolve_region(const std::string& configured, const environment_lookup& env,
                           const shared_files& files) {
  if (!configured.empty()) return configured;
  if (auto r = env("AWS_REGION")) return *r;
  if (auto r = env("AWS_DEFAULT_REGION")) return *r;
  if (auto r = profile_region(files.credentials, files.config, files.profile); !r.empty()) return r;
  return "us-east-1";
}

credential_chain::credential_chain(boost::asio::any_io_executor executor,
                                   credential_settings settings, environment_lookup env)
    : executor_(std::move(executor)), settings_(std::move(settings)), env_(std::move(env)) {}

void credential_chain::invalidate() {
  std::lock_guard lock(mutex_);
  cached_.reset();
}

boost::asio::awaitable<result<expiring_credentials>> credential_chain::get(
    std::chrono::system_clock::time_point now) {
  {
    std::lock_guard lock(mutex_);
    if (cached_ &&
        (!cached_->expiration || *cached_->expiration - settings_.refresh_margin > now)) {
      co_return *cached_;
    }
  }
  auto fresh = co_await resolve();
  if (!fresh) co_return fresh.error();
  std::lock_guard lock(mutex_);
  cached_ = *fresh;
  co_return std::move(*fresh);
}

namespace {

/// "http://host:port/path" as the endpoint and the path ("/" when there is none).
result<std::pair<net::endpoint, std::string>> split_metadata_url(const std::string& url) {
  const auto scheme_end = url.find("://");
  const auto path_start =
      scheme_end == std::string::npos ? std::string::npos : url.find('/', scheme_end + 3);
  auto ep = parse_endpoint(path_start == std::string::npos ? url : url.substr(0, path_start));
  if (!ep) return ep.error();
  return std::pair{std::move(*ep),
                   path_start == std::string::npos ? std::string("/") : url.substr(path_start)};
}

// One plain-HTTP call to a metadata endpoint (ECS agent or IMDS); those speak http only.
boost::asio::awaitable<result<http_response>> metadata_call(boost::asio::any_io_executor ex,
                                                            const std::string& url,
                                                            http_request req,
                                                            std::chrono::milliseconds timeout) {
  auto split = split_metadata_url(url);
  if (!split) co_return split.error();
  if (split->first.tls)
    co_return fail(errc::configuration_error, "metadata endpoints over https are not supported");
  req.target = std::move(split->second);
  http_pool pool(ex, split->first, http_settings{timeout, 0, false, {}, 1u << 20});
  co_return co_await pool.send(std::move(req), timeout);
}

/// True when `url` is http to a loopback address or to the container agent's own address (ECS
/// 169.254.170.2; EKS 169.254.170.23, fd00:ec2::23). Those are the only hosts the agent
/// listens on; the keys it answers with, and the authorization token sent to it, travel in
/// plain http (metadata endpoints over https are not supported).
bool is_container_agent_url(const std::string& url) {
  auto split = split_metadata_url(url);
  if (!split || split->first.tls) return false;
  const std::string& host = split->first.host;
  if (host == "localhost") return true;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(host, ec);
  if (ec) return false;
  return address.is_loopback() || address == boost::asio::ip::make_address("169.254.170.2") ||
         address == boost::asio::ip::make_address("169.254.170.23") ||
         address == boost::asio::ip::make_address("fd00:ec2::23");
}

}  // namespace

boost::asio::awaitable<result<expiring_credentials>> credential_chain::resolve() {
  // The caller's executor runs the metadata calls (the chain may outlive any one io_context).
  const auto executor = co_await boost::asio::this_coro::executor;
  std::string tried;
  auto note = [&](std::string what) {
    if (!tried.empty()) tried += "; ";
    tried += what;
  };

  // Keys from configuration are checked like fetched ones: a stray newline in a file or a
  // variable would otherwise break (or inject into) every request's headers.
  auto checked = [](expiring_credentials c) -> result<expiring_credentials> {
    if (auto ok = check_credentials(c.keys, c.source); !ok) return ok.error();
    return c;
  };
  if (!settings_.explicit_keys.access_key_id.empty() &&
      !settings_.explicit_keys.secret_access_key.empty()) {
    co_return checked({settings_.explicit_keys, std::nullopt, "explicit"});
  }
  if (auto half = half_of_a_key_pair(!settings_.explicit_keys.access_key_id.empty(),
                                     !settings_.explicit_keys.secret_access_key.empty(),
                                     "the access key id", "the secret access key");
      !half.empty()) {
    note("explicit keys: " + half);
  } else {
    note("explicit keys: not set");
  }

  const auto env_id = env_("AWS_ACCESS_KEY_ID");
  const auto env_secret = env_("AWS_SECRET_ACCESS_KEY");
  if (env_id && env_secret) {
    co_return checked(
        {aws_credentials{*env_id, *env_secret, env_("AWS_SESSION_TOKEN").value_or("")},
         std::nullopt, "environment"});
  }
  if (auto half = half_of_a_key_pair(env_id.has_value(), env_secret.has_value(),
                                     "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY");
      !half.empty()) {
    note("environment: " + half);
  } else {
    note("environment: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY not set");
  }

  const auto files = load_shared_files(env_, settings_.profile);
  if (auto c = profile_credentials(files.credentials, files.config, files.profile)) {
    co_return checked({*c, std::nullopt, "profile '" + files.profile + "'"});
  }
  std::string half_profile = half_of_a_profile_pair(section(files.credentials, files.profile));
  if (half_profile.empty()) {
    half_profile = half_of_a_profile_pair(config_section(files.config, files.profile));
  }
  note("profile '" + files.profile +
       "': " + (half_profile.empty() ? std::string("no keys in the shared files") : half_profile) +
       (files.skipped.empty() ? std::string{} : " (skipped: " + files.skipped + ")"));

  // ECS task role: the agent's endpoint, with an optional authorization token.
  std::optional<std::string> ecs_url;
  if (auto rel = env_("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")) {
    // A path on the agent's fixed address; anything else would pick another host.
    if (rel->empty() || rel->front() != '/') {
      note("ecs: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI does not start with '/'");
    } else {
      ecs_url = "http://169.254.170.2" + *rel;
    }
  } else if (auto full = env_("AWS_CONTAINER_CREDENTIALS_FULL_URI")) {
    if (is_container_agent_url(*full)) {
      ecs_url = *full;
    } else {
      note(
          "ecs: AWS_CONTAINER_CREDENTIALS_FULL_URI names neither a loopback address nor the "
          "container agent's (169.254.170.2, 169.254.170.23, fd00:ec2::23): not asked, since "
          "plain http to another host could read the authorization token or forge the keys");
    }
  } else {
    note("ecs: not configured");
  }
  if (ecs_url) {
    http_request req;
    req.method = "GET";
    if (auto token = env_("AWS_CONTAINER_AUTHORIZATION_TOKEN")) {
      req.headers.emplace_back("Authorization", *token);
    }
    auto res = co_await metadata_call(executor, *ecs_url, std::move(req), settings_.http_timeout);
    if (res && res->status == 200) {
      auto c = parse_credentials_document(res->body, "ecs");
      if (c) co_return c;
      note("ecs: " + c.error().message);
    } else {
      note("ecs: " + (res ? "HTTP " + std::to_string(res->status) : res.error().message));
    }
  }

  // EC2 instance role through IMDSv2 (session token first, then role name, then keys).
  if (lower(env_("AWS_EC2_METADATA_DISABLED").value_or("false")) == "true") {
    note("imds: disabled");
  } else {
    std::string base = env_("AWS_EC2_METADATA_SERVICE_ENDPOINT").value_or("http://169.254.169.254");
    if (!base.empty() && base.back() == '/') base.pop_back();
    http_request token_req;
    token_req.method = "PUT";
    token_req.headers.emplace_back("X-aws-ec2-metadata-token-ttl-seconds", "21600");
    auto token = co_await metadata_call(executor, base + "/latest/api/token", std::move(token_req),
                                        settings_.http_timeout);
    auto token_text = token && token->status == 200 ? parse_imds_token(token->body)
                                                    : result<std::string>(std::string{});
    if (!token || token->status != 200) {
      note("imds: " +
           (token ? "token HTTP " + std::to_string(token->status) : token.error().message));
    } else if (!token_text) {
      note(token_text.error().message);
    } else {
      http_request role_req;
      role_req.method = "GET";
      role_req.headers.emplace_back("X-aws-ec2-metadata-token", *token_text);
      auto role =
          co_await metadata_call(executor, base + "/latest/meta-data/iam/security-credentials/",
                                 role_req, settings_.http_timeout);
      auto role_name = role && role->status == 200 ? parse_imds_role_name(role->body)
                                                   : result<std::string>(std::string{});
      if (!role_name) {
        note(role_name.error().message);
      } else if (role_name->empty()) {
        note("imds: no instance role");
      } else {
        auto doc = co_await metadata_call(
            executor, base + "/latest/meta-data/iam/security-credentials/" + *role_name, role_req,
            settings_.http_timeout);
        if (doc && doc->status == 200) {
          auto c = parse_credentials_document(doc->body, "imds");
          if (c) co_return c;
          note("imds: " + c.error().message);
        } else {
          note("imds: " + (doc ? "HTTP " + std::to_string(doc->status) : doc.error().message));
        }
      }
    }
  }
  co_return fail(errc::permission, "no AWS credentials found (" + tried + ")");
}

}  // namespace qrt::sqs::detail
