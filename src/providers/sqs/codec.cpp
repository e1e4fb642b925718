#include "codec.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <limits>

#include "core/name_checks.hpp"
#include "digest.hpp"

namespace qrt::sqs::detail {

std::string excerpt(std::string_view text) {
  constexpr std::size_t max = 40;
  std::string out;
  for (std::size_t i = 0; i < text.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    out += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
  }
  if (text.size() > max) out += "...";
  return out;
}

std::string server_text(std::string_view text) {
  return qrt::detail::peer_text(text, 512);
}

namespace json = boost::json;

// ---- text and names ----

bool is_valid_sqs_text(std::string_view text) noexcept {
  std::size_t i = 0;
  const auto n = text.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(text[i]);
    // Printable ASCII, the usual case, needs no decoding: one comparison per byte.
    if (c >= 0x20 && c < 0x80) {
      ++i;
      continue;
    }
    std::uint32_t cp = 0;
    std::size_t len = 0;
    if (c < 0x80) {
      cp = c;
      len = 1;
    } else if ((c & 0xe0) == 0xc0) {
      cp = c & 0x1f;
      len = 2;
    } else if ((c & 0xf0) == 0xe0) {
      cp = c & 0x0f;
      len = 3;
    } else if ((c & 0xf8) == 0xf0) {
      cp = c & 0x07;
      len = 4;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong encodings are not valid UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) {
      return false;
    }
    const bool allowed = cp == 0x9 || cp == 0xa || cp == 0xd || (cp >= 0x20 && cp <= 0xd7ff) ||
                         (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
    if (!allowed) return false;
    i += len;
  }
  return true;
}

bool is_valid_attribute_name(std::string_view name, bool allow_reserved) noexcept {
  if (name.empty() || name.size() > 256) return false;
  if (name.front() == '.' || name.back() == '.') return false;
  if (name.find("..") != std::string_view::npos) return false;
  auto starts_with_ci = [&](std::string_view prefix) {
    if (name.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(name[i])) != prefix[i]) return false;
    }
    return true;
  };
  if (starts_with_ci("aws.") || starts_with_ci("amazon.")) return false;
  if (!allow_reserved && starts_with_ci("qrt.")) return false;
  return std::all_of(name.begin(), name.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return std::isalnum(c) || c == '-' || c == '_' || c == '.';
  });
}

