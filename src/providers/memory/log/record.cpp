#include "record.hpp"

#include <chrono>
#include <cstring>

#include "crc32c.hpp"

namespace qrt::memory::log {
namespace {

// ---- writing ----------------------------------------------------------------------------------

void put_u8(std::string& out, std::uint8_t v) {
  out.push_back(static_cast<char>(v));
}

void put_u32(std::string& out, std::uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xFFu);
  out.append(b, 4);
}

void put_u64(std::string& out, std::uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xFFu);
  out.append(b, 8);
}

void put_i64(std::string& out, std::int64_t v) {
  put_u64(out, static_cast<std::uint64_t>(v));
}

void put_string(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

void put_bool(std::string& out, bool b) {
  put_u8(out, b ? 1 : 0);
}

void put_time(std::string& out, time_point t) {
  put_i64(out, std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

void put_queue(std::string& out, const queue_name& q) {
  put_string(out, q.str());
  put_bool(out, q.is_dead_letter());
}

void put_optional_ms(std::string& out, const std::optional<milliseconds>& ms) {
  put_bool(out, ms.has_value());
  if (ms) put_i64(out, ms->count());
}

void put_options(std::string& out, const queue_options& o) {
  put_i64(out, o.lock_duration.count());
  put_u32(out, o.max_delivery_count);
  put_optional_ms(out, o.default_time_to_live);
  put_bool(out, o.dead_letter_on_expiration);
  put_bool(out, o.requires_session);
  put_u64(out, o.max_size);
  put_u64(out, o.max_message_bytes);
}

void put_filter(std::string& out, const subscription_filter& f) {
  put_bool(out, f.subject.has_value());
  if (f.subject) put_string(out, *f.subject);
  put_u32(out, static_cast<std::uint32_t>(f.attributes.size()));
  for (const auto& [k, v] : f.attributes) {
    put_string(out, k);
    put_string(out, v);
  }
}

void put_message(std::string& out, const stored_message& m) {
  put_u64(out, m.sequence);
  put_time(out, m.enqueued_time);
  put_u32(out, m.delivery_count);
  put_bool(out, m.dead_letter.has_value());
  if (m.dead_letter) {
    put_string(out, m.dead_letter->reason);
    put_string(out, m.dead_letter->description);
  }
  const message& c = m.content;
  put_string(out, c.body);
  put_u32(out, static_cast<std::uint32_t>(c.attributes.size()));
  for (const auto& [k, v] : c.attributes) {
    put_string(out, k);
    put_string(out, v);
  }
  put_bool(out, c.session.has_value());
  if (c.session) put_string(out, c.session->str());
  put_string(out, c.correlation_id);
  put_string(out, c.content_type);
  put_string(out, c.subject);
  put_string(out, c.id);
  put_optional_ms(out, c.time_to_live);
  put_bool(out, c.scheduled_enqueue_time.has_value());
  if (c.scheduled_enqueue_time) put_time(out, *c.scheduled_enqueue_time);
}

void store_u32(char* at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) at[i] = static_cast<char>((v >> (8 * i)) & 0xFFu);
}

std::uint32_t load_u32(const char* at) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::uint32_t{static_cast<unsigned char>(at[i])} << (8 * i);
  return v;
}

/// Appends header + payload written by `write_payload`, then fills in length and checksums.
template <class Writer>
result<void> append_frame(std::string& out, record_type type, Writer&& write_payload) {
  const std::size_t start = out.size();
  out.append(frame_header_size, '\0');
  put_u8(out, static_cast<std::uint8_t>(type));
  write_payload(out);
  const std::size_t payload_size = out.size() - start - frame_header_size;
  if (payload_size > max_payload_size) {
    out.resize(start);
    return fail(errc::message_too_large,
                "persistence log: a record of " + std::to_string(payload_size) +
                    " bytes exceeds the largest record (" + std::to_string(max_payload_size) + ")");
  }
  char* header = out.data() + start;
  store_u32(header, static_cast<std::uint32_t>(payload_size));
  store_u32(header + 4, crc32c(0, header + frame_header_size, payload_size));
  store_u32(header + 8, crc32c(0, header, 8));
  return {};
}

// ---- reading ----------------------------------------------------------------------------------

/// Bounds-checked reader over a payload; the first failure sticks and names its byte offset.
class reader {
 public:
  explicit reader(std::string_view bytes) : bytes_(bytes) {}

  bool ok() const { return problem_.empty(); }
  bool at_end() const { return pos_ == bytes_.size(); }
  std::size_t position() const { return pos_; }
  const std::string& problem() const { return problem_; }

  void fail_at(std::string what) {
    if (problem_.empty()) problem_ = what + " at payload byte " + std::to_string(pos_);
  }

  std::uint8_t u8(const char* what) {
    if (!need(1, what)) return 0;
    return static_cast<std::uint8_t>(bytes_[pos_++]);
  }
  std::uint32_t u32(const char* what) {
    if (!need(4, what)) return 0;
    const std::uint32_t v = load_u32(bytes_.data() + pos_);
    pos_ += 4;
    return v;
  }
  std::uint64_t u64(const char* what) {
    if (!need(8, what)) return 0;
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
      v |= std::uint64_t{static_cast<unsigned char>(bytes_[pos_ + i])} << (8 * i);
    pos_ += 8;
    return v;
  }
  std::int64_t i64(const char* what) { return static_cast<std::int64_t>(u64(what)); }
  /// A message sequence number the provider could have handed out (see largest_sequence).
  std::uint64_t sequence(const char* what) {
    const std::uint64_t v = u64(what);
    if (v > largest_sequence) fail_at(std::string("impossible ") + what + " " + std::to_string(v));
    return v;
  }
  bool boolean(const char* what) {
    const std::uint8_t b = u8(what);
    if (b > 1) fail_at(std::string("invalid boolean for ") + what);
    return b == 1;
  }
  std::string string(const char* what) {
    const std::uint32_t size = u32(what);
    if (!need(size, what)) return {};
    std::string s(bytes_.substr(pos_, size));
    pos_ += size;
    return s;
  }
  time_point time(const char* what) {
    const std::int64_t ns = i64(what);
    return time_point{std::chrono::duration_cast<clock::duration>(std::chrono::nanoseconds{ns})};
  }
  /// A duration the provider could have written: within +-longest_duration.
  milliseconds ms(const char* what) {
    const std::int64_t v = i64(what);
    if (v < -detail::longest_duration.count() || v > detail::longest_duration.count()) {
      fail_at(std::string("impossible ") + what + " " + std::to_string(v) + " ms");
      return milliseconds{0};
    }
    return milliseconds{v};
  }
  std::optional<milliseconds> optional_ms(const char* what) {
    if (!boolean(what)) return std::nullopt;
    return ms(what);
  }
  queue_name queue() {
    std::string name = string("queue name");
    const bool dead_letter = boolean("dead-letter flag");
    if (!ok()) return {};
    // A subscription is stored as its path, "<topic>/Subscriptions/<name>" (version 2).
    constexpr std::string_view marker = "/Subscriptions/";
    result<queue_name> parsed = fail(errc::invalid_argument, "");
    if (const auto at = name.find(marker); at != std::string::npos) {
      auto topic = topic_name::parse(std::string_view(name).substr(0, at));
      if (topic) parsed = queue_name::subscription(*topic, name.substr(at + marker.size()));
    } else {
      parsed = queue_name::parse(name);
    }
    if (!parsed) {
      fail_at("invalid queue name");
      return {};
    }
    return dead_letter ? parsed->dead_letter() : *parsed;
  }
  topic_name topic() {
    std::string name = string("topic name");
    if (!ok()) return {};
    auto parsed = topic_name::parse(name);
    if (!parsed) {
      fail_at("invalid topic name");
      return {};
    }
    return *parsed;
  }
  session_id session() {
    std::string id = string("session id");
    if (!ok()) return {};
    auto parsed = session_id::parse(id);
    if (!parsed) {
      fail_at("invalid session id");
      return {};
    }
    return *parsed;
  }

 private:
  bool need(std::size_t n, const char* what) {
    if (!ok()) return false;
    if (bytes_.size() - pos_ < n) {
      fail_at(std::string("truncated ") + what);
      return false;
    }
    return true;
  }

  std::string_view bytes_;
  std::size_t pos_ = 0;
  std::string problem_;
};

queue_options read_options(reader& r) {
  queue_options o;
  o.lock_duration = r.ms("lock duration");
  // The provider creates no queue without a positive lock duration and a non-negative default
  // time to live, and would fail to rebuild one from a record that has them.
  if (r.ok() && o.lock_duration.count() <= 0)
    r.fail_at("impossible lock duration " + std::to_string(o.lock_duration.count()) + " ms");
  o.max_delivery_count = r.u32("max delivery count");
  o.default_time_to_live = r.optional_ms("default time to live");
  if (r.ok() && o.default_time_to_live && o.default_time_to_live->count() < 0)
    r.fail_at("impossible default time to live " + std::to_string(o.default_time_to_live->count()) +
              " ms");
  o.dead_letter_on_expiration = r.boolean("dead-letter-on-expiration flag");
  o.requires_session = r.boolean("requires-session flag");
  o.max_size = static_cast<std::size_t>(r.u64("max size"));
  o.max_message_bytes = static_cast<std::size_t>(r.u64("max message bytes"));
  return o;
}

subscription_filter read_filter(reader& r) {
  subscription_filter f;
  if (r.boolean("filter subject flag")) f.subject = r.string("filter subject");
  const std::uint32_t count = r.u32("filter attribute count");
  // As for message attributes: a hostile count ends at the first truncated string.
  for (std::uint32_t i = 0; i < count && r.ok(); ++i) {
    std::string key = r.string("filter attribute key");
    std::string value = r.string("filter attribute value");
    if (r.ok()) f.attributes.insert_or_assign(std::move(key), std::move(value));
  }
  return f;
}

stored_message read_message(reader& r) {
  stored_message m;
  m.sequence = r.sequence("sequence");
  m.enqueued_time = r.time("enqueued time");
  m.delivery_count = r.u32("delivery count");
  if (r.boolean("dead-letter info flag")) {
    dead_letter_info info;
    info.reason = r.string("dead-letter reason");
    info.description = r.string("dead-letter description");
    m.dead_letter = std::move(info);
  }
  message& c = m.content;
  c.body = r.string("body");
  const std::uint32_t attribute_count = r.u32("attribute count");
  // Each attribute takes at least 8 bytes, so a count larger than what is left is garbage; the
  // check keeps a hostile count from spinning.
  for (std::uint32_t i = 0; i < attribute_count && r.ok(); ++i) {
    std::string key = r.string("attribute key");
    std::string value = r.string("attribute value");
    if (r.ok()) c.attributes.insert_or_assign(std::move(key), std::move(value));
  }
  if (r.boolean("session flag")) c.session = r.session();
  c.correlation_id = r.string("correlation id");
  c.content_type = r.string("content type");
  c.subject = r.string("subject");
  c.id = r.string("message id");
  c.time_to_live = r.optional_ms("time to live");
  if (r.boolean("scheduled flag")) c.scheduled_enqueue_time = r.time("scheduled enqueue time");
  return m;
}

}  // namespace

