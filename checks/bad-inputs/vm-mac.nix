# Dashes instead of colons.
{
  virtualisation.vms.win11.network.mac = "52-54-00-12-34-56";
}
