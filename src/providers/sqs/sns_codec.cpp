#include "sns_codec.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>

#include "digest.hpp"

namespace qrt::sqs::detail::sns {

namespace json = boost::json;

namespace {

bool is_alnum(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

}  // namespace

// ---- names ----

std::string aws_name_part(std::string_view qrt_name) {
  std::string out;
  out.reserve(qrt_name.size() + 8);
  for (char c : qrt_name) {
    if (c == '_') {
      out += "__";
    } else if (c == '.') {
      out += "_d";
    } else {
      out += c;
    }
  }
  return out;
}

std::optional<std::string> qrt_name_part(std::string_view aws_name) {
  std::string out;
  for (std::size_t i = 0; i < aws_name.size(); ++i) {
    const char c = aws_name[i];
    if (c == '_') {
      if (i + 1 >= aws_name.size()) return std::nullopt;
      const char next = aws_name[++i];
      if (next == '_') {
        out += '_';
      } else if (next == 'd') {
        out += '.';
      } else {
        return std::nullopt;
      }
    } else if (is_alnum(c) || c == '-') {
      out += c;
    } else {
      return std::nullopt;
    }
  }
  if (out.empty()) return std::nullopt;
  return out;
}

namespace {

constexpr std::string_view fifo_suffix = ".fifo";

bool has_fifo_suffix(std::string_view name) noexcept {
  return name.size() > fifo_suffix.size() && name.ends_with(fifo_suffix);
}

}  // namespace

bool is_fifo_topic(const topic_name& topic) noexcept {
  return has_fifo_suffix(topic.str());
}

result<std::string> topic_aws_name(const topic_name& topic) {
  // A FIFO topic keeps its ".fifo" suffix (SNS wants it); the rest is mapped.
  const bool fifo = is_fifo_topic(topic);
  std::string_view base = topic.str();
  if (fifo) base.remove_suffix(fifo_suffix.size());
  std::string name = aws_name_part(base);
  if (fifo) name += fifo_suffix;
  if (name.size() > max_topic_name) {
    return fail(errc::invalid_argument,
                "topic '" + topic.str().substr(0, 64) + "' maps to an SNS topic name of " +
                    std::to_string(name.size()) + " characters ('_' and '.' take two each); SNS " +
                    "allows 256");
  }
  return name;
}

result<std::string> subscription_queue_name(const queue_name& subscription) {
  if (!subscription.is_subscription()) {
    return fail(errc::invalid_argument,
                "'" + subscription.to_string() + "' is a queue, not a topic's subscription");
  }
  // A FIFO topic delivers to FIFO queues only: the queues of its subscriptions end in ".fifo".
  std::string_view topic = subscription.topic();
  const bool fifo = has_fifo_suffix(topic);
  if (fifo) topic.remove_suffix(fifo_suffix.size());
  std::string name = aws_name_part(topic) + "--" + aws_name_part(subscription.subscription_name());
  const std::size_t suffixes = dead_letter_suffix.size() + (fifo ? fifo_suffix.size() : 0);
  if (name.size() + suffixes > max_queue_name) {
    return fail(errc::invalid_argument,
                "subscription '" + subscription.str().substr(0, 128) + "' maps to SQS queue '" +
                    name.substr(0, 128) + "' (" + std::to_string(name.size()) +
                    " characters; '_' and '.' take two each); with its dead-letter queue's '" +
                    std::string(dead_letter_suffix) + (fifo ? std::string(fifo_suffix) : "") +
                    "' that is over SQS's " + std::to_string(max_queue_name) +
                    ": use a shorter topic or subscription name");
  }
  if (subscription.is_dead_letter()) name += dead_letter_suffix;
  if (fifo) name += fifo_suffix;
  return name;
}

std::string subscription_dead_letter_queue_name(std::string_view sqs_name) {
  if (has_fifo_suffix(sqs_name)) {
    sqs_name.remove_suffix(fifo_suffix.size());
    return std::string(sqs_name) + std::string(dead_letter_suffix) + std::string(fifo_suffix);
  }
  return std::string(sqs_name) + std::string(dead_letter_suffix);
}

std::optional<std::pair<std::string, std::string>> parse_subscription_queue_name(
    std::string_view sqs_name) {
  const bool fifo = has_fifo_suffix(sqs_name);
  if (fifo) sqs_name.remove_suffix(fifo_suffix.size());
  // The last "--": a subscription's name never holds "--" nor starts with '-', while a FIFO
  // topic's base may end with '-' ("a-.fifo"). A topic part holding "--" is a dead-letter queue's.
  const auto split = sqs_name.rfind("--");
  if (split == std::string_view::npos) return std::nullopt;
  const auto topic_part = sqs_name.substr(0, split);
  const auto rest = sqs_name.substr(split + 2);
  if (topic_part.find("--") != std::string_view::npos || rest.starts_with('-')) {
    return std::nullopt;
  }
  auto topic = qrt_name_part(topic_part);
  auto name = qrt_name_part(rest);
  if (!topic || !name) return std::nullopt;
  // A topic named "*.fifo" is a FIFO topic, whose queues end in ".fifo".
  if (!fifo && has_fifo_suffix(*topic)) return std::nullopt;
  if (fifo) *topic += fifo_suffix;
  return std::make_pair(std::move(*topic), std::move(*name));
}

bool is_subscription_queue_name(std::string_view sqs_name) noexcept {
  return sqs_name.find("--") != std::string_view::npos;
}

std::string_view arn_resource(std::string_view arn) noexcept {
  const auto colon = arn.rfind(':');
  if (colon == std::string_view::npos) return {};
  return arn.substr(colon + 1);
}

// ---- filters ----

namespace {
constexpr std::string_view subject_key = reserved::subject;
}

result<std::string> encode_filter_policy(const subscription_filter& filter) {
  if (filter.empty()) return std::string{};
  const std::size_t keys = (filter.subject ? 1 : 0) + filter.attributes.size();
  if (keys > max_filter_keys) {
    return fail(errc::invalid_argument,
                "an SNS filter policy matches at most 5 attributes; this filter needs " +
                    std::to_string(keys) + " (the subject counts as one)");
  }
  auto check_value = [](std::string_view what, const std::string& value) -> result<void> {
    if (value.empty()) {
      return fail(errc::invalid_argument,
                  std::string(what) +
                      ": SNS filters cannot match an empty value (qrt sends one as a marked '-')");
    }
    if (!is_valid_sqs_text(value)) {
      return fail(errc::invalid_argument,
                  std::string(what) +
                      " is not text SNS can match (qrt sends such values as Binary attributes)");
    }
    return {};
  };
  // Sorted keys (std::map), so one filter always gives the same policy text: Subscribe refuses a
  // second subscription of the same queue with different attribute text.
  std::map<std::string, std::string> policy;
  if (filter.subject) {
    if (auto ok = check_value("the filter's subject", *filter.subject); !ok) return ok.error();
    policy[std::string(subject_key)] = *filter.subject;
  }
  for (const auto& [name, value] : filter.attributes) {
    if (auto ok =
            check_value("the filter's value of attribute '" + name.substr(0, 64) + "'", value);
        !ok) {
      return ok.error();
    }
    auto sqs = sqs_attribute_name(name);
    if (!sqs) {
      return fail(errc::invalid_argument, "the filter's attribute name '" + name.substr(0, 64) +
                                              "...' is too long for SQS");
    }
    policy[*sqs] = value;
  }
  json::object o;
  for (const auto& [key, value] : policy) o[key] = json::array{json::string(value)};
  return json::serialize(o);
}

result<subscription_filter> decode_filter_policy(std::string_view policy) {
  auto refuse = [](std::string why) {
    return fail(errc::protocol_error, "SNS filter policy qrt did not write: " + why);
  };
  boost::system::error_code ec;
  json::parse_options po;
  po.max_depth = 8;
  auto v = json::parse(policy, ec, {}, po);
  if (ec || !v.is_object()) return refuse("not a JSON object");
  subscription_filter f;
  for (const auto& [key, value] : v.as_object()) {
    if (!value.is_array() || value.as_array().size() != 1 || !value.as_array()[0].is_string()) {
      return refuse("key '" + excerpt(key) + "' is not a list of one string");
    }
    std::string text(value.as_array()[0].as_string());
    if (key == subject_key) {
      f.subject = std::move(text);
      continue;
    }
    auto name = user_attribute_name(key);
    if (!name) return refuse("key '" + excerpt(key) + "' is no attribute name qrt sends");
    f.attributes[*name] = std::move(text);
  }
  return f;
}

// ---- requests ----

namespace {

// Writes a form body straight into one string: publishes run through here for every message,
// so neither parameter names nor encoded values are built as strings of their own.
class form_writer {
 public:
  explicit form_writer(std::string_view action, std::size_t reserve = 128) {
    out_.reserve(reserve);
    out_ += "Action=";
    out_ += action;
    out_ += "&Version=";
    out_ += api_version;
  }
  /// &<name parts>=<value, percent-encoded as SigV4 and SNS want it (RFC 3986)>. The names are
  /// qrt's own (letters, digits and '.'), written as they are.
  void add(std::initializer_list<std::string_view> name, std::string_view value) {
    out_ += '&';
    for (auto part : name) out_ += part;
    out_ += '=';
    encode(value);
  }
  std::string take() { return std::move(out_); }

