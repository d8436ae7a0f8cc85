# NixOS VM test of the flake's modules on a real NixOS host with libvirtd:
#
#   nix build .#checks.x86_64-linux.nixos-test
#
# A host declares a linux-server and a windows-gaming VM (no GPU). The test
# checks that vfio-vms-sync defines both at boot, that libvirt's `default` NAT
# network is active and autostarted, that firmware autoselection gives the
# windows-gaming VM (Secure Boot with Microsoft keys enrolled) the firmware of
# the descriptor the module installs in /var/lib/qemu/firmware, that both VMs
# start, and that switching to a configuration in which one VM changed
# redefines that VM without stopping or restarting either.
#
# The domains are `type="kvm"` (host-passthrough CPU, Hyper-V enlightenments,
# invtsc for windows-gaming), so libvirt only defines them where /dev/kvm
# exists: this test needs nested KVM on the build machine (kvm_intel or
# kvm_amd loaded with nested=1; QEMU's `max` CPU then gives the host VM VMX or
# SVM, and migratable=off passes invtsc through). Where there is none,
# `nestedKvm = false` runs the subset that works under TCG: the domain XML
# the module generated, with its KVM-only parts removed (as
# rust/tests/tcg_start/variant.rs does), is defined and started for both
# VMs, with the same network and firmware checks; the redefinition by a
# switch needs the declared (KVM) domains and is not run there, which the
# log says.
#
# Evaluated without full nixpkgs by checks/tests/interface-libvirtd-system.nix
# (the host module against the NixOS stand-in) and parsed by
# checks/run-nix-tests.sh.
{
  pkgs,
  self,
  nestedKvm ? true,
}:
let
  inherit (pkgs) lib;

  # The host as a user would write it. The specialisation is the second
  # configuration the test switches to: the server VM has more memory.
  hostModule =
    { lib, ... }:
    {
      system.stateVersion = "25.11";

      virtualisation.vms.server = {
        type = "linux-server";
        memory = 1024;
        vcpus = 1;
        cpu = {
          cores = 1;
          threads = 1;
          # The host VM has 2 CPUs: nothing to pin to.
          pinning.enable = false;
        };
        storage.size = 1;
      };

      virtualisation.vms.gaming = {
        type = "windows-gaming";
        # The least windows-gaming accepts; without hugepages QEMU only maps
        # it, and the firmware alone touches little of it.
        memory = 4096;
        vcpus = 2;
        cpu = {
          cores = 2;
          threads = 1;
          pinning.enable = false;
        };
        storage.size = 1;
      };

      specialisation.changed.configuration.virtualisation.vms.server.memory = lib.mkForce 1536;
    };

  # The TCG variant of a domain (nestedKvm = false): the generated XML with
  # what needs KVM removed, keeping name, UUID, firmware, disk and network.
  tcgVariant = pkgs.writeText "tcg-variant.py" ''
    import sys
    import xml.etree.ElementTree as ET

    path = sys.argv[1]
    for _, (prefix, uri) in ET.iterparse(path, events=["start-ns"]):
        ET.register_namespace(prefix, uri)
    tree = ET.parse(path)
    root = tree.getroot()
    root.set("type", "qemu")

    old = root.find("cpu")
    if old is not None:
        root.remove(old)
    cpu = ET.SubElement(root, "cpu", {"mode": "custom", "match": "exact", "check": "none"})
    ET.SubElement(cpu, "model", {"fallback": "forbid"}).text = "qemu64"

    features = root.find("features")
    if features is not None:
        for tag in ("hyperv", "kvm", "ioapic", "msrs"):
            for e in features.findall(tag):
                features.remove(e)
    clock = root.find("clock")
    if clock is not None:
        for timer in clock.findall("timer"):
            if timer.get("name") == "hypervclock":
                clock.remove(timer)
    for e in root.findall("cputune"):
        root.remove(e)
    backing = root.find("memoryBacking")
    if backing is not None:
        for tag in ("hugepages", "allocation"):
            for e in backing.findall(tag):
                backing.remove(e)
    devices = root.find("devices")
    for e in list(devices):
        if e.tag in ("hostdev", "panic") or (e.tag == "input" and e.get("type") == "evdev"):
            devices.remove(e)
        elif e.tag == "interface":
            # vhost-net needs KVM's ioeventfd.
            for driver in e.findall("driver"):
                e.remove(driver)

    tree.write(sys.stdout, encoding="unicode")
  '';

  testMachine =
    { lib, pkgs, ... }:
    {
      virtualisation.memorySize = 6144;
      virtualisation.cores = 2;
      virtualisation.diskSize = 4096;
      # QEMU's `max` CPU under KVM exposes VMX/SVM when the build machine
      # allows nested KVM; migratable=off adds invtsc, which windows-gaming
      # domains require.
      virtualisation.qemu.options = lib.optionals nestedKvm [ "-cpu max,migratable=off" ];
      environment.systemPackages = [
        pkgs.jq
        pkgs.python3
      ];
    };
