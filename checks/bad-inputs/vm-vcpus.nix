# The guide example with cpu.cores forgotten (default 4): 4 * 2 != 12.
{
  virtualisation.vms.win11 = {
    memory = 32768;
    vcpus = 12;
  };
}
