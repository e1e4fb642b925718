// The SQS provider's per-request and per-message work without I/O: signing a request (SigV4),
// the MD5 checks of a received message, and encoding a batch and decoding a receive answer.
// Next to the end-to-end figures of bench/sqs/run.sh (docs/performance.md).
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>

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

void BM_Md5OfA256ByteBody(benchmark::State& state) {
  const std::string body(256, 'b');
  for (auto _ : state) benchmark::DoNotOptimize(md5_of_body(body));
}
BENCHMARK(BM_Md5OfA256ByteBody);

void BM_Sha256Of3KiB(benchmark::State& state) {
  const std::string body(3000, 's');
  for (auto _ : state) benchmark::DoNotOptimize(sha256(body));
}
BENCHMARK(BM_Sha256Of3KiB);

}  // namespace

BENCHMARK_MAIN();