 private:
  static bool unreserved(unsigned char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
  }
  void encode(std::string_view text) {
    static constexpr char digits[] = "0123456789ABCDEF";
    std::size_t i = 0;
    while (i < text.size()) {
      // Runs of characters that stay as they are go in one append.
      std::size_t run = i;
      while (run < text.size() && unreserved(static_cast<unsigned char>(text[run]))) ++run;
      out_.append(text.data() + i, run - i);
      if (run == text.size()) return;
      const auto c = static_cast<unsigned char>(text[run]);
      const char escaped[3] = {'%', digits[c >> 4], digits[c & 0xf]};
      out_.append(escaped, 3);
      i = run + 1;
    }
  }

  std::string out_;
};

// MessageAttributes.entry.N.{Name,Value.DataType,Value.StringValue|Value.BinaryValue}, N from 1.
void add_message(form_writer& w, std::string_view prefix, const wire_message& m) {
  w.add({prefix, "Message"}, m.body);
  std::size_t n = 0;
  for (const auto& [name, a] : m.attributes) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, ++n).ptr;
    const std::string_view index(digits, static_cast<std::size_t>(end - digits));
    constexpr std::string_view entry = "MessageAttributes.entry.";
    w.add({prefix, entry, index, ".Name"}, name);
    w.add({prefix, entry, index, ".Value.DataType"}, a.data_type);
    if (a.is_binary()) {
      w.add({prefix, entry, index, ".Value.BinaryValue"}, base64_encode(a.value));
    } else {
      w.add({prefix, entry, index, ".Value.StringValue"}, a.value);
    }
  }
  if (!m.group_id.empty()) w.add({prefix, "MessageGroupId"}, m.group_id);
  if (!m.deduplication_id.empty()) w.add({prefix, "MessageDeduplicationId"}, m.deduplication_id);
}

std::size_t estimated_size(const wire_message& m) {
  std::size_t n = m.body.size() * 3 + 64;
  for (const auto& [name, a] : m.attributes) n += name.size() + a.value.size() * 3 + 128;
  return n;
}

}  // namespace

