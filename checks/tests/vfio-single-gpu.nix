# Tests of modules.vfio.singleGpu and modules.vfio.bootGpu
# (modules/vfio/single-gpu.nix, the hook wiring in modules/vfio/isolation.nix),
# in lib.runTests format. The hook itself: rust/tests/single_gpu_hook/.
{ lib, evalHost }:
let
  f = import ./vfio-fixtures.nix { inherit lib evalHost; };
  inherit (f) host failedMessages;

  # The guide's VM on a host whose only GPU it takes (no Looking Glass: the
  # host has no display while the VM runs).
  win11 = f.win11 // {
    lookingGlass.enable = false;
  };

  single = host [
    f.intel
    {
      virtualisation.vms.win11 = win11;
      modules.vfio = {
        enable = true;
        singleGpu.enable = true;
        bootGpu = "0000:01:00.0";
      };
    }
  ];

  hookText = cfg: cfg.virtualisation.libvirtd.hooks.qemu.vfio-single-gpu.text;
  exported = name: cfg: builtins.match ".*\nexport ${name}=([^\n]*)\n.*" ("\n" + hookText cfg);
  pathOf = pkg: "${pkg}/bin";

  # What the boot GPU rule says for win11.
  bootGpuMessage =
    "modules.vfio.bootGpu = \"0000:01:00.0\" is passed to virtualisation.vms.win11 with primaryMode = true: vfio-pci would claim the boot GPU at boot, and the host's console and display manager start on it. "
    + "With one GPU, set modules.vfio.singleGpu.enable = true (the GPU is handed to the VM only while it runs). "
    + "With two, make the host's GPU the primary one in the firmware setup and run `vfio-helper discover --nix` again, "
    + "or set modules.vfio.primaryMode = false";

  # A host module declaring NixOS's hardware.nvidia.nvidiaPersistenced (the
  # stand-in has no nvidia module).
  nvidiaOption = {
    options.hardware.nvidia.nvidiaPersistenced = lib.mkOption {
      type = lib.types.bool;
      default = false;
    };
  };
