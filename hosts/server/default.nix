# Example host: a headless Linux server VM on a host bridge, no GPU.
{ ... }:
{
  networking.hostName = "server";
  system.stateVersion = "25.11";
  modules.vfio.cpuVendor = "intel";

  virtualisation.vms.srv = {
    type = "linux-server";
    memory = 4096;
    vcpus = 4;
    cpu = {
      cores = 2;
      threads = 2;
      pinning.enable = false;
    };
    storage = {
      disk = "/var/lib/libvirt/images/srv.qcow2";
      size = 64;
    };
    network = {
      type = "bridge";
      bridge = "br0";
    };
    graphics = "none";
    autostart = true;
  };
}
