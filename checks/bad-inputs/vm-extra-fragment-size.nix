# A 70 KB extraCpuXml: the escape hatches are bounded as extraDevicesXml is.
{ lib, ... }:
{
  virtualisation.vms.win11.extraCpuXml = lib.concatStrings (lib.replicate 7000 "<feature/>");
}
