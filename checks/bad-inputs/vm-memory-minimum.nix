# 256 MiB: probably meant GiB, or a typo.
{
  virtualisation.vms.win11.memory = 256;
}
