# PipeWire without the user whose session plays the sound.
{
  virtualisation.vms.win11.audio.backend = "pipewire";
}
