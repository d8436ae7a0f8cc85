# Not one of the network types.
{
  virtualisation.vms.win11.network.type = "host";
}
