# A multicast MAC (first octet odd): libvirt refuses it for a NIC.
{
  virtualisation.vms.win11.network.mac = "01:00:5e:00:00:01";
}
