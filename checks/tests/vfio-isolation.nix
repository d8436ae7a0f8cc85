# Tests of modules.vfio isolation (modules/vfio.nix, modules/vfio/isolation.nix,
# modules/vfio/hugepages.nix): the GPU bound to vfio-pci at boot, by CPU
# vendor and kernel version, for two GPU VMs, and nothing without enable; in
# lib.runTests format. Dynamic binding and the AMD reset bug:
# ./vfio-dynamic-reset.nix.
{ lib, evalHost }:
let
  f = import ./vfio-fixtures.nix { inherit lib evalHost; };
  inherit (f) host failedMessages staticIntel dynamic kvmOptions nvidiaSoftdeps;

  twoGpus = host [
    f.amd
    {
      virtualisation.vms.win11 = f.win11;
      virtualisation.vms.turing = {
        gpu = f.gpu2080ti;
        lookingGlass.enable = false;
      };
      modules.vfio.enable = true;
      modules.vfio.scream.enable = false;
    }
  ];

  # A 6.1 kernel package set.
  kernel61 = f.kernelOf "6.1.55" { };
in
{
  # --- static (primaryMode = true) -------------------------------------------

  testStaticKernelParams = {
    expr = staticIntel.boot.kernelParams;
    expected = f.staticIntelParams;
  };

  testStaticInitrdModules = {
    expr = staticIntel.boot.initrd.kernelModules;
    expected = [
      "vfio_pci"
      "vfio"
      "vfio_iommu_type1"
    ];
  };

  testVfioLoadsBeforeGpuDriversInInitrd = {
    expr =
      (host [
        { boot.initrd.kernelModules = [ "nvidia" ]; }
        f.win11Vfio
      ]).boot.initrd.kernelModules;
    expected = [
      "vfio_pci"
      "vfio"
      "vfio_iommu_type1"
      "nvidia"
    ];
  };

  testStaticSoftdeps = {
    expr = staticIntel.boot.extraModprobeConfig;
    # types.lines joins the definitions with a newline.
    expected = kvmOptions + "\n" + nvidiaSoftdeps;
  };

  testKvmIgnoresUnknownMsrsInEveryVfioEntry = {
    expr =
      map
        (cfg: lib.filter (lib.hasPrefix "options kvm ") (lib.splitString "\n" cfg.boot.extraModprobeConfig))
        [
          staticIntel
          dynamic
          (host [
            { virtualisation.vms.win11 = f.win11; }
            f.guideVfio
          ]).specialisation.vfio.configuration
        ];
    expected = [
      [ "options kvm ignore_msrs=1 report_ignored_msrs=0" ]
      [ "options kvm ignore_msrs=1 report_ignored_msrs=0" ]
      [ "options kvm ignore_msrs=1 report_ignored_msrs=0" ]
    ];
  };

  testStaticBlacklist = {
    expr = staticIntel.boot.blacklistedKernelModules;
    expected = [
      "nouveau"
      "nvidia"
      "nvidia_drm"
      "nvidia_modeset"
      "nvidia_uvm"
    ];
  };

  testBlacklistCanBeTurnedOff = {
    expr =
      (host [
        f.win11Vfio
        { modules.vfio.blacklistNvidia = false; }
      ]).boot.blacklistedKernelModules;
    expected = [ ];
  };

  # QEMU as root (NixOS's default) opens /dev/vfio/N itself; a group rule
  # would only open the VFIO groups to every member of `kvm`.
  testNoVfioGroupRuleWhileQemuRunsAsRoot = {
    expr = staticIntel.services.udev.extraRules;
    expected = "";
  };

  testVfioNodePermissionsForNonRootQemu = {
    expr =
      (host [
        f.win11Vfio
        { virtualisation.libvirtd.qemu.runAsRoot = false; }
      ]).services.udev.extraRules;
    expected = ''
      SUBSYSTEM=="vfio", GROUP="kvm", MODE="0660"
    '';
  };

  testStaticHasNoHook = {
    expr = f.vfioHooks staticIntel;
    expected = [ ];
  };

  testStaticHostHasNoFailedAssertions = {
    expr = failedMessages staticIntel;
    expected = [ ];
  };

  testDerivedIds = {
    expr = {
      inherit (staticIntel.modules.vfio) gpuPciIds gpuPciAddresses;
    };
    expected = {
      gpuPciIds = [
        "10de:2782"
        "10de:22bc"
      ];
      gpuPciAddresses = [
        "0000:01:00.0"
        "0000:01:00.1"
      ];
    };
  };

  testUserCanAddIds = {
    expr =
      let
        cfg = host [
          f.win11Vfio
          { modules.vfio.gpuPciIds = [ "10de:1ad6" ]; }
        ];
      in
      {
        ids = cfg.modules.vfio.gpuPciIds;
        param = lib.filter (lib.hasPrefix "vfio-pci.ids=") cfg.boot.kernelParams;
      };
    expected = {
      ids = [
        "10de:2782"
        "10de:22bc"
        "10de:1ad6"
      ];
      param = [ "vfio-pci.ids=10de:2782,10de:22bc,10de:1ad6" ];
    };
  };

  # --- CPU vendor and kernel version -----------------------------------------

  testAmdNeedsNoIntelIommu = {
    expr = lib.filter (lib.hasPrefix "intel_iommu") twoGpus.boot.kernelParams;
    expected = [ ];
  };

  testVendorFromTopology = {
    expr = [
      staticIntel.modules.vfio.cpuVendor
      twoGpus.modules.vfio.cpuVendor
    ];
    expected = [
      "intel"
      "amd"
    ];
  };

  testUnknownVendorGetsIntelIommu = {
    expr =
      lib.elem "intel_iommu=on"
        (host [
          f.win11Vfio
          { modules.vfio.cpuVendor = lib.mkForce null; }
        ]).boot.kernelParams;
    expected = true;
  };

  testVirqfdOnlyBefore62 = {
    expr = {
      old =
        (host [
          kernel61
          f.win11Vfio
        ]).boot.initrd.kernelModules;
      new = staticIntel.boot.initrd.kernelModules;
    };
    expected = {
      old = [
        "vfio_pci"
        "vfio"
        "vfio_iommu_type1"
        "vfio_virqfd"
      ];
      new = [
        "vfio_pci"
        "vfio"
        "vfio_iommu_type1"
      ];
    };
  };

  # --- two VMs with GPUs --------------------------------------------------------

  testTwoGpusAllFunctions = {
    expr = {
      params = twoGpus.boot.kernelParams;
      addresses = twoGpus.modules.vfio.gpuPciAddresses;
    };
    expected = {
      # VMs in name order: turing, then win11.
      params = [
        "iommu=pt"
        "vfio-pci.ids=10de:1e07,10de:10f7,10de:1ad6,10de:1ad7,10de:2782,10de:22bc"
        "default_hugepagesz=1G"
        "hugepagesz=1G"
        "hugepages=32"
      ];
      addresses = [
        "0000:02:00.0"
        "0000:02:00.1"
        "0000:02:00.2"
        "0000:02:00.3"
        "0000:01:00.0"
        "0000:01:00.1"
      ];
    };
  };

  testHugepagesSumOverVms = {
    expr =
      lib.filter (lib.hasPrefix "hugepages=")
        (host [
          {
            virtualisation.vms.win11 = f.win11;
            virtualisation.vms.small = {
              memory = 8192;
              hugepages = {
                enable = true;
                count = 8;
              };
            };
            virtualisation.vms.nohuge.memory = 4096;
            modules.vfio.enable = true;
          }
        ]).boot.kernelParams;
    expected = [ "hugepages=40" ];
  };

  testNoHugepagesWithoutHugepageVms = {
    expr =
      lib.filter (lib.hasInfix "hugepage")
        (host [
          {
            virtualisation.vms.win11 = f.win11 // {
              hugepages.enable = false;
            };
            modules.vfio.enable = true;
          }
        ]).boot.kernelParams;
    expected = [ ];
  };

  testNoPdpe1gbWarns = {
    expr =
      lib.any (lib.hasInfix "no pdpe1gb flag")
        (host [
          f.win11Vfio
          {
            modules.vfio.hostTopology = {
              vendor = "intel";
              pdpe1gb = false;
            };
          }
        ]).warnings;
    expected = true;
  };

  # --- nothing without enable ------------------------------------------------------

  testNoVmsNothingSet = {
    expr = f.isolationOf (evalHost { });
    expected = f.nothingIsolated // {
      services = [ ];
    };
  };

  testGpuVmWithoutEnableNothingSet = {
    expr = f.isolationOf (host [ { virtualisation.vms.win11 = f.win11; } ]);
    expected = f.nothingIsolated;
  };

  testNoVmsDerivedListsEmpty = {
    expr = {
      inherit ((evalHost { }).modules.vfio) gpuPciIds gpuPciAddresses enable;
    };
    expected = {
      gpuPciIds = [ ];
      gpuPciAddresses = [ ];
      enable = false;
    };
  };

  testEnableWithoutGpuFails = {
    expr = failedMessages (host [
      {
        virtualisation.vms.srv.type = "linux-server";
        modules.vfio.enable = true;
      }
    ]);
    expected = [
      "modules.vfio.enable = true but no VM in virtualisation.vms has gpu.enable = true, so there is no GPU to isolate; give a VM `gpu = { enable = true; pciId = \"10de:2782\"; address = \"0000:01:00.0\"; }` (from `lspci -nn` and `lspci -D`), or remove modules.vfio.enable = true"
    ];
  };
}
