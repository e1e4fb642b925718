#!/usr/bin/env bash
# Fuzzes one of qrt's parsers of untrusted bytes with libFuzzer (clang-14, ASan+UBSan).
#   scripts/fuzz.sh TARGET [SECONDS] [WORKDIR] [libFuzzer flags...]   e.g. -runs=10000000
#   scripts/fuzz.sh --list                                             the targets, one a line
# Each target (test/fuzz/<target>_fuzz.cpp) checks properties of what the parser returns, not
# only that it survives (docs/fuzzing.md). Built with clang directly (the main build may use GCC,
# which has no libFuzzer), one object per source through ccache. The corpus starts from the
# committed seeds in test/fuzz/corpus/<target>/ (valid inputs of every kind, and every input that
# once broke a parser) and what the target's corpus program test/fuzz/<target>_corpus.cpp writes;
# new inputs go to WORKDIR/corpus. Fails when the fuzzer finds a crash or a property violation.
set -euo pipefail
cd "$(dirname "$0")/.."

# The one table of targets: name | seconds of the short run in every full test run | the qrt
# sources it links | libraries.
targets="
record                       | 15 | src/providers/memory/log/record.cpp src/providers/memory/log/crc32c.cpp |
amqp-codec                   | 15 | src/amqp/message_decoder.cpp src/amqp/message_encoder.cpp src/amqp/value_text.cpp |
sqs-json                     | 15 | src/providers/sqs/codec.cpp src/providers/sqs/digest.cpp src/core/message.cpp src/core/random_id.cpp | -lboost_json -lcrypto
sns-xml                      | 15 | src/providers/sqs/sns_codec.cpp src/providers/sqs/codec.cpp src/providers/sqs/digest.cpp src/providers/sqs/sigv4.cpp src/core/message.cpp src/core/random_id.cpp | -lboost_json -lcrypto
http-response                | 15 | src/net/http.cpp | -lssl -lcrypto
credentials                  | 15 | src/providers/sqs/credentials.cpp src/net/http.cpp src/providers/servicebus/managed_identity.cpp src/providers/servicebus/sas.cpp | -lboost_json -lssl -lcrypto
servicebus-connection-string | 10 | src/providers/servicebus/connection_string.cpp src/providers/servicebus/sas.cpp | -lcrypto
servicebus-management        | 15 | src/providers/servicebus/management.cpp src/providers/servicebus/wire.cpp src/amqp/message_decoder.cpp src/amqp/message_encoder.cpp src/amqp/value_text.cpp src/core/random_id.cpp | -lqpid-proton-cpp
config                       | 15 | src/core/config.cpp src/core/yaml_document.cpp src/core/bounded_file.cpp | -lyaml-cpp
"
field() { awk -F'|' -v t="$1" -v f="$2" '{gsub(/^ +| +$/, "", $1)} $1 == t {gsub(/^ +| +$/, "", $f); print $f}' <<<"$targets"; }

if [[ "${1:-}" == "--list" ]]; then
  awk -F'|' 'NF > 1 {gsub(/ /, "", $1); print $1}' <<<"$targets"
  exit 0
fi
target="${1:?usage: scripts/fuzz.sh TARGET [SECONDS] [WORKDIR] [libFuzzer flags...] | --list}"
if [[ -z "$(field "$target" 1)" ]]; then
  echo "fuzz: unknown target '$target' ($(scripts/fuzz.sh --list | tr '\n' ' '))" >&2
  exit 2
fi
seconds="${2:-$(field "$target" 2)}"
work="${3:-build/fuzz-$target}"
shift $(($# < 3 ? $# : 3))
read -r -a sources <<<"$(field "$target" 3) src/core/names.cpp src/core/error.cpp"
read -r -a libraries <<<"$(field "$target" 4)"
stem="test/fuzz/${target//-/_}"

cxx="${QRT_FUZZ_CXX:-clang++-14}"
command -v "$cxx" >/dev/null || { echo "fuzz: $cxx not found (scripts/deps/persistence.txt)"; exit 1; }
launcher=""
command -v ccache >/dev/null && launcher=ccache
flags=(-std=c++20 -g -O1 -Iinclude -Isrc -DBOOST_ASIO_NO_DEPRECATED -fno-sanitize-recover=all)
# Objects carry libFuzzer's coverage instrumentation; the corpus program links the same objects
# (the sanitizer runtime has no-op defaults for the coverage hooks). -fsanitize=function is left
# out: clang-14 cannot emit it for coroutines (src/net/http.cpp).
instrumented=(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=function)
# The targets share sources (src/net/http.cpp, the codecs, names and errors) and a full test run
# starts several at once: a lock per source next to the work directories lets one compile it
# while the others wait, then take the object from ccache instead of compiling it again.
locks="$(dirname "$work")/fuzz-locks"
mkdir -p "$work/obj" "$work/corpus" "$locks"
compile() {  # prints the object's path
  local name
  name="$(tr / _ <<<"${1%.cpp}")"
  local object="$work/obj/$name.o"
  flock "$locks/$name.lock" $launcher "$cxx" "${flags[@]}" "${instrumented[@]}" -c "$1" \
    -o "$object" >&2
  echo "$object"
}
objects=()
for source in "${sources[@]}"; do objects+=("$(compile "$source")"); done
"$cxx" -fsanitize=fuzzer,address,undefined "$(compile "${stem}_fuzz.cpp")" "${objects[@]}" \
  "${libraries[@]}" -o "$work/fuzzer"
corpora=("$work/corpus")
[[ -d "test/fuzz/corpus/$target" ]] && corpora+=("test/fuzz/corpus/$target")
if [[ -f "${stem}_corpus.cpp" ]]; then
  "$cxx" -fsanitize=address,undefined "$(compile "${stem}_corpus.cpp")" "${objects[@]}" \
    "${libraries[@]}" -o "$work/make_corpus"
  mkdir -p "$work/seeds"
  "$work/make_corpus" "$work/seeds"
  corpora+=("$work/seeds")
fi
status=0
"$work/fuzzer" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 -print_final_stats=1 \
  -artifact_prefix="$work/" "$@" "${corpora[@]}" >"$work/log" 2>&1 || status=$?
grep -m1 "fuzz property violated" "$work/log" || true
tail -n 30 "$work/log"
exit "$status"
