# PipeWire with QEMU running as qemu-libvirtd.
{
  virtualisation.libvirtd.qemu.runAsRoot = false;
  virtualisation.vms.win11.audio = {
    backend = "pipewire";
    pipewireRuntimeDir = "/run/user/1000";
  };
}
