# 1 GiB hugepages for the VMs that use them, reserved on the kernel command
# line of the boot entry where modules.vfio.enable is set (1 GiB pages cannot
# be reliably reserved after boot). The host entry of a dual boot reserves
# none, so the memory stays with the host there.
{
  config,
  lib,
  ...
}:
let
  cfg = config.modules.vfio;
  derived = import ./derive.nix { inherit lib config; };
  total = derived.hugepageTotal;
  noPdpe1gb = cfg.hostTopology != null && (cfg.hostTopology.pdpe1gb or true) == false;
in
{
  config = lib.mkIf (cfg.enable && total > 0) {
    # default_hugepagesz makes /dev/hugepages a 1 GiB hugetlbfs, which libvirt
    # needs for <page size='1' unit='G'/>.
    boot.kernelParams = lib.mkAfter [
      "default_hugepagesz=1G"
      "hugepagesz=1G"
      "hugepages=${toString total}"
    ];

    warnings = lib.optional noPdpe1gb (
      "modules.vfio: ${derived.vmList derived.hugepageVmNames} "
      + "use 1 GiB hugepages but modules.vfio.hostTopology says the CPU has no pdpe1gb flag, so the kernel cannot reserve them; "
      + "set hugepages.enable = false on those VMs"
    );
  };
}
