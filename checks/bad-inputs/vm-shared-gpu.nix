# The same GPU in two VMs.
let
  gpu = {
    enable = true;
    pciId = "10de:2782";
    audioPciId = "10de:22bc";
    address = "0000:01:00.0";
    audioAddress = "0000:01:00.1";
  };
in
{
  virtualisation.vms.win11 = { inherit gpu; };
  virtualisation.vms.gaming = { inherit gpu; };
}
