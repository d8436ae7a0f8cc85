# The Windows 11 gaming VM of the GPU passthrough guide ("2. Define Your VM"),
# exactly as written there.
{ ... }:
{
  virtualisation.vms.win11 = {
    type = "windows-gaming";
    memory = 32768;           # 32GB
    vcpus = 12;

    cpu = {
      cores = 6;
      threads = 2;
      pinning = {
        enable = true;
        startCpu = 4;         # Reserve CPUs 0-3 for host
      };
    };

    hugepages = {
      enable = true;
      count = 32;             # Match memory size
    };

    gpu = {
      enable = true;
      pciId = "10de:2782";           # From lspci -nn
      audioPciId = "10de:22bc";
      address = "0000:01:00.0";       # From lspci -D
      audioAddress = "0000:01:00.1";
    };

    storage.disk = "/var/lib/libvirt/images/win11.qcow2";
    lookingGlass.size = 128;  # 128MB for 4K
  };
}
