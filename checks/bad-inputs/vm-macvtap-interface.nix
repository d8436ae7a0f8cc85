# macvtap needs the physical NIC.
{
  virtualisation.vms.win11.network.type = "macvtap";
}