std::string encode_create_topic(std::string_view name, bool fifo) {
  form_writer w("CreateTopic");
  w.add({"Name"}, name);
  if (fifo) {
    // Required by SNS for a FIFO topic besides the name's suffix. Every message qrt publishes
    // carries a deduplication id, so content-based deduplication stays off.
    w.add({"Attributes.entry.1.key"}, "FifoTopic");
    w.add({"Attributes.entry.1.value"}, "true");
  }
  return w.take();
}

std::string encode_topic_action(std::string_view action, std::string_view topic_arn) {
  form_writer w(action);
  w.add({"TopicArn"}, topic_arn);
  return w.take();
}

std::string encode_list_topics(std::string_view next_token) {
  form_writer w("ListTopics");
  if (!next_token.empty()) w.add({"NextToken"}, next_token);
  return w.take();
}

std::string encode_publish(std::string_view topic_arn, const wire_message& m) {
  form_writer w("Publish", estimated_size(m) + topic_arn.size() + 64);
  w.add({"TopicArn"}, topic_arn);
  add_message(w, "", m);
  return w.take();
}

std::string encode_publish_batch(std::string_view topic_arn,
                                 const std::vector<batch_send_entry>& entries) {
  std::size_t size = topic_arn.size() + 64;
  for (const auto& e : entries) size += estimated_size(e.message) + 96;
  form_writer w("PublishBatch", size);
  w.add({"TopicArn"}, topic_arn);
  std::size_t n = 0;
  for (const auto& e : entries) {
    char prefix[64] = "PublishBatchRequestEntries.member.";
    constexpr std::size_t start = sizeof "PublishBatchRequestEntries.member." - 1;
    auto end = std::to_chars(prefix + start, prefix + sizeof prefix - 1, ++n).ptr;
    *end++ = '.';
    const std::string_view member(prefix, static_cast<std::size_t>(end - prefix));
    w.add({member, "Id"}, e.id);
    add_message(w, member, e.message);
  }
  return w.take();
}

