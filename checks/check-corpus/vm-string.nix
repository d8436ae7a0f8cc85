# A QEMU argument is a string, not a number.
{
  virtualisation.vms.win11.qemuArgs = [
    "-fw_cfg"
    42
  ];
}
