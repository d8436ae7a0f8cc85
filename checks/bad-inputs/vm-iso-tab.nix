# Control characters are refused in every path option.
{
  virtualisation.vms.win11.storage.windowsIso = "/var/lib/libvirt/images/Win11.iso\t";
}
