# Two VMs with the same fixed SPICE port.
{
  virtualisation.vms.a.spice.port = 5930;
  virtualisation.vms.b.spice.port = 5930;
}
