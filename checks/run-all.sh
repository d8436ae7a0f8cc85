#!/usr/bin/env bash
# The one test command: runs every test tier this machine can run, and says in
# one plain line why it skips a tier that cannot run. A skipped tier is never
# counted as passed.
#
#   bash checks/run-all.sh
#
# Tiers:
#   rust     cargo fmt/clippy, unit, property and golden tests, virt-xml-validate
#   libvirt  domains defined, synced and started (TCG) in a real libvirtd
#   nix      module evaluation with nixpkgs-lib: option tests and bad-input corpus
#   flake    `nix flake check` against full nixpkgs (needs nixpkgs in the store or network)
#
# With CI=true (as .ci/run runs it), a skipped rust, libvirt or nix tier is a
# failure: CI installs everything those tiers need. Only the flake tier, which
# needs full nixpkgs, may be skipped there.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2
export PATH="${HOME:-/root}/.cargo/bin:$PATH"

passed=() failed=() skipped=()
nixc() { nix --extra-experimental-features 'nix-command flakes' "$@"; }

run_tier() { # NAME COMMAND...
  local name=$1; shift
  echo
  echo "=== tier $name"
  if "$@"; then passed+=("$name"); else failed+=("$name"); echo "tier $name FAILED"; fi
}
skip_tier() { # NAME REASON
  echo
  echo "=== tier $1"
  if [ "${CI:-}" = true ] && [ "$1" != flake ]; then
    echo "tier $1 FAILED: it cannot run under CI: $2"
    failed+=("$1")
  else
    echo "tier $1 SKIPPED: $2"
    skipped+=("$1")
  fi
}

tier_rust() {
  (cd rust &&
    cargo fmt --check &&
    cargo clippy --all-targets --quiet -- -D warnings &&
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --quiet &&
    cargo build --quiet &&
    cargo test --quiet) &&
    bash checks/check-hosts.sh "$root/rust/target/debug/vfio-helper"
}

tier_libvirt() {
  (cd rust && cargo test --quiet -- --ignored --test-threads=1 --nocapture --skip bench)
}

tier_nix() {
  local lib=$1 helper="$root/rust/target/debug/vfio-helper" rc=0
  bash checks/run-nix-tests.sh "$lib" "$helper" || rc=1
  bash checks/docs-test.sh "$lib" "$helper" || rc=1
  return $rc
}

tier_flake() {
  nixc flake check --no-update-lock-file "$root"
}

if ! command -v cargo >/dev/null; then
  skip_tier rust "cargo is not installed (rustup, or Debian: cargo)"
elif ! command -v virt-xml-validate >/dev/null; then
  skip_tier rust "virt-xml-validate is not installed (Debian: libvirt-clients)"
else
  run_tier rust tier_rust
fi

if ! command -v virsh >/dev/null; then
  skip_tier libvirt "virsh is not installed (Debian: libvirt-clients libvirt-daemon-driver-qemu)"
elif ! virsh -c qemu:///system version >/dev/null 2>&1; then
  skip_tier libvirt "libvirtd is not reachable at qemu:///system (start virtlogd -d and libvirtd -d as root)"
else
  run_tier libvirt tier_libvirt
fi

if ! command -v nix >/dev/null; then
  skip_tier nix "nix is not installed (Debian: nix-bin)"
elif ! lib=$(bash checks/locked-input.sh nixpkgs-lib 2>&1); then
  skip_tier nix "$lib"
else
  run_tier nix tier_nix "$lib"
fi

if ! command -v nix >/dev/null; then
  skip_tier flake "nix is not installed"
elif ! why=$(bash checks/locked-input.sh nixpkgs 2>&1); then
  skip_tier flake "full nixpkgs is not available, so nix flake check (the helper package build, the example hosts against real nixpkgs, and the NixOS VM test checks/nixos-test.nix) did not run: $why"
else
  run_tier flake tier_flake
fi

echo
echo "passed tiers: ${passed[*]:-none}"
echo "failed tiers: ${failed[*]:-none}"
echo "skipped tiers: ${skipped[*]:-none}"
echo "tiers: ${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
[ ${#failed[@]} -eq 0 ]
