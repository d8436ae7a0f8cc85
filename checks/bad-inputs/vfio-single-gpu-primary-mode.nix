# The host's only GPU bound to vfio-pci at boot.
{
  virtualisation.vms.win11.gpu = {
    enable = true;
    pciId = "10de:2782";
    audioPciId = "10de:22bc";
    address = "0000:01:00.0";
    audioAddress = "0000:01:00.1";
  };
  modules.vfio = {
    enable = true;
    cpuVendor = "amd";
    singleGpu.enable = true;
    primaryMode = true;
  };
}
