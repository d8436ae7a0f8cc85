# `lspci` without -D omits the PCI domain; the address needs it.
{
  virtualisation.vms.win11.gpu = {
    enable = true;
    pciId = "10de:2782";
    address = "01:00.0";
  };
}
