#!/usr/bin/env bash
# Fuzzes one of qrt's decoders of untrusted bytes with libFuzzer (clang-14, ASan+UBSan).
#   scripts/fuzz.sh record     [SECONDS=25] [WORKDIR=build/fuzz-record]  persistence log records
#   scripts/fuzz.sh amqp-codec [SECONDS=20] [WORKDIR=build/fuzz-amqp]    AMQP message decoder
# Built with clang directly (the main build may use GCC, which has no libFuzzer); the corpus is
# seeded by the target's corpus program (valid inputs of every kind); fails if the fuzzer finds
# a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:?usage: scripts/fuzz.sh record|amqp-codec [SECONDS] [WORKDIR]}"
case "$target" in
  record)
    fuzzer=test/fuzz/record_fuzz.cpp
    corpus_maker=test/fuzz/make_corpus.cpp
    sources=(src/providers/memory/log/record.cpp src/providers/memory/log/crc32c.cpp)
    default_seconds=25
    ;;
  amqp-codec)
    fuzzer=test/fuzz/amqp_codec_fuzz.cpp
    corpus_maker=test/fuzz/amqp_codec_corpus.cpp
    sources=(src/providers/amqp/message_codec.cpp)
    default_seconds=20
    ;;
  *)
    echo "fuzz: unknown target '$target' (record | amqp-codec)" >&2
    exit 2
    ;;
esac
seconds="${2:-$default_seconds}"
work="${3:-build/fuzz-$target}"
cxx="${QRT_FUZZ_CXX:-clang++-14}"
command -v "$cxx" >/dev/null || { echo "fuzz: $cxx not found (scripts/deps/persistence.txt)"; exit 1; }
mkdir -p "$work/corpus"
launcher=""
command -v ccache >/dev/null && launcher=ccache
sources+=(src/core/names.cpp src/core/error.cpp)
flags=(-std=c++20 -g -O1 -Iinclude -Isrc -DBOOST_ASIO_NO_DEPRECATED)
$launcher "$cxx" "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  "$fuzzer" "${sources[@]}" -o "$work/fuzzer"
$launcher "$cxx" "${flags[@]}" "$corpus_maker" "${sources[@]}" -o "$work/make_corpus"
"$work/make_corpus" "$work/corpus"
"$work/fuzzer" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 \
  -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" 2>&1 | tail -n 25
