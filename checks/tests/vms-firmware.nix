# Secure Boot firmware (modules/vms/firmware.nix), the libvirtd restart on
# changed hooks/qemu.conf and the packages of the sync service
# (modules/vms/sync.nix).
{ lib, evalHost }:
let
  pkgs = import ../stub-pkgs.nix { inherit lib; };
  descriptorPath = "/var/lib/qemu/firmware/30-vfio-helper-ovmf-ms.json";

  microsoft = evalHost { virtualisation.vms.win11 = { }; };
  noKeys = evalHost { virtualisation.vms.win11.secureBootKeys = "none"; };
  server = evalHost {
    virtualisation.vms.srv.type = "linux-server";
  };

  # The text of the firmware step that runs before sync.
  firmwareStep = c: c.virtualisation.vmsSyncScripts.firmware.text;
  etcNames = c: lib.filter (lib.hasPrefix "vfio/ovmf/") (lib.attrNames c.environment.etc);

  withHooks =
    hooks:
    evalHost {
      virtualisation.vms.win11 = { };
      virtualisation.libvirtd.hooks.qemu = hooks;
    };
  # The stub pkgs name a file by its name only: compare what it holds.
  trigger = c: map (t: t.text) c.systemd.services.vfio-libvirtd-apply.restartTriggers;
in
{
  # Microsoft keys (the windows-gaming default): the firmware images at
  # stable /etc paths, a descriptor naming them, installed before sync.
  testMicrosoftKeysInstallTheDescriptor = {
    expr = {
      etc = etcNames microsoft;
      code = microsoft.environment.etc."vfio/ovmf/OVMF_CODE.ms.fd".source;
      vars = microsoft.environment.etc."vfio/ovmf/OVMF_VARS.ms.fd".source;
      build = lib.hasInfix "vfio-helper firmware-descriptor --code /etc/vfio/ovmf/OVMF_CODE.ms.fd --vars /etc/vfio/ovmf/OVMF_VARS.ms.fd > $out" microsoft.virtualisation.vmsFirmware.descriptor.buildScript;
      install = lib.hasInfix "install ${microsoft.virtualisation.vmsFirmware.descriptor} ${descriptorPath}" (firmwareStep microsoft);
      keys = microsoft.virtualisation.vms.win11.secureBootKeys;
    };
    expected = {
      etc = [
        "vfio/ovmf/30-vfio-helper-ovmf-ms.json"
        "vfio/ovmf/OVMF_CODE.ms.fd"
        "vfio/ovmf/OVMF_VARS.ms.fd"
      ];
      code = "${pkgs.OVMFFull.fd}/FV/OVMF_CODE.ms.fd";
      vars = "${pkgs.OVMFFull.fd}/FV/OVMF_VARS.ms.fd";
      build = true;
      install = true;
      keys = "microsoft";
    };
  };

  # Without Microsoft keys (or without Secure Boot) nothing is installed, and
  # a descriptor of ours left from an earlier generation is removed.
  testNoKeysRemoveTheDescriptor = {
    expr = map (c: {
      etc = etcNames c;
      descriptor = c.virtualisation.vmsFirmware.descriptor;
      remove = lib.hasInfix "remove ${descriptorPath}" (firmwareStep c);
    }) [
      noKeys
      server
    ];
    expected = lib.replicate 2 {
      etc = [ ];
      descriptor = null;
      remove = true;
    };
  };

  # A new firmware step (e.g. a new descriptor) reruns sync on a switch.
  testFirmwareStepTriggersSync = {
    expr = lib.elem (toString microsoft.systemd.services.vfio-vms-sync.serviceConfig.ExecStartPre) (
      map toString microsoft.systemd.services.vfio-vms-sync.restartTriggers
    );
    expected = true;
  };

  # libvirtd reads hooks and qemu.conf only at start: the apply unit reruns
  # on a switch exactly when they change, before sync.
  testLibvirtdApplyFollowsHooksAndQemuConf = {
    expr = {
      sameConfig = trigger (withHooks { }) == trigger (withHooks { });
      newHook = trigger (withHooks { }) != trigger (withHooks { x = pkgs.bash; });
      newQemuConf =
        trigger (withHooks { })
        != trigger (evalHost {
          virtualisation.vms.win11 = { };
          virtualisation.libvirtd.qemu.verbatimConfig = "user = \"qemu\"";
        });
      script = lib.hasInfix "libvirtd-apply.sh" microsoft.virtualisation.vmsSyncScripts.apply.text;
      beforeSync = lib.elem "vfio-libvirtd-apply.service" microsoft.systemd.services.vfio-vms-sync.after;
    };
    expected = {
      sameConfig = true;
      newHook = true;
      newQemuConf = true;
      script = true;
      beforeSync = true;
    };
  };

  # virsh, qemu-img and virt-xml-validate come from the libvirt and QEMU the
  # user's daemon runs, not from pkgs.libvirt / pkgs.qemu.
  testDaemonPackagesAreUsed =
    let
      custom = evalHost {
        virtualisation.vms.win11 = { };
        virtualisation.libvirtd.package = pkgs.libvirt // {
          name = "libvirt-custom";
        };
        virtualisation.libvirtd.qemu.package = pkgs.qemu_kvm;
      };
    in
    {
      expr = {
        path = map (p: p.name) custom.systemd.services.vfio-vms-sync.path;
        xmlBuild = map (p: p.name) custom.virtualisation.vmsInternal.domains.win11.env.nativeBuildInputs;
      };
      expected = {
        path = [
          "libvirt-custom"
          "qemu-kvm"
        ];
        xmlBuild = [
          "vfio-helper"
          "libvirt-custom"
          "libxml2"
        ];
      };
    };

  # The VM's CPU vendor follows modules.vfio.cpuVendor (AMD's topoext
  # depends on it) unless the VM sets its own.
  testCpuVendorFollowsTheHost = {
    expr = map (c: c.virtualisation.vms.win11.cpu.vendor) [
      (evalHost {
        virtualisation.vms.win11 = { };
        modules.vfio.cpuVendor = "intel";
      })
      (evalHost {
        virtualisation.vms.win11.cpu.vendor = "amd";
        modules.vfio.cpuVendor = "intel";
      })
    ];
    expected = [
      "intel"
      "amd"
    ];
  };
}
