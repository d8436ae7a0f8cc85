# Dual boot while no VM has a GPU: there is nothing to isolate.
{
  virtualisation.vms.srv.type = "linux-server";
  modules.vfio.dualBoot.enable = true;
}
