#!/usr/bin/env bash
# Every C++ file of the project is as clang-format (with the repo's .clang-format) would write
# it, so a diff never mixes layout with change. Usage: scripts/check-format.sh [source dir].
# The fix: clang-format -i on the files it names.
set -euo pipefail
root="$(cd "${1:-$(dirname "$0")/..}" && pwd)"
cd "$root"
command -v clang-format >/dev/null || {
  echo "check-format: clang-format not found (scripts/install-deps.sh installs it)" >&2
  exit 1
}
[[ -f .clang-format ]] || { echo "check-format: $root has no .clang-format" >&2; exit 1; }
# Tracked files when this is a git checkout; otherwise (an exported tree) every file on disk.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files -- 'include/*.hpp' 'src/*.cpp' 'src/*.hpp' 'src/*.h' \
    'test/*.cpp' 'test/*.hpp' 'bench/*.cpp' 'bench/*.hpp' 'tools/*.cpp' 'tools/*.hpp' \
    'examples/*.cpp' 'examples/*.hpp')
else
  dirs=()
  for d in include src test bench tools examples; do [[ -d $d ]] && dirs+=("$d"); done
  mapfile -t files < <(find "${dirs[@]}" -path '*/node_modules' -prune \
    -o -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' \) -print | sort)
fi
((${#files[@]})) || { echo "check-format: no C++ files found under $root" >&2; exit 1; }
# One clang-format run for all files; each file that differs is named in its diagnostics.
status=0
output=$(clang-format --dry-run -Werror "${files[@]}" 2>&1) || status=$?
mapfile -t unformatted < <(sed -n \
  's/^\(.*\):[0-9]*:[0-9]*: error: .*clang-format-violations.*/\1/p' <<<"$output" | sort -u)
if ((status != 0 && ${#unformatted[@]} == 0)); then
  echo "check-format: clang-format failed (status $status):" >&2
  echo "$output" | head -20 >&2
  exit 1
fi
if ((${#unformatted[@]})); then
  echo "check-format: ${#unformatted[@]} file(s) differ from clang-format's layout:" >&2
  printf '  %s\n' "${unformatted[@]}" >&2
  echo "fix: clang-format -i ${unformatted[*]}" >&2
  exit 1
fi
echo "check-format: ${#files[@]} C++ files as clang-format writes them"
