# Longer than the 64 characters a VM name may have (it becomes file names).
{
  virtualisation.vms.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa = { };
}
