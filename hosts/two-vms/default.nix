# Example host: two VMs that share nothing: a Windows gaming VM with the
# NVIDIA card on CPUs 4-15, and a Linux VM with the second (AMD) card on
# CPUs 16-23, each with its own disk, NIC and Looking Glass device.
{ ... }:
{
  networking.hostName = "two-vms";
  modules.vfio.cpuVendor = "amd";
  system.stateVersion = "25.11";

  virtualisation.vms.win11 = {
    memory = 16384;
    vcpus = 12;
    cpu = {
      cores = 6;
      threads = 2;
      pinning.startCpu = 4;
    };
    hugepages = {
      enable = true;
      count = 16;
    };
    gpu = {
      enable = true;
      pciId = "10de:2782";
      audioPciId = "10de:22bc";
      address = "0000:01:00.0";
      audioAddress = "0000:01:00.1";
    };
    lookingGlass = {
      size = 64;
      backend = "kvmfr";
      kvmfrIndex = 0;
    };
    evdev = {
      keyboard = "/dev/input/by-id/usb-Example_Keyboard-event-kbd";
      mouse = "/dev/input/by-id/usb-Example_Mouse-event-mouse";
    };
  };

  virtualisation.vms.linux-desktop = {
    type = "linux-server";
    memory = 8192;
    vcpus = 8;
    cpu = {
      cores = 4;
      threads = 2;
      pinning.startCpu = 16;
    };
    gpu = {
      enable = true;
      pciId = "1002:73bf";
      audioPciId = "1002:ab28";
      address = "0000:0c:00.0";
      audioAddress = "0000:0c:00.1";
    };
    lookingGlass = {
      size = 32;
      backend = "kvmfr";
      kvmfrIndex = 1;
    };
    network = {
      type = "macvtap";
      interface = "enp6s0";
    };
    storage.disk = "/dev/disk/by-id/nvme-Example_SSD_2TB";
  };

  # Both cards are bound to vfio-pci at boot (no dual boot on this host), and
  # both VMs show their screens through Looking Glass's kvmfr devices.
  modules.vfio = {
    enable = true;
    lookingGlass = {
      enable = true;
      users = [ "alice" ];
    };
    scream.enable = false;
  };
  users.users.alice.isNormalUser = true;
}
