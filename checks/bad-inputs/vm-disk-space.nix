# A space would split the tmpfiles rule of the image directory.
{
  virtualisation.vms.win11.storage.disk = "/var/lib/libvirt/my images/win11.qcow2";
}
