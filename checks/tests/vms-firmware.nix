# Secure Boot firmware (modules/vms/firmware.nix), the libvirtd restart on
# changed hooks/qemu.conf and the packages of the sync service
# (modules/vms/sync.nix).
{ lib, evalHost }:
let
  pkgs = import ../stub-pkgs.nix { inherit lib; };

  microsoft = evalHost { virtualisation.vms.win11 = { }; };
  noKeys = evalHost { virtualisation.vms.win11.secureBootKeys = "none"; };
  server = evalHost {
    virtualisation.vms.srv.type = "linux-server";
  };

  etcNames = c: lib.filter (lib.hasPrefix "vfio/ovmf/") (lib.attrNames c.environment.etc);
  # The tmpfiles lines for /var/lib/qemu/firmware, in order: systemd-tmpfiles
  # uses the first.
  firmwareRules = c: lib.filter (lib.hasPrefix "L+ /var/lib/qemu/firmware ") c.systemd.tmpfiles.rules;

  withHooks =
    hooks:
    evalHost {
      virtualisation.vms.win11 = { };
      virtualisation.libvirtd.hooks.qemu = hooks;
    };
  # The stub pkgs name a file by its contents: compare what it holds.
  trigger = c: map (t: t.text) c.systemd.services.vfio-libvirtd-apply.restartTriggers;
in
{
  # Microsoft keys (the windows-gaming default): the firmware images at
  # stable /etc paths, and /var/lib/qemu/firmware linked to a directory of
  # QEMU's descriptors (rewritten as NixOS does) plus ours, ahead of NixOS's
  # own rule for that path.
  testMicrosoftKeysLinkTheFirmwareDirectory =
    let
      dir = microsoft.virtualisation.vmsFirmware.directory;
      rules = firmwareRules microsoft;
    in
    {
      expr = {
        etc = etcNames microsoft;
        code = microsoft.environment.etc."vfio/ovmf/OVMF_CODE.ms.fd".source;
        vars = microsoft.environment.etc."vfio/ovmf/OVMF_VARS.ms.fd".source;
        first = lib.head rules;
        nixosRuleStillThere = lib.length rules;
        qemuDescriptors = lib.hasInfix "sed 's|${pkgs.qemu}/share/qemu/|/run/libvirt/nix-ovmf/|g'" dir.buildScript;
        ours = lib.hasInfix "cp ${microsoft.virtualisation.vmsFirmware.descriptor} $out/30-vfio-helper-ovmf-ms.json" dir.buildScript;
        descriptor = lib.hasInfix "vfio-helper firmware-descriptor --code /etc/vfio/ovmf/OVMF_CODE.ms.fd --vars /etc/vfio/ovmf/OVMF_VARS.ms.fd > $out" microsoft.virtualisation.vmsFirmware.descriptor.buildScript;
      };
      expected = {
        etc = [
          "vfio/ovmf/OVMF_CODE.ms.fd"
          "vfio/ovmf/OVMF_VARS.ms.fd"
        ];
        code = "${pkgs.OVMFFull.fd}/FV/OVMF_CODE.ms.fd";
        vars = "${pkgs.OVMFFull.fd}/FV/OVMF_VARS.ms.fd";
        first = "L+ /var/lib/qemu/firmware - - - - ${dir}";
        nixosRuleStillThere = 2;
        qemuDescriptors = true;
        ours = true;
        descriptor = true;
      };
    };

  # Without Microsoft keys (or without Secure Boot) NixOS's own directory
  # stays.
  testNoKeysKeepNixosFirmwareDirectory = {
    expr = map (c: {
      etc = etcNames c;
      directory = c.virtualisation.vmsFirmware.directory;
      rules = lib.length (firmwareRules c);
    }) [
      noKeys
      server
    ];
    expected = lib.replicate 2 {
      etc = [ ];
      directory = null;
      rules = 1;
    };
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
      script = lib.hasInfix "libvirtd-apply.sh" microsoft.virtualisation.vmsApplyScript.text;
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
  # user's daemon runs, not from pkgs.libvirt / pkgs.qemu. (NixOS appends its
  # default PATH entries after the service's own.)
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
        path = lib.take 2 (map (p: p.name) custom.systemd.services.vfio-vms-sync.path);
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
