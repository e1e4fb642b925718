// Writes a seed corpus for servicebus_management_fuzz: encoded replies of every kind the
// $management and $cbs nodes send (renew-lock, renew-session-lock, schedule, session state, peeked
// and received messages, a 204, a put-token answer, error replies), so the fuzzer starts from the
// real format.
#include <fstream>
#include <map>
#include <proton/binary.hpp>
#include <proton/codec/map.hpp>
#include <proton/codec/vector.hpp>
#include <proton/message.hpp>
#include <proton/symbol.hpp>
#include <proton/timestamp.hpp>
#include <proton/uuid.hpp>
#include <proton/value.hpp>
#include <string>
#include <vector>

#include "amqp/message_codec.hpp"

namespace {

using body_map = std::map<std::string, proton::value>;

proton::message reply(int status, const body_map& body) {
  proton::message m;
  m.properties().put("statusCode", status);
  m.properties().put("statusDescription", std::string("OK"));
  m.body(body);
  return m;
}

void write(const std::string& dir, const std::string& name, proton::message m) {
  std::vector<char> bytes;
  m.encode(bytes);
  std::ofstream(dir + "/" + name, std::ios::binary).write(bytes.data(), bytes.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  const std::vector<proton::timestamp> stamps{proton::timestamp(1700000000123),
                                              proton::timestamp(1700000060000)};
  write(dir, "renew-lock", reply(200, {{"expirations", stamps}}));
  write(dir, "renew-session-lock",
        reply(200, {{"expiration", proton::timestamp(253402300799999)}}));
  write(dir, "schedule",
        reply(200, {{"sequence-numbers",
                     std::vector<proton::value>{
                         proton::value(std::int64_t{5}),
                         proton::value(proton::binary(std::string("\0\0\0\0\0\0\x01\x02", 8)))}}}));
  write(dir, "session-state", reply(200, {{"session-state", proton::binary(std::string("s2"))}}));
  write(dir, "no-session-state", reply(200, {{"session-state", proton::value{}}}));
  write(dir, "no-content", reply(204, {}));

  qrt::message inner;
  inner.body = "payload";
  inner.id = "m-1";
  inner.attributes = {{"tenant", "acme"}};
  std::string encoded;
  qrt::amqp::detail::encode_message(inner, {}, encoded);
  proton::uuid token;
  for (std::size_t i = 0; i < token.size(); ++i) token[i] = static_cast<unsigned char>(i);
  const body_map entry{{"message", proton::binary(encoded.begin(), encoded.end())},
                       {"lock-token", token}};
  write(dir, "messages", reply(200, {{"messages", std::vector<proton::value>{entry, entry}}}));

  proton::message cbs;
  cbs.properties().put("status-code", 202);
  cbs.properties().put("status-description", std::string("Accepted"));
  write(dir, "put-token", cbs);

  proton::message refused;
  refused.properties().put("statusCode", 410);
  refused.properties().put("errorCondition", proton::symbol("com.microsoft:message-lock-lost"));
  refused.properties().put("statusDescription", std::string("The lock supplied is invalid."));
  write(dir, "lock-lost", refused);
  proton::message busy;
  busy.properties().put("status-code", std::int64_t{503});
  write(dir, "busy", busy);
}
