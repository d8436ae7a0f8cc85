# qemu.conf written by modules.vfio (modules/vfio.nix): libvirt's default
# device list plus the VMs' devices, and QEMU's private /dev kept: libvirt
# copies every cgroup_device_acl node that exists at VM start into it
# (qemu_namespace.c), kvmfr nodes included.
{ lib, evalHost }:
let
  conf = host: (evalHost host).virtualisation.libvirtd.qemu.verbatimConfig;
  evdevOnly = conf {
    virtualisation.vms.win11.evdev.keyboard = "/dev/input/by-id/kbd-event-kbd";
  };
  withKvmfr = conf {
    virtualisation.vms.win11 = {
      gpu = {
        enable = true;
        pciId = "10de:2782";
        address = "0000:01:00.0";
      };
      lookingGlass.backend = "kvmfr";
    };
    modules.vfio.lookingGlass = {
      enable = true;
      users = [ "alice" ];
    };
    modules.vfio.enable = true;
    users.users.alice.isNormalUser = true;
  };
in
{
  # evdev devices are in the domain definition: libvirt puts them into the
  # VM's private /dev, so namespaces stay on (no `namespaces = []`).
  testEvdevKeepsThePrivateDev = {
    expr = {
      namespacesOff = lib.hasInfix "namespaces = []" evdevOnly;
      acl = lib.hasInfix "\"/dev/input/by-id/kbd-event-kbd\"" evdevOnly;
    };
    expected = {
      namespacesOff = false;
      acl = true;
    };
  };

  testKvmfrKeepsThePrivateDev = {
    expr = {
      namespacesOff = lib.hasInfix "namespaces = []" withKvmfr;
      acl = lib.hasInfix "\"/dev/kvmfr0\"" withKvmfr;
    };
    expected = {
      namespacesOff = false;
      acl = true;
    };
  };
}
