#!/usr/bin/env bash
# Fuzzes the persistence log's record reader with libFuzzer (clang-14, ASan+UBSan).
#   scripts/fuzz-record.sh [SECONDS=25] [WORKDIR=build/fuzz]
# Builds with clang directly (the main build may use GCC, which has no libFuzzer), seeds the
# corpus with one valid record of each type, and fails if the fuzzer finds a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-25}"
work="${2:-build/fuzz}"
cxx="${QRT_FUZZ_CXX:-clang++-14}"
command -v "$cxx" >/dev/null || { echo "fuzz-record: $cxx not found (scripts/deps/persistence.txt)"; exit 1; }
mkdir -p "$work/corpus"
launcher=""
command -v ccache >/dev/null && launcher=ccache
sources=(src/providers/memory/log/record.cpp src/providers/memory/log/crc32c.cpp
         src/core/names.cpp src/core/error.cpp)
flags=(-std=c++20 -g -O1 -Iinclude -Isrc -DBOOST_ASIO_NO_DEPRECATED)
$launcher "$cxx" "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  test/fuzz/record_fuzz.cpp "${sources[@]}" -o "$work/record_fuzz"
$launcher "$cxx" "${flags[@]}" test/fuzz/make_corpus.cpp "${sources[@]}" -o "$work/make_corpus"
"$work/make_corpus" "$work/corpus"
"$work/record_fuzz" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 \
  -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" 2>&1 | tail -n 25
