#include <algorithm>
#include <qrt/names.hpp>

namespace qrt {
namespace {

bool is_name_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

}  // namespace

result<queue_name> queue_name::parse(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return fail(errc::invalid_argument, "invalid queue name '" + std::string(text.substr(0, 64)) +
                                            "': " + std::string(why));
  };
  if (text.empty()) return bad("empty");
  if (text.size() > 260) return bad("longer than 260 characters");
  for (char c : text) {
    if (!is_name_char(c)) return bad("only ASCII letters, digits, '-', '_' and '.' are allowed");
  }
  if (text.front() == '-' || text.back() == '-') return bad("starts or ends with '-'");
  if (text.find("--") != std::string_view::npos) return bad("has consecutive '-'");
  queue_name q;
  q.name_ = std::string(text);
  return q;
}

bool queue_name::is_fifo() const noexcept {
  return name_.size() > 5 && name_.compare(name_.size() - 5, 5, ".fifo") == 0;
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
