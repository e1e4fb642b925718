// libFuzzer target for the SQS JSON 1.0 answers (src/providers/sqs/codec.cpp): every response
// decoder (queue tags included), the checksum check, the reading of a received message into a qrt
// message, and error answers. The input is a first line "<HTTP status> <Retry-After>", optionally
// followed by a tab and the x-amzn-query-error header (all read by the error decoder only), and
// the body every decoder reads. Properties:
// - a refusal is a protocol_error that says why; an error answer always gives a coded error,
//   with a retry_after that is never negative;
// - an error's code comes from the body's __type when it names one (the header is then ignored),
//   else from the header, and is then made of the header's bytes (those it may not show as
//   '?'); a code read from the header, sent again in a header, reads the same;
// - an error's message and code are valid UTF-8 without control characters, whatever the server
//   sent;
// - output is bounded by the body: no more messages, entries, attributes or tags than it has bytes,
//   and no more decoded bytes than it has;
// - a received message's attributes, sent again the way qrt sends them, are received the same
//   and their MD5 matches;
// - a message qrt can read (from_wire), sent again (to_wire), reads back the same;
// - the per-message body MD5 comparison agrees with comparing md5_of_body's hex text.
#include <boost/json.hpp>
#include <charconv>
#include <string>

#include "fuzz_check.hpp"
#include "providers/sqs/codec.hpp"

using namespace qrt::sqs::detail;
using qrt::errc;
namespace json = boost::json;

