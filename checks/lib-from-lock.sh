#!/usr/bin/env bash
# Prints the store path of the nixpkgs-lib that flake.lock pins (the argument
# checks/run-nix-tests.sh and checks/bench-eval.sh take). Offline, the locked
# source must already be in the Nix store. If it is not available, prints one
# plain line saying why and exits 1.
#
#   bash checks/run-nix-tests.sh "$(bash checks/lib-from-lock.sh)"
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lock=$root/flake.lock
[ -f "$lock" ] || { echo "no flake.lock in $root"; exit 1; }
command -v nix >/dev/null || { echo "nix is not installed"; exit 1; }

out=$(nix --extra-experimental-features 'nix-command flakes' eval --impure --raw \
  --option download-attempts 1 --option connect-timeout 5 --expr "
    let
      lock = builtins.fromJSON (builtins.readFile $lock);
      name = lock.nodes.\${lock.root}.inputs.nixpkgs-lib or (throw \"flake.lock has no input nixpkgs-lib\");
    in (builtins.fetchTree lock.nodes.\${name}.locked).outPath" 2>&1)
if [ $? -eq 0 ] && [ -f "$out/lib/default.nix" ]; then
  echo "$out"
  exit 0
fi
rev=$(python3 -c 'import json, sys; l = json.load(open(sys.argv[1])); print(l["nodes"]["nixpkgs-lib"]["locked"]["rev"])' "$lock" 2>/dev/null || echo "?")
why=$(printf '%s\n' "$out" | grep -m1 -o 'error: .*' | cut -c8-160)
echo "nixpkgs-lib $rev (from flake.lock) is not in the Nix store and cannot be fetched: ${why:-no lib/default.nix in $out}"
exit 1
