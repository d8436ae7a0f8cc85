# Evaluates a host module together with this flake's modules, using
# nixpkgs-lib only, and returns its `config`.
#
#   nix-instantiate --eval --strict -E '
#     let lib = import <nixpkgs-lib>/lib; in
#     (import ./checks/eval-host.nix { inherit lib; host = ./hosts/example; }).boot.kernelParams'
#
# `host` is a NixOS-style module: an attribute set, a function or a path.
{
  lib,
  host,
  pkgs ? import ./stub-pkgs.nix { inherit lib; },
}:
(lib.evalModules {
  modules = [
    ../modules/default.nix
    ./nixos-interface.nix
    host
    { _module.args.pkgs = pkgs; }
  ];
}).config
