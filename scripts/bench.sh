#!/usr/bin/env bash
# The main job: build in release mode and run the embedded provider's example workload.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target example_quickstart
./build/release/examples/example_quickstart
