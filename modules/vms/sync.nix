# The services that apply virtualisation.vms to libvirtd on every boot and
# switch:
#
# * vfio-libvirtd-apply: makes changed libvirt hooks and qemu.conf take
#   effect (libvirtd reads them only at start and NixOS never restarts it:
#   restartIfChanged = false in nixos/modules/virtualisation/libvirtd.nix);
#   see hooks/libvirtd-apply.sh;
# * vfio-vms-sync: runs `vfio-helper sync` on the manifest (format:
#   rust/src/sync.rs): defines changed domains (never stopping a running VM),
#   creates missing qcow2 images, undefines domains of ours that left the
#   configuration (keeping disks, NVRAM and TPM state), touches no other
#   domain, and makes libvirt's `default` NAT network active and autostarted
#   when a VM uses it.
#
# The sync service stays while libvirtd does, also after the last VM left the
# configuration: with an empty manifest it undefines the domains this module
# defined and touches no other.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.virtualisation.vms;
  libvirtd = config.virtualisation.libvirtd;
  helper = config.virtualisation.vfioHelper.package;
  inherit (config.virtualisation.vmsInternal) manifestFile;

  # What libvirtd reads only when it starts.
  libvirtdConfig = pkgs.writeText "vfio-libvirtd-config.json" (
    builtins.toJSON {
      inherit (libvirtd.qemu) verbatimConfig runAsRoot;
      hooks = libvirtd.hooks.qemu;
    }
  );

  applyScript = pkgs.writeShellScript "vfio-libvirtd-apply" ''
    export PATH=${
      lib.makeBinPath [
        pkgs.coreutils
        pkgs.gnused
        libvirtd.package
        config.systemd.package
      ]
    }
    exec ${pkgs.bash}/bin/bash ${../hooks/libvirtd-apply.sh} ${libvirtdConfig}
  '';

in
{
  options.virtualisation.vmsApplyScript = lib.mkOption {
    type = lib.types.raw;
    internal = true;
    readOnly = true;
    default = applyScript;
    description = "The script of vfio-libvirtd-apply, for tests.";
  };

  config = lib.mkIf (cfg != { } || libvirtd.enable) {
    # For `vfio-helper sync --manifest /etc/vfio/manifest.json --dry-run`.
    environment.etc."vfio/manifest.json".source = manifestFile;

    systemd.services.vfio-libvirtd-apply = {
      description = "Apply changed libvirt hooks and qemu.conf to libvirtd";
      after = [ "libvirtd.service" ];
      wants = [ "libvirtd.service" ];
      wantedBy = [ "multi-user.target" ];
      restartTriggers = [ libvirtdConfig ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${applyScript}";
        TimeoutStartSec = 300;
      };
    };

    systemd.services.vfio-vms-sync = {
      description = "Define the libvirt domains declared in virtualisation.vms";
      # On a switch, systemd-tmpfiles-resetup relinks /var/lib/qemu/firmware
      # (firmware.nix) before any domain that needs it is defined.
      after = [
        "libvirtd.service"
        "vfio-libvirtd-apply.service"
        "systemd-tmpfiles-resetup.service"
      ];
      requires = [ "libvirtd.service" ];
      wantedBy = [ "multi-user.target" ];
      restartTriggers = [ manifestFile ];
      # virsh and qemu-img of the libvirt and QEMU the daemon runs.
      path = [
        libvirtd.package
        libvirtd.qemu.package
      ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${lib.getExe' helper "vfio-helper"} sync --manifest ${manifestFile}";
        # Every libvirt call of sync is bounded (60 s each, and none after
        # the first that timed out); this bounds the whole run so a libvirtd
        # that never answers cannot hang `nixos-rebuild switch`.
        TimeoutStartSec = "5min";
        # The ledger of the (name, UUID) pairs sync defined:
        # /var/lib/vfio-helper/sync-state.json.
        StateDirectory = "vfio-helper";
      };
    };
  };
}
