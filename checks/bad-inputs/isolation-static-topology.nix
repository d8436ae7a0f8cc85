# With a host topology the VM's CPUs come from the helper at build time, too
# late for kernel parameters: isolatedCpus must be given.
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
    autostart = true;
  };
  modules.vfio = {
    enable = true;
    isolation = "static";
    hostTopology = {
      vendor = "amd";
      cpus = [
        { id = 0; core = 0; siblings = [ 0 1 ]; }
        { id = 1; core = 0; siblings = [ 0 1 ]; }
      ];
    };
  };
}
