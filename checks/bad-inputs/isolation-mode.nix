# Only "dynamic" and "static" exist.
{
  modules.vfio.isolation = "full";
}