namespace {

std::string base64url(std::string_view bytes) {
  std::string s = base64_encode(bytes);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (auto& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return s;
}
std::optional<std::string> from_base64url(std::string_view text) {
  std::string s(text);
  for (auto& c : s) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (s.size() % 4 != 0) s += '=';
  return base64_decode(s);
}
}  // namespace

std::optional<std::string> sqs_attribute_name(std::string_view user_name) {
  if (is_valid_attribute_name(user_name)) return std::string(user_name);
  std::string encoded = std::string(reserved::encoded_name_prefix) + base64url(user_name);
  if (encoded.size() > 256) return std::nullopt;
  return encoded;
}

std::optional<std::string> user_attribute_name(std::string_view sqs_name) {
  if (sqs_name.rfind(reserved::encoded_name_prefix, 0) == 0) {
    return from_base64url(sqs_name.substr(reserved::encoded_name_prefix.size()));
  }
  if (!is_valid_attribute_name(sqs_name)) return std::nullopt;
  return std::string(sqs_name);
}

std::size_t wire_message::size() const noexcept {
  std::size_t total = body.size();
  for (const auto& [name, a] : attributes)
    total += name.size() + a.data_type.size() + a.value.size();
  return total;
}

// ---- qrt -> SQS ----

result<wire_message> to_wire(const message& m, bool fifo, const fifo_defaults& defaults,
                             std::chrono::system_clock::time_point now) {
  wire_message w;
  if (m.time_to_live) {
    return fail(errc::unsupported,
                "SQS has no per-message time-to-live (a queue's MessageRetentionPeriod applies)");
  }
  for (const auto& [name, value] : m.attributes) {
    auto sqs_name = sqs_attribute_name(name);
    if (!sqs_name) {
      return fail(
          errc::invalid_argument,
          "attribute name '" + name.substr(0, 64) +
              "...' is too long for SQS: names SQS does not accept as they are (characters "
              "other than A-Z a-z 0-9 - _ .) are encoded and may then be at most 187 bytes");
    }
    if (value.empty()) {
      // SQS refuses empty values: a custom String type marks one.
      w.attributes[*sqs_name] = wire_attribute{std::string(empty_value_type), "-"};
      continue;
    }
    // Values SQS cannot carry as text travel as a Binary attribute with the same bytes.
    w.attributes[*sqs_name] = wire_attribute{is_valid_sqs_text(value) ? "String" : "Binary", value};
  }
  auto reserve = [&](std::string_view name, const std::string& value) -> result<void> {
    if (value.empty()) return {};
    if (!is_valid_sqs_text(value)) {
      return fail(errc::invalid_argument,
                  std::string(name) + " has characters SQS does not accept in a string value");
    }
    w.attributes[std::string(name)] = wire_attribute{"String", value};
    return {};
  };
  if (auto r = reserve(reserved::correlation_id, m.correlation_id); !r) return r.error();
  if (auto r = reserve(reserved::content_type, m.content_type); !r) return r.error();
  if (auto r = reserve(reserved::subject, m.subject); !r) return r.error();

  if (is_valid_sqs_text(m.body)) {
    w.body = m.body;
  } else {
    w.body = base64_encode(m.body);
    w.attributes[std::string(reserved::body_encoding)] = wire_attribute{"String", "base64"};
  }
  if (w.body.empty()) {
    return fail(errc::invalid_argument, "SQS does not accept an empty message body");
  }
  if (w.attributes.size() > max_attributes_per_message) {
    return fail(errc::invalid_argument,
                "SQS allows at most 10 message attributes; this message needs " +
                    std::to_string(w.attributes.size()) +
                    " (user attributes plus qrt's for correlation id, content type, subject and a "
                    "binary body)");
  }

  if (m.scheduled_enqueue_time) {
    if (fifo) {
      return fail(errc::unsupported,
                  "SQS FIFO queues have no per-message delay (use the queue's DelaySeconds)");
    }
    const auto ahead = *m.scheduled_enqueue_time - now;
    // Round up: a message must never become visible before its scheduled time.
    const auto seconds =
        std::max<std::int64_t>(0, std::chrono::ceil<std::chrono::seconds>(ahead).count());
    if (seconds > max_delay_seconds) {
      return fail(errc::invalid_argument,
                  "SQS delays delivery by at most 900 seconds; scheduled_enqueue_time is " +
                      std::to_string(seconds) + " seconds ahead");
    }
    if (seconds > 0) w.delay_seconds = seconds;
  }

  if (fifo) {
    w.group_id = m.session ? m.session->str() : defaults.message_group;
    w.deduplication_id = m.id.empty() ? random_uuid() : m.id;
    // SQS takes both as 1-128 characters of printable ASCII without spaces. Checked here, an
    // id it would not take fails its own message; sent, bytes that are not UTF-8 made the
    // whole batch's request unreadable, failing every message with it.
    auto sqs_token = [](std::string_view s) {
      return !s.empty() && s.size() <= 128 &&
             std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
    };
    if (!sqs_token(w.deduplication_id)) {
      return fail(errc::invalid_argument,
                  "a FIFO message id (its deduplication id) must be at most 128 printable ASCII "
                  "characters without spaces");
    }
    if (!sqs_token(w.group_id)) {
      return fail(errc::invalid_argument,
                  std::string(m.session ? "the session id" : "default_message_group") +
                      " (a FIFO message group id) must be 1-128 printable ASCII characters "
                      "without spaces");
    }
  } else if (m.session) {
    return fail(errc::invalid_argument,
                "a session id needs a FIFO queue (name ending in .fifo); SQS message groups only "
                "order FIFO queues");
  }
  return w;
}

// ---- checksums ----

std::string md5_of_body(std::string_view body) {
  return hex(md5(body));
}

bool md5_of_body_is(std::string_view body, std::string_view md5_hex) {
  static constexpr char digits[] = "0123456789abcdef";
  if (md5_hex.size() != 32) return false;
  const auto digest = md5(body);
  for (std::size_t i = 0; i < digest.size(); ++i) {
    if (md5_hex[2 * i] != digits[digest[i] >> 4] || md5_hex[2 * i + 1] != digits[digest[i] & 0xf])
      return false;
  }
  return true;
}

std::string md5_of_attributes(const wire_attributes& attributes) {
  if (attributes.empty()) return {};
  std::string buf;
  auto put_length_prefixed = [&](std::string_view s) {
    const auto n = static_cast<std::uint32_t>(s.size());
    buf += static_cast<char>((n >> 24) & 0xff);
    buf += static_cast<char>((n >> 16) & 0xff);
    buf += static_cast<char>((n >> 8) & 0xff);
    buf += static_cast<char>(n & 0xff);
    buf += s;
  };
  // std::map iterates in byte order of the names, which is the order SQS sorts by.
  for (const auto& [name, a] : attributes) {
    put_length_prefixed(name);
    put_length_prefixed(a.data_type);
    buf += static_cast<char>(a.is_binary() ? 2 : 1);
    put_length_prefixed(a.value);
  }
  return hex(md5(buf));
}

// ---- requests ----

namespace {

// Writes a request body directly, byte for byte what serializing the same json::object (keys in
// insertion order) gives: the requests sent on every send, receive and settle were built as a
// DOM first, an allocation per node and a copy of every body.
class json_writer {
 public:
  explicit json_writer(std::size_t reserve) { out_.reserve(reserve); }

