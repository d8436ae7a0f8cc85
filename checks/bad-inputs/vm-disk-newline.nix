# A newline would inject a line into systemd.tmpfiles.rules.
{
  virtualisation.vms.win11.storage.disk = "/var/lib/libvirt/images/a.qcow2\nL+ /etc/shadow - - - - /tmp/x";
}
