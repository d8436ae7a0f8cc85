# A typo in an option name is an error, not silently ignored.
{
  virtualisation.vms.win11.gpu.pciID = "10de:2782";
}
