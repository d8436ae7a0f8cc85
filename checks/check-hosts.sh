#!/usr/bin/env bash
# Static check of every host configuration: `vfio-helper check` over
# hosts/*/*.nix (no evaluation). Exit status 1 when a file has a problem.
#
#   bash checks/check-hosts.sh [path/to/vfio-helper]
#
# The helper defaults to `vfio-helper` in PATH, else the debug build in rust/.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
helper=${1:-}
if [ -z "$helper" ]; then
  if command -v vfio-helper >/dev/null 2>&1; then
    helper=vfio-helper
  else
    helper="$root/rust/target/debug/vfio-helper"
  fi
fi

shopt -s nullglob
files=("$root"/hosts/*/*.nix)
if [ ${#files[@]} -eq 0 ]; then
  echo "check-hosts: no files under $root/hosts/*/" >&2
  exit 1
fi
cd "$root"
exec "$helper" check "${files[@]#"$root"/}"
