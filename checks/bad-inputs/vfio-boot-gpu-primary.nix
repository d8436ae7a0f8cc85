# The boot GPU bound to vfio-pci at boot (primaryMode defaults to true).
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
    bootGpu = "0000:01:00.0";
  };
}
