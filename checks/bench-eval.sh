#!/usr/bin/env bash
# Measures how long evaluating hosts/example takes with nixpkgs-lib alone
# (module system + every assertion + the VM JSON and domain build plan).
#
#   bash checks/bench-eval.sh LIB_PATH
# prints one line: eval hosts/example: <ms> ms (median of 5)
set -uo pipefail
lib_arg=${1:?usage: bench-eval.sh LIB_PATH}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=checks/nixpkgs-lib-dir.sh
. "$root/checks/nixpkgs-lib-dir.sh"
lib=$(nixpkgs_lib_dir bench-eval "$lib_arg") || exit 2

expr="
  let
    lib = import $lib;
    c = import $root/checks/assert-host.nix { inherit lib; host = $root/hosts/example; };
  in builtins.deepSeq [
    c.virtualisation.vms
    c.virtualisation.vmsInternal.configJson
    c.virtualisation.vmsInternal.manifest
    (c.modules.vfio or null)
    c.boot.kernelParams
    c.assertions
  ] true"

times=()
for _ in 1 2 3 4 5; do
  start=$(date +%s%N)
  nix-instantiate --eval --strict -E "$expr" >/dev/null || { echo "bench-eval: hosts/example does not evaluate" >&2; exit 1; }
  end=$(date +%s%N)
  times+=($(((end - start) / 1000000)))
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
echo "eval hosts/example: $median ms (median of 5)"
