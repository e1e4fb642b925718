#include <algorithm>
#include <cstdint>
#include <qrt/names.hpp>
#include <string>

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

namespace {

// The length of the well-formed UTF-8 sequence `text` starts with, its code point in `cp`; 0 when
// the bytes there are not one (a continuation byte, an overlong form, a surrogate, a code point
// past U+10FFFF, or a sequence `text` ends inside).
std::size_t utf8_sequence(std::string_view text, std::uint32_t& cp) {
  const auto lead = static_cast<unsigned char>(text[0]);
  std::size_t length = 0;
  std::uint32_t least = 0;
  if (lead < 0x80) {
    cp = lead;
    return 1;
  }
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    least = 0x80;
    cp = lead & 0x1fu;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    least = 0x800;
    cp = lead & 0x0fu;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    least = 0x10000;
    cp = lead & 0x07u;
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  for (std::size_t i = 1; i < length; ++i) {
    const auto next = static_cast<unsigned char>(text[i]);
    if ((next & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (next & 0x3fu);
  }
  if (cp < least || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return length;
}

}  // namespace

std::string peer_text(std::string_view text, std::size_t limit) {
  std::string out;
  out.reserve(std::min(text.size(), limit));
  std::size_t at = 0;
  while (at < text.size() && at < limit) {
    std::uint32_t cp = 0;
    const auto length = utf8_sequence(text.substr(at), cp);
    if (length == 0) {
      out += '?';
      ++at;
      continue;
    }
    if (at + length > limit) break;  // a character the limit would cut: counted, not shown
    const bool control = cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
    if (control) {
      out += '?';
    } else {
      out.append(text.substr(at, length));
    }
    at += length;
  }
  if (at < text.size()) out += "... (" + std::to_string(text.size() - at) + " more bytes)";
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
