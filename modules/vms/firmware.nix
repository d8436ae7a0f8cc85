# Secure Boot with Microsoft keys (secureBootKeys = "microsoft").
#
# libvirt picks a VM's UEFI firmware from QEMU firmware descriptors
# (<os firmware="efi"> with <feature name="enrolled-keys" enabled="yes"/>),
# read from /var/lib/qemu/firmware on NixOS (libvirt's SYSCONFDIR is
# /var/lib; see libvirt's src/qemu/qemu_interop_config.c). NixOS 25.11 makes
# that directory a link into the store holding QEMU's own descriptors, with
# their paths rewritten to the /run/libvirt/nix-ovmf links
# (nixos/modules/virtualisation/libvirtd.nix: a tmpfiles rule
# "L+ /var/lib/qemu/firmware - - - - <qemu-ovmf-metadata>"). Those offer
# `secure-boot` but not `enrolled-keys`, so such a VM cannot be defined
# ("Unable to find any firmware to satisfy 'efi'").
#
# When a VM needs Microsoft keys, this file links /var/lib/qemu/firmware to a
# directory of its own instead: QEMU's descriptors rewritten exactly as
# NixOS does, plus a descriptor (`vfio-helper firmware-descriptor`) for
# OVMFFull's Microsoft variable template, named 30-… so that it sorts before
# QEMU's 50-/60- ones. Its rule comes first in tmpfiles.d, and
# systemd-tmpfiles uses the first line for a path. The firmware images are
# linked at stable paths under /etc/vfio/ovmf, which libvirt writes into the
# domain (<loader>, <nvram template>): they stay valid across rebuilds and
# garbage collection. Without such a VM, NixOS's own rule applies unchanged.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.virtualisation.vms;
  helper = config.virtualisation.vfioHelper.package;
  qemu = config.virtualisation.libvirtd.qemu.package;
  ovmf = config.virtualisation.vmsFirmware.ovmf;

  code = "/etc/vfio/ovmf/OVMF_CODE.ms.fd";
  vars = "/etc/vfio/ovmf/OVMF_VARS.ms.fd";
  descriptorName = "30-vfio-helper-ovmf-ms.json";

  needed = lib.any (vm: vm.secureBoot && vm.secureBootKeys == "microsoft") (lib.attrValues cfg);

  descriptor = pkgs.runCommand descriptorName { nativeBuildInputs = [ helper ]; } ''
    vfio-helper firmware-descriptor --code ${code} --vars ${vars} > $out
  '';

  # What NixOS links at /var/lib/qemu/firmware, plus ours.
  # A build product of this file, for tests: `package` when a VM needs it,
  # else null.
  product =
    package: description:
    lib.mkOption {
      type = lib.types.nullOr lib.types.package;
      internal = true;
      readOnly = true;
      default = if needed then package else null;
      inherit description;
    };

  firmwareDir = pkgs.runCommand "vfio-qemu-firmware" { } ''
    mkdir -p $out
    for f in ${qemu}/share/qemu/firmware/*.json; do
      sed 's|${qemu}/share/qemu/|/run/libvirt/nix-ovmf/|g' "$f" > "$out/$(basename "$f")"
    done
    cp ${descriptor} $out/${descriptorName}
  '';
in
{
  options.virtualisation.vmsFirmware = {
    ovmf = lib.mkOption {
      type = lib.types.package;
      default = pkgs.OVMFFull.fd;
      defaultText = lib.literalExpression "pkgs.OVMFFull.fd";
      description = ''
        OVMF build for VMs with `secureBootKeys = "microsoft"`: its
        `FV/OVMF_CODE.ms.fd` (Secure Boot, SMM) and `FV/OVMF_VARS.ms.fd`
        (variable template with Microsoft's keys enrolled) are used.
      '';
    };

    descriptor = product descriptor "The project's firmware descriptor for OVMFFull's Microsoft keys (null when no VM needs it).";

    directory = product firmwareDir "The descriptor directory linked at /var/lib/qemu/firmware (null: NixOS's own).";
  };

  config = lib.mkIf needed {
    environment.etc."vfio/ovmf/OVMF_CODE.ms.fd".source = "${ovmf}/FV/OVMF_CODE.ms.fd";
    environment.etc."vfio/ovmf/OVMF_VARS.ms.fd".source = "${ovmf}/FV/OVMF_VARS.ms.fd";
    systemd.tmpfiles.rules = lib.mkBefore [ "L+ /var/lib/qemu/firmware - - - - ${firmwareDir}" ];
  };
}
