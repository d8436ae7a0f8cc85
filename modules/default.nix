# All NixOS modules of this flake.
{ lib, ... }:
{
  imports = [
    ./vms.nix
  ]
  ++ lib.optional (builtins.pathExists ./vfio.nix) ./vfio.nix
  ++ lib.optional (builtins.pathExists ./networking.nix) ./networking.nix;
}