std::string encode_subscribe(std::string_view topic_arn, std::string_view queue_arn,
                             std::string_view filter_policy) {
  form_writer w("Subscribe");
  w.add({"TopicArn"}, topic_arn);
  w.add({"Protocol"}, "sqs");
  w.add({"Endpoint"}, queue_arn);
  w.add({"Attributes.entry.1.key"}, "RawMessageDelivery");
  w.add({"Attributes.entry.1.value"}, "true");
  if (!filter_policy.empty()) {
    w.add({"Attributes.entry.2.key"}, "FilterPolicy");
    w.add({"Attributes.entry.2.value"}, filter_policy);
  }
  // The ARN even if SNS still waited for a confirmation (it never does for a queue of the same
  // account), so Unsubscribe always has it.
  w.add({"ReturnSubscriptionArn"}, "true");
  return w.take();
}

std::string encode_subscription_action(std::string_view action, std::string_view subscription_arn) {
  form_writer w(action);
  w.add({"SubscriptionArn"}, subscription_arn);
  return w.take();
}

std::string encode_list_subscriptions_by_topic(std::string_view topic_arn,
                                               std::string_view next_token) {
  form_writer w("ListSubscriptionsByTopic");
  w.add({"TopicArn"}, topic_arn);
  if (!next_token.empty()) w.add({"NextToken"}, next_token);
  return w.take();
}

std::string queue_policy(std::string_view queue_arn, std::string_view topic_arn) {
  json::object statement{
      {"Sid", "qrt-sns-delivery"},
      {"Effect", "Allow"},
      {"Principal", json::object{{"Service", "sns.amazonaws.com"}}},
      {"Action", "sqs:SendMessage"},
      {"Resource", queue_arn},
      {"Condition", json::object{{"ArnEquals", json::object{{"aws:SourceArn", topic_arn}}}}}};
  json::object policy{{"Version", "2012-10-17"}, {"Statement", json::array{statement}}};
  return json::serialize(policy);
}

// ---- XML ----

const xml_element* xml_document::child(const xml_element& e, std::string_view name) const {
  for (auto i : e.children) {
    if (elements[i].name == name) return &elements[i];
  }
  return nullptr;
}

const xml_element* xml_document::path(const xml_element& e,
                                      std::initializer_list<std::string_view> names) const {
  const xml_element* at = &e;
  for (auto n : names) {
    at = child(*at, n);
    if (!at) return nullptr;
  }
  return at;
}

namespace {

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

class xml_parser {
 public:
  explicit xml_parser(std::string_view in) : in_(in) {}

