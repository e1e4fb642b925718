// Writes a seed corpus for amqp_codec_fuzz: encoded messages with every field qrt maps, with
// and without annotations, a large one (32-bit encodings) and a batch payload, so the fuzzer
// starts from the real format.
#include <fstream>
#include <string>
#include <vector>

#include "amqp/message_codec.hpp"

using namespace qrt::amqp::detail;

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  qrt::message full;
  full.body = "hello";
  full.id = "id-1";
  full.correlation_id = "corr";
  full.content_type = "text/plain";
  full.subject = "subject";
  full.session = qrt::session_id::from("s1");
  full.time_to_live = qrt::milliseconds{1000};
  full.attributes = {{"k", "v"}, {"n", "1"}};
  qrt::message large = full;
  large.body.assign(300, 'b');
  large.attributes["long"] = std::string(300, 'v');

  std::vector<std::string> seeds(4);
  encode_message(full, {}, seeds[0]);
  encode_message(qrt::message{}, {}, seeds[1]);
  encode_message(large,
                 {.scheduled_enqueue_time = qrt::time_point(qrt::milliseconds{1'700'000'000'000}),
                  .partition_key = "pk"},
                 seeds[2]);
  const std::vector<std::string> batch{seeds[0], seeds[1]};
  encode_batch(batch, batch_envelope::of_first(full, {}), seeds[3]);
  for (std::size_t i = 0; i < seeds.size(); ++i) {
    std::ofstream(dir + "/seed-" + std::to_string(i), std::ios::binary) << seeds[i];
  }
  return 0;
}
