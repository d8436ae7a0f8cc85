# Windows 11 does not install with 2 GiB.
{
  virtualisation.vms.win11 = {
    memory = 2048;
  };
}
