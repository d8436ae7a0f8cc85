# Isolation enabled without any VM.
{
  modules.vfio.enable = true;
}
