# Two GPU VMs claiming the same GPU, with dual boot.
{
  virtualisation.vms.win11 = {
    gpu = {
      enable = true;
      pciId = "10de:2782";
      audioPciId = "10de:22bc";
      address = "0000:01:00.0";
      audioAddress = "0000:01:00.1";
    };
  };
  virtualisation.vms.win10 = {
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
