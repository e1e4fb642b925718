#!/usr/bin/env bash
# Installs what building and testing qrt needs on Debian 12. Idempotent, and quick when
# everything is already there. Node packages for the test servers go into the repo (see
# test/servers/package.json), never system-wide.
set -euo pipefail

# One list per component in scripts/deps/*.txt (one package per line, '#' comments).
cd "$(dirname "$0")"
mapfile -t packages < <(cat deps/*.txt | sed 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install-deps: all Debian packages present"
fi
