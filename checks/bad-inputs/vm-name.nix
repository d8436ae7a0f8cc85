# A space in the VM name: not usable as a domain or file name.
{
  virtualisation.vms."win 11" = { };
}
