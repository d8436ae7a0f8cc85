# The disk must be an absolute path.
{
  virtualisation.vms.win11.storage.disk = "images/win11.qcow2";
}
