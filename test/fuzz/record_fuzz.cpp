// libFuzzer target for the persistence log's reader: frames and record payloads from arbitrary
// bytes must give a clear error or a record, never a crash, hang or out-of-bounds read. A record
// that decodes must re-encode to a frame that decodes to the same bytes again, and what it names
// must be what the provider could have written: a subscription_created names a subscription, a
// published record's copies are subscriptions of its own topic (format version 2).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "providers/memory/log/record.hpp"

using namespace qrt::memory::log;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  // 1. The input as a raw payload.
  if (auto r = decode_record(bytes)) {
    if (const auto* sub = std::get_if<subscription_created_record>(&*r)) {
      if (!sub->subscription.is_subscription() || sub->subscription.is_dead_letter()) std::abort();
    }
    if (const auto* pub = std::get_if<published_record>(&*r)) {
      for (const auto& [subscription, sequence] : pub->copies) {
        (void)sequence;
        if (!subscription.is_subscription() || subscription.is_dead_letter() ||
            subscription.topic() != pub->topic.str()) {
          std::abort();
        }
      }
    }
    std::string frame;
    if (!append_record(frame, *r)) std::abort();
    const frame_view f = read_frame(frame);
    if (f.status != frame_status::ok) std::abort();
    auto again = decode_record(f.payload);
    if (!again) std::abort();
    std::string frame2;
    if (!append_record(frame2, *again) || frame2 != frame) std::abort();
  } else if (r.error().message.empty()) {
    std::abort();  // every refusal says why
  }

  // 2. The input as a segment body: walk frames the way recovery does.
  std::string_view rest = bytes;
  while (!rest.empty()) {
    const frame_view f = read_frame(rest);
    if (f.status != frame_status::ok) {
      if (f.problem.empty()) std::abort();
      break;
    }
    if (f.frame_size > rest.size()) std::abort();
    (void)decode_record(f.payload);
    rest.remove_prefix(f.frame_size);
  }
  (void)parse_segment_header(bytes);
  return 0;
}
