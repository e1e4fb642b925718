#!/usr/bin/env bash
# Fails when code, tests, scripts or docs cite a document outside the project (a requirements
# file, its section or assertion numbers, issue numbers) instead of docs/contract.md, an ADR or
# plain words. Usage: docs/check-citations.sh [source dir]; prints each offending line.
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
pattern='DESIGN\.md|\.\./shared/|[Tt]he seed.s |[Ss]eed:|[Ss]eed assertions?|[Ii]ssue #?[0-9]+|§|[Pp]ain point'
if grep -rnIE "$pattern" src include test tools bench examples scripts docs cmake README.md \
     CMakeLists.txt --exclude-dir=node_modules --exclude=check-citations.sh; then
  echo "check-citations: cite docs/contract.md, an ADR, or say it in the project's words" >&2
  exit 1
fi
echo "check-citations: only the project's own documents are cited"
