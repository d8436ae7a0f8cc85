# Sourced by the Nix test scripts: nixpkgs_lib_dir NAME ARG prints the lib/
# directory of a nixpkgs-lib checkout (ARG is the checkout or its lib/), or
# says which script was given what and exits 2.
nixpkgs_lib_dir() {
  local name=$1 arg=$2
  if [ -f "$arg/lib/default.nix" ]; then
    (cd "$arg/lib" && pwd)
  elif [ -f "$arg/default.nix" ]; then
    (cd "$arg" && pwd)
  else
    echo "$name: $arg is not a nixpkgs-lib checkout (no lib/default.nix)" >&2
    exit 2
  fi
}
