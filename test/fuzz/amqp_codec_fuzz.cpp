// libFuzzer target for the AMQP message decoder: a transfer payload from arbitrary bytes must
// give a clear protocol_error or a message, never a crash, hang, over-read or huge allocation. A
// message that decodes must stay within its output budget (decode_output_budget), survive
// encode_message and decode to the same content again, and a
// payload read as a batch must split into spans inside the input. Refusals, and the input shown as
// a peer's text (peer_text, as conditions and descriptions are in errors), are valid UTF-8
// without control characters, bounded, and the same as the input when it was already so.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "amqp/message_codec.hpp"
#include "fuzz_check.hpp"

using namespace qrt::amqp::detail;

namespace {

bool same_content(const qrt::message& a, const qrt::message& b) {
  return a.body == b.body && a.id == b.id && a.correlation_id == b.correlation_id &&
         a.content_type == b.content_type && a.subject == b.subject && a.session == b.session &&
         a.time_to_live == b.time_to_live && a.attributes == b.attributes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);

  if (auto d = decode_message(bytes)) {
    // Whatever the input, the decoded message stays within its output budget.
    std::size_t produced = d->message.body.size() + d->message.id.size() +
                           d->message.correlation_id.size() + d->message.subject.size() +
                           d->message.content_type.size() +
                           d->annotations.deadletter_source.value_or("").size() +
                           d->annotations.partition_key.value_or("").size();
    for (const auto& [k, v] : d->message.attributes) produced += k.size() + v.size();
    if (produced > decode_output_budget(size)) std::abort();
    encode_extras extras;
    extras.scheduled_enqueue_time = d->annotations.scheduled_enqueue_time;
    if (d->annotations.partition_key) extras.partition_key = *d->annotations.partition_key;
    std::string again;
    encode_message(d->message, extras, again);
    auto back = decode_message(
        std::span(reinterpret_cast<const std::uint8_t*>(again.data()), again.size()));
    if (!back || !same_content(back->message, d->message)) std::abort();
    // An empty partition key is written as none.
    if (back->annotations.partition_key.value_or("") != d->annotations.partition_key.value_or(""))
      std::abort();
  } else if (d.error().code != qrt::errc::protocol_error || d.error().message.empty()) {
    std::abort();  // every refusal is a protocol error that says why
  } else {
    qrt::fuzz::check_shown(d.error());
  }

  const auto text = qrt::fuzz::as_text(data, size);
  const auto shown = peer_text(text);
  QRT_FUZZ_CHECK(qrt::test::fit_to_show(shown),
                 "a peer's text is shown as valid UTF-8 without control characters");
  QRT_FUZZ_CHECK(shown.size() <= max_peer_text + 40, "a peer's text is shown bounded");
  if (size <= max_peer_text && qrt::test::fit_to_show(text)) {
    QRT_FUZZ_CHECK(shown == text, "a peer's text fit to show is shown as it is");
  }

  if (auto parts = split_batch(bytes)) {
    for (const auto part : *parts) {
      if (part.data() < data || part.data() + part.size() > data + size) std::abort();
      (void)decode_message(part);
    }
  } else if (parts.error().message.empty()) {
    std::abort();
  }
  return 0;
}