result<void> append_queue_created(std::string& out, const queue_name& queue,
                                  const queue_options& options, std::uint64_t next_sequence) {
  return append_frame(out, record_type::queue_created, [&](std::string& p) {
    put_queue(p, queue);
    put_options(p, options);
    put_u64(p, next_sequence);
  });
}

result<void> append_queue_deleted(std::string& out, const queue_name& queue) {
  return append_frame(out, record_type::queue_deleted,
                      [&](std::string& p) { put_queue(p, queue); });
}

result<void> append_enqueued(std::string& out, const queue_name& queue, const stored_message& msg) {
  return append_frame(out, record_type::enqueued, [&](std::string& p) {
    put_queue(p, queue);
    put_message(p, msg);
  });
}

result<void> append_delivered(std::string& out, const queue_name& queue, std::uint64_t sequence,
                              std::uint32_t delivery_count) {
  return append_frame(out, record_type::delivered, [&](std::string& p) {
    put_queue(p, queue);
    put_u64(p, sequence);
    put_u32(p, delivery_count);
  });
}

result<void> append_removed(std::string& out, const queue_name& queue, std::uint64_t sequence) {
  return append_frame(out, record_type::removed, [&](std::string& p) {
    put_queue(p, queue);
    put_u64(p, sequence);
  });
}

