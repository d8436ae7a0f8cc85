# 64 MiB is enough for 1440p, not for the 4K monitor the comment names.
{
  virtualisation.vms.win11 = {
    gpu = {
      enable = true;
      pciId = "10de:2782";
      address = "0000:01:00.0";
    };
    lookingGlass.size = 64; # for my 4K monitor
  };
}
