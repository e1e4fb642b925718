#!/usr/bin/env bash
# qrt's generic AMQP provider against rhea (an independent AMQP 1.0 client) on one throwaway
# RabbitMQ node, same workload, same run: one JSON line per client with messages/s and user and
# system CPU microseconds per message for send and for receive+complete.
#   bench/amqp/run.sh [count=20000] [size=256]
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-20000}
size=${2:-256}
cmake --preset release >/dev/null
cmake --build --preset release -j2 --target qrt_amqp_bench >/dev/null
test/servers/servicebus/ensure-deps.sh >/dev/null  # rhea, pinned by that folder's lock file

node_dir=$(mktemp -d /tmp/qrt-amqp-bench-XXXXXX)
trap 'test/servers/rabbitmq/rabbitmq.sh stop "$node_dir" >/dev/null 2>&1 || true; rm -rf "$node_dir"' EXIT
port=$(test/servers/rabbitmq/rabbitmq.sh start "$node_dir" | sed -n 's/^AMQP_PORT=//p')

build/release/bench/amqp/qrt_amqp_bench "$port" "$count" "$size"
QRT_RHEA_DIR="$PWD/test/servers/servicebus" node --no-warnings bench/amqp/rhea_bench.mjs \
  "$port" bench-rhea "$count" "$size"
