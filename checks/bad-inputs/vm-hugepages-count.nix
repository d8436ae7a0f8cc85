# memory lowered to 16 GiB, hugepages.count left at its default of 32.
{
  virtualisation.vms.win11 = {
    memory = 16384;
    hugepages.enable = true;
  };
}
