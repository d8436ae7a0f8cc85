# More hugepages than the VM has memory, in the VFIO entry of a dual boot.
{
  virtualisation.vms.win11 = {
    memory = 32768;
    hugepages = {
      enable = true;
      count = 40;
    };
    gpu = {
      enable = true;
      pciId = "10de:2782";
      audioPciId = "10de:22bc";
      address = "0000:01:00.0";
      audioAddress = "0000:01:00.1";
    };
  };
  modules.vfio.dualBoot.enable = true;
}
