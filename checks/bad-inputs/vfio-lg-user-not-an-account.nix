# The template's placeholder user name left in lookingGlass.users: no such
# account exists (users.users.alice has neither isNormalUser nor isSystemUser).
{
  virtualisation.vms.win11 = {
    gpu = {
      enable = true;
      pciId = "10de:2782";
      audioPciId = "10de:22bc";
      address = "0000:01:00.0";
      audioAddress = "0000:01:00.1";
    };
  };
  modules.vfio.enable = true;
  modules.vfio.lookingGlass = {
    enable = true;
    users = [ "alice" ];
  };
}
