# The audio function must be bound to vfio-pci too, which needs its ID.
{
  virtualisation.vms.win11.gpu = {
    enable = true;
    pciId = "10de:2782";
    address = "0000:01:00.0";
    audioAddress = "0000:01:00.1";
  };
}
