# Tests of what modules.vfio does for a passed GPU when its VM starts and
# stops: dynamic binding (primaryMode = false, the vfio-gpu-detach hook of
# modules/vfio/isolation.nix) and the AMD reset bug
# (modules/vfio/reset-bug.nix), in lib.runTests format. Binding at boot:
# ./vfio-isolation.nix.
{ lib, evalHost }:
let
  f = import ./vfio-fixtures.nix { inherit lib evalHost; };
  inherit (f) host staticIntel dynamic kvmOptions;

  hookOf = cfg: cfg.virtualisation.libvirtd.hooks.qemu.vfio-gpu-detach;

  # --- the AMD reset bug ---

  # A VM `name` passing `gpu`, without Looking Glass.
  gpuVm = name: gpu: {
    virtualisation.vms.${name} = {
      inherit gpu;
      lookingGlass.enable = false;
    };
  };

  # An AMD host with modules.vfio and `vm`, with `modules` added.
  amdHost =
    vm: modules:
    host (
      [ f.amd ]
      ++ modules
      ++ [
        vm
        { modules.vfio.enable = true; }
      ]
    );

  rx580 = gpuVm "rx580" f.gpuRx580;

  # An RX 580 (Polaris 10, in vendor-reset's list) passed statically, on a
  # 6.12 kernel whose package set has vendor-reset.
  polaris = amdHost rx580 [ (f.kernelWithVendorReset "6.12.0") ];

  polarisRule = ''
    ACTION=="add", SUBSYSTEM=="pci", ATTR{vendor}=="0x1002", ATTR{device}=="0x67df", RUN+="${f.stubPkgs.bash}/bin/bash -c '${f.stubPkgs.kmod}/bin/modprobe vendor-reset && echo device_specific > /sys$env{DEVPATH}/reset_method'"
  '';

  resetWarnings = cfg: lib.filter (lib.hasInfix "AMD reset bug") cfg.warnings;
