// Per-message CPU of the AMQP message mapping on the send and receive hot paths: qrt's own codec
// (message_codec.hpp) against building / reading a proton::message (to_proton + encode,
// decode + from_proton). A 256-byte body with 3 attributes, as in qrt's throughput benchmarks.
// Run: cmake --preset release && cmake --build --preset release --target qrt_amqp_codec_bench
//      build/release/bench/qrt_amqp_codec_bench
#include <benchmark/benchmark.h>

#include <proton/message.hpp>
#include <proton/symbol.hpp>
#include <proton/timestamp.hpp>
#include <proton/types.hpp>
#include <string>
#include <vector>

#include "amqp/mapping.hpp"
#include "amqp/message_codec.hpp"

namespace {

using namespace qrt::amqp::detail;

qrt::message bench_message() {
  qrt::message m;
  m.body.assign(256, 'x');
  m.id = "0123456789abcdef0123456789abcdef";
  m.attributes = {{"tenant", "contoso"}, {"kind", "order.created"}, {"attempt", "1"}};
  return m;
}

/// What a Service Bus receiver gets: the message plus the broker's annotations.
std::vector<char> received_bytes() {
  proton::message p = to_proton(bench_message());
  p.message_annotations().put(proton::symbol("x-opt-sequence-number"), std::int64_t(123456));
  p.message_annotations().put(proton::symbol("x-opt-enqueued-time"),
                              proton::timestamp(1'700'000'000'000));
  p.message_annotations().put(proton::symbol("x-opt-locked-until"),
                              proton::timestamp(1'700'000'060'000));
  p.delivery_count(1);
  std::vector<char> out;
  p.encode(out);
  return out;
}

void BM_EncodeCodec(benchmark::State& state) {
  const qrt::message m = bench_message();
  const encode_extras extras;
  std::string out;
  for (auto _ : state) {
    out.clear();
    encode_message(m, extras, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes"] = static_cast<double>(out.size());
}
BENCHMARK(BM_EncodeCodec);

/// A fresh buffer per message, as when each payload is handed to the I/O thread.
void BM_EncodeCodecFreshBuffer(benchmark::State& state) {
  const qrt::message m = bench_message();
  const encode_extras extras;
  for (auto _ : state) {
    std::string out;
    encode_message(m, extras, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EncodeCodecFreshBuffer);

void BM_EncodeProton(benchmark::State& state) {
  const qrt::message m = bench_message();
  std::vector<char> out;
  for (auto _ : state) {
    proton::message p = to_proton(m);
    p.encode(out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes"] = static_cast<double>(out.size());
}
BENCHMARK(BM_EncodeProton);

void BM_DecodeCodec(benchmark::State& state) {
  const std::vector<char> in = received_bytes();
  const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(in.data()),
                                            in.size());
  for (auto _ : state) {
    auto d = decode_message(bytes);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeCodec);

void BM_DecodeProton(benchmark::State& state) {
  const std::vector<char> in = received_bytes();
  proton::message p;  // reused: the cheapest way Proton allows
  for (auto _ : state) {
    p.decode(in);
    auto m = from_proton(p);
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeProton);

}  // namespace

BENCHMARK_MAIN();
