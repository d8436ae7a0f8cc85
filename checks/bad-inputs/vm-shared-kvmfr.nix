# Two VMs on the same kvmfr device.
{
  virtualisation.vms.a.lookingGlass = {
    enable = true;
    backend = "kvmfr";
  };
  virtualisation.vms.b.lookingGlass = {
    enable = true;
    backend = "kvmfr";
  };
}
