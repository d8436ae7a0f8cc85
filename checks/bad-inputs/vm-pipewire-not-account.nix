# PipeWire for a user NixOS creates no account for (neither isNormalUser
# nor isSystemUser).
{
  users.users.bob.uid = 1500;
  virtualisation.vms.win11.audio = {
    backend = "pipewire";
    pipewireUser = "bob";
  };
}
