#!/usr/bin/env bash
# Runs every test: installs dependencies, builds everything with ASan+UBSan and warnings as
# errors, runs the unit, conformance, integration, example and fuzz tests in that build (their
# servers are started by the tests themselves on loopback ports picked at run time), then builds
# the concurrent suites under TSan and runs them, then builds every target of the release preset
# (-O3, warnings as errors) and tests qrt as a package from it: cmake --install, consumers using
# find_package, pkg-config and add_subdirectory, the installed CLI, and the Debian packages; then
# opens the benchmark report in headless Chromium, and runs the measurable assertions.
#
# One instrumented build instead of a plain one plus an instrumented one: the same coverage for
# about two thirds of the compile time on a 2-core machine. For a quick local loop use the dev
# preset directly: cmake --preset dev && cmake --build --preset dev && ctest --preset dev
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Paths relative to the checkout, so a fresh clone elsewhere still hits the cache.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
jobs=$(nproc)

step() { printf '\n==== %s ====\n' "$*"; }

step "build (ASan+UBSan, warnings as errors)"
cmake --preset asan-ubsan >/dev/null
cmake --build --preset asan-ubsan -j "$jobs"

step "API reference from the public headers (Doxygen; a warning fails it)"
cmake --build --preset asan-ubsan --target docs

step "every test under ASan+UBSan"
# Two per core: most tests wait on their servers (docs/adr/0011-test-stages.md).
ctest --preset asan-ubsan -j "$((2 * jobs))"

step "build + concurrent tests under TSan"
cmake --preset tsan >/dev/null
cmake --build --preset tsan -j "$jobs" --target qrt_concurrent_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/test/tsan-suppressions.txt" \
  ctest --preset tsan -j "$jobs"

step "release build of every target (warnings as errors), install, packages, consumers"
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs" -L package

step "the benchmark report in headless Chromium (release build: it runs qrt bench)"
ctest --preset release -L browser

step "the measurable assertions (release build, one at a time: they measure speed)"
ctest --preset release -L assertions

step "all tests passed"