  result<xml_document> run() {
    if (in_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = 3;  // a UTF-8 byte order mark
    while (pos_ < in_.size()) {
      if (in_[pos_] == '<') {
        if (auto ok = markup(); !ok) return ok.error();
      } else {
        if (auto ok = text(); !ok) return ok.error();
      }
    }
    if (!open_.empty()) return bad("element <" + doc_.elements[open_.back()].name + "> not closed");
    if (doc_.elements.empty()) return bad("no element");
    return std::move(doc_);
  }

 private:
  error bad(const std::string& what) const {
    return fail(errc::protocol_error, "SNS answer is not XML qrt reads: " + what + " (at byte " +
                                          std::to_string(pos_) + ")");
  }

  // Skips to just after `terminator`; false when it never comes.
  bool skip_past(std::string_view terminator) {
    const auto at = in_.find(terminator, pos_);
    if (at == std::string_view::npos) return false;
    pos_ = at + terminator.size();
    return true;
  }

  result<void> markup() {
    const auto rest = in_.substr(pos_);
    if (rest.starts_with("<?")) {
      if (!skip_past("?>")) return bad("unterminated processing instruction");
      return {};
    }
    if (rest.starts_with("<!--")) {
      pos_ += 4;
      if (!skip_past("-->")) return bad("unterminated comment");
      return {};
    }
    if (rest.starts_with("<![CDATA[")) {
      if (open_.empty()) return bad("CDATA outside the root element");
      const auto start = pos_ + 9;
      pos_ = start;
      if (!skip_past("]]>")) return bad("unterminated CDATA section");
      doc_.elements[open_.back()].text.append(in_.substr(start, pos_ - 3 - start));
      return {};
    }
    if (rest.starts_with("<!")) return bad("a DOCTYPE or markup declaration");
    if (rest.starts_with("</")) return end_tag();
    return start_tag();
  }

  std::string_view name() {
    const auto start = pos_;
    while (pos_ < in_.size() && !is_space(in_[pos_]) && in_[pos_] != '>' && in_[pos_] != '/' &&
           in_[pos_] != '=' && in_[pos_] != '<' && in_[pos_] != '"' && in_[pos_] != '\'') {
      ++pos_;
    }
    return in_.substr(start, pos_ - start);
  }

  void skip_space() {
    while (pos_ < in_.size() && is_space(in_[pos_])) ++pos_;
  }

  static std::string local(std::string_view qualified) {
    const auto colon = qualified.rfind(':');
    return std::string(colon == std::string_view::npos ? qualified : qualified.substr(colon + 1));
  }

  result<void> start_tag() {
    ++pos_;  // '<'
    const auto qualified = name();
    if (qualified.empty()) return bad("'<' without an element name");
    if (root_closed_) return bad("a second root element");
    if (open_.size() >= max_xml_depth) {
      return bad("elements nested deeper than " + std::to_string(max_xml_depth));
    }
    if (doc_.elements.size() >= max_xml_elements) {
      return bad("more than " + std::to_string(max_xml_elements) + " elements");
    }
    const auto index = doc_.elements.size();
    doc_.elements.push_back(xml_element{local(qualified), {}, {}});
    if (!open_.empty()) doc_.elements[open_.back()].children.push_back(index);
    names_.push_back(qualified);
    open_.push_back(index);
    // Attributes are read past, not kept (SNS answers carry only xmlns).
    for (;;) {
      skip_space();
      if (pos_ >= in_.size()) return bad("unterminated start tag");
      if (in_[pos_] == '>') {
        ++pos_;
        return {};
      }
      if (in_.substr(pos_).starts_with("/>")) {
        pos_ += 2;
        return close_top();
      }
      if (name().empty()) return bad("malformed attribute");
      skip_space();
      if (pos_ >= in_.size() || in_[pos_] != '=') return bad("attribute without '='");
      ++pos_;
      skip_space();
      if (pos_ >= in_.size() || (in_[pos_] != '"' && in_[pos_] != '\'')) {
        return bad("attribute value without quotes");
      }
      const char quote = in_[pos_++];
      const auto end = in_.find(quote, pos_);
      if (end == std::string_view::npos) return bad("unterminated attribute value");
      if (in_.substr(pos_, end - pos_).find('<') != std::string_view::npos) {
        return bad("'<' in an attribute value");
      }
      pos_ = end + 1;
    }
  }

  result<void> close_top() {
    open_.pop_back();
    names_.pop_back();
    if (open_.empty()) root_closed_ = true;
    return {};
  }

  result<void> end_tag() {
    pos_ += 2;
    const auto qualified = name();
    skip_space();
    if (pos_ >= in_.size() || in_[pos_] != '>') return bad("malformed end tag");
    ++pos_;
    if (open_.empty()) return bad("end tag </" + excerpt(qualified) + "> without a start tag");
    if (names_.back() != qualified) {
      return bad("end tag </" + excerpt(qualified) + "> closes <" + excerpt(names_.back()) + ">");
    }
    return close_top();
  }

  result<void> text() {
    const auto end = std::min(in_.find('<', pos_), in_.size());
    const auto raw = in_.substr(pos_, end - pos_);
    if (open_.empty()) {
      if (!std::all_of(raw.begin(), raw.end(), is_space)) {
        return bad("text outside the root element");
      }
      pos_ = end;
      return {};
    }
    auto& out = doc_.elements[open_.back()].text;
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '&') {
        out += raw[i];
        continue;
      }
      const auto semi = raw.find(';', i);
      if (semi == std::string_view::npos || semi - i > 12) {
        pos_ += i;
        return bad("'&' that starts no entity");
      }
      const auto entity = raw.substr(i + 1, semi - i - 1);
      if (entity == "amp") {
        out += '&';
      } else if (entity == "lt") {
        out += '<';
      } else if (entity == "gt") {
        out += '>';
      } else if (entity == "quot") {
        out += '"';
      } else if (entity == "apos") {
        out += '\'';
      } else if (entity.size() > 1 && entity[0] == '#') {
        const bool hex = entity[1] == 'x';
        const auto digits = entity.substr(hex ? 2 : 1);
        std::uint32_t cp = 0;
        auto [p, ec] =
            std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
        if (digits.empty() || ec != std::errc{} || p != digits.data() + digits.size() || cp == 0 ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
          pos_ += i;
          return bad("malformed character reference");
        }
        append_utf8(out, cp);
      } else {
        pos_ += i;
        return bad("unknown entity '&" + excerpt(entity) + ";'");
      }
      i = semi;
    }
    pos_ = end;
    return {};
  }

