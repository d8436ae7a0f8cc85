# A 70 KB extraDevicesXml: the helper bounds its input (and its output) size.
{ lib, ... }:
{
  virtualisation.vms.win11.extraDevicesXml = lib.concatStrings (lib.replicate 7000 "<input/>  ");
}
