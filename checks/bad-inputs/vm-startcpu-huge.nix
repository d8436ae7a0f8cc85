# Near 2^32: would make the helper allocate a map of billions of CPUs.
{
  virtualisation.vms.win11.cpu.pinning.startCpu = 4294967295;
}
