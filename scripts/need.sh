#!/usr/bin/env bash
# Make sure Debian packages are installed: `scripts/need.sh BINARY:PACKAGE ...` (a
# BINARY starting with / is a file that must exist, such as an nginx module).
# Installs the missing ones with apt-get when running as root; otherwise says exactly
# which command would, and fails.
set -euo pipefail
missing=()
for pair in "$@"; do
  binary=${pair%%:*}
  package=${pair#*:}
  if [ "${binary#/}" != "$binary" ]; then
    [ -e "$binary" ] || missing+=("$package")
  elif ! command -v "$binary" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$binary" ]; then
    missing+=("$package")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${missing[*]}. Install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
