# Secure Boot with Microsoft keys (secureBootKeys = "microsoft").
#
# libvirt picks a VM's UEFI firmware from QEMU firmware descriptors
# (<os firmware="efi"> with <feature name="enrolled-keys" enabled="yes"/>).
# On NixOS 25.11 it sees only QEMU's own edk2 descriptors
# (nixos/modules/virtualisation/libvirtd.nix links
# ${qemu}/share/qemu/firmware/*.json): they offer `secure-boot` but not
# `enrolled-keys`, so such a VM cannot be defined ("Unable to find any
# firmware to satisfy 'efi'"). This file adds a descriptor for OVMFFull's
# Microsoft variable template:
#
# * the firmware images are linked at stable paths under /etc/vfio/ovmf,
#   which libvirt writes into the domain (<loader>, <nvram template>); they
#   stay valid across rebuilds and garbage collection (the current system
#   references them);
# * the descriptor (`vfio-helper firmware-descriptor`) is installed as a
#   regular file in /var/lib/qemu/firmware, the directory libvirt scans on
#   NixOS (its SYSCONFDIR is /var/lib; see libvirt's
#   src/qemu/qemu_interop_config.c), named 30-… so that it sorts before
#   QEMU's 50-/60- descriptors. vfio-vms-sync installs it before it defines
#   any domain, and removes it (only if it is ours) once no VM needs it. It is
#   a copy, not a link: a dangling link there would make libvirt fail every
#   firmware lookup.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption mkIf types literalExpression;

  cfg = config.virtualisation.vms;
  helper = config.virtualisation.vfioHelper.package;
  ovmf = config.virtualisation.vmsFirmware.ovmf;

  etcDir = "/etc/vfio/ovmf";
  code = "${etcDir}/OVMF_CODE.ms.fd";
  vars = "${etcDir}/OVMF_VARS.ms.fd";
  descriptorName = "30-vfio-helper-ovmf-ms.json";

  needed = lib.any (vm: vm.secureBoot && vm.secureBootKeys == "microsoft") (lib.attrValues cfg);

  descriptor = pkgs.runCommand descriptorName { nativeBuildInputs = [ helper ]; } ''
    vfio-helper firmware-descriptor --code ${code} --vars ${vars} > $out
  '';
in
{
  options.virtualisation.vmsFirmware = {
    ovmf = mkOption {
      type = types.package;
      default = pkgs.OVMFFull.fd;
      defaultText = literalExpression "pkgs.OVMFFull.fd";
      description = ''
        OVMF build for VMs with `secureBootKeys = "microsoft"`: its
        `FV/OVMF_CODE.ms.fd` (Secure Boot, SMM) and `FV/OVMF_VARS.ms.fd`
        (variable template with Microsoft's keys enrolled) are used.
      '';
    };

    descriptor = mkOption {
      type = types.nullOr types.package;
      internal = true;
      readOnly = true;
      default = if needed then descriptor else null;
      description = "The firmware descriptor vfio-vms-sync installs in /var/lib/qemu/firmware (null when no VM needs it).";
    };

    descriptorPath = mkOption {
      type = types.str;
      internal = true;
      readOnly = true;
      default = "/var/lib/qemu/firmware/${descriptorName}";
      description = "Where the firmware descriptor is installed.";
    };
  };

  config = mkIf needed {
    environment.etc."vfio/ovmf/OVMF_CODE.ms.fd".source = "${ovmf}/FV/OVMF_CODE.ms.fd";
    environment.etc."vfio/ovmf/OVMF_VARS.ms.fd".source = "${ovmf}/FV/OVMF_VARS.ms.fd";
    environment.etc."vfio/ovmf/${descriptorName}".source = descriptor;
  };
}
