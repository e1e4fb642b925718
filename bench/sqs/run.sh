#!/usr/bin/env bash
# qrt's SQS provider vs the official AWS SDK for JavaScript on fauxqs, same workload, same run.
#   bench/sqs/run.sh [messages=20000] [size=256] [concurrency=8]
# Builds the release preset's qrt_sqs_bench, starts fauxqs on a loopback port, prints one JSON
# line per client (msgs/s and client CPU microseconds per message, send and receive+delete)
# and the emulator's CPU per message.
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake --preset release >/dev/null
cmake --build --preset release -j2 --target qrt_sqs_bench >/dev/null
build/release/bench/sqs/qrt_sqs_bench "${1:-20000}" "${2:-256}" "${3:-8}"
