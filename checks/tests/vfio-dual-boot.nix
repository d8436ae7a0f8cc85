# Tests of modules.vfio.dualBoot (modules/vfio/dual-boot.nix): the guide's
# steps 3 and 4, in lib.runTests format.
{ lib, evalHost }:
let
  f = import ./vfio-fixtures.nix { inherit lib evalHost; };
  inherit (f) host failedMessages;

  # The guide as written: default entry = host GPU, specialisation = VFIO.
  guide = host [
    f.intel
    { virtualisation.vms.win11 = f.win11; }
    f.guideVfio
  ];
  guideVfio = guide.specialisation.vfio.configuration;

  # defaultMode = "vfio": default entry isolated, specialisation = host GPU.
  vfioDefault = host [
    f.intel
    { virtualisation.vms.win11 = f.win11; }
    (lib.recursiveUpdate f.guideVfio { modules.vfio.dualBoot.defaultMode = "vfio"; })
  ];
  vfioDefaultHost = vfioDefault.specialisation.host.configuration;
in
{
  # --- defaultMode = "host" (the guide) ------------------------------------------

  testGuideEntries = {
    expr = {
      specialisations = lib.attrNames guide.specialisation;
      inherit (guide.specialisation.vfio) inheritParentConfig;
      defaultTags = guide.system.nixos.tags;
      vfioTags = guideVfio.system.nixos.tags;
      defaultEnable = guide.modules.vfio.enable;
      vfioEnable = guideVfio.modules.vfio.enable;
      nested = guideVfio.specialisation;
    };
    expected = {
      specialisations = [ "vfio" ];
      inheritParentConfig = true;
      defaultTags = [ "host" ];
      vfioTags = [ "vfio" ];
      defaultEnable = false;
      vfioEnable = true;
      nested = { };
    };
  };

  testGuideLabels = {
    expr = [
      guide.system.nixos.label
      guideVfio.system.nixos.label
    ];
    expected = [
      "host-25.11"
      "vfio-25.11"
    ];
  };

  testGuideHostEntryCarriesNoIsolation = {
    expr = f.isolationOf guide;
    expected = f.nothingIsolated;
  };

  testGuideVfioEntryIsolates = {
    expr = {
      params = guideVfio.boot.kernelParams;
      initrd = guideVfio.boot.initrd.kernelModules;
      blacklist = guideVfio.boot.blacklistedKernelModules;
      softdep = lib.hasInfix "softdep nvidia pre: vfio-pci\n" guideVfio.boot.extraModprobeConfig;
    };
    expected = {
      params = f.staticIntelParams;
      initrd = [
        "vfio_pci"
        "vfio"
        "vfio_iommu_type1"
      ];
      blacklist = [
        "nouveau"
        "nvidia"
        "nvidia_drm"
        "nvidia_modeset"
        "nvidia_uvm"
      ];
      softdep = true;
    };
  };

  testGuideVfioEntryLookingGlassAndScream = {
    expr = {
      shm = guideVfio.systemd.services ? looking-glass-shm;
      scream = guideVfio.systemd.user.services.scream.serviceConfig.ExecStart;
      firewall = guideVfio.networking.firewall.extraCommands;
      client = lib.elem "looking-glass-client" (map (p: p.name) guideVfio.environment.systemPackages);
    };
    expected = {
      shm = true;
      scream = "${(import ../stub-pkgs.nix { inherit lib; }).scream}/bin/scream -o pulse -i virbr0";
      # The MAC vfio-helper derives for win11 (rust/tests/golden/win11.xml).
      firewall = "iptables -w -A nixos-fw -i virbr0 -p udp --dport 4010 -m mac --mac-source 52:54:00:24:76:83 -j nixos-fw-accept\n";
      client = true;
    };
  };

  testGuideNoFailedAssertions = {
    expr = {
      default = failedMessages guide;
      vfio = failedMessages guideVfio;
    };
    expected = {
      default = [ ];
      vfio = [ ];
    };
  };

  # --- defaultMode = "vfio" --------------------------------------------------------

  testVfioDefaultEntries = {
    expr = {
      specialisations = lib.attrNames vfioDefault.specialisation;
      defaultTags = vfioDefault.system.nixos.tags;
      hostTags = vfioDefaultHost.system.nixos.tags;
      defaultParams = vfioDefault.boot.kernelParams;
      defaultEnable = vfioDefault.modules.vfio.enable;
      hostEnable = vfioDefaultHost.modules.vfio.enable;
    };
    expected = {
      specialisations = [ "host" ];
      defaultTags = [ "vfio" ];
      hostTags = [ "host" ];
      defaultParams = f.staticIntelParams;
      defaultEnable = true;
      hostEnable = false;
    };
  };

  testVfioDefaultHostEntryCarriesNoIsolation = {
    expr = f.isolationOf vfioDefaultHost;
    expected = f.nothingIsolated;
  };

  # --- labels, revision ---------------------------------------------------------------

  testCustomLabels = {
    expr =
      let
        cfg = host [
          { virtualisation.vms.win11 = f.win11; }
          f.guideVfio
          {
            modules.vfio.dualBoot.hostLabel = "nvidia";
            modules.vfio.dualBoot.vfioLabel = "with-vfio";
          }
        ];
      in
      {
        specialisations = lib.attrNames cfg.specialisation;
        tags = cfg.system.nixos.tags;
        specTags = cfg.specialisation.with-vfio.configuration.system.nixos.tags;
      };
    expected = {
      specialisations = [ "with-vfio" ];
      tags = [ "nvidia" ];
      specTags = [ "with-vfio" ];
    };
  };

  testConfigurationRevision = {
    expr =
      let
        cfg = host [
          { virtualisation.vms.win11 = f.win11; }
          f.guideVfio
          { modules.vfio.dualBoot.configurationRevision = "0123456789abcdef0123456789abcdef01234567"; }
        ];
      in
      [
        cfg.system.configurationRevision
        cfg.specialisation.vfio.configuration.system.configurationRevision
        guide.system.configurationRevision
      ];
    expected = [
      "0123456789abcdef0123456789abcdef01234567"
      "0123456789abcdef0123456789abcdef01234567"
      null
    ];
  };

  testDynamicModeInVfioEntry = {
    expr =
      let
        cfg = host [
          { virtualisation.vms.win11 = f.win11; }
          f.guideVfio
          { modules.vfio.primaryMode = false; }
        ];
      in
      {
        host = f.vfioHooks cfg;
        vfio = f.vfioHooks cfg.specialisation.vfio.configuration;
      };
    expected = {
      host = [ ];
      vfio = [ "vfio-gpu-detach" ];
    };
  };

  # vendor-reset (an RX 580 with the AMD reset bug) only where the card is
  # passed: the host entry keeps it on amdgpu without the out-of-tree module.
  testVendorResetOnlyInTheVfioEntry = {
    expr =
      let
        cfg = host [
          (f.kernelWithVendorReset "6.12.0")
          {
            virtualisation.vms.rx580 = {
              gpu = f.gpuRx580;
              lookingGlass.enable = false;
            };
          }
          f.guideVfio
        ];
        pick = c: {
          packages = c.boot.extraModulePackages;
          modules = lib.filter (m: m == "vendor-reset") c.boot.kernelModules;
          warned = lib.any (lib.hasInfix "AMD reset bug") c.warnings;
        };
      in
      {
        host = pick cfg;
        vfio = pick cfg.specialisation.vfio.configuration;
      };
    expected = {
      host = {
        packages = [ ];
        modules = [ ];
        warned = false;
      };
      vfio = {
        packages = [ f.vendorResetPackage ];
        modules = [ "vendor-reset" ];
        warned = true;
      };
    };
  };

  testNoDualBootNoSpecialisation = {
    expr =
      let
        cfg = host [
          { virtualisation.vms.win11 = f.win11; }
          { modules.vfio.enable = true; }
        ];
      in
      {
        inherit (cfg) specialisation;
        inherit (cfg.system.nixos) tags;
      };
    expected = {
      specialisation = { };
      tags = [ ];
    };
  };

  testEnableSetByHandFails = {
    expr = failedMessages (host [
      { virtualisation.vms.win11 = f.win11; }
      f.guideVfio
      { modules.vfio.enable = true; }
    ]);
    expected = [
      "modules.vfio.enable = true is set in the host boot entry while modules.vfio.dualBoot.enable = true; with dual boot the module turns isolation on in the VFIO entry and off in the host entry by itself: remove `modules.vfio.enable` from your configuration"
    ];
  };
}
