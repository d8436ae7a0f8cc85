# A VM's Looking Glass size that is not a power of two (kvmfr: it becomes
# static_size_mb).
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
      size = 96;
      backend = "kvmfr";
    };
  };
  modules.vfio.dualBoot.enable = true;
  modules.vfio.lookingGlass = {
    enable = true;
    users = [ "draxel" ];
  };
}