  std::string_view in_;
  std::size_t pos_ = 0;
  xml_document doc_;
  std::vector<std::size_t> open_;        // indexes of the open elements, innermost last
  std::vector<std::string_view> names_;  // their qualified names, for matching end tags
  bool root_closed_ = false;
};

}  // namespace

result<xml_document> parse_xml(std::string_view body) {
  return xml_parser(body).run();
}

// ---- responses ----

namespace {

// The <ActionResult> of an <ActionResponse>; the parsed document is kept alive by the caller.
result<const xml_element*> action_result(const xml_document& doc, std::string_view action,
                                         bool required = true) {
  const std::string response = std::string(action) + "Response";
  if (doc.root().name != response) {
    return fail(errc::protocol_error, "SNS answered " + std::string(action) + " with <" +
                                          excerpt(doc.root().name) + "> instead of <" + response +
                                          ">");
  }
  const auto* r = doc.child(doc.root(), std::string(action) + "Result");
  if (!r && required) {
    return fail(errc::protocol_error, "SNS's " + std::string(action) + " answer has no " +
                                          std::string(action) + "Result");
  }
  return r;
}

result<std::string> required_text(const xml_document& doc, const xml_element& parent,
                                  std::string_view name, std::string_view action) {
  const auto* e = doc.child(parent, name);
  if (!e || e->text.empty()) {
    return fail(errc::protocol_error,
                "SNS's " + std::string(action) + " answer has no " + std::string(name));
  }
  return e->text;
}

std::string optional_text(const xml_document& doc, const xml_element& parent,
                          std::string_view name) {
  const auto* e = doc.child(parent, name);
  return e ? e->text : std::string{};
}

// The <member> children of `list` (absent: none).
std::vector<const xml_element*> members(const xml_document& doc, const xml_element* list) {
  std::vector<const xml_element*> out;
  if (!list) return out;
  for (auto i : list->children) {
    if (doc.elements[i].name == "member") out.push_back(&doc.elements[i]);
  }
  return out;
}

result<std::string> single_value(std::string_view body, std::string_view action,
                                 std::string_view field) {
  auto doc = parse_xml(body);
  if (!doc) return doc.error();
  auto r = action_result(*doc, action);
  if (!r) return r.error();
  return required_text(*doc, **r, field, action);
}

}  // namespace

