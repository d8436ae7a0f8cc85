# Scream turned on without any user: the receiver would run in every session.
{
  virtualisation.vms.win11 = {
    gpu = {
      enable = true;
      pciId = "10de:2782";
      audioPciId = "10de:22bc";
      address = "0000:01:00.0";
      audioAddress = "0000:01:00.1";
    };
    secureBoot = false;
  };
  modules.vfio.enable = true;
  modules.vfio.scream.enable = true;
}
