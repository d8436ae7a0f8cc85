# A GPU to pass through, but which one?
{
  virtualisation.vms.win11.gpu = {
    enable = true;
    pciId = "10de:2782";
  };
}
