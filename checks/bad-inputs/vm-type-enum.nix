# Not one of the templates.
{
  virtualisation.vms.win11.type = "windows";
}
