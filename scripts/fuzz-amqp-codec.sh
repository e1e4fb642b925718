#!/usr/bin/env bash
# Fuzzes the AMQP message decoder (src/providers/amqp/message_codec.cpp) with libFuzzer
# (clang-14, ASan+UBSan).
#   scripts/fuzz-amqp-codec.sh [SECONDS=20] [WORKDIR=build/fuzz-amqp]
# Built with clang directly (the main build may use GCC, which has no libFuzzer); the corpus is
# seeded with encoded messages and a batch; fails if the fuzzer finds a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
work="${2:-build/fuzz-amqp}"
cxx="${QRT_FUZZ_CXX:-clang++-14}"
command -v "$cxx" >/dev/null || { echo "fuzz-amqp-codec: $cxx not found (scripts/deps/persistence.txt)"; exit 1; }
mkdir -p "$work/corpus"
launcher=""
command -v ccache >/dev/null && launcher=ccache
sources=(src/providers/amqp/message_codec.cpp src/core/names.cpp src/core/error.cpp)
flags=(-std=c++20 -g -O1 -Iinclude -Isrc -DBOOST_ASIO_NO_DEPRECATED)
$launcher "$cxx" "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  test/fuzz/amqp_codec_fuzz.cpp "${sources[@]}" -o "$work/amqp_codec_fuzz"
$launcher "$cxx" "${flags[@]}" test/fuzz/amqp_codec_corpus.cpp "${sources[@]}" \
  -o "$work/amqp_codec_corpus"
"$work/amqp_codec_corpus" "$work/corpus"
"$work/amqp_codec_fuzz" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 \
  -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" 2>&1 | tail -n 25
