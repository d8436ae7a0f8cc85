# Static isolation needs CPUs known at evaluation time: an autostarted pinned
# VM or modules.vfio.isolatedCpus. Here the only VM is not autostarted.
{
  virtualisation.vms.win11 = {
    vcpus = 12;
    cpu = {
      cores = 6;
      threads = 2;
    };
    gpu = {
      enable = true;
      pciId = "10de:2782";
      address = "0000:01:00.0";
    };
  };
  modules.vfio = {
    enable = true;
    isolation = "static";
  };
}
