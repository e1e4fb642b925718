#!/usr/bin/env bash
# Fails when docs/contract.md names a test that does not exist (renamed or deleted), so the
# contract's "checked by" lists stay true. Usage: docs/check-contract.sh [source dir].
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
missing=0
while IFS=. read -r suite name; do
  if ! grep -rqE "TEST(_P|_F)?\(\s*${suite},\s*${name}\)" test; then
    echo "docs/contract.md names ${suite}.${name}, which no test under test/ defines"
    missing=1
  fi
done < <(grep -oE '`[A-Za-z_]+\.[A-Za-z_0-9]+`' docs/contract.md | tr -d '`' | sort -u)
if ((missing)); then exit 1; fi
echo "check-contract: every test docs/contract.md names exists"
