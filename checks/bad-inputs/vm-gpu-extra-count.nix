# More extra GPU functions than a PCI slot holds.
{
  virtualisation.vms.win11.gpu.extraPciIds = [
    "10de:1ad0"
    "10de:1ad1"
    "10de:1ad2"
    "10de:1ad3"
    "10de:1ad4"
    "10de:1ad5"
    "10de:1ad6"
  ];
}
