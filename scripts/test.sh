#!/usr/bin/env bash
# Runs every test: installs dependencies, builds with warnings as errors, runs the unit,
# conformance and integration suites (their servers are started by the tests themselves on
# loopback ports picked at run time), then again under ASan+UBSan, and the concurrent suites
# under TSan.
#
#   scripts/test.sh            everything
#   QRT_SKIP_SANITIZERS=1 scripts/test.sh   only the plain build (quick local loop)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Paths relative to the checkout, so a fresh clone elsewhere still hits the cache.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
jobs=$(nproc)

step() { printf '\n==== %s ====\n' "$*"; }

step "build (dev, warnings as errors)"
cmake --preset dev >/dev/null
cmake --build --preset dev -j "$jobs"

step "tests (dev)"
ctest --preset dev -j "$jobs"

if [[ "${QRT_SKIP_SANITIZERS:-0}" != 1 ]]; then
  step "build + tests under ASan+UBSan"
  cmake --preset asan-ubsan >/dev/null
  cmake --build --preset asan-ubsan -j "$jobs"
  ctest --preset asan-ubsan -j "$jobs" -LE integration

  step "build + concurrent tests under TSan"
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan -j "$jobs"
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ctest --preset tsan -j "$jobs"
fi
step "all tests passed"
