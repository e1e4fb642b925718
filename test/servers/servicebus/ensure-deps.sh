#!/usr/bin/env bash
# Installs the peer's npm packages from the committed lock file when they are missing.
# Run once per test run (a ctest fixture); `npm ci` never runs install scripts here (npm 11).
set -euo pipefail
cd "$(dirname "$0")"
if [[ ! -d node_modules/rhea || ! -d node_modules/@azure/service-bus || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