in
{
  # --- the single-GPU host ---------------------------------------------------------

  testSingleGpuBindsNothingAtBoot = {
    expr = {
      inherit (single.modules.vfio) primaryMode;
      vfioIds = lib.filter (lib.hasPrefix "vfio-pci.ids") single.boot.kernelParams;
      initrd = single.boot.initrd.kernelModules;
      inherit (single.boot) kernelModules blacklistedKernelModules;
    };
    expected = {
      primaryMode = false;
      vfioIds = [ ];
      initrd = [ ];
      kernelModules = [
        "vfio_pci"
        "vfio"
        "vfio_iommu_type1"
      ];
      blacklistedKernelModules = [ ];
    };
  };

  testSingleGpuHostHasNoFailedAssertionsOrWarnings = {
    expr = {
      failed = failedMessages single;
      inherit (single) warnings;
    };
    expected = {
      failed = [ ];
      warnings = [ ];
    };
  };

  # One hook: libvirt runs qemu.d in name order and carries on after a
  # failure, so a separate detach hook would run before the display is down.
  testSingleGpuInstallsOnlyItsHook = {
    expr = f.vfioHooks single;
    expected = [ "vfio-single-gpu" ];
  };

  testSingleGpuHookEnvironment = {
    expr = {
      devices = exported "VFIO_GPU_DEVICES" single;
      units = exported "VFIO_DISPLAY_UNITS" single;
      timeout = exported "VFIO_DISPLAY_TIMEOUT" single;
      detachRunsTheDetachScript =
        let
          m = exported "VFIO_GPU_DETACH" single;
        in
        m != null && builtins.match "'[^ ]*/bin/bash [^ ]*-gpu-detach.sh'" (lib.head m) != null;
      runsTheScript = builtins.match ''.*exec [^ ]*/bin/bash [^ ]*-single-gpu.sh "\$@".*'' (hookText single) != null;
      namesTheSharedLibrary = lib.hasSuffix "-gpu-hook-lib.sh" (lib.head (exported "VFIO_GPU_HOOK_LIB" single));
    };
    expected = {
      devices = [ "'win11 0000:01:00.0 0000:01:00.1'" ];
      units = [ "display-manager.service" ];
      timeout = [ "60" ];
      detachRunsTheDetachScript = true;
      runsTheScript = true;
      namesTheSharedLibrary = true;
    };
  };

  # systemctl and loginctl (systemd), flock and logger (util-linux), modprobe
  # (kmod) for gpu-detach.sh.
  testSingleGpuHookPath = {
    expr =
      let
        path = lib.head (exported "PATH" single);
      in
      map (p: lib.hasInfix (pathOf p) path) [
        f.stubPkgs.systemd
        f.stubPkgs.util-linux
        f.stubPkgs.kmod
        f.stubPkgs.coreutils
      ];
    expected = [
      true
      true
      true
      true
    ];
  };

  testStopUnitsAndTimeout = {
    expr =
      let
        cfg = host [
          {
            virtualisation.vms.win11 = win11;
            modules.vfio = {
              enable = true;
              singleGpu = {
                enable = true;
                stopUnits = [
                  "display-manager.service"
                  "ollama.service"
                ];
                timeout = 20;
              };
            };
          }
        ];
      in
      [
        (exported "VFIO_DISPLAY_UNITS" cfg)
        (exported "VFIO_DISPLAY_TIMEOUT" cfg)
      ];
    expected = [
      [ "'display-manager.service ollama.service'" ]
      [ "20" ]
    ];
  };

  testNvidiaPersistencedIsStopped = {
    expr =
      (host [
        nvidiaOption
        {
          hardware.nvidia.nvidiaPersistenced = true;
          virtualisation.vms.win11 = win11;
          modules.vfio = {
            enable = true;
            singleGpu.enable = true;
          };
        }
      ]).modules.vfio.singleGpu.stopUnits;
    expected = [
      "display-manager.service"
      "nvidia-persistenced.service"
    ];
  };

  testBadUnitNameIsRejected = {
    expr =
      (builtins.tryEval (
        builtins.deepSeq
          (host [
            {
              virtualisation.vms.win11 = win11;
              modules.vfio.singleGpu.stopUnits = [ "display manager" ];
            }
          ]).modules.vfio.singleGpu.stopUnits
          true
      )).success;
    expected = false;
  };

  testLookingGlassOnASingleGpuHostWarns = {
    expr =
      lib.filter (lib.hasPrefix "modules.vfio.singleGpu")
        (host [
          {
            virtualisation.vms.win11 = f.win11;
            modules.vfio = {
              enable = true;
              singleGpu.enable = true;
            };
          }
        ]).warnings;
    expected = [
      "modules.vfio.singleGpu.enable = true, and virtualisation.vms.win11 has lookingGlass.enable = true: the host has no display while a VM holds its only GPU, so no Looking Glass client can show the VM; set lookingGlass.enable = false there"
    ];
  };

  # --- assertions ----------------------------------------------------------------------

  testSingleGpuWithPrimaryModeFails = {
    expr = failedMessages (host [
      {
        virtualisation.vms.win11 = win11;
        modules.vfio = {
          enable = true;
          singleGpu.enable = true;
          primaryMode = true;
        };
      }
    ]);
    expected = [
      "modules.vfio.singleGpu.enable = true needs primaryMode = false, but primaryMode = true is set: binding the host's only GPU to vfio-pci at boot leaves the host without a display, and nothing to give back when the VM stops; remove primaryMode = true (singleGpu binds the GPU only while the VM runs)"
    ];
  };

  testSingleGpuWithoutVfioFails = {
    expr = failedMessages (host [
      {
        virtualisation.vms.win11 = win11;
        modules.vfio.singleGpu.enable = true;
      }
    ]);
    expected = [
      "modules.vfio.singleGpu.enable = true does nothing while modules.vfio.enable = false: the hook that lends the GPU to the VM comes with GPU isolation; set modules.vfio.enable = true"
    ];
  };

  testStaticIsolationOfTheBootGpuFails = {
    expr = failedMessages (host [
      {
        virtualisation.vms.win11 = win11;
        modules.vfio = {
          enable = true;
          bootGpu = "0000:01:00.0";
        };
      }
    ]);
    expected = [ bootGpuMessage ];
  };

  # The failed assertion stops the build, as on NixOS.
  testStaticIsolationOfTheBootGpuFailsTheBuild = {
    expr =
      (builtins.tryEval
        (host [
          {
            virtualisation.vms.win11 = win11;
            modules.vfio = {
              enable = true;
              bootGpu = "0000:01:00.0";
            };
          }
        ]).system.build.toplevel.outPath
      ).success;
    expected = false;
  };

  # An address added by hand goes with every GPU VM.
  testBootGpuAddedByHandNamesEveryGpuVm = {
    expr = failedMessages (host [
      {
        virtualisation.vms.win11 = win11;
        virtualisation.vms.turing = {
          gpu = f.gpu2080ti;
          lookingGlass.enable = false;
        };
        modules.vfio = {
          enable = true;
          scream.enable = false;
          bootGpu = "0000:05:00.0";
          gpuPciAddresses = [ "0000:05:00.0" ];
        };
      }
    ]);
    expected = [
      (
        "modules.vfio.bootGpu = \"0000:05:00.0\" is passed to virtualisation.vms.turing, virtualisation.vms.win11 with primaryMode = true: vfio-pci would claim the boot GPU at boot, and the host's console and display manager start on it. "
        + "With one GPU, set modules.vfio.singleGpu.enable = true (the GPU is handed to the VM only while it runs). "
        + "With two, make the host's GPU the primary one in the firmware setup and run `vfio-helper discover --nix` again, "
        + "or set modules.vfio.primaryMode = false"
      )
    ];
  };

  # The boot GPU is the host's (an iGPU), the VM takes the other one.
  testPassingAnotherGpuStaticallyIsFine = {
    expr = failedMessages (host [
      {
        virtualisation.vms.win11 = win11;
        modules.vfio = {
          enable = true;
          bootGpu = "0000:00:02.0";
        };
      }
    ]);
    expected = [ ];
  };

  testBootGpuByHookIsFine = {
    expr = map failedMessages [
      (host [
        {
          virtualisation.vms.win11 = win11;
          modules.vfio = {
            enable = true;
            primaryMode = false;
            bootGpu = "0000:01:00.0";
          };
        }
      ])
      single
    ];
    expected = [
      [ ]
      [ ]
    ];
  };

  testUnknownBootGpuIsNotChecked = {
    expr = failedMessages (host [
      {
        virtualisation.vms.win11 = win11;
        modules.vfio.enable = true;
      }
    ]);
    expected = [ ];
  };

  testBadBootGpuIsRejected = {
    expr =
      (builtins.tryEval (
        builtins.deepSeq (host [ { modules.vfio.bootGpu = "01:00.0"; } ]).modules.vfio.bootGpu true
      )).success;
    expected = false;
  };

  # --- with dual boot ------------------------------------------------------------------------

  testDualBootHostEntryKeepsTheGpu = {
    expr =
      let
        cfg = host [
          { virtualisation.vms.win11 = win11; }
          f.guideVfio
          {
            modules.vfio.singleGpu.enable = true;
            modules.vfio.bootGpu = "0000:01:00.0";
          }
        ];
        vfio = cfg.specialisation.vfio.configuration;
      in
      {
        hostFailed = failedMessages cfg;
        hostHooks = f.vfioHooks cfg;
        vfioFailed = failedMessages vfio;
        vfioHooks = f.vfioHooks vfio;
        vfioIds = lib.filter (lib.hasPrefix "vfio-pci.ids") vfio.boot.kernelParams;
      };
    expected = {
      hostFailed = [ ];
      hostHooks = [ ];
      vfioFailed = [ ];
      vfioHooks = [ "vfio-single-gpu" ];
      vfioIds = [ ];
    };
  };

  # Without singleGpu the VFIO entry of the guide refuses the boot GPU.
  testDualBootVfioEntryRefusesTheBootGpu = {
    expr =
      failedMessages
        (host [
          { virtualisation.vms.win11 = win11; }
          f.guideVfio
          { modules.vfio.bootGpu = "0000:01:00.0"; }
        ]).specialisation.vfio.configuration;
    expected = [ bootGpuMessage ];
  };
}
