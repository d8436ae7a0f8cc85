# Scream with its interface given but no user to run the receiver: it
# would play the guest's sound into every user's session.
{
  virtualisation.vms.win11 = {
    gpu = {
      enable = true;
      pciId = "10de:2782";
      audioPciId = "10de:22bc";
      address = "0000:01:00.0";
      audioAddress = "0000:01:00.1";
    };
    network.type = "nat";
  };
  modules.vfio.enable = true;
  modules.vfio.scream = {
    enable = true;
    interface = "virbr0";
  };
}
