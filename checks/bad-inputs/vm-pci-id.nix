# PCI IDs are lower-case hex (lspci -nn prints them so); upper case is rejected.
{
  virtualisation.vms.win11.gpu = {
    enable = true;
    pciId = "10DE:2782";
    address = "0000:01:00.0";
  };
}
