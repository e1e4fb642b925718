#!/usr/bin/env bash
# Persisted-queue comparison on this machine, same workload for every system:
#   qrt embedded provider with enable_persistence, durability always and interval (100 ms)
#   Redis Streams (XADD / XREADGROUP / XACK) with appendfsync always and everysec
#   SQLite, WAL, synchronous=FULL, table-backed queue
# 256-byte payloads; PRODUCERS producers sending batches of BATCH, CONSUMERS consumers
# receiving up to BATCH and acknowledging them. Redis is started here on a free loopback port
# and stopped at the end.
#
#   bench/persistence/run.sh [MESSAGES=20000] [PRODUCERS=4] [CONSUMERS=4] [BATCH=1]
# QRT_BENCH_NO_BUILD=1 reuses build/release as it is.
set -euo pipefail
cd "$(dirname "$0")/../.."
messages="${1:-20000}" producers="${2:-4}" consumers="${3:-4}" batch="${4:-1}"

if [[ "${QRT_BENCH_NO_BUILD:-0}" != 1 ]]; then
  scripts/install-deps.sh >/dev/null
  cmake --preset release >/dev/null
  cmake --build --preset release -j 2 --target qrt_persistence_bench >/dev/null
fi
bench=build/release/bench/persistence/qrt_persistence_bench

work=$(mktemp -d "${TMPDIR:-/tmp}/qrt-pbench.XXXXXX")
redis_pid=""
cleanup() {
  if [[ -n "$redis_pid" ]]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

redis_port=""
start_redis() {  # $1 = appendfsync policy; sets redis_port and redis_pid
  local dir="$work/redis-$1"
  redis_port=$(free_port)
  mkdir -p "$dir"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly yes \
    --appendfsync "$1" --daemonize no --logfile "$dir/redis.log" >/dev/null 2>&1 &
  redis_pid=$!
  for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && return
    sleep 0.05
  done
  echo "redis did not start" >&2
  exit 1
}
stop_redis() { kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true; redis_pid=""; }

args=(--messages "$messages" --producers "$producers" --consumers "$consumers" --batch "$batch")
results="$work/results.txt"
: >"$results"
run() { "$@" "${args[@]}" | tee -a "$results"; }

run "$bench" qrt "$work/qrt-always" always --label qrt-always
run "$bench" qrt "$work/qrt-interval" interval --label qrt-interval
start_redis always
run "$bench" redis 127.0.0.1 "$redis_port" --label redis-appendfsync-always
stop_redis
start_redis everysec
run "$bench" redis 127.0.0.1 "$redis_port" --label redis-appendfsync-everysec
stop_redis
run "$bench" sqlite "$work/sqlite.db" --label sqlite-wal-full

echo
echo "ratios (msgs/s):"
rate() { grep "^$1 " "$results" | sed -E 's/.*msgs\/s= *([0-9]+).*/\1/'; }
qa=$(rate qrt-always) qi=$(rate qrt-interval)
for peer in redis-appendfsync-always redis-appendfsync-everysec sqlite-wal-full; do
  p=$(rate "$peer")
  awk -v a="$qa" -v i="$qi" -v p="$p" -v n="$peer" \
    'BEGIN { printf "  qrt-always / %-28s %6.2fx   qrt-interval / %-28s %6.2fx\n", n, a/p, n, i/p }'
done