  void raw(std::string_view text) { out_ += text; }
  /// ,"key": (without the comma for the first member of an object)
  void key(std::string_view name, bool first = false) {
    if (!first) out_ += ',';
    string(name);
    out_ += ':';
  }
  /// A JSON string escaped by Boost.JSON's own serializer.
  void string(std::string_view text) {
    serializer_.reset(text);
    char chunk[512];
    while (!serializer_.done()) {
      const auto part = serializer_.read(chunk, sizeof chunk);
      out_.append(part.data(), part.size());
    }
  }
  void number(std::int64_t value) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
    out_.append(digits, end);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
  json::serializer serializer_;
};

void write_attributes(json_writer& w, const wire_attributes& attributes) {
  w.raw("{");
  bool first = true;
  for (const auto& [name, a] : attributes) {
    w.key(name, first);
    first = false;
    w.raw("{");
    w.key("DataType", true);
    w.string(a.data_type);
    if (a.is_binary()) {
      w.key("BinaryValue");
      w.string(base64_encode(a.value));
    } else {
      w.key("StringValue");
      w.string(a.value);
    }
    w.raw("}");
  }
  w.raw("}");
}

// The message's members after a first one (so each starts with a comma).
void write_message_fields(json_writer& w, const wire_message& m) {
  w.key("MessageBody");
  w.string(m.body);
  if (!m.attributes.empty()) {
    w.key("MessageAttributes");
    write_attributes(w, m.attributes);
  }
  if (m.delay_seconds) {
    w.key("DelaySeconds");
    w.number(*m.delay_seconds);
  }
  if (!m.group_id.empty()) {
    w.key("MessageGroupId");
    w.string(m.group_id);
  }
  if (!m.deduplication_id.empty()) {
    w.key("MessageDeduplicationId");
    w.string(m.deduplication_id);
  }
}

std::size_t estimated_size(const wire_message& m) {
  std::size_t n = m.body.size() + m.group_id.size() + m.deduplication_id.size() + 96;
  for (const auto& [name, a] : m.attributes) n += name.size() + a.value.size() * 2 + 64;
  return n;
}

}  // namespace

std::string encode_send_message(std::string_view queue_url, const wire_message& m) {
  json_writer w(queue_url.size() + estimated_size(m) + 32);
  w.raw("{");
  w.key("QueueUrl", true);
  w.string(queue_url);
  write_message_fields(w, m);
  w.raw("}");
  return w.take();
}

/// {"QueueUrl":...,"Entries":[{"Id":...<the entry's fields>},...]}, the shape of every batch
/// request; `write_fields` writes what follows an entry's Id.
template <class Entry, class WriteFields>
std::string encode_batch(std::string_view queue_url, const std::vector<Entry>& entries,
                         std::size_t estimated_size, WriteFields write_fields) {
  json_writer w(estimated_size);
  w.raw("{");
  w.key("QueueUrl", true);
  w.string(queue_url);
  w.key("Entries");
  w.raw("[");
  bool first = true;
  for (const auto& e : entries) {
    if (!first) w.raw(",");
    first = false;
    w.raw("{");
    w.key("Id", true);
    w.string(e.id);
    write_fields(w, e);
    w.raw("}");
  }
  w.raw("]}");
  return w.take();
}

std::string encode_send_message_batch(std::string_view queue_url,
                                      const std::vector<batch_send_entry>& entries) {
  std::size_t size = queue_url.size() + 32;
  for (const auto& e : entries) size += e.id.size() + estimated_size(e.message) + 16;
  return encode_batch(queue_url, entries, size, [](json_writer& w, const batch_send_entry& e) {
    write_message_fields(w, e.message);
  });
}

std::string encode_receive_message(const receive_request& r) {
  json_writer w(r.queue_url.size() + r.receive_request_attempt_id.size() + 256);
  w.raw("{");
  w.key("QueueUrl", true);
  w.string(r.queue_url);
  w.key("MaxNumberOfMessages");
  w.number(r.max_messages);
  w.key("WaitTimeSeconds");
  w.number(r.wait_time_seconds);
  if (r.visibility_timeout) {
    w.key("VisibilityTimeout");
    w.number(*r.visibility_timeout);
  }
  w.raw(R"(,"AttributeNames":["All"],"MessageSystemAttributeNames":["All"])"
        R"(,"MessageAttributeNames":["All"])");
  if (!r.receive_request_attempt_id.empty()) {
    w.key("ReceiveRequestAttemptId");
    w.string(r.receive_request_attempt_id);
  }
  w.raw("}");
  return w.take();
}

std::string encode_delete_message_batch(std::string_view queue_url,
                                        const std::vector<receipt_entry>& entries) {
  std::size_t size = queue_url.size() + 32;
  for (const auto& e : entries) size += e.id.size() + e.receipt_handle.size() + 40;
  return encode_batch(queue_url, entries, size, [](json_writer& w, const receipt_entry& e) {
    w.key("ReceiptHandle");
    w.string(e.receipt_handle);
  });
}

std::string encode_change_visibility(std::string_view queue_url, std::string_view receipt_handle,
                                     int visibility_timeout) {
  json::object o;
  o["QueueUrl"] = queue_url;
  o["ReceiptHandle"] = receipt_handle;
  o["VisibilityTimeout"] = visibility_timeout;
  return json::serialize(o);
}

std::string encode_change_visibility_batch(std::string_view queue_url,
                                           const std::vector<receipt_entry>& entries) {
  json::object o;
  o["QueueUrl"] = queue_url;
  json::array list;
  for (const auto& e : entries) {
    list.push_back(json::object{{"Id", e.id},
                                {"ReceiptHandle", e.receipt_handle},
                                {"VisibilityTimeout", e.visibility_timeout}});
  }
  o["Entries"] = std::move(list);
  return json::serialize(o);
}

std::string encode_get_queue_url(std::string_view queue_name) {
  return json::serialize(json::object{{"QueueName", queue_name}});
}

std::string encode_create_queue(std::string_view queue_name,
                                const std::map<std::string, std::string>& attributes,
                                const std::map<std::string, std::string>& tags) {
  json::object o;
  o["QueueName"] = queue_name;
  if (!attributes.empty()) {
    json::object a;
    for (const auto& [k, v] : attributes) a[k] = v;
    o["Attributes"] = std::move(a);
  }
  if (!tags.empty()) {
    json::object t;
    for (const auto& [k, v] : tags) t[k] = v;
    o["tags"] = std::move(t);  // lower case in SQS's JSON protocol, unlike Attributes
  }
  return json::serialize(o);
}

std::string encode_queue_url_only(std::string_view queue_url) {
  return json::serialize(json::object{{"QueueUrl", queue_url}});
}

std::string encode_get_queue_attributes(std::string_view queue_url,
                                        const std::vector<std::string>& names) {
  json::object o;
  o["QueueUrl"] = queue_url;
  json::array list;
  for (const auto& n : names) list.push_back(json::string(n));
  o["AttributeNames"] = std::move(list);
  return json::serialize(o);
}

// ---- responses ----

namespace {

// SQS answers nest at most five levels (ReceiveMessage: answer, list, message, attributes,
// attribute); deeper input is refused before it costs more than a parse.
json::parse_options answer_parse_options() {
  json::parse_options o;
  o.max_depth = 16;
  return o;
}

// Parses into `storage` (the caller's; the object lives no longer than it).
result<json::object> parse_object(std::string_view body, std::string_view what,
                                  json::storage_ptr storage = {}) {
  boost::system::error_code ec;
  // An empty body is how some actions answer "{}".
  if (body.empty()) return json::object(storage);
  auto v = json::parse(body, ec, storage, answer_parse_options());
  if (ec || !v.is_object()) {
    return fail(errc::protocol_error, "SQS " + std::string(what) + " answer is not a JSON object");
  }
  return std::move(v.as_object());
}

// The answers read on every receive and settle are parsed into one arena: a few allocations
// per answer instead of one per JSON node (malloc and free were the largest cost of a receive),
// released at once when the answer has been read.
class answer_arena {
 public:
  json::storage_ptr storage() { return json::storage_ptr(&resource_); }