result<std::string> decode_create_topic(std::string_view body) {
  return single_value(body, "CreateTopic", "TopicArn");
}

result<topic_page> decode_list_topics(std::string_view body) {
  auto doc = parse_xml(body);
  if (!doc) return doc.error();
  auto r = action_result(*doc, "ListTopics");
  if (!r) return r.error();
  topic_page page;
  for (const auto* m : members(*doc, doc->child(**r, "Topics"))) {
    auto arn = required_text(*doc, *m, "TopicArn", "ListTopics");
    if (!arn) return arn.error();
    page.topic_arns.push_back(std::move(*arn));
  }
  page.next_token = optional_text(*doc, **r, "NextToken");
  return page;
}

result<std::string> decode_publish(std::string_view body) {
  return single_value(body, "Publish", "MessageId");
}

result<publish_batch_result> decode_publish_batch(std::string_view body) {
  constexpr std::string_view action = "PublishBatch";
  auto doc = parse_xml(body);
  if (!doc) return doc.error();
  auto r = action_result(*doc, action);
  if (!r) return r.error();
  const auto ok = members(*doc, doc->child(**r, "Successful"));
  const auto failed = members(*doc, doc->child(**r, "Failed"));
  if (ok.size() + failed.size() > max_entries_per_batch) {
    return fail(errc::protocol_error, "SNS's PublishBatch answer reports more than " +
                                          std::to_string(max_entries_per_batch) + " entries");
  }
  publish_batch_result out;
  for (const auto* m : ok) {
    auto id = required_text(*doc, *m, "Id", action);
    if (!id) return id.error();
    auto message_id = required_text(*doc, *m, "MessageId", action);
    if (!message_id) return message_id.error();
    out.successful[*id] = std::move(*message_id);
  }
  for (const auto* m : failed) {
    auto id = required_text(*doc, *m, "Id", action);
    if (!id) return id.error();
    batch_failure f;
    f.id = *id;
    f.code = optional_text(*doc, *m, "Code");
    f.message = optional_text(*doc, *m, "Message");
    f.sender_fault = optional_text(*doc, *m, "SenderFault") == "true";
    if (f.code.empty()) f.code = "Unknown";
    out.failed[*id] = std::move(f);
  }
  return out;
}

result<std::string> decode_subscribe(std::string_view body) {
  return single_value(body, "Subscribe", "SubscriptionArn");
}

result<subscription_page> decode_list_subscriptions(std::string_view body) {
  constexpr std::string_view action = "ListSubscriptionsByTopic";
  auto doc = parse_xml(body);
  if (!doc) return doc.error();
  auto r = action_result(*doc, action);
  if (!r) return r.error();
  subscription_page page;
  for (const auto* m : members(*doc, doc->child(**r, "Subscriptions"))) {
    subscription_entry s;
    auto arn = required_text(*doc, *m, "SubscriptionArn", action);
    if (!arn) return arn.error();
    s.subscription_arn = std::move(*arn);
    s.topic_arn = optional_text(*doc, *m, "TopicArn");
    s.protocol = optional_text(*doc, *m, "Protocol");
    s.endpoint = optional_text(*doc, *m, "Endpoint");
    page.subscriptions.push_back(std::move(s));
  }
  page.next_token = optional_text(*doc, **r, "NextToken");
  return page;
}

