#!/usr/bin/env bash
# The main job: install what the build needs, build the qrt CLI in release mode, and benchmark
# the embedded provider against a raw lock-free queue in the same run. Prints the table and
# writes reports/bench-<timestamp>/report.json and chart.html.
#
# Extra arguments go to `qrt bench`, e.g.  scripts/bench.sh --messages 1000000 --consumers 4
# See `build/release/tools/qrt/qrt bench --help` for every option.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Paths relative to the checkout, so a fresh clone elsewhere still hits the cache.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target qrt

report_dir="reports/bench-$(date -u +%Y%m%dT%H%M%SZ)"
./build/release/tools/qrt/qrt bench --provider memory \
  --messages 200000 --size 256 --producers 1 --consumers 1 --batch 10 \
  --half-rate --overhead 100 --memory-budget 67108864 \
  --targets bench/targets.yaml --environment production \
  --report-dir "$report_dir" "$@"

echo
echo "Report: $report_dir/report.json"
echo "Chart:  $report_dir/chart.html (open in a browser)"
echo "Compare with an earlier run: build/release/tools/qrt/qrt bench compare reports/bench-<earlier> $report_dir"
