# 12.5 GiB cannot be backed by 1 GiB pages.
{
  virtualisation.vms.win11 = {
    memory = 12800;
    hugepages = {
      enable = true;
      count = 12;
    };
  };
}
