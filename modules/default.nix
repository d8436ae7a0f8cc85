# All NixOS modules of this flake.
{
  imports = [
    ./vms.nix
    ./vfio.nix
    ./networking.nix
  ];
}
