// The SQS provider's per-request and per-message work without I/O: signing a request (SigV4),
// the MD5 checks of a received message, the text check of a body sent, and encoding a batch and
// decoding a receive answer. Next to the end-to-end figures of bench/sqs/run.sh
// (docs/performance.md).
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>
#include <vector>

#include "codec.hpp"
#include "digest.hpp"
#include "sigv4.hpp"

namespace {

using namespace qrt::sqs::detail;

void BM_Sigv4SignSendBatch(benchmark::State& state) {
  signable_request r;
  r.method = "POST";
  r.path = "/";
  r.headers = {{"Content-Type", "application/x-amz-json-1.0"},
               {"X-Amz-Target", "AmazonSQS.SendMessageBatch"},
               {"Host", "127.0.0.1:4566"}};
  r.body = std::string(3000, 'x');  // about ten 256-byte messages in JSON
  aws_credentials keys;
  keys.access_key_id = "AKIDEXAMPLE";
  keys.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  const signing_scope scope{"us-east-1", "sqs"};
  const auto now = std::chrono::system_clock::now();
  for (auto _ : state) benchmark::DoNotOptimize(sigv4_sign(r, keys, scope, now));
}
BENCHMARK(BM_Sigv4SignSendBatch);

// The same request as the provider signs it: from views, reusing the signing texts' capacity.
void BM_Sigv4SignViewSendBatch(benchmark::State& state) {
  const std::string body(3000, 'x');
  const header_view headers[] = {{"Content-Type", "application/x-amz-json-1.0"},
                                 {"X-Amz-Target", "AmazonSQS.SendMessageBatch"},
                                 {"Host", "127.0.0.1:4566"}};
  aws_credentials keys;
  keys.access_key_id = "AKIDEXAMPLE";
  keys.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  const signing_scope scope{"us-east-1", "sqs"};
  const auto now = std::chrono::system_clock::now();
  for (auto _ : state) {
    benchmark::DoNotOptimize(sigv4_sign_view("POST", "/", headers, body, keys, scope, now));
  }
}
BENCHMARK(BM_Sigv4SignViewSendBatch);

void BM_Md5OfA256ByteBody(benchmark::State& state) {
  const std::string body(256, 'b');
  for (auto _ : state) benchmark::DoNotOptimize(md5_of_body(body));
}
BENCHMARK(BM_Md5OfA256ByteBody);

// The check made for every received message: its body's MD5 against MD5OfBody.
void BM_VerifyChecksumsOf256ByteBody(benchmark::State& state) {
  wire_received w;
  w.message_id = "id";
  w.body = std::string(256, 'b');
  w.md5_of_body = md5_of_body(w.body);
  for (auto _ : state) {
    auto ok = verify_checksums(w);
    if (!ok) state.SkipWithError("the checksum did not match");
    benchmark::DoNotOptimize(ok);
  }
}
BENCHMARK(BM_VerifyChecksumsOf256ByteBody);

// The check made for every body sent: is it text SQS accepts (printable ASCII here)?
void BM_ValidSqsTextOf256Bytes(benchmark::State& state) {
  const std::string body(256, 'x');
  for (auto _ : state) benchmark::DoNotOptimize(is_valid_sqs_text(body));
}
BENCHMARK(BM_ValidSqsTextOf256Bytes);

void BM_Sha256Of3KiB(benchmark::State& state) {
  const std::string body(3000, 's');
  for (auto _ : state) benchmark::DoNotOptimize(sha256(body));
}
BENCHMARK(BM_Sha256Of3KiB);

// A ReceiveMessage answer of ten 256-byte messages with one attribute each, as SQS sends it.
std::string receive_answer() {
  std::string out = R"({"Messages":[)";
  for (int i = 0; i < 10; ++i) {
    if (i) out += ',';
    const std::string body(256, 'm');
    out += R"({"MessageId":"id-)" + std::to_string(i) + R"(","ReceiptHandle":"handle-)" +
           std::string(180, 'r') + R"(","MD5OfBody":")" + md5_of_body(body) + R"(","Body":")" +
           body +
           R"(","Attributes":{"ApproximateReceiveCount":"1","SentTimestamp":"1700000000000"},)"
           R"("MessageAttributes":{"tenant":{"DataType":"String","StringValue":"acme"}}})";
  }
  return out + "]}";
}

void BM_DecodeReceiveOfTen(benchmark::State& state) {
  const auto answer = receive_answer();
  for (auto _ : state) {
    auto r = decode_receive_message(answer);
    if (!r || r->size() != 10) state.SkipWithError("the answer did not decode");
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_DecodeReceiveOfTen);

// The request bodies written for every batch sent and every batch settled.
void BM_EncodeSendBatchOfTen(benchmark::State& state) {
  std::vector<batch_send_entry> entries;
  for (int i = 0; i < 10; ++i) {
    wire_message m;
    m.body = std::string(256, 'x');
    entries.push_back({std::to_string(i), std::move(m)});
  }
  const std::string url = "http://127.0.0.1:4566/000000000000/bench";
  for (auto _ : state) benchmark::DoNotOptimize(encode_send_message_batch(url, entries));
}
BENCHMARK(BM_EncodeSendBatchOfTen);

void BM_EncodeDeleteBatchOfTen(benchmark::State& state) {
  std::vector<receipt_entry> entries;
  for (int i = 0; i < 10; ++i) entries.push_back({std::to_string(i), std::string(180, 'r'), 0});
  const std::string url = "http://127.0.0.1:4566/000000000000/bench";
  for (auto _ : state) benchmark::DoNotOptimize(encode_delete_message_batch(url, entries));
}
BENCHMARK(BM_EncodeDeleteBatchOfTen);

}  // namespace

BENCHMARK_MAIN();