 private:
  unsigned char first_block_[8192];
  json::monotonic_resource resource_{first_block_, sizeof first_block_};
};

// Reads an optional string member; wrong types are a protocol error.
result<std::string> string_member(const json::object& o, std::string_view key, bool required,
                                  std::string_view what) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) {
    if (required) {
      return fail(errc::protocol_error,
                  "SQS " + std::string(what) + " answer lacks '" + std::string(key) + "'");
    }
    return std::string{};
  }
  if (!it->value().is_string()) {
    return fail(errc::protocol_error,
                "SQS " + std::string(what) + " answer has a non-string '" + std::string(key) + "'");
  }
  return std::string(it->value().as_string());
}

result<send_result> decode_send_fields(const json::object& o, std::string_view what) {
  send_result r;
  auto id = string_member(o, "MessageId", true, what);
  if (!id) return id.error();
  r.message_id = std::move(*id);
  auto md5b = string_member(o, "MD5OfMessageBody", false, what);
  if (!md5b) return md5b.error();
  r.md5_of_body = std::move(*md5b);
  auto md5a = string_member(o, "MD5OfMessageAttributes", false, what);
  if (!md5a) return md5a.error();
  r.md5_of_attributes = std::move(*md5a);
  auto seq = string_member(o, "SequenceNumber", false, what);
  if (!seq) return seq.error();
  r.sequence_number = std::move(*seq);
  return r;
}

