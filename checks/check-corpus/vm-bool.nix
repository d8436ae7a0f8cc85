# "yes" is not a boolean.
{
  virtualisation.vms.win11.autostart = "yes";
}