result<void> append_session_state(std::string& out, const queue_name& queue,
                                  const session_id& session, const std::string& state) {
  return append_frame(out, record_type::session_state_set, [&](std::string& p) {
    put_queue(p, queue);
    put_string(p, session.str());
    put_string(p, state);
  });
}

result<void> append_topic_created(std::string& out, const topic_name& topic) {
  return append_frame(out, record_type::topic_created,
                      [&](std::string& p) { put_string(p, topic.str()); });
}

result<void> append_topic_deleted(std::string& out, const topic_name& topic) {
  return append_frame(out, record_type::topic_deleted,
                      [&](std::string& p) { put_string(p, topic.str()); });
}

result<void> append_subscription_created(std::string& out, const queue_name& subscription,
                                         const queue_options& options, std::uint64_t next_sequence,
                                         const subscription_filter& filter) {
  return append_frame(out, record_type::subscription_created, [&](std::string& p) {
    put_queue(p, subscription);
    put_options(p, options);
    put_u64(p, next_sequence);
    put_filter(p, filter);
  });
}

result<void> append_published(std::string& out, const topic_name& topic, const stored_message& msg,
                              const std::vector<std::pair<queue_name, std::uint64_t>>& copies) {
  return append_frame(out, record_type::published, [&](std::string& p) {
    put_string(p, topic.str());
    put_message(p, msg);
    put_u32(p, static_cast<std::uint32_t>(copies.size()));
    for (const auto& [subscription, sequence] : copies) {
      put_string(p, subscription.subscription_name());
      put_u64(p, sequence);
    }
  });
}

