# Stand-in for (nixpkgs, nixos-25.11):
#   nixos/lib/systemd-types.nix  units, services, slices, sockets, timers
# (not a module itself): the submodule types of systemd.* and
# systemd.user.*, from the options of ./systemd-unit-options.nix and the
# modules of ./systemd-lib.nix that fill in each unit.
#
# Read from faukah/nixpkgs@3b20077c (25.05-25.11 era). Left out, as in
# ./systemd-unit-options.nix: mount, automount, path and target units and
# the initrd (stage 1) variants.
#
#   unitTypes = import ./systemd-types.nix { inherit lib systemdLib unitOptions; };
{
  lib,
  systemdLib,
  unitOptions,
}:
let
  inherit (lib) types;
  inherit (systemdLib) makeUnit unitConfig stage2ServiceConfig named;
  inherit (unitOptions)
    concreteUnitOptions
    stage2CommonUnitOptions
    stage2ServiceOptions
    sectionOptions
    socketOptions
    ;
in
{
  units = types.attrsOf (
    types.submodule (
      { name, config, ... }:
      {
        options = concreteUnitOptions;
        config = {
          name = lib.mkDefault name;
          unit = lib.mkDefault (makeUnit name config);
        };
      }
    )
  );
  services = types.attrsOf (
    types.submodule [
      stage2ServiceOptions
      unitConfig
      stage2ServiceConfig
    ]
  );
  sockets = types.attrsOf (
    types.submodule [
      stage2CommonUnitOptions
      socketOptions
      unitConfig
      (named "socket")
    ]
  );
  timers = types.attrsOf (
    types.submodule [
      stage2CommonUnitOptions
      (sectionOptions "timerConfig" "Timer")
      unitConfig
      (named "timer")
    ]
  );
  slices = types.attrsOf (
    types.submodule [
      stage2CommonUnitOptions
      (sectionOptions "sliceConfig" "Slice")
      unitConfig
      (named "slice")
    ]
  );
}