result<wire_attributes> decode_attributes(const json::value& v) {
  wire_attributes out;
  if (v.is_null()) return out;
  if (!v.is_object()) return fail(errc::protocol_error, "SQS MessageAttributes is not an object");
  for (const auto& [name, value] : v.as_object()) {
    if (!value.is_object()) {
      return fail(errc::protocol_error,
                  "SQS message attribute '" + excerpt(name) + "' is malformed");
    }
    const auto& a = value.as_object();
    auto type = string_member(a, "DataType", true, "message attribute");
    if (!type) return type.error();
    wire_attribute w{std::move(*type), {}};
    if (w.is_binary()) {
      auto b64 = string_member(a, "BinaryValue", true, "binary message attribute");
      if (!b64) return b64.error();
      auto raw = base64_decode(*b64);
      if (!raw) {
        return fail(errc::protocol_error,
                    "SQS message attribute '" + excerpt(name) + "' is not valid base64");
      }
      w.value = std::move(*raw);
    } else {
      auto s = string_member(a, "StringValue", true, "string message attribute");
      if (!s) return s.error();
      w.value = std::move(*s);
    }
    out[std::string(name)] = std::move(w);
  }
  return out;
}

}  // namespace

result<send_result> decode_send_message(std::string_view body) {
  auto o = parse_object(body, "SendMessage");
  if (!o) return o.error();
  return decode_send_fields(*o, "SendMessage");
}

result<batch_result> decode_batch_result(std::string_view body) {
  answer_arena arena;
  auto o = parse_object(body, "batch", arena.storage());
  if (!o) return o.error();
  batch_result out;
  if (auto it = o->find("Successful"); it != o->end() && !it->value().is_null()) {
    if (!it->value().is_array())
      return fail(errc::protocol_error, "SQS batch 'Successful' is not a list");
    for (const auto& e : it->value().as_array()) {
      if (!e.is_object()) return fail(errc::protocol_error, "SQS batch entry is not an object");
      const auto& eo = e.as_object();
      auto id = string_member(eo, "Id", true, "batch entry");
      if (!id) return id.error();
      send_result r;
      if (eo.contains("MessageId")) {
        auto s = decode_send_fields(eo, "SendMessageBatch entry");
        if (!s) return s.error();
        r = std::move(*s);
      }
      out.successful[std::move(*id)] = std::move(r);
    }
  }
  if (auto it = o->find("Failed"); it != o->end() && !it->value().is_null()) {
    if (!it->value().is_array())
      return fail(errc::protocol_error, "SQS batch 'Failed' is not a list");
    for (const auto& e : it->value().as_array()) {
      if (!e.is_object()) return fail(errc::protocol_error, "SQS batch failure is not an object");
      const auto& eo = e.as_object();
      batch_failure f;
      auto id = string_member(eo, "Id", true, "batch failure");
      if (!id) return id.error();
      f.id = std::move(*id);
      auto code = string_member(eo, "Code", false, "batch failure");
      if (!code) return code.error();
      f.code = std::move(*code);
      auto msg = string_member(eo, "Message", false, "batch failure");
      if (!msg) return msg.error();
      f.message = std::move(*msg);
      if (auto sf = eo.find("SenderFault"); sf != eo.end() && sf->value().is_bool()) {
        f.sender_fault = sf->value().as_bool();
      }
      out.failed[f.id] = std::move(f);
    }
  }
  return out;
}

namespace {

// The fields of one received message past its id and receipt handle.
result<void> decode_received_fields(const json::object& m, wire_received& w) {
  auto take = [&](std::string_view key, bool required, std::string& into) -> result<void> {
    auto s = string_member(m, key, required, "ReceiveMessage");
    if (!s) return s.error();
    into = std::move(*s);
    return {};
  };
  if (auto r = take("Body", true, w.body); !r) return r;
  if (auto r = take("MD5OfBody", false, w.md5_of_body); !r) return r;
  if (auto r = take("MD5OfMessageAttributes", false, w.md5_of_attributes); !r) return r;
  if (auto a = m.find("Attributes"); a != m.end() && !a->value().is_null()) {
    if (!a->value().is_object()) {
      return fail(errc::protocol_error, "SQS 'Attributes' is not an object");
    }
    for (const auto& [k, val] : a->value().as_object()) {
      if (val.is_string()) w.system_attributes[std::string(k)] = std::string(val.as_string());
    }
  }
  if (auto a = m.find("MessageAttributes"); a != m.end()) {
    auto attrs = decode_attributes(a->value());
    if (!attrs) return attrs.error();
    w.attributes = std::move(*attrs);
  }
  return {};
}

}  // namespace

