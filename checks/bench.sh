#!/usr/bin/env bash
# The benchmark command: prints one line per measurement.
#
#   bash checks/bench.sh
#
#   domain:    the helper's time per rendered domain (every golden VM config)
#   discover:  discovery of a 256-CPU, 200-device sysfs fixture
#   pinning:   pinning on a dual-socket 256-CPU host
#   eval:      lib-only evaluation of hosts/example (needs nixpkgs-lib in the store)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
cd "$root/rust" || exit 2
cargo build --quiet --release --examples || exit 1
./target/release/examples/bench_domain "$root/rust/tests/golden"
./target/release/examples/bench_discover
./target/release/examples/bench_pinning 201
cd "$root" || exit 2
if lib=$(bash checks/locked-input.sh nixpkgs-lib); then
  bash checks/bench-eval.sh "$lib"
else
  echo "eval: not measured: $lib"
fi
