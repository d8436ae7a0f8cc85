# A missing semicolon.
{
  virtualisation.vms.win11.memory = 16384
  virtualisation.vms.win11.vcpus = 8;
}
