# A Turing card's USB-C function listed twice.
{
  virtualisation.vms.win11.gpu = {
    enable = true;
    pciId = "10de:1e07";
    address = "0000:01:00.0";
    extraPciIds = [ "10de:1ad6" "10de:1ad7" ];
    extraAddresses = [ "0000:01:00.2" "0000:01:00.2" ];
  };
}