namespace {

constexpr std::size_t u8 = 1, u32 = 4, u64 = 8;
constexpr std::size_t string_size(std::string_view s) {
  return u32 + s.size();
}

/// What put_message writes for `c`, field by field.
std::size_t message_payload_size(const message& c, const dead_letter_info* dead_letter) {
  const auto string = string_size;
  const auto optional_ms = [&](bool present) { return u8 + (present ? u64 : 0); };
  std::size_t n = u64 + u64 + u32 + u8;  // sequence, enqueued time, count, flag
  if (dead_letter) n += string(dead_letter->reason) + string(dead_letter->description);
  n += string(c.body) + u32;
  for (const auto& [k, v] : c.attributes) n += string(k) + string(v);
  n += u8 + (c.session ? string(c.session->str()) : 0);
  n += string(c.correlation_id) + string(c.content_type) + string(c.subject) + string(c.id);
  n += optional_ms(c.time_to_live.has_value());
  n += optional_ms(c.scheduled_enqueue_time.has_value());
  return n;
}

}  // namespace

std::size_t published_payload_size(const topic_name& topic, const message& c,
                                   const std::vector<queue_name>& copies) {
  // Mirrors append_published: type, topic, the message once, then each copy's name and place.
  std::size_t n = u8 + string_size(topic.str()) + message_payload_size(c, nullptr) + u32;
  for (const auto& subscription : copies) n += string_size(subscription.subscription_name()) + u64;
  return n;
}

std::size_t enqueued_payload_size(const queue_name& queue, const message& c,
                                  const dead_letter_info* dead_letter) {
  // Mirrors put_queue and put_message.
  return u8 + string_size(queue.str()) + u8 + message_payload_size(c, dead_letter);
}

result<void> append_record(std::string& out, const record& r) {
  struct visitor {
    std::string& out;
    result<void> operator()(const queue_created_record& x) {
      return append_queue_created(out, x.queue, x.options, x.next_sequence);
    }
    result<void> operator()(const queue_deleted_record& x) {
      return append_queue_deleted(out, x.queue);
    }
    result<void> operator()(const enqueued_record& x) {
      return append_enqueued(out, x.queue, x.message);
    }
    result<void> operator()(const delivered_record& x) {
      return append_delivered(out, x.queue, x.sequence, x.delivery_count);
    }
    result<void> operator()(const removed_record& x) {
      return append_removed(out, x.queue, x.sequence);
    }
    result<void> operator()(const session_state_record& x) {
      return append_session_state(out, x.queue, x.session, x.state);
    }
    result<void> operator()(const topic_created_record& x) {
      return append_topic_created(out, x.topic);
    }
    result<void> operator()(const topic_deleted_record& x) {
      return append_topic_deleted(out, x.topic);
    }
    result<void> operator()(const subscription_created_record& x) {
      return append_subscription_created(out, x.subscription, x.options, x.next_sequence, x.filter);
    }
    result<void> operator()(const published_record& x) {
      return append_published(out, x.topic, x.message, x.copies);
    }
  };
  return std::visit(visitor{out}, r);
}

