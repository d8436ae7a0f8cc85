# A topology must come from `vfio-helper discover`; this one has a typo.
{
  virtualisation.vms.win11 = { };
  modules.vfio.hostTopology = {
    vendor = "amd";
    cpu = [ ];
  };
}
