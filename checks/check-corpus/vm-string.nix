# An interface name is a string, not a number.
{
  virtualisation.vms.win11.network = {
    type = "macvtap";
    interface = 0;
  };
}
