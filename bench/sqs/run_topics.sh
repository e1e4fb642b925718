#!/usr/bin/env bash
# Publishing to a topic (SNS fan-out to SQS queues): qrt's SQS provider vs the official AWS SDK
# for JavaScript on fauxqs, same workload, same run.
#   bench/sqs/run_topics.sh [messages=20000] [size=256] [concurrency=8] [subscriptions=2]
# Builds the release preset's qrt_sns_bench, starts fauxqs on a loopback port, prints one JSON
# line per client (publish msgs/s, client CPU microseconds per message) and the emulator's CPU
# per message, and fails unless every subscription got every message.
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake --preset release >/dev/null
cmake --build --preset release -j2 --target qrt_sns_bench >/dev/null
build/release/bench/sqs/qrt_sns_bench "${1:-20000}" "${2:-256}" "${3:-8}" "${4:-2}"
