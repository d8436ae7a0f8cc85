# Two autostarted VMs would run at once on the same CPUs (4-11 and 8-15).
{
  virtualisation.vms.a = {
    autostart = true;
  };
  virtualisation.vms.b = {
    autostart = true;
    cpu.pinning.startCpu = 8;
  };
}
