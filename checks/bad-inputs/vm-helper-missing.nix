# The modules imported without this flake's overlay or nixosModules wrapper:
# pkgs has no vfio-helper and virtualisation.vfioHelper.package is not set.
{ lib, ... }:
{
  _module.args.pkgs = lib.mkForce (removeAttrs (import ../stub-pkgs.nix { inherit lib; }) [ "vfio-helper" ]);
  virtualisation.vms.win11 = { };
}
