# evdev devices live under /dev/input.
{
  virtualisation.vms.win11.evdev.keyboard = "/dev/kbd0";
}