result<std::map<std::string, std::string>> decode_attributes(std::string_view body) {
  auto doc = parse_xml(body);
  if (!doc) return doc.error();
  // GetSubscriptionAttributesResponse or GetTopicAttributesResponse: one shape.
  const auto& root = doc->root().name;
  constexpr std::string_view suffix = "Response";
  if (!root.ends_with(suffix) || !root.starts_with("Get")) {
    return fail(errc::protocol_error,
                "SNS answered with <" + excerpt(root) + "> where attributes were asked for");
  }
  const auto action = root.substr(0, root.size() - suffix.size());
  auto r = action_result(*doc, action);
  if (!r) return r.error();
  std::map<std::string, std::string> out;
  const auto* list = doc->child(**r, "Attributes");
  if (!list) return out;
  for (auto i : list->children) {
    const auto& entry = doc->elements[i];
    if (entry.name != "entry") continue;
    auto key = required_text(*doc, entry, "key", action);
    if (!key) return key.error();
    out[*key] = optional_text(*doc, entry, "value");
  }
  return out;
}

result<void> decode_empty(std::string_view body, std::string_view action) {
  auto doc = parse_xml(body);
  if (!doc) return doc.error();
  auto r = action_result(*doc, action, false);
  if (!r) return r.error();
  return {};
}

// ---- errors ----

error map_error(std::string_view code, std::string_view message, unsigned http_status) {
  auto is = [&](std::initializer_list<std::string_view> names) {
    return std::find(names.begin(), names.end(), code) != names.end();
  };
  auto contains = [&](std::string_view needle) {
    return message.find(needle) != std::string_view::npos;
  };
  errc c = errc::provider_error;
  if (is({"NotFound", "NotFoundException"})) {
    c = errc::topic_not_found;
  } else if (is({"Throttled", "ThrottledException", "Throttling", "ThrottlingException",
                 "RequestThrottled", "TooManyRequestsException", "KMSThrottling"}) ||
             http_status == 429 || http_status == 503) {
    c = errc::throttled;
  } else if (is({"AuthorizationError", "AuthorizationErrorException", "AccessDenied",
                 "AccessDeniedException", "InvalidClientTokenId", "SignatureDoesNotMatch",
                 "MissingAuthenticationToken", "IncompleteSignature", "ExpiredToken",
                 "InvalidSecurity", "InvalidSecurityException", "RequestExpired", "KMSAccessDenied",
                 "UnrecognizedClientException"}) ||
             http_status == 401 || http_status == 403) {
    c = errc::permission;
  } else if (is({"BatchRequestTooLong", "BatchRequestTooLongException"}) ||
             (is({"InvalidParameter", "InvalidParameterValue"}) &&
              (contains("too long") || contains("shorter than")) && contains("essage"))) {
    c = errc::message_too_large;
  } else if (is({"InvalidParameter", "InvalidParameterException", "InvalidParameterValue",
                 "InvalidParameterValueException", "MissingParameter", "ValidationError",
                 "ValidationException", "EmptyBatchRequest", "EmptyBatchRequestException",
                 "TooManyEntriesInBatchRequest", "TooManyEntriesInBatchRequestException",
                 "BatchEntryIdsNotDistinct", "BatchEntryIdsNotDistinctException",
                 "InvalidBatchEntryId", "InvalidBatchEntryIdException", "FilterPolicyLimitExceeded",
                 "FilterPolicyLimitExceededException", "InvalidAction"})) {
    c = errc::invalid_argument;
  }
  error e{c, "SNS: " + server_text(message.empty() ? code : message), server_text(code)};
  if (c == errc::provider_error &&
      (http_status >= 500 ||
       is({"InternalError", "InternalErrorException", "ServiceUnavailable"}))) {
    e.kind = error_kind::transient;
  }
  return e;
}

error decode_error(unsigned http_status, std::string_view body,
                   std::string_view retry_after_header) {
  std::string code;
  std::string message;
  bool readable = false;
  if (auto doc = parse_xml(body)) {
    readable = true;
    const xml_element* e = nullptr;
    const auto& root = doc->root();
    if (root.name == "Error") {
      e = &root;
    } else if (root.name == "ErrorResponse") {
      e = doc->child(root, "Error");
    } else if (const auto* list = doc->child(root, "Errors")) {
      e = doc->child(*list, "Error");
    }
    if (e) {
      code = optional_text(*doc, *e, "Code");
      message = optional_text(*doc, *e, "Message");
    }
  }
  return finish_error(std::move(code), std::move(message), http_status, readable, "XML",
                      retry_after_header, map_error);
}

}  // namespace qrt::sqs::detail::sns
