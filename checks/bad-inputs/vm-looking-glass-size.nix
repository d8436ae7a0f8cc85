# Looking Glass needs a power-of-two shared memory size.
{
  virtualisation.vms.win11.lookingGlass = {
    enable = true;
    size = 100;
  };
}
