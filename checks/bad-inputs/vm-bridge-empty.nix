# A bridge network with no bridge.
{
  virtualisation.vms.win11.network = {
    type = "bridge";
    bridge = "";
  };
}
