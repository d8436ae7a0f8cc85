# The Windows VM and the host's GPU isolation.
#
# Before the first rebuild, write vfio-hardware.nix (the GPU's PCI IDs and
# addresses and the CPU topology of this machine):
#
#   nix run github:OWNER/REPO#vfio-helper -- discover          # read the report
#   nix run github:OWNER/REPO#vfio-helper -- discover --nix -o vfio-hardware.nix
#
# Until you do, evaluation fails because vfio-hardware.nix is missing.
{ ... }:
{
  imports = [ ./vfio-hardware.nix ];

  virtualisation.vms.win11 = {
    type = "windows-gaming";
    memory = 16384; # MiB
    vcpus = 12;
    cpu = {
      cores = 6;
      threads = 2;
    };
    hugepages = {
      enable = true;
      count = 16; # memory / 1024
    };
    # gpu.* comes from vfio-hardware.nix.
    storage = {
      disk = "/var/lib/libvirt/images/win11.qcow2"; # created on first sync
      size = 256; # GiB
      # For the installation; remove both afterwards:
      # windowsIso = "/var/lib/libvirt/images/Win11.iso";
      # virtioIso = "/var/lib/libvirt/images/virtio-win.iso";
    };
    lookingGlass.size = 128; # MiB: 32 for 1080p, 64 for 1440p, 128 for 4K
  };

  # Two boot entries: the default one keeps the GPU for the host, the `vfio`
  # entry isolates it for the VM.
  modules.vfio.dualBoot = {
    enable = true;
    defaultMode = "host";
  };

  modules.vfio.lookingGlass = {
    enable = true;
    users = [ "alice" ]; # your user name
  };

  # Scream's Windows driver cannot be installed with Secure Boot on, which
  # Windows 11 VMs have by default; the card's HDMI/DisplayPort audio works
  # without it. See the README before turning it on.
  modules.vfio.scream.enable = false;
}
