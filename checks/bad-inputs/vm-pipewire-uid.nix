# PipeWire for a user without a declared uid: their runtime directory is
# not known at build time.
{
  users.users.alice.isNormalUser = true;
  virtualisation.vms.win11.audio = {
    backend = "pipewire";
    pipewireUser = "alice";
  };
}