result<std::vector<wire_received>> decode_receive_message(std::string_view body) {
  answer_arena arena;
  auto o = parse_object(body, "ReceiveMessage", arena.storage());
  if (!o) return o.error();
  std::vector<wire_received> out;
  auto it = o->find("Messages");
  if (it == o->end() || it->value().is_null()) return out;
  if (!it->value().is_array()) return fail(errc::protocol_error, "SQS 'Messages' is not a list");
  const auto& list = it->value().as_array();
  if (list.size() > max_entries_per_batch) {
    return fail(errc::protocol_error, "SQS answered a receive with " + std::to_string(list.size()) +
                                          " messages; it returns at most " +
                                          std::to_string(max_entries_per_batch));
  }
  for (const auto& v : list) {
    if (!v.is_object()) return fail(errc::protocol_error, "SQS received message is not an object");
    const auto& m = v.as_object();
    wire_received w;
    auto id = string_member(m, "MessageId", true, "ReceiveMessage");
    if (!id) return id.error();
    w.message_id = std::move(*id);
    auto handle = string_member(m, "ReceiptHandle", true, "ReceiveMessage");
    if (!handle) return handle.error();
    w.receipt_handle = std::move(*handle);
    if (w.receipt_handle.empty()) {
      return fail(errc::protocol_error, "SQS received message has an empty 'ReceiptHandle'");
    }
    // One malformed message must not cost the others: it keeps its receipt (to be released)
    // and says what is wrong.
    if (auto fields = decode_received_fields(m, w); !fields) {
      wire_received bad;
      bad.message_id = std::move(w.message_id);
      bad.receipt_handle = std::move(w.receipt_handle);
      bad.problem = fields.error().message;
      w = std::move(bad);
    }
    out.push_back(std::move(w));
  }
  return out;
}

result<void> verify_checksums(const wire_received& m) {
  if (!m.md5_of_body.empty() && !md5_of_body_is(m.body, m.md5_of_body)) {
    return fail(errc::protocol_error, "MD5 of body of message " + excerpt(m.message_id) +
                                          " does not match SQS's MD5OfBody");
  }
  if (!m.attributes.empty() || !m.md5_of_attributes.empty()) {
    if (md5_of_attributes(m.attributes) != m.md5_of_attributes) {
      return fail(errc::protocol_error, "MD5 of attributes of message " + excerpt(m.message_id) +
                                            " does not match SQS's MD5OfMessageAttributes");
    }
  }
  return {};
}

namespace {

// Delivery count, enqueue time, sequence number and group from SQS's system attributes; values
// out of range are ignored rather than trusted.
void read_system_attributes(const wire_received& w, received_message& m) {
  // Looked up by view: a map key built per lookup was an allocation per attribute and message.
  auto find = [&](std::string_view key) -> const std::string* {
    for (const auto& [k, v] : w.system_attributes) {
      if (k == key) return &v;
    }
    return nullptr;
  };
  auto number = [&](std::string_view key) -> std::optional<std::int64_t> {
    const std::string* value = find(key);
    if (!value) return std::nullopt;
    std::int64_t v = 0;
    const auto& s = *value;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
  };
  m.delivery_count = static_cast<std::uint32_t>(std::clamp<std::int64_t>(
      number("ApproximateReceiveCount").value_or(1), 1, std::numeric_limits<std::uint32_t>::max()));
  // Milliseconds since the epoch; the time point counts in a finer unit, so bound it (to
  // year ~2200) before converting.
  constexpr std::int64_t latest_sent_ms = 7'258'118'400'000;
  if (auto sent = number("SentTimestamp"); sent && *sent >= 0 && *sent <= latest_sent_ms) {
    m.enqueued_time = time_point{std::chrono::milliseconds(*sent)};
  }
  // FIFO sequence numbers are up to 20 digits; those past int64 leave sequence_number 0.
  m.sequence_number = number("SequenceNumber").value_or(0);
  if (const std::string* g = find("MessageGroupId")) {
    auto s = session_id::parse(*g);
    if (s) m.session = *s;
  }
}

// qrt's dead-letter reason and original id, kept by every reading of a message.
bool read_dead_letter_attribute(const std::string& name, const wire_attribute& a,
                                received_message& m) {
  if (name == reserved::dead_letter_reason) {
    if (!m.dead_letter) m.dead_letter.emplace();
    m.dead_letter->reason = a.value;
  } else if (name == reserved::dead_letter_description) {
    if (!m.dead_letter) m.dead_letter.emplace();
    m.dead_letter->description = a.value;
  } else if (name == reserved::message_id) {
    m.id = a.value;
  } else {
    return false;
  }
  return true;
}

}  // namespace