in
{
  # --- dynamic (primaryMode = false) -------------------------------------------

  testDynamicBindsNothingAtBoot = {
    expr = {
      inherit (dynamic.boot) kernelParams kernelModules blacklistedKernelModules extraModprobeConfig;
      initrd = dynamic.boot.initrd.kernelModules;
    };
    expected = {
      kernelParams = [
        "intel_iommu=on"
        "iommu=pt"
        "default_hugepagesz=1G"
        "hugepagesz=1G"
        "hugepages=32"
      ];
      kernelModules = [
        "vfio_pci"
        "vfio"
        "vfio_iommu_type1"
      ];
      blacklistedKernelModules = [ ];
      extraModprobeConfig = kvmOptions;
      initrd = [ ];
    };
  };

  testDynamicHookIsInstalled = {
    expr = f.vfioHooks dynamic;
    expected = [ "vfio-gpu-detach" ];
  };

  testDynamicHookDeviceMap = {
    expr = lib.hasInfix "export VFIO_GPU_DEVICES='win11 0000:01:00.0 0000:01:00.1'" (hookOf dynamic).text;
    expected = true;
  };

  # flock (util-linux): the hook changes its per-device user counts under a
  # lock.
  testDynamicHookHasFlock = {
    expr = lib.hasInfix "${(import ../stub-pkgs.nix { inherit lib; }).util-linux}/bin" (
      lib.head (lib.filter (lib.hasPrefix "export PATH=") (lib.splitString "\n" (hookOf dynamic).text))
    );
    expected = true;
  };

  testDynamicHookRunsTheScript = {
    expr = builtins.match ''.*exec [^ ]*/bin/bash ([^ ]*) "\$@".*'' (hookOf dynamic).text != null
      && lib.hasSuffix "-gpu-detach.sh" (lib.head (builtins.match ''.*exec [^ ]*/bin/bash ([^ ]*) "\$@".*'' (hookOf dynamic).text));
    expected = true;
  };

  # The hook scripts are separate store files: the wrapper names the library
  # they share (modules/hooks/gpu-hook-lib.sh), or they would not start.
  testDynamicHookNamesTheSharedLibrary = {
    expr = lib.hasSuffix "-gpu-hook-lib.sh" (
      lib.head (builtins.match ".*export VFIO_GPU_HOOK_LIB=([^\n]*).*" (hookOf dynamic).text)
    );
    expected = true;
  };

  testDynamicHookTwoVmsAndExtraAddress = {
    expr =
      let
        cfg = host [
          {
            virtualisation.vms.win11 = f.win11;
            virtualisation.vms.turing = {
              gpu = f.gpu2080ti;
              lookingGlass.enable = false;
            };
            modules.vfio = {
              enable = true;
              primaryMode = false;
              scream.enable = false;
              gpuPciAddresses = [ "0000:05:00.0" ];
            };
          }
        ];
      in
      builtins.match ".*VFIO_GPU_DEVICES='([^']*)'.*" (hookOf cfg).text;
    expected = [
      "turing 0000:02:00.0 0000:02:00.1 0000:02:00.2 0000:02:00.3 0000:05:00.0\nwin11 0000:01:00.0 0000:01:00.1 0000:05:00.0"
    ];
  };

  # --- the AMD reset bug (modules/vfio/reset-bug.nix) ---------------------------------

  testResetBugCardLoadsVendorReset = {
    expr = {
      inherit (polaris.modules.vfio.vendorReset) enable;
      packages = polaris.boot.extraModulePackages;
      modules = lib.filter (m: m == "vendor-reset") polaris.boot.kernelModules;
      udev = polaris.services.udev.extraRules;
    };
    expected = {
      enable = true;
      packages = [ f.vendorResetPackage ];
      modules = [ "vendor-reset" ];
      udev = polarisRule;
    };
  };

  testResetBugCardIsNamedInAWarning = {
    expr = resetWarnings polaris;
    expected = [
      (
        "modules.vfio: virtualisation.vms.rx580 passes 1002:67df, an AMD Polaris 10 (RX 470, 480, 570, 580, 590); these cards have the AMD reset bug (they cannot be reset when the VM stops, so the next start hangs until the host reboots). "
        + "vendor-reset is loaded (boot.extraModulePackages) and set as the cards' reset method. "
        + "Set modules.vfio.vendorReset.enable = true to acknowledge this and silence this warning."
      )
    ];
  };

  testAcknowledgedResetBugDoesNotWarn = {
    expr =
      let
        cfg = amdHost rx580 [
          (f.kernelWithVendorReset "6.12.0")
          { modules.vfio.vendorReset.enable = true; }
        ];
      in
      {
        warnings = resetWarnings cfg;
        packages = cfg.boot.extraModulePackages;
      };
    expected = {
      warnings = [ ];
      packages = [ f.vendorResetPackage ];
    };
  };

  testResetBugWithVendorResetOffWarns = {
    expr =
      let
        cfg = amdHost rx580 [ { modules.vfio.vendorReset.enable = false; } ];
      in
      {
        warnings = resetWarnings cfg;
        packages = cfg.boot.extraModulePackages;
        modules = lib.filter (m: m == "vendor-reset") cfg.boot.kernelModules;
      };
    expected = {
      warnings = [
        (
          "modules.vfio: virtualisation.vms.rx580 passes 1002:67df, an AMD Polaris 10 (RX 470, 480, 570, 580, 590); these cards have the AMD reset bug, and modules.vfio.vendorReset.enable = false: "
          + "a card cannot be reset when its VM stops, so the next start hangs until the host reboots. Remove vendorReset.enable = false to load vendor-reset."
        )
      ];
      packages = [ ];
      modules = [ ];
    };
  };

  # Before 5.15 the kernel tries the device-specific reset first by itself:
  # the module is loaded, no reset_method is written.
  testNoResetMethodRuleBefore515 = {
    expr =
      let
        cfg = amdHost rx580 [ (f.kernelWithVendorReset "5.10.200") ];
      in
      {
        udev = cfg.services.udev.extraRules;
        modules = lib.filter (m: m == "vendor-reset") cfg.boot.kernelModules;
      };
    expected = {
      udev = "";
      modules = [ "vendor-reset" ];
    };
  };

  # Navi 21 resets by itself; NVIDIA cards are not AMD's.
  testCardsWithoutTheResetBugGetNothing = {
    expr =
      map
        (cfg: {
          inherit (cfg.modules.vfio.vendorReset) enable;
          inherit (cfg.boot) extraModulePackages;
          warnings = resetWarnings cfg;
        })
        [
          (amdHost (gpuVm "rx6800" f.gpuRx6800) [ ])
          staticIntel
        ];
    expected = [
      {
        enable = false;
        extraModulePackages = [ ];
        warnings = [ ];
      }
      {
        enable = false;
        extraModulePackages = [ ];
        warnings = [ ];
      }
    ];
  };

  # A reset-bug ID added by hand (a card given to a VM by extraDevicesXml)
  # counts too, named by the option it came from.
  testResetBugIdAddedByHand = {
    expr =
      let
        cfg = host [
          f.intel
          (f.kernelWithVendorReset "6.12.0")
          f.win11Vfio
          { modules.vfio.gpuPciIds = [ "1002:687f" ]; }
        ];
      in
      {
        warnings = map (w: lib.head (lib.splitString ";" w)) (resetWarnings cfg);
        udev = lib.hasInfix ''ATTR{device}=="0x687f"'' cfg.services.udev.extraRules;
      };
    expected = {
      warnings = [
        "modules.vfio: modules.vfio.gpuPciIds passes 1002:687f, an AMD Vega 10 (Vega 56, Vega 64, Vega Frontier Edition)"
      ];
      udev = true;
    };
  };

  # Dynamic binding: the card goes back to amdgpu, which needs the reset too.
  testResetBugWithTheHook = {
    expr =
      let
        cfg = amdHost rx580 [
          (f.kernelWithVendorReset "6.12.0")
          { modules.vfio.primaryMode = false; }
        ];
      in
      {
        packages = cfg.boot.extraModulePackages;
        hooks = f.vfioHooks cfg;
      };
    expected = {
      packages = [ f.vendorResetPackage ];
      hooks = [ "vfio-gpu-detach" ];
    };
  };

  testNoVendorResetWithoutIsolation = {
    expr = f.isolationOf (host [
      (f.kernelWithVendorReset "6.12.0")
      rx580
    ]);
    expected = f.nothingIsolated;
  };

  # vendor-reset's src/device-db.h: 67 IDs in nine families.
  testVendorResetDeviceTable = {
    expr =
      let
        known = polaris.modules.vfio.vendorReset.knownDevices;
      in
      {
        count = lib.length (lib.attrNames known);
        families = lib.sort lib.lessThan (
          lib.unique (map (n: lib.head (lib.splitString " (" known.${n})) (lib.attrNames known))
        );
        samples = map (id: known.${id} or null) [
          "1002:67df"
          "1002:731f"
          "1002:66af"
          "1002:738c"
          "1002:73bf"
        ];
      };
    expected = {
      count = 67;
      families = [
        "AMD Arcturus"
        "AMD Navi 10"
        "AMD Navi 12"
        "AMD Navi 14"
        "AMD Polaris 10"
        "AMD Polaris 11"
        "AMD Polaris 12"
        "AMD Vega 10"
        "AMD Vega 20"
      ];
      samples = [
        "AMD Polaris 10 (RX 470, 480, 570, 580, 590)"
        "AMD Navi 10 (RX 5600 XT, 5700, 5700 XT)"
        "AMD Vega 20 (Radeon VII)"
        "AMD Arcturus (Instinct MI100)"
        null
      ];
    };
  };
}
