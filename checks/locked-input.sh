#!/usr/bin/env bash
# Prints the store path of a flake input exactly as flake.lock pins it, fetching
# it only if Nix can (offline, it must already be in the store). On failure,
# prints one plain line saying why and exits 1.
#
#   bash checks/locked-input.sh nixpkgs-lib
set -uo pipefail
input=${1:?usage: locked-input.sh INPUT}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -f "$root/flake.lock" ] || { echo "no flake.lock in $root"; exit 1; }
out=$(nix --extra-experimental-features 'nix-command flakes' eval --impure --raw \
  --option download-attempts 1 --option connect-timeout 5 --expr "
    let
      lock = builtins.fromJSON (builtins.readFile $root/flake.lock);
      node = lock.nodes.\"$input\" or (throw \"flake.lock has no input $input\");
    in (builtins.fetchTree node.locked).outPath" 2>&1)
if [ $? -eq 0 ] && [ -d "$out" ]; then
  echo "$out"
else
  rev=$(nix-instantiate --eval -E "(builtins.fromJSON (builtins.readFile $root/flake.lock)).nodes.\"$input\".locked.rev" 2>/dev/null | tr -d '"' || echo "?")
  echo "input $input (rev $rev) from flake.lock is not in the Nix store and cannot be downloaded here ($(echo "$out" | grep -m1 -o 'error: .*' | cut -c1-120))"
  exit 1
fi
