# Shared fixtures of the vfio*.nix and vms*.nix tests (no tests of its own).
{ lib, evalHost }:
rec {
  # RTX 4070 Ti (AD104): GPU and HDMI audio.
  gpu4070 = {
    enable = true;
    pciId = "10de:2782";
    audioPciId = "10de:22bc";
    address = "0000:01:00.0";
    audioAddress = "0000:01:00.1";
  };

  # RTX 2080 Ti Rev. A (TU102): four functions, the USB-C ones as extras.
  gpu2080ti = {
    enable = true;
    pciId = "10de:1e07";
    audioPciId = "10de:10f7";
    address = "0000:02:00.0";
    audioAddress = "0000:02:00.1";
    extraPciIds = [
      "10de:1ad6"
      "10de:1ad7"
    ];
    extraAddresses = [
      "0000:02:00.2"
      "0000:02:00.3"
    ];
  };

  # RX 580 (Polaris 10): in vendor-reset's device list (the AMD reset bug).
  gpuRx580 = {
    enable = true;
    pciId = "1002:67df";
    audioPciId = "1002:aaf0";
    address = "0000:03:00.0";
    audioAddress = "0000:03:00.1";
  };

  # RX 6800 XT (Navi 21): resets by itself, not in vendor-reset's list.
  gpuRx6800 = {
    enable = true;
    pciId = "1002:73bf";
    audioPciId = "1002:ab28";
    address = "0000:03:00.0";
    audioAddress = "0000:03:00.1";
  };

  # The stub kernel package set with kernel `version` and the `extra`
  # packages, extensible as NixOS's boot.kernelPackages needs.
  stubPkgs = import ../stub-pkgs.nix { inherit lib; };
  kernelOf = version: extra: {
    boot.kernelPackages = stubPkgs.linuxPackages.extend (
      _: super:
      extra
      // {
        kernel =
          let
            k = super.kernel // {
              inherit version;
              modDirVersion = version;
              override = _: k;
            };
          in
          k;
      }
    );
  };

  # ... with vendor-reset, as nixpkgs' linuxPackages has it
  # (pkgs/os-specific/linux/vendor-reset).
  vendorResetPackage = stubPkgs.runCommand "vendor-reset" { } "";
  kernelWithVendorReset = version: kernelOf version { vendor-reset = vendorResetPackage; };

  # The guide's VM ("2. Define Your VM").
  win11 = {
    type = "windows-gaming";
    memory = 32768;
    vcpus = 12;
    cpu = {
      cores = 6;
      threads = 2;
    };
    hugepages = {
      enable = true;
      count = 32;
    };
    gpu = gpu4070;
    storage.disk = "/var/lib/libvirt/images/win11.qcow2";
    lookingGlass.size = 128;
  };

  # The guide's step 3.
  guideVfio = {
    modules.vfio.dualBoot = {
      enable = true;
      defaultMode = "host";
    };
    modules.vfio.lookingGlass = {
      enable = true;
      users = [ "draxel" ];
    };
    modules.vfio.scream.enable = true;
    users.users.draxel.isNormalUser = true;
  };

  intel.modules.vfio.hostTopology = {
    vendor = "intel";
    pdpe1gb = true;
  };
  amd.modules.vfio.hostTopology = {
    vendor = "amd";
    pdpe1gb = true;
  };

  # Evaluates a host given as a list of modules.
  host = modules: evalHost { imports = modules; };

  # The libvirt hooks of modules.vfio (without the VMs' CPU isolation hook).
  vfioHooks = cfg: lib.filter (n: n != "vfio-cpu-isolate") (lib.attrNames cfg.virtualisation.libvirtd.hooks.qemu);

  failedMessages = cfg: map (a: a.message) (lib.filter (a: !a.assertion) cfg.assertions);

  # What the VMs' module (modules/vms.nix) builds, and a VM's JSON from it.
  vmsOf = host: host.virtualisation.vmsInternal;
  jsonOf = host: name: builtins.fromJSON (vmsOf host).configJson.${name};

  # A host with one VM, given as the VM's options.
  oneVm = name: vm: evalHost { virtualisation.vms.${name} = vm; };

  # What NixOS itself defines on a host with libvirtd (users-groups.nix,
  # libvirtd.nix, udev.nix), to leave out of comparisons: only what these
  # modules add is compared.
  upstream = evalHost { virtualisation.libvirtd.enable = true; };
  ourGroups = cfg: removeAttrs cfg.users.groups (lib.attrNames upstream.users.groups);
  ourUsers = cfg: removeAttrs cfg.users.users (lib.attrNames upstream.users.users);
  ourUdevPackages = cfg: lib.filter (p: !(lib.elem p upstream.services.udev.packages)) cfg.services.udev.packages;

  # Everything the VFIO entry adds on top of a plain host, to show that an
  # entry carries none of it.
  isolationOf = cfg: {
    inherit (cfg.boot)
      kernelParams
      kernelModules
      extraModprobeConfig
      blacklistedKernelModules
      extraModulePackages
      ;
    initrd = cfg.boot.initrd.kernelModules;
    udevRules = cfg.services.udev.extraRules;
    udevPackages = ourUdevPackages cfg;
    tmpfiles = lib.filter (lib.hasInfix "/dev/") cfg.systemd.tmpfiles.rules;
    # The CPU isolation hook belongs to the VMs (cpu.isolate), not to an entry.
    hooks = removeAttrs cfg.virtualisation.libvirtd.hooks.qemu [ "vfio-cpu-isolate" ];
    qemuConf = cfg.virtualisation.libvirtd.qemu.verbatimConfig;
    userServices = cfg.systemd.user.services;
    services = lib.filter (lib.hasPrefix "looking-glass") (lib.attrNames cfg.systemd.services);
    firewall = cfg.networking.firewall.interfaces;
    firewallRules = cfg.networking.firewall.extraCommands;
    groups = ourGroups cfg;
    packages = lib.filter (n: n == "looking-glass-client") (map (p: p.name) cfg.environment.systemPackages);
  };

  nothingIsolated = {
    kernelParams = [ ];
    kernelModules = [ ];
    extraModprobeConfig = "";
    blacklistedKernelModules = [ ];
    extraModulePackages = [ ];
    initrd = [ ];
    udevRules = "";
    udevPackages = [ ];
    tmpfiles = [ ];
    hooks = { };
    qemuConf = "namespaces = []\n";
    userServices = { };
    services = [ ];
    firewall = { };
    firewallRules = "";
    groups = { };
    packages = [ ];
  };

  # The guide's VM with modules.vfio enabled (no host topology).
  win11Vfio = {
    virtualisation.vms.win11 = win11;
    modules.vfio.enable = true;
  };

  # The guide's VM with modules.vfio on an Intel host: its GPU bound to
  # vfio-pci at boot (static, primaryMode = true) ...
  staticIntel = host [
    intel
    win11Vfio
  ];

  # ... on the kernel command line, ...
  staticIntelParams = [
    "intel_iommu=on"
    "iommu=pt"
    "vfio-pci.ids=10de:2782,10de:22bc"
    "default_hugepagesz=1G"
    "hugepagesz=1G"
    "hugepages=32"
  ];

  # ... and only while the VM runs (dynamic, primaryMode = false).
  dynamic = host [
    intel
    {
      virtualisation.vms.win11 = win11;
      modules.vfio = {
        enable = true;
        primaryMode = false;
      };
    }
  ];

  # Windows guests blue-screen on MSRs KVM does not emulate unless KVM
  # ignores them (libvirt's <msrs unknown="ignore"/> is bhyve-only).
  kvmOptions = ''
    options kvm ignore_msrs=1 report_ignored_msrs=0
  '';

  # The GPU drivers (NVIDIA's, and those of the 2080 Ti's extra functions)
  # wait for vfio-pci to claim the passed cards first.
  nvidiaSoftdeps = ''
    softdep nvidia pre: vfio-pci
    softdep nouveau pre: vfio-pci
    softdep snd_hda_intel pre: vfio-pci
    softdep xhci_pci pre: vfio-pci
    softdep i2c_nvidia_gpu pre: vfio-pci
  '';

  # A VM's default CPU pinning.
  defaultPinning = {
    enable = true;
    startCpu = 4;
    prefer = "auto";
    numaNode = null;
  };

  # The defaults of a VM's classic fixes and tuning options (the top-level
  # ones of its JSON).
  tuningDefaults = {
    spice = {
      listen = "address";
      port = null;
    };
    hideHypervisor = false;
    hyperv = {
      xmmInput = false;
      tlbflushExtended = false;
      panic = false;
    };
    spareRootPorts = 4;
    extraCpuXml = "";
    extraFeaturesXml = "";
    extraOsXml = "";
  };
}