received_message from_wire_verbatim(const wire_received& w) {
  received_message m;
  m.id = w.message_id;
  for (const auto& [name, a] : w.attributes) {
    if (!read_dead_letter_attribute(name, a, m)) m.attributes[name] = a.value;
  }
  m.body = w.body;
  read_system_attributes(w, m);
  return m;
}

result<received_message> from_wire(const wire_received& w) {
  received_message m;
  m.id = w.message_id;
  bool base64_body = false;
  for (const auto& [name, a] : w.attributes) {
    if (name == reserved::correlation_id) {
      m.correlation_id = a.value;
    } else if (name == reserved::content_type) {
      m.content_type = a.value;
    } else if (name == reserved::subject) {
      m.subject = a.value;
    } else if (name == reserved::body_encoding) {
      if (a.value != "base64") {
        return fail(errc::protocol_error, "message " + excerpt(w.message_id) +
                                              " has unknown body encoding '" + excerpt(a.value) +
                                              "' (qrt reads only 'base64')");
      }
      base64_body = true;
    } else if (read_dead_letter_attribute(name, a, m)) {
      continue;
    } else if (name.rfind(reserved::encoded_name_prefix, 0) == 0) {
      auto decoded =
          from_base64url(std::string_view(name).substr(reserved::encoded_name_prefix.size()));
      if (!decoded) {
        return fail(errc::protocol_error, "message " + excerpt(w.message_id) +
                                              " has a malformed encoded attribute name '" +
                                              excerpt(name) + "'");
      }
      m.attributes[*decoded] = a.data_type == empty_value_type ? std::string{} : a.value;
    } else if (a.data_type == empty_value_type) {
      m.attributes[name] = std::string{};
    } else {
      // Binary and Number attributes from other senders keep their bytes as text.
      m.attributes[name] = a.value;
    }
  }
  if (base64_body) {
    auto raw = base64_decode(w.body);
    if (!raw) {
      return fail(errc::protocol_error,
                  "message " + excerpt(w.message_id) + " says its body is base64 but it is not");
    }
    m.body = std::move(*raw);
  } else {
    m.body = w.body;
  }
  read_system_attributes(w, m);
  return m;
}

result<std::string> decode_queue_url(std::string_view body) {
  auto o = parse_object(body, "queue URL");
  if (!o) return o.error();
  return string_member(*o, "QueueUrl", true, "queue URL");
}

namespace {

/// The string members of the map `member` of `action`'s answer; other values are skipped.
result<std::map<std::string, std::string>> decode_string_map(std::string_view body,
                                                             std::string_view action,
                                                             std::string_view member) {
  auto o = parse_object(body, action);
  if (!o) return o.error();
  std::map<std::string, std::string> out;
  if (auto it = o->find(member); it != o->end() && it->value().is_object()) {
    for (const auto& [k, v] : it->value().as_object()) {
      if (v.is_string()) out[std::string(k)] = std::string(v.as_string());
    }
  }
  return out;
}

}  // namespace

result<std::map<std::string, std::string>> decode_queue_tags(std::string_view body) {
  return decode_string_map(body, "ListQueueTags", "Tags");
}

result<std::map<std::string, std::string>> decode_queue_attributes(std::string_view body) {
  return decode_string_map(body, "GetQueueAttributes", "Attributes");
}

// ---- errors ----

std::string normalize_error_code(std::string_view type, std::string_view query_error) {
  // x-amzn-query-error: "AWS.SimpleQueueService.NonExistentQueue;Sender" carries the legacy
  // code; prefer the JSON __type, which current SQS always sends.
  std::string_view code = type;
  if (code.empty()) code = query_error.substr(0, query_error.find(';'));
  if (auto hash = code.rfind('#'); hash != std::string_view::npos) code = code.substr(hash + 1);
  if (auto colon = code.find(':'); colon != std::string_view::npos) code = code.substr(0, colon);
  return std::string(code);
}