in
pkgs.testers.runNixOSTest {
  name = if nestedKvm then "vfio-vms" else "vfio-vms-tcg";

  nodes.host = {
    imports = [
      self.nixosModules.default
      hostModule
      testMachine
    ];
  };

  passthru = { inherit hostModule; };

  testScript =
    { nodes, ... }:
    ''
      import json
      import re

      VIRSH = "virsh -c qemu:///system"
      NESTED_KVM = ${if nestedKvm then "True" else "False"}
      VMS = ("server", "gaming")


      def virsh(args):
          return host.succeed(f"{VIRSH} {args}")


      def state(vm):
          return virsh(f"domstate {vm}").strip()


      start_all()
      host.wait_for_unit("libvirtd.service")

      if NESTED_KVM:
          with subtest("the host VM has nested KVM"):
              status, _ = host.execute("test -c /dev/kvm")
              assert status == 0, (
                  "no /dev/kvm in the test VM: this test needs nested KVM on the build machine "
                  "(kvm_intel or kvm_amd with nested=1); use nestedKvm = false where there is none"
              )

          with subtest("vfio-vms-sync defines both VMs"):
              host.wait_for_unit("vfio-vms-sync.service")
              for vm in VMS:
                  info = virsh(f"dominfo {vm}")
                  assert re.search(r"^Persistent:\s+yes$", info, re.M), info
      else:
          with subtest("the generated domains, made TCG-capable, are defined"):
              host.wait_until_succeeds(
                  "systemctl show -P ActiveState vfio-vms-sync.service | grep -Eqx 'active|failed'"
              )
              host.log(host.execute("journalctl -b -u vfio-vms-sync.service")[1])
              manifest = json.loads(host.succeed("cat /etc/vfio/manifest.json"))
              for domain in manifest["domains"]:
                  name, disk = domain["name"], domain["disk"]
                  host.succeed(
                      f"test -e {disk} || qemu-img create -f qcow2 {disk} 1G",
                      f"python3 ${tcgVariant} {domain['xml']} > /tmp/{name}.xml",
                  )
                  virsh(f"define /tmp/{name}.xml")

      with subtest("the default NAT network is active and autostarted"):
          host.wait_until_succeeds(f"{VIRSH} net-info default | grep -Eq '^Active: +yes$'", timeout=120)
          info = virsh("net-info default")
          assert re.search(r"^Autostart:\s+yes$", info, re.M), info

      with subtest("the gaming VM gets the Secure Boot firmware with Microsoft keys"):
          descriptor = json.loads(host.succeed("cat /var/lib/qemu/firmware/30-vfio-helper-ovmf-ms.json"))
          features = set(descriptor["features"])
          assert {"secure-boot", "enrolled-keys"} <= features, descriptor
          code = descriptor["mapping"]["executable"]["filename"]
          template = descriptor["mapping"]["nvram-template"]["filename"]
          host.succeed(f"test -s {code}", f"test -s {template}")
          # libvirt selects the firmware when the domain is defined.
          xml = virsh("dumpxml --inactive gaming")
          assert code in xml, f"the gaming VM's loader is not {code}:\n{xml}"
          assert template in xml, f"the gaming VM's NVRAM template is not {template}:\n{xml}"

      with subtest("both VMs start and keep running"):
          for vm in VMS:
              virsh(f"start {vm}")
          for vm in VMS:
              host.wait_until_succeeds(f"{VIRSH} domstate {vm} | grep -qx running", timeout=300)
          host.sleep(10)
          for vm in VMS:
              assert state(vm) == "running", f"{vm} stopped: {state(vm)}"

      if NESTED_KVM:
          with subtest("a switch with a changed VM redefines it without stopping it"):
              ids = {vm: virsh(f"domid {vm}").strip() for vm in VMS}
              host.succeed(
                  "${nodes.host.system.build.toplevel}/specialisation/changed/bin/switch-to-configuration test >&2"
              )
              host.wait_for_unit("vfio-vms-sync.service")
              persistent = virsh("dumpxml --inactive server")
              assert "<memory unit='KiB'>1572864</memory>" in persistent, persistent
              live = virsh("dumpxml server")
              assert "<memory unit='KiB'>1048576</memory>" in live, live
              for vm in VMS:
                  assert state(vm) == "running", f"{vm} is {state(vm)} after the switch"
                  assert virsh(f"domid {vm}").strip() == ids[vm], f"{vm} was restarted by the switch"
              host.succeed(
                  "journalctl -b -u vfio-vms-sync.service"
                  " | grep -F 'server is running; the new definition applies at its next start'"
              )
      else:
          host.log(
              "NOT RUN under TCG: the definition of the declared (type=kvm) domains by vfio-vms-sync "
              "and their redefinition by a switch; run the nestedKvm = true test on a machine with nested KVM"
          )
    '';
}
