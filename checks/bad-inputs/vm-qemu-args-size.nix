# A QEMU argument longer than 4096 bytes.
{ lib, ... }:
{
  virtualisation.vms.win11.qemuArgs = [ (lib.concatStrings (lib.replicate 500 "-overcommit")) ];
}
