# A CPU list is the kernel's format: no spaces.
{
  modules.vfio.isolatedCpus = "4 - 15";
}
