# Interface names are at most 15 characters without spaces.
{
  virtualisation.vms.win11.network = {
    type = "bridge";
    bridge = "br 0";
  };
}
