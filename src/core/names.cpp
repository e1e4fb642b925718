#include <algorithm>
#include <qrt/names.hpp>

#include "name_checks.hpp"

namespace qrt::detail {

std::string printable_name(std::string_view text) {
  return printable_text(text, 64);
}

std::string printable_text(std::string_view text, std::size_t limit) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : text.substr(0, limit)) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    }
  }
  if (text.size() > limit) out += "...";
  return out;
}

}  // namespace qrt::detail

namespace qrt {
namespace {

bool is_name_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

// Queue, topic and subscription names share one rule set; `what` names the kind in the error.
result<void> check_name(std::string_view text, std::string_view what, std::size_t max_length) {
  auto bad = [&](std::string_view why) {
    return fail(errc::invalid_argument, "invalid " + std::string(what) + " '" +
                                            detail::printable_name(text) +
                                            "': " + std::string(why));
  };
  if (text.empty()) return bad("empty");
  if (text.size() > max_length) {
    return bad("longer than " + std::to_string(max_length) + " characters");
  }
  for (char c : text) {
    if (!is_name_char(c)) return bad("only ASCII letters, digits, '-', '_' and '.' are allowed");
  }
  if (text.front() == '-' || text.back() == '-') return bad("starts or ends with '-'");
  if (text.find("--") != std::string_view::npos) return bad("has consecutive '-'");
  return {};
}

constexpr std::string_view subscriptions_infix = "/Subscriptions/";

}  // namespace

result<topic_name> topic_name::parse(std::string_view text) {
  if (auto ok = check_name(text, "topic name", 260); !ok) return ok.error();
  topic_name t;
  t.name_ = std::string(text);
  return t;
}

result<queue_name> queue_name::parse(std::string_view text) {
  if (auto ok = check_name(text, "queue name", 260); !ok) return ok.error();
  queue_name q;
  q.name_ = std::string(text);
  return q;
}

result<queue_name> queue_name::subscription(const topic_name& topic, std::string_view name) {
  if (topic.str().empty()) return fail(errc::invalid_argument, "invalid subscription: no topic");
  if (auto ok = check_name(name, "subscription name", 50); !ok) return ok.error();
  queue_name q;
  q.topic_ = topic.str();
  q.name_ = topic.str();
  q.name_ += subscriptions_infix;
  q.name_ += name;
  return q;
}

std::string_view queue_name::subscription_name() const noexcept {
  std::string_view path = name_;
  if (topic_.empty()) return path;
  return path.substr(topic_.size() + subscriptions_infix.size());
}

bool queue_name::is_fifo() const noexcept {
  return topic_.empty() && name_.size() > 5 && name_.compare(name_.size() - 5, 5, ".fifo") == 0;
}

std::string queue_name::to_string() const {
  return dead_letter_ ? name_ + "/$DeadLetterQueue" : name_;
}

result<session_id> session_id::parse(std::string_view text) {
  if (text.empty()) return fail(errc::invalid_argument, "invalid session id: empty");
  if (text.size() > 128) {
    return fail(errc::invalid_argument, "invalid session id: longer than 128 characters");
  }
  for (char c : text) {
    if (c < 0x20 || c > 0x7e) {
      return fail(errc::invalid_argument, "invalid session id: only printable ASCII is allowed");
    }
  }
  session_id s;
  s.id_ = std::string(text);
  return s;
}

session_id session_id::for_shard(std::string_view key, std::uint32_t shards) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;  // FNV-1a, 64 bit: offset basis and prime
  for (unsigned char c : key) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  session_id s;
  s.id_ = "shard-" + std::to_string(hash % std::max<std::uint32_t>(shards, 1));
  return s;
}

}  // namespace qrt
