#!/bin/bash
# Runs two builds of qrt in turn on one embedded-provider workload and prints one line per run:
# which build, the machine's cross-vCPU round trip before and after it, the throughput and the
# CPU per message (with the raw queue's ratio and CPU when the run has a baseline).
#
# The round trip tells which level the machine was at (docs/performance.md, "Tenth round"): a
# pair only says something when both runs met the same level. With LEVEL=slow a pair starts
# only while the round trip reads over 250 ns (it waits up to 20 minutes for that).
#
# usage: bench/machine/alternate.sh PAIRS BEFORE AFTER [qrt bench arguments...]
#   BEFORE, AFTER: qrt executables (copies of build/release/tools/qrt/qrt of two commits)
#   e.g. LEVEL=slow bench/machine/alternate.sh 6 /tmp/qrt-before /tmp/qrt-after \
#          --messages 300000 --repeat 3 --producers 4 --consumers 4
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,13p' "$0" >&2
  exit 2
fi
pairs=$1 before=$2 after=$3
shift 3
here=$(cd "$(dirname "$0")/../.." && pwd)
probe=${PROBE:-$here/build/release/bench/qrt_machine_probe}
[ -x "$probe" ] || { echo "build qrt_machine_probe first (release preset)" >&2; exit 2; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT

round_trip() { "$probe" pingpong 1 20 | awk '{print $3}'; }

done_pairs=0
for _ in $(seq 240); do
  [ "$done_pairs" -ge "$pairs" ] && break
  if [ "${LEVEL:-any}" = slow ] && [ "$(round_trip)" -le 250 ]; then
    sleep 5
    continue
  fi
  # The first build of a pair runs first in every other pair: neither always meets the
  # machine right after the other's run.
  order="before after"
  [ $((done_pairs % 2)) = 1 ] && order="after before"
  for which in $order; do
    exe=$before
    [ "$which" = after ] && exe=$after
    a=$(round_trip)
    "$exe" bench --provider memory "$@" --output json > "$out" 2>/dev/null
    b=$(round_trip)
    python3 - "$which" "$a" "$b" "$out" <<'PY'
import json, sys
which, a, b, path = sys.argv[1:]
d = json.loads(open(path).readline())
base = d.get("baseline") or {}
extra = (f" ratio {base['ratio']:.2f} raw-cpu {base['cpu_seconds_per_message'] * 1e6:.2f}"
         if base else "")
print(f"{which:6} rt {a:>4}/{b:<4} ns {d['end_to_end_msgs_per_s'] / 1e6:.2f} M msg/s "
      f"cpu {d['cpu_seconds_per_message'] * 1e6:.3f} us{extra}", flush=True)
PY
  done
  done_pairs=$((done_pairs + 1))
done
