// libFuzzer target for SNS's XML answers (src/providers/sqs/sns_codec.cpp): the bounded XML
// reader, every answer parser, error answers, the filter policy reader and the name mapping. The
// input is a first line "<HTTP status> <Retry-After>" (read by the error decoder only) and the
// body every parser reads. Properties:
// - a refusal is a protocol_error that says why; an error answer always gives a coded error
//   with a message bounded by the body and a retry_after that is never negative, its message and
//   code valid UTF-8 without control characters;
// - a parsed document is a tree within the reader's bounds (depth, element count), with no
//   more elements and no more text than the body has bytes;
// - every element's text, escaped the way XML escapes it and read again, is the same text;
// - a batch answer reports at most 10 entries;
// - a filter policy qrt reads, written again by qrt, reads back the same filter;
// - a name part qrt reads back from an SNS or SQS name is the one that name was made from, and a
//   subscription read back from its queue's name gives that name again.
#include <charconv>
#include <string>

#include "fuzz_check.hpp"
#include "providers/sqs/sns_codec.hpp"

using namespace qrt::sqs::detail;
namespace sns = qrt::sqs::detail::sns;
using qrt::errc;

namespace {

std::string escaped(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

void check_document(const sns::xml_document& doc, std::string_view body) {
  QRT_FUZZ_CHECK(!doc.elements.empty(), "a document has a root");
  QRT_FUZZ_CHECK(doc.elements.size() <= sns::max_xml_elements, "the element bound holds");
  QRT_FUZZ_CHECK(doc.elements.size() <= body.size() / 4, "no more elements than the body holds");
  std::vector<int> parents(doc.elements.size(), 0);
  std::vector<std::size_t> depth(doc.elements.size(), 1);
  std::size_t text = 0;
  for (std::size_t i = 0; i < doc.elements.size(); ++i) {
    const auto& e = doc.elements[i];
    text += e.text.size();
    for (auto c : e.children) {
      QRT_FUZZ_CHECK(c > i && c < doc.elements.size(), "children follow their parent");
      ++parents[c];
      depth[c] = depth[i] + 1;
      QRT_FUZZ_CHECK(depth[c] <= sns::max_xml_depth, "the depth bound holds");
    }
  }
  QRT_FUZZ_CHECK(parents[0] == 0, "the root has no parent");
  for (std::size_t i = 1; i < parents.size(); ++i) {
    QRT_FUZZ_CHECK(parents[i] == 1, "every other element has exactly one parent");
  }
  QRT_FUZZ_CHECK(text <= body.size(), "no more text than the body has");
  for (const auto& e : doc.elements) {
    if (e.text.empty()) continue;
    auto again = sns::parse_xml("<r>" + escaped(e.text) + "</r>");
    QRT_FUZZ_CHECK(again.has_value(), "escaped text reads");
    QRT_FUZZ_CHECK(again->root().text == e.text, "escaped text reads back the same");
  }
}

void check_error_answer(std::string_view head, std::string_view body) {
  unsigned status = 400;
  const auto space = head.find(' ');
  const auto status_text = head.substr(0, space);
  std::from_chars(status_text.data(), status_text.data() + status_text.size(), status);
  const auto retry_after =
      space == std::string_view::npos ? std::string_view{} : head.substr(space + 1);
  const auto e = sns::decode_error(status, body, retry_after);
  QRT_FUZZ_CHECK(!e.message.empty() && !e.provider_code.empty(), "an error answer is coded");
  QRT_FUZZ_CHECK(e.message.size() <= std::min<std::size_t>(body.size(), 515) + 100,
                 "an error message is bounded by the body");
  QRT_FUZZ_CHECK(!e.retry_after || e.retry_after->count() >= 0, "retry_after is never negative");
  qrt::fuzz::check_shown(e);
}

template <class Result>
void check_decoder(const Result& r) {
  if (!r) qrt::fuzz::check_refusal(r.error(), errc::protocol_error);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto [head, body] = qrt::fuzz::first_line(qrt::fuzz::as_text(data, size));
  check_error_answer(head, body);

  if (auto doc = sns::parse_xml(body)) {
    check_document(*doc, body);
  } else {
    qrt::fuzz::check_refusal(doc.error(), errc::protocol_error);
  }
  check_decoder(sns::decode_create_topic(body));
  check_decoder(sns::decode_publish(body));
  check_decoder(sns::decode_subscribe(body));
  check_decoder(sns::decode_list_topics(body));
  check_decoder(sns::decode_list_subscriptions(body));
  check_decoder(sns::decode_attributes(body));
  check_decoder(sns::decode_empty(body, "DeleteTopic"));
  auto batch = sns::decode_publish_batch(body);
  check_decoder(batch);
  if (batch) {
    QRT_FUZZ_CHECK(batch->successful.size() + batch->failed.size() <= max_entries_per_batch,
                   "a batch answer reports at most 10 entries");
  }

  if (auto filter = sns::decode_filter_policy(body)) {
    if (auto policy = sns::encode_filter_policy(*filter)) {
      if (!policy->empty()) {
        auto back = sns::decode_filter_policy(*policy);
        QRT_FUZZ_CHECK(back.has_value(), "a policy qrt writes, qrt reads");
        QRT_FUZZ_CHECK(*back == *filter, "a filter written and read back is the same");
      } else {
        QRT_FUZZ_CHECK(filter->empty(), "only an empty filter has no policy");
      }
    }
  } else {
    qrt::fuzz::check_refusal(filter.error(), errc::protocol_error);
  }

  if (auto part = sns::qrt_name_part(body)) {
    QRT_FUZZ_CHECK(sns::aws_name_part(*part) == body, "a name part reads back to its source");
  }
  if (auto parsed = sns::parse_subscription_queue_name(body)) {
    auto topic = qrt::topic_name::parse(parsed->first);
    auto sub = topic ? qrt::queue_name::subscription(*topic, parsed->second)
                     : qrt::result<qrt::queue_name>(topic.error());
    if (sub) {
      auto name = sns::subscription_queue_name(*sub);
      QRT_FUZZ_CHECK(!name || *name == body,
                     "a subscription queue name reads back to the subscription it was made for");
    }
  }
  return 0;
}
