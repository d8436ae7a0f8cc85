# The kernel rejects ranges written high-low.
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
    isolatedCpus = "4-15,23-16";
  };
}
