# Looking Glass for a user NixOS creates no account for (declared, but
# neither isNormalUser nor isSystemUser, and a uid of 1000 or more).
{
  users.users.alice.isNormalUser = true;
  users.users.bob.uid = 1500;
  virtualisation.vms.win11 = {
    gpu = {
      enable = true;
      pciId = "10de:2782";
      audioPciId = "10de:22bc";
      address = "0000:01:00.0";
      audioAddress = "0000:01:00.1";
    };
    lookingGlass.enable = true;
  };
  modules.vfio.enable = true;
  modules.vfio.lookingGlass = {
    enable = true;
    users = [
      "alice"
      "bob"
    ];
  };
}
