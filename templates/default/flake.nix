# A NixOS host with a GPU-passthrough Windows VM.
#
# Made for an existing /etc/nixos: it uses the configuration.nix and
# hardware-configuration.nix you already have and adds vfio.nix (the VM and
# the dual boot) and vfio-hardware.nix (your GPU and CPU topology, written by
# `vfio-helper discover --nix`; see the README of this template's flake).
{
  description = "NixOS host with a GPU-passthrough Windows VM";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    # The flake this template came from (the one you ran `nix flake init -t` on).
    vfio.url = "github:OWNER/REPO";
    vfio.inputs.nixpkgs.follows = "nixpkgs";
  };

  outputs =
    {
      self,
      nixpkgs,
      vfio,
      ...
    }:
    {
      # `nixos-rebuild switch --flake /etc/nixos` picks the configuration named
      # like the machine's host name; rename `nixos` if yours differs.
      nixosConfigurations.nixos = nixpkgs.lib.nixosSystem {
        modules = [
          vfio.nixosModules.default
          ./hardware-configuration.nix
          ./configuration.nix
          ./vfio.nix
          # Boot entries show this flake's git revision (the modules would
          # otherwise show the revision of the vfio flake).
          { system.configurationRevision = self.rev or self.dirtyRev or null; }
        ];
      };
    };
}
