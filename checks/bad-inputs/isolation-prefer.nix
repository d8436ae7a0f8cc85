# cpu.pinning.prefer is "auto", "cache" or "frequency".
{
  virtualisation.vms.win11.cpu.pinning.prefer = "vcache";
}
