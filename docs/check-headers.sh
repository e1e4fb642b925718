#!/usr/bin/env bash
# README's table of which component each public header needs lists every header under
# include/qrt/ exactly once, and nothing else, so a header added without saying what to link
# fails the docs tests. Usage: docs/check-headers.sh [source dir].
set -euo pipefail
root="${1:-$(dirname "$0")/..}"
table=$(sed -n '/<!-- headers:begin -->/,/<!-- headers:end -->/p' "$root/README.md")
[[ -n "$table" ]] || { echo "check-headers: README.md lost its headers table" >&2; exit 1; }
listed=$(grep -o '`[a-z_]*\.hpp`' <<<"$table" | tr -d '`' | sort)
present=$(cd "$root/include/qrt" && ls -- *.hpp | sort)
if [[ "$listed" != "$present" ]]; then
  echo "check-headers: README.md's headers table and include/qrt/ differ:" >&2
  diff <(echo "$present") <(echo "$listed") | sed 's/^</  not in the table:/; s/^>/  not a header (or listed twice):/' | grep '^ ' >&2
  exit 1
fi
echo "check-headers: every public header names its component"
