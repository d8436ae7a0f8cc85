# The vfio-vms-sync service: present whenever there are VMs or libvirtd, so
# that removing the last VM still undefines the domains this module defined.
{ lib, evalHost }:
let
  withVm = evalHost ../../hosts/example/vm.nix;
  lastVmRemoved = evalHost { virtualisation.libvirtd.enable = true; };
  noLibvirt = evalHost { };
in
{
  testSyncServiceWithVms = {
    expr = {
      service = withVm.systemd.services ? vfio-vms-sync;
      domains = map (d: d.name) withVm.virtualisation.vmsInternal.manifest.domains;
    };
    expected = {
      service = true;
      domains = [ "win11" ];
    };
  };

  # No VM left, libvirtd still on: sync runs with an empty manifest.
  testSyncServiceAfterTheLastVmLeft = {
    expr = {
      service = lastVmRemoved.systemd.services ? vfio-vms-sync;
      domains = lastVmRemoved.virtualisation.vmsInternal.manifest.domains;
      etc = lastVmRemoved.environment.etc ? "vfio/manifest.json";
    };
    expected = {
      service = true;
      domains = [ ];
      etc = true;
    };
  };

  # Importing the modules alone turns nothing on.
  testNothingWithoutVmsOrLibvirt = {
    expr = {
      service = noLibvirt.systemd.services ? vfio-vms-sync;
      libvirtd = noLibvirt.virtualisation.libvirtd.enable;
    };
    expected = {
      service = false;
      libvirtd = false;
    };
  };
}
