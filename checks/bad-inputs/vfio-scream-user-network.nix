# Scream (on by default once it has a user, here the Looking Glass user)
# while the only GPU VM uses QEMU user networking.
{
  virtualisation.vms.win11 = {
    gpu = {
      enable = true;
      pciId = "10de:2782";
      audioPciId = "10de:22bc";
      address = "0000:01:00.0";
      audioAddress = "0000:01:00.1";
    };
    network.type = "user";
  };
  modules.vfio.dualBoot.enable = true;
  modules.vfio.lookingGlass = {
    enable = true;
    users = [ "draxel" ];
  };
  users.users.draxel.isNormalUser = true;
}
