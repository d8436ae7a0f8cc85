# Evaluates a host module together with this flake's modules, using
# nixpkgs-lib only, and returns its `config`.
#
#   nix-instantiate --eval --strict -E '
#     let lib = import <nixpkgs-lib>/lib; in
#     (import ./checks/eval-host.nix { inherit lib; host = ./hosts/example; }).boot.kernelParams'
#
# `host` is a NixOS-style module: an attribute set, a function or a path.
#
# `testVendor`: the CPU vendor assumed when neither the host nor its topology
# names one (a VM with cpu.threads = 2 needs one, see modules/vms/assertions.nix),
# so that tests of other features need not repeat it; null for none (the tests
# of that rule use it).
{
  lib,
  host,
  pkgs ? import ./stub-pkgs.nix { inherit lib; },
  testVendor ? "amd",
}:
(lib.evalModules {
  modules = [
    ../modules/default.nix
    ./nixos-interface.nix
    host
    { _module.args.pkgs = pkgs; }
    (
      { config, ... }:
      lib.optionalAttrs (testVendor != null) {
        # Above the option's default (the topology's vendor), below mkDefault.
        modules.vfio.cpuVendor = lib.mkOverride 1400 (
          if (config.modules.vfio.hostTopology.vendor or null) != null then
            config.modules.vfio.hostTopology.vendor
          else
            testVendor
        );
      }
    )
  ];
}).config
