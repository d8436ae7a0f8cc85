# A stand-in for the parts of NixOS that this flake's modules use, so that the
# modules can be evaluated and tested with nixpkgs-lib alone (no full nixpkgs,
# no NixOS) and fail here wherever they would fail on NixOS 25.11.
#
# Every upstream option our modules set (and every option those options read)
# is declared with the type, default and `apply` of nixos-25.11, and the
# assertions upstream makes about it are made here too. Each file names the
# nixpkgs file it reproduces. Submodules are typed, never freeform, so a
# misspelt or ill-typed definition fails as on NixOS:
#
#   nixos-interface/misc.nix        assertions, warnings, system.build (with a
#                                   toplevel that fails like NixOS's),
#                                   version/label, specialisation, polkit,
#                                   CPU microcode
#   nixos-interface/boot.nix        kernel, modprobe and sysctl options
#   nixos-interface/systemd.nix     systemd.{services,user.services,slices,
#                                   sockets,timers,units,tmpfiles}, with the
#                                   unit options and checks of
#                                   nixos/lib/systemd-{lib,unit-options,types}.nix
#   nixos-interface/users.nix       users.users, users.groups, ids
#   nixos-interface/etc.nix         environment.etc, environment.systemPackages
#   nixos-interface/networking.nix  networking.{hostName,interfaces,bridges,
#                                   firewall,...}
#   nixos-interface/udev.nix        services.udev
#   nixos-interface/libvirtd.nix    virtualisation.libvirtd (25.11: the
#                                   qemu.ovmf submodule is removed and
#                                   setting it fails)
#
# Upstream's own definitions are reproduced where a check or an integration
# point of ours depends on them: the default users and groups (a user's
# primary group must exist), libvirtd's users, units (libvirtd is never
# restarted by a switch), /etc/qemu/bridge.conf and the /var/lib/qemu/firmware
# symlink, the generated /etc files of modprobe, sysctl and modules-load, the
# udev package carrying 99-local.rules, and systemd's unit text (a value that
# cannot be written into a unit fails when the unit is built). Upstream's
# unrelated defaults (e.g. the "loop" kernel module or the "loglevel=4"
# kernel parameter) are left out so that tests see only what our modules add.
#
# `config.system.build.toplevel` fails like building a NixOS system does:
# "Failed assertions: ..." for a failed assertion, and an evaluation error for
# a unit, /etc entry or user that cannot be built; it builds the
# specialisations too.
#
# Never import this into a real NixOS configuration: NixOS declares all of
# these options itself.
{
  imports = [
    ./nixos-interface/misc.nix
    ./nixos-interface/boot.nix
    ./nixos-interface/systemd.nix
    ./nixos-interface/users.nix
    ./nixos-interface/etc.nix
    ./nixos-interface/networking.nix
    ./nixos-interface/udev.nix
    ./nixos-interface/libvirtd.nix
  ];
}
