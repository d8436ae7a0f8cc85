# All NixOS modules of this flake.
{
  imports = [
    ./vms
    ./vfio.nix
    ./networking.nix
  ];
}
