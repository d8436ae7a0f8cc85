# evmcs is Intel-only.
{
  virtualisation.vms.win11.cpu = {
    vendor = "amd";
    evmcs = true;
  };
}