frame_view read_frame(std::string_view bytes) {
  frame_view v;
  if (bytes.size() < frame_header_size) {
    v.status = frame_status::incomplete;
    v.problem = "incomplete frame header (" + std::to_string(bytes.size()) + " bytes)";
    return v;
  }
  const std::uint32_t length = load_u32(bytes.data());
  const std::uint32_t payload_crc = load_u32(bytes.data() + 4);
  const std::uint32_t header_crc = load_u32(bytes.data() + 8);
  if (crc32c(0, bytes.data(), 8) != header_crc) {
    v.status = frame_status::corrupt;
    v.problem = "frame header checksum mismatch";
    return v;
  }
  if (length == 0 || length > max_payload_size) {
    v.status = frame_status::corrupt;
    v.problem = "impossible record length " + std::to_string(length);
    return v;
  }
  if (bytes.size() - frame_header_size < length) {
    v.status = frame_status::incomplete;
    v.problem = "record of " + std::to_string(length) + " bytes cut off after " +
                std::to_string(bytes.size() - frame_header_size);
    return v;
  }
  const std::string_view payload = bytes.substr(frame_header_size, length);
  if (crc32c(payload) != payload_crc) {
    v.status = frame_status::corrupt;
    v.problem = "record checksum mismatch";
    return v;
  }
  v.status = frame_status::ok;
  v.payload = payload;
  v.frame_size = frame_header_size + length;
  return v;
}

result<record> decode_record(std::string_view payload) {
  reader r(payload);
  const std::uint8_t type = r.u8("record type");
  record out;
  switch (static_cast<record_type>(type)) {
    case record_type::queue_created: {
      queue_created_record x;
      x.queue = r.queue();
      x.options = read_options(r);
      x.next_sequence = r.sequence("next sequence");
      out = std::move(x);
      break;
    }
    case record_type::queue_deleted:
      out = queue_deleted_record{r.queue()};
      break;
    case record_type::enqueued: {
      enqueued_record x;
      x.queue = r.queue();
      x.message = read_message(r);
      out = std::move(x);
      break;
    }
    case record_type::delivered: {
      delivered_record x;
      x.queue = r.queue();
      x.sequence = r.u64("sequence");
      x.delivery_count = r.u32("delivery count");
      out = std::move(x);
      break;
    }
    case record_type::removed: {
      removed_record x;
      x.queue = r.queue();
      x.sequence = r.u64("sequence");
      out = std::move(x);
      break;
    }
    case record_type::session_state_set: {
      session_state_record x;
      x.queue = r.queue();
      x.session = r.session();
      x.state = r.string("session state");
      out = std::move(x);
      break;
    }
    case record_type::topic_created:
      out = topic_created_record{r.topic()};
      break;
    case record_type::topic_deleted:
      out = topic_deleted_record{r.topic()};
      break;
    case record_type::subscription_created: {
      subscription_created_record x;
      x.subscription = r.queue();
      x.options = read_options(r);
      x.next_sequence = r.sequence("next sequence");
      x.filter = read_filter(r);
      if (r.ok() && (!x.subscription.is_subscription() || x.subscription.is_dead_letter())) {
        r.fail_at("subscription_created for a name that is not a subscription");
      }
      out = std::move(x);
      break;
    }
    case record_type::published: {
      published_record x;
      x.topic = r.topic();
      x.message = read_message(r);
      const std::uint32_t count = r.u32("subscription count");
      // Each copy takes at least 12 bytes; a hostile count ends at the first truncated field.
      for (std::uint32_t i = 0; i < count && r.ok(); ++i) {
        std::string name = r.string("subscription name");
        const std::uint64_t sequence = r.sequence("subscription sequence");
        if (!r.ok()) break;
        auto subscription = queue_name::subscription(x.topic, name);
        if (!subscription) {
          r.fail_at("invalid subscription name");
          break;
        }
        x.copies.emplace_back(std::move(*subscription), sequence);
      }
      out = std::move(x);
      break;
    }
    default:
      if (r.ok()) r.fail_at("unknown record type " + std::to_string(type));
  }
  if (r.ok() && !r.at_end()) r.fail_at("unexpected trailing bytes");
  if (!r.ok()) return fail(errc::protocol_error, "persistence log record: " + r.problem());
  return out;
}

std::string segment_header(std::uint64_t segment_index) {
  std::string h(segment_magic);
  put_u64(h, segment_index);
  return h;
}

result<std::uint64_t> parse_segment_header(std::string_view bytes) {
  if (bytes.size() < segment_header_size)
    return fail(errc::protocol_error,
                "segment header cut off after " + std::to_string(bytes.size()) + " bytes");
  const auto magic = bytes.substr(0, segment_magic.size());
  if (magic != segment_magic && magic != segment_magic_v1)
    return fail(errc::protocol_error, "not a qrt log segment (bad magic)");
  reader r(bytes.substr(segment_magic.size(), 8));
  return r.u64("segment index");
}

}  // namespace qrt::memory::log
