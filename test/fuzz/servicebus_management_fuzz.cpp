// libFuzzer target for the replies of the Service Bus $management and $cbs nodes
// (src/providers/servicebus/management.cpp): the input is an encoded AMQP message, read by Proton
// as the provider's links read it, then handed to every reply parser. Properties:
// - nothing a reply parser is given makes it throw: every problem is a result with a message;
// - output is bounded by the request, whatever the reply claims: exactly as many expirations or
//   sequence numbers as the request named, no more messages than it asked for, no session state
//   larger than the input;
// - what a parser read, written back into a reply of the same kind, reads the same (lock
//   expirations and a session lock's expiration to the millisecond, sequence numbers, session
//   state); a time past the clock's range reads as the clock's end (UBSan stops any overflow);
// - the rules an enumerate-rules reply lists are no more than asked for, their text no larger
//   than the input, and only a correlation filter carries a label or properties;
// - a refusal shows the service's status description and condition as valid UTF-8 without
//   control characters, whatever bytes the reply holds.
#include <cstdio>
#include <map>
#include <proton/binary.hpp>
#include <proton/codec/map.hpp>
#include <proton/codec/vector.hpp>
#include <proton/error.hpp>
#include <proton/message.hpp>
#include <proton/timestamp.hpp>
#include <proton/value.hpp>
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "providers/servicebus/management.hpp"

using namespace qrt::servicebus::detail;

namespace {

using body_map = std::map<std::string, proton::value>;

proton::message ok_reply(const body_map& body) {
  proton::message m;
  m.properties().put("statusCode", 200);
  m.body(body);
  return m;
}

proton::timestamp to_timestamp(qrt::time_point t) {
  return proton::timestamp(
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

template <class T>
void check_refusal(const qrt::result<T>& r) {
  if (!r) {
    QRT_FUZZ_CHECK(!r.error().message.empty(), "a refusal says why");
    qrt::fuzz::check_shown(r.error());
  }
}

template <class F>
void must_not_throw(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "thrown: %s\n", e.what());
    QRT_FUZZ_CHECK(false, "nothing a reply parser is given makes it throw");
  } catch (...) {
    QRT_FUZZ_CHECK(false, "nothing a reply parser is given makes it throw");
  }
}

// How many lock tokens, scheduled messages or peeked messages the request named; the replies
// the corpus program writes (test/fuzz/servicebus_management_corpus.cpp) carry this many.
constexpr std::size_t requested = 2;

void check(const proton::message& reply, std::size_t size) {
  must_not_throw([&] { check_refusal(response_status(reply, "put-token")); });

  must_not_throw([&] {
    auto r = parse_renew_lock_response(reply, requested);
    check_refusal(r);
    if (!r) return;
    QRT_FUZZ_CHECK(r->size() == requested, "one expiration per lock token");
    std::vector<proton::timestamp> stamps;
    for (auto t : *r) stamps.push_back(to_timestamp(t));
    auto again = parse_renew_lock_response(ok_reply({{"expirations", stamps}}), requested);
    QRT_FUZZ_CHECK(again && again->size() == r->size(), "lock expirations written back read");
    for (std::size_t i = 0; i < r->size(); ++i) {
      QRT_FUZZ_CHECK(to_timestamp((*again)[i]) == stamps[i],
                     "lock expirations written back read the same");
    }
  });

  must_not_throw([&] {
    auto r = parse_renew_session_lock_response(reply);
    check_refusal(r);
    if (!r) return;
    auto again = parse_renew_session_lock_response(ok_reply({{"expiration", to_timestamp(*r)}}));
    QRT_FUZZ_CHECK(again && to_timestamp(*again) == to_timestamp(*r),
                   "a session lock expiration written back reads the same");
  });

  must_not_throw([&] {
    auto r = parse_schedule_response(reply, requested);
    check_refusal(r);
    if (!r) return;
    QRT_FUZZ_CHECK(r->size() == requested, "one sequence number per scheduled message");
    auto again = parse_schedule_response(ok_reply({{"sequence-numbers", *r}}), requested);
    QRT_FUZZ_CHECK(again && *again == *r, "sequence numbers written back read the same");
  });

  must_not_throw([&] {
    auto r = parse_session_state_response(reply);
    check_refusal(r);
    if (!r) return;
    QRT_FUZZ_CHECK(!*r || (*r)->size() <= size, "no session state larger than the input");
    const proton::value state =
        *r ? proton::value(proton::binary((*r)->begin(), (*r)->end())) : proton::value{};
    auto again = parse_session_state_response(ok_reply({{"session-state", state}}));
    QRT_FUZZ_CHECK(again && *again == *r, "session state written back reads the same");
  });

  must_not_throw([&] {
    auto r = parse_enumerate_rules_response(reply, requested);
    check_refusal(r);
    if (!r) return;
    QRT_FUZZ_CHECK(r->size() <= requested, "no more rules than the request asked for");
    for (const auto& rule : *r) {
      std::size_t text = rule.name.size() + (rule.label ? rule.label->size() : 0);
      for (const auto& [key, value] : rule.properties) text += key.size() + value.size();
      QRT_FUZZ_CHECK(text <= size, "a rule's text is no larger than the input");
      QRT_FUZZ_CHECK(rule.filter == rule_entry::kind::correlation_filter ||
                         (!rule.label && rule.properties.empty()),
                     "only a correlation filter carries a label or properties");
    }
  });

  must_not_throw([&] {
    auto r = parse_messages_response(reply, requested);
    check_refusal(r);
    if (!r) return;
    QRT_FUZZ_CHECK(r->size() <= requested, "no more messages than the request asked for");
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  proton::message reply;
  try {
    reply.decode(std::vector<char>(data, data + size));
  } catch (const proton::error&) {
    return 0;  // not an AMQP message: Proton refuses the transfer before qrt sees it
  }
  check(reply, size);
  return 0;
}
