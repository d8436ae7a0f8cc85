# The guide's 6-core VM from CPU 4 on an 8-core/16-thread host (siblings n
# and n+8): every core with a CPU below 4 stays with the host, so 4 are left.
{ lib, ... }:
{
  virtualisation.vms.win11 = {
    vcpus = 12;
    cpu = {
      cores = 6;
      threads = 2;
      pinning.startCpu = 4;
    };
  };
  modules.vfio.hostTopology = lib.importJSON ./topology-8c16t.json;
}
