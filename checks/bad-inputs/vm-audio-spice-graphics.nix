# The SPICE sound card without the SPICE display.
{
  virtualisation.vms.win11 = {
    graphics = "vnc";
    audio.backend = "spice";
  };
}