namespace {

std::size_t bytes_of(const wire_received& w) {
  std::size_t n = w.message_id.size() + w.receipt_handle.size() + w.body.size() +
                  w.md5_of_body.size() + w.md5_of_attributes.size();
  for (const auto& [k, v] : w.system_attributes) n += k.size() + v.size();
  for (const auto& [k, a] : w.attributes) n += k.size() + a.data_type.size() + a.value.size();
  return n;
}

// The attributes as qrt sends them (SendMessage's MessageAttributes), received again.
void check_attributes_round_trip(const wire_received& w) {
  wire_message sent;
  sent.body = w.body.empty() ? "x" : w.body;
  sent.attributes = w.attributes;
  const auto request = json::parse(encode_send_message("q", sent)).as_object();
  json::object m{{"MessageId", "m"},
                 {"ReceiptHandle", "r"},
                 {"Body", request.at("MessageBody")},
                 {"MD5OfBody", md5_of_body(sent.body)}};
  if (const auto* a = request.if_contains("MessageAttributes")) {
    m["MessageAttributes"] = *a;
    m["MD5OfMessageAttributes"] = md5_of_attributes(w.attributes);
  }
  const auto answer = json::serialize(json::object{{"Messages", json::array{m}}});
  auto back = decode_receive_message(answer);
  QRT_FUZZ_CHECK(back && back->size() == 1, "an answer qrt's own encoder wrote decodes");
  QRT_FUZZ_CHECK(back->front().attributes == w.attributes,
                 "attributes sent the way qrt sends them are received the same");
  QRT_FUZZ_CHECK(back->front().body == sent.body, "a body sent is received the same");
  QRT_FUZZ_CHECK(verify_checksums(back->front()).has_value(),
                 "the MD5s qrt computes match for what it sent");
}

// A message qrt read, sent again by qrt and read back, is the same message.
void check_message_round_trip(const wire_received& w) {
  auto read = from_wire(w);
  if (!read) {
    qrt::fuzz::check_refusal(read.error(), errc::protocol_error);
    return;
  }
  QRT_FUZZ_CHECK(read->attributes.size() <= w.attributes.size(),
                 "no more attributes than were received");
  QRT_FUZZ_CHECK(read->delivery_count >= 1, "a received message was delivered at least once");
  qrt::message again;
  again.body = read->body;
  again.attributes = read->attributes;
  again.correlation_id = read->correlation_id;
  again.content_type = read->content_type;
  again.subject = read->subject;
  auto wire = to_wire(again, false, {}, std::chrono::system_clock::now());
  if (!wire) return;  // qrt refuses to send it (too many attributes, empty body, ...)
  wire_received received;
  received.message_id = "m";
  received.body = wire->body;
  received.attributes = wire->attributes;
  auto back = from_wire(received);
  QRT_FUZZ_CHECK(back.has_value(), "what qrt sends, qrt reads");
  QRT_FUZZ_CHECK(back->body == again.body && back->attributes == again.attributes &&
                     back->correlation_id == again.correlation_id &&
                     back->content_type == again.content_type && back->subject == again.subject,
                 "a message read, sent again and read back is the same");
}

// The x-amzn-query-error header carries the legacy code ("AWS.SimpleQueueService.X;Sender").
void check_query_error_header(unsigned status, std::string_view body, std::string_view header,
                              const qrt::error& e) {
  const auto without_header = decode_error(status, body, {}, {});
  const auto status_code = "HTTP" + std::to_string(status);
  if (without_header.provider_code != status_code) {
    QRT_FUZZ_CHECK(e.provider_code == without_header.provider_code,
                   "the body's code wins over the header's");
    return;
  }
  if (e.provider_code == status_code) return;
  // What is shown of the header replaces the bytes it may not show by '?': the rest are the
  // header's, in its order.
  std::size_t at = 0;
  for (const char c : e.provider_code) {
    if (c == '?') continue;
    at = header.find(c, at);
    if (at == std::string_view::npos) break;
    ++at;
  }
  QRT_FUZZ_CHECK(e.provider_code.size() <= header.size() && at != std::string_view::npos,
                 "a code read from the header is made of the header's bytes");
  QRT_FUZZ_CHECK(e.provider_code.find_first_of(";#:") == std::string::npos,
                 "a code read from the header has no namespace, fault or suffix");
  const auto again = decode_error(status, "", e.provider_code + ";Sender", {});
  QRT_FUZZ_CHECK(again.provider_code == e.provider_code,
                 "a code read from the header, sent again in a header, reads the same");
}

void check_error_answer(std::string_view head, std::string_view body) {
  unsigned status = 400;
  const auto tab = head.find('\t');
  const auto query_error =
      tab == std::string_view::npos ? std::string_view{} : head.substr(tab + 1);
  head = head.substr(0, tab);
  const auto space = head.find(' ');
  const auto status_text = head.substr(0, space);
  std::from_chars(status_text.data(), status_text.data() + status_text.size(), status);
  const auto retry_after =
      space == std::string_view::npos ? std::string_view{} : head.substr(space + 1);
  const auto e = decode_error(status, body, query_error, retry_after);
  QRT_FUZZ_CHECK(!e.message.empty() && !e.provider_code.empty(), "an error answer is coded");
  QRT_FUZZ_CHECK(e.message.size() <= body.size() + 100, "an error message is bounded by the body");
  QRT_FUZZ_CHECK(!e.retry_after || e.retry_after->count() >= 0, "retry_after is never negative");
  qrt::fuzz::check_shown(e);
  check_query_error_header(status, body, query_error, e);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto [head, body] = qrt::fuzz::first_line(qrt::fuzz::as_text(data, size));
  check_error_answer(head, body);

  if (auto r = decode_receive_message(body)) {
    QRT_FUZZ_CHECK(r->size() <= body.size() / 8, "no more messages than the body can hold");
    std::size_t total = 0;
    for (const auto& w : *r) {
      total += bytes_of(w);
      if (auto ok = verify_checksums(w); !ok)
        qrt::fuzz::check_refusal(ok.error(), errc::protocol_error);
      QRT_FUZZ_CHECK(
          md5_of_body_is(w.body, w.md5_of_body) == (md5_of_body(w.body) == w.md5_of_body),
          "the per-message MD5 comparison agrees with comparing the hex text");
      check_attributes_round_trip(w);
      check_message_round_trip(w);
    }
    QRT_FUZZ_CHECK(total <= body.size(), "no more decoded bytes than the body has");
  } else {
    qrt::fuzz::check_refusal(r.error(), errc::protocol_error);
  }

  if (auto r = decode_send_message(body)) {
    QRT_FUZZ_CHECK(r->message_id.size() + r->md5_of_body.size() + r->md5_of_attributes.size() +
                           r->sequence_number.size() <=
                       body.size(),
                   "no more decoded bytes than the body has");
  } else {
    qrt::fuzz::check_refusal(r.error(), errc::protocol_error);
  }

  if (auto r = decode_batch_result(body)) {
    QRT_FUZZ_CHECK(r->successful.size() + r->failed.size() <= body.size() / 8,
                   "no more batch entries than the body can hold");
  } else {
    qrt::fuzz::check_refusal(r.error(), errc::protocol_error);
  }

  if (auto r = decode_queue_url(body)) {
    QRT_FUZZ_CHECK(r->size() <= body.size(), "a queue URL is made of the body's bytes");
  } else {
    qrt::fuzz::check_refusal(r.error(), errc::protocol_error);
  }

  if (auto r = decode_queue_attributes(body)) {
    QRT_FUZZ_CHECK(r->size() <= body.size() / 4, "no more queue attributes than the body holds");
  } else {
    qrt::fuzz::check_refusal(r.error(), errc::protocol_error);
  }

  // ListQueueTags: the provider reads a queue's tags to learn whose dead-letter queue it is.
  if (auto r = decode_queue_tags(body)) {
    QRT_FUZZ_CHECK(r->size() <= body.size() / 4, "no more queue tags than the body holds");
  } else {
    qrt::fuzz::check_refusal(r.error(), errc::protocol_error);
  }
  return 0;
}
