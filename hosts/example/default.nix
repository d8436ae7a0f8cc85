# Example host: the GPU passthrough guide's Windows 11 gaming VM (vm.nix,
# "2. Define Your VM") and its VFIO boot mode ("3. Enable VFIO Boot Mode"),
# exactly as written there. With Scream enabled and the VM's default
# secureBoot = true, evaluation warns that the Scream driver needs Secure Boot
# off in Windows: that is the guide's configuration, warning included.
{ ... }:
{
  imports = [ ./vm.nix ];

  networking.hostName = "example";
  system.stateVersion = "25.11";

  # Enable dual-boot with specialisation
  modules.vfio.dualBoot = {
    enable = true;
    defaultMode = "host";  # or "vfio" to default to passthrough
  };

  # Configure VFIO settings (applied in VFIO boot)
  modules.vfio.lookingGlass = {
    enable = true;
    users = [ "draxel" ];
  };
  modules.vfio.scream.enable = true;

  # The host's CPU vendor ("amd" or "intel"); `vfio-helper discover --nix`
  # writes it (with the whole topology). AMD guests need it for SMT pairs.
  modules.vfio.cpuVendor = "amd";

  users.users.draxel.isNormalUser = true;
}
