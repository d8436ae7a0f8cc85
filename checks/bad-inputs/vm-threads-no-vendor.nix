# SMT pairs need the CPU vendor (topoext on AMD); none is known here.
{ lib, ... }:
{
  virtualisation.vms.win11 = { };
  modules.vfio.cpuVendor = lib.mkForce null;
}