error map_error(std::string_view code, std::string_view message, unsigned http_status) {
  auto is = [&](std::initializer_list<std::string_view> names) {
    return std::find(names.begin(), names.end(), code) != names.end();
  };
  auto contains = [&](std::string_view needle) {
    return message.find(needle) != std::string_view::npos;
  };
  errc c = errc::provider_error;
  if (is({"QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "NonExistentQueue"})) {
    c = errc::queue_not_found;
  } else if (is({"ThrottlingException", "RequestThrottled", "Throttling",
                 "TooManyRequestsException", "KmsThrottled", "OverLimit",
                 "RequestThrottledException"}) ||
             http_status == 429 || http_status == 503) {
    c = errc::throttled;
  } else if (is({"ReceiptHandleIsInvalid", "InvalidReceiptHandle",
                 "AWS.SimpleQueueService.ReceiptHandleIsInvalid"}) ||
             (code == "InvalidParameterValue" && contains("ReceiptHandle"))) {
    c = contains("expired") ? errc::receipt_expired : errc::invalid_receipt;
  } else if (is({"MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight"})) {
    c = errc::receipt_expired;
  } else if (is({"AccessDenied", "AccessDeniedException", "InvalidClientTokenId",
                 "SignatureDoesNotMatch", "UnrecognizedClientException",
                 "MissingAuthenticationToken", "IncompleteSignature", "ExpiredToken",
                 "InvalidSecurity", "RequestExpired", "KmsAccessDenied"}) ||
             http_status == 401 || http_status == 403) {
    c = errc::permission;
  } else if (is({"BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong"}) ||
             (code == "InvalidParameterValue" &&
              (contains("shorter than") || contains("too long")))) {
    c = errc::message_too_large;
  } else if (is({"InvalidParameterValue", "MissingParameter", "InvalidAttributeName",
                 "InvalidAttributeValue", "InvalidMessageContents", "InvalidBatchEntryId",
                 "BatchEntryIdsNotDistinct", "EmptyBatchRequest", "TooManyEntriesInBatchRequest",
                 "UnsupportedOperation", "ValidationError", "InvalidAddress",
                 "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                 "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
                 "AWS.SimpleQueueService.UnsupportedOperation"})) {
    c = errc::invalid_argument;
  }
  error e{c, "SQS: " + server_text(message.empty() ? code : message), server_text(code)};
  // Server-side failures are worth retrying even when we do not know the code.
  if (c == errc::provider_error &&
      (http_status >= 500 || is({"InternalError", "ServiceUnavailable"}))) {
    e.kind = error_kind::transient;
  }
  return e;
}

error decode_error(unsigned http_status, std::string_view body, std::string_view query_error_header,
                   std::string_view retry_after_header) {
  std::string type;
  std::string message;
  boost::system::error_code ec;
  auto v = json::parse(body, ec, {}, answer_parse_options());
  if (!ec && v.is_object()) {
    const auto& o = v.as_object();
    for (std::string_view key : {"__type", "code", "Code"}) {
      if (auto it = o.find(key); it != o.end() && it->value().is_string()) {
        type = std::string(it->value().as_string());
        break;
      }
    }
    for (std::string_view key : {"message", "Message"}) {
      if (auto it = o.find(key); it != o.end() && it->value().is_string()) {
        message = std::string(it->value().as_string());
        break;
      }
    }
  }
  return finish_error(normalize_error_code(type, query_error_header), std::move(message),
                      http_status, !ec, "JSON", retry_after_header, map_error);
}

error finish_error(std::string code, std::string message, unsigned http_status, bool body_readable,
                   std::string_view body_format, std::string_view retry_after_header,
                   error (*map)(std::string_view, std::string_view, unsigned)) {
  if (code.empty()) code = "HTTP" + std::to_string(http_status);
  if (message.empty()) {
    message = "HTTP " + std::to_string(http_status) + " with " +
              (body_readable ? std::string("no error message")
                             : "a body that is not " + std::string(body_format));
  }
  // A server's message is for a person to read; a huge one would only bloat every log line.
  // server_text cuts it (between characters, saying how much it left out) when the error is made;
  // the code is cut here already, so that a code sent back reads the same.
  constexpr std::size_t max_code = 512;
  if (code.size() > max_code) code = code.substr(0, max_code);
  auto e = map(code, message, http_status);
  if (auto delay = parse_retry_after(retry_after_header)) e.retry_after = *delay;
  return e;
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view header) {
  while (!header.empty() && (header.front() == ' ' || header.front() == '\t'))
    header.remove_prefix(1);
  while (!header.empty() && (header.back() == ' ' || header.back() == '\t'))
    header.remove_suffix(1);
  if (header.empty() ||
      !std::all_of(header.begin(), header.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  std::uint64_t seconds = 0;
  auto [p, rc] = std::from_chars(header.data(), header.data() + header.size(), seconds);
  (void)p;
  // All digits: only out_of_range can fail, and that is "longer than the limit" too.
  if (rc != std::errc{} || seconds > static_cast<std::uint64_t>(max_retry_after_header.count())) {
    return max_retry_after_header;
  }
  return std::chrono::seconds(static_cast<std::chrono::seconds::rep>(seconds));
}

}  // namespace qrt::sqs::detail
