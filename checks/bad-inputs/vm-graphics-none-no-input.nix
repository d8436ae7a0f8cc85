# A Windows guest with no display and no input device.
{
  virtualisation.vms.win11.graphics = "none";
}
