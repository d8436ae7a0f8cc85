# kvmfr devices numbered with a gap: kvmfr creates /dev/kvmfr0 upwards.
{
  virtualisation.vms.win11 = {
    gpu = {
      enable = true;
      pciId = "10de:2782";
      audioPciId = "10de:22bc";
      address = "0000:01:00.0";
      audioAddress = "0000:01:00.1";
    };
    lookingGlass = {
      backend = "kvmfr";
      kvmfrIndex = 1;
    };
  };
  modules.vfio.enable = true;
  modules.vfio.lookingGlass = {
    enable = true;
    users = [ "draxel" ];
  };
}
