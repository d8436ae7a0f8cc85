# Without the vendor:device ID the GPU cannot be bound to vfio-pci.
{
  virtualisation.vms.win11.gpu = {
    enable = true;
    address = "0000:01:00.0";
  };
}
