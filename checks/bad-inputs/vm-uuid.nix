# Not a UUID.
{
  virtualisation.vms.win11.uuid = "win11-0001";
}
