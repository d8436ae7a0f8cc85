# systemd units are named with their type suffix.
{
  modules.vfio.singleGpu = {
    enable = true;
    stopUnits = [ "ollama" ];
  };
}
