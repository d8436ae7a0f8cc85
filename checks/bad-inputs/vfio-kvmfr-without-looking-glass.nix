# A kvmfr VM while the host side of Looking Glass is off: /dev/kvmfr0 would
# not exist.
{
  virtualisation.vms.win11 = {
    gpu = {
      enable = true;
      pciId = "10de:2782";
      audioPciId = "10de:22bc";
      address = "0000:01:00.0";
      audioAddress = "0000:01:00.1";
    };
    lookingGlass.backend = "kvmfr";
  };
  modules.vfio.enable = true;
}
