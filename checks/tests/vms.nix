# Tests of virtualisation.vms (modules/vms.nix) on the example hosts of
# hosts/: the guide's example and what a host gets from its VMs, in
# lib.runTests format. A VM's options on their own: ./vms-options.nix.
{ lib, evalHost }:
let
  f = import ./vfio-fixtures.nix { inherit lib evalHost; };
  inherit (f) failedMessages vmsOf jsonOf oneVm;

  example = evalHost ../../hosts/example;
  server = evalHost ../../hosts/server;
  twoVms = evalHost ../../hosts/two-vms;

  # Declares modules.vfio.hostTopology when the vfio module is not there to do it.
  topologyOption = {
    imports = lib.optional (!builtins.pathExists ../../modules/vfio.nix) {
      options.modules.vfio.hostTopology = lib.mkOption {
        type = lib.types.nullOr lib.types.attrs;
        default = null;
      };
    };
  };
  topology = {
    vendor = "amd";
    cpus = [
      {
        id = 0;
        core = 0;
        siblings = [
          0
          1
        ];
      }
    ];
  };
in
{
  # --- the guide's example ---------------------------------------------------

  testExampleOptionsAsWritten = {
    expr = {
      inherit (example.virtualisation.vms.win11)
        type
        memory
        vcpus
        ;
      inherit (example.virtualisation.vms.win11.cpu) cores threads pinning;
      inherit (example.virtualisation.vms.win11.gpu) pciId audioPciId address;
      disk = example.virtualisation.vms.win11.storage.disk;
      lg = example.virtualisation.vms.win11.lookingGlass.size;
    };
    expected = {
      type = "windows-gaming";
      memory = 32768;
      vcpus = 12;
      cores = 6;
      threads = 2;
      # The guide writes the default pinning (enable, startCpu = 4).
      pinning = f.defaultPinning;
      pciId = "10de:2782";
      audioPciId = "10de:22bc";
      address = "0000:01:00.0";
      disk = "/var/lib/libvirt/images/win11.qcow2";
      lg = 128;
    };
  };

  testExampleAssertionsHold = {
    expr = failedMessages example;
    expected = [ ];
  };

  testExampleTemplateDefaults = {
    expr = {
      inherit (jsonOf example "win11") secureBoot tpm name;
      isolate = (jsonOf example "win11").cpu.isolate;
      lookingGlass = (jsonOf example "win11").lookingGlass.enable;
    };
    expected = {
      secureBoot = true;
      tpm.enable = true;
      name = "win11";
      isolate = true;
      lookingGlass = true;
    };
  };

  testExampleEnablesLibvirt = {
    expr = {
      inherit (example.virtualisation.libvirtd) enable onShutdown onBoot;
      swtpm = example.virtualisation.libvirtd.qemu.swtpm.enable;
    };
    expected = {
      enable = true;
      onShutdown = "shutdown";
      onBoot = "ignore";
      swtpm = true;
    };
  };

  testExampleKeepsQemuConfDefault = {
    expr = lib.hasInfix "namespaces = []" example.virtualisation.libvirtd.qemu.verbatimConfig;
    expected = true;
  };

  testSyncServiceRunsHelperOnManifest = {
    expr =
      let
        s = example.systemd.services.vfio-vms-sync;
      in
      {
        inherit (s) after requires wantedBy;
        type = s.serviceConfig.Type;
        remain = s.serviceConfig.RemainAfterExit;
        exec = s.serviceConfig.ExecStart;
        triggers = map toString s.restartTriggers;
        # NixOS appends its default PATH entries after the service's own.
        path = lib.take 2 (map (p: p.name) s.path);
      };
    expected = {
      after = [
        "libvirtd.service"
        "vfio-libvirtd-apply.service"
        "systemd-tmpfiles-resetup.service"
      ];
      requires = [ "libvirtd.service" ];
      wantedBy = [ "multi-user.target" ];
      type = "oneshot";
      remain = true;
      exec = "${example.virtualisation.vfioHelper.package}/bin/vfio-helper sync --manifest ${(vmsOf example).manifestFile}";
      triggers = [ "${(vmsOf example).manifestFile}" ];
      path = [
        "libvirt"
        "qemu"
      ];
    };
  };

  testDomainIsRenderedAndValidatedAtBuildTime = {
    expr =
      let
        d = (vmsOf example).domains.win11;
        script = d.buildScript;
      in
      {
        renders = lib.hasInfix "vfio-helper domain --config ${(vmsOf example).configFiles.win11}" script;
        validates = lib.hasInfix "virt-xml-validate $out domain" script;
        tools = map (p: p.name) d.env.nativeBuildInputs;
        noTopology = !(lib.hasInfix "--topology" script);
      };
    expected = {
      renders = true;
      validates = true;
      tools = [
        "vfio-helper"
        "libvirt"
        "libxml2"
      ];
      noTopology = true;
    };
  };

  testConfigFileHoldsTheVmJson = {
    expr = (vmsOf example).configFiles.win11.text;
    expected = (vmsOf example).configJson.win11;
  };

  testManifest = {
    expr = builtins.fromJSON (vmsOf example).manifestFile.text;
    expected = {
      version = 1;
      uri = "qemu:///system";
      networks = [ "default" ];
      domains = [
        {
          name = "win11";
          xml = toString (vmsOf example).domains.win11;
          autostart = false;
          disk = "/var/lib/libvirt/images/win11.qcow2";
          diskSizeGiB = 128;
        }
      ];
    };
  };

  testImageDirectoriesAreCreated = {
    expr =
      let
        dirs = host: lib.filter (lib.hasPrefix "d ") host.systemd.tmpfiles.rules;
      in
      {
        example = dirs example;
        twoVms = dirs twoVms;
        elsewhere = dirs (oneVm "w" { storage.disk = "/srv/vm/w.qcow2"; });
      };
    expected = {
      example = [ "d /var/lib/libvirt/images 0711 root root -" ];
      twoVms = [ "d /var/lib/libvirt/images 0711 root root -" ];
      elsewhere = [ ];
    };
  };

  # The evdev devices must be in qemu.conf's cgroup_device_acl (written by the
  # vfio module, together with libvirt's defaults).
  testEvdevDevicesAreInTheCgroupAcl = {
    expr =
      let
        qemuConf = twoVms.virtualisation.libvirtd.qemu.verbatimConfig;
      in
      map (dev: lib.hasInfix "\"${dev}\"" qemuConf) [
        "/dev/input/by-id/usb-Example_Keyboard-event-kbd"
        "/dev/input/by-id/usb-Example_Mouse-event-mouse"
        "/dev/kvm"
      ];
    expected =
      if builtins.pathExists ../../modules/vfio.nix then
        [
          true
          true
          true
        ]
      else
        [
          false
          false
          false
        ];
  };

  # Only a VM on NAT needs libvirt's default network.
  testNetworksListedOnlyForNat = {
    expr = map (h: (builtins.fromJSON (vmsOf h).manifestFile.text).networks) [
      server
      (oneVm "u" { network.type = "user"; })
    ];
    expected = [
      [ ]
      [ ]
    ];
  };

  testManifestInEtc = {
    expr = toString example.environment.etc."vfio/manifest.json".source;
    expected = toString (vmsOf example).manifestFile;
  };

  testHelperPackageInSystemPath = {
    expr = lib.elem "vfio-helper" (map (p: p.name) example.environment.systemPackages);
    expected = true;
  };

  # --- host integration ----------------------------------------------------------

  testNoVmsLeavesTheHostAlone = {
    expr =
      let
        h = evalHost { };
      in
      {
        libvirt = h.virtualisation.libvirtd.enable;
        sync = h.systemd.services ? vfio-vms-sync;
        helper = lib.elem "vfio-helper" (map (p: p.name or "") h.environment.systemPackages);
        failed = failedMessages h;
      };
    expected = {
      libvirt = false;
      sync = false;
      helper = false;
      failed = [ ];
    };
  };

  testServerHost = {
    expr = {
      failed = failedMessages server;
      swtpm = server.virtualisation.libvirtd.qemu.swtpm.enable;
      libvirt = server.virtualisation.libvirtd.enable;
      manifest = map (d: {
        inherit (d) name autostart diskSizeGiB;
      }) (vmsOf server).manifest.domains;
      net = (jsonOf server "srv").network.type;
      graphics = (jsonOf server "srv").graphics;
    };
    expected = {
      failed = [ ];
      swtpm = false;
      libvirt = true;
      manifest = [
        {
          name = "srv";
          autostart = true;
          diskSizeGiB = 64;
        }
      ];
      net = "bridge";
      graphics = "none";
    };
  };

  testTwoVmsHost = {
    expr = {
      failed = failedMessages twoVms;
      domains = map (d: {
        inherit (d) name disk;
      }) (vmsOf twoVms).manifest.domains;
      kvmfr = map (n: (jsonOf twoVms n).lookingGlass.kvmfrIndex) [
        "linux-desktop"
        "win11"
      ];
      swtpm = twoVms.virtualisation.libvirtd.qemu.swtpm.enable;
      distinctXml = (vmsOf twoVms).domains.win11.outPath != (vmsOf twoVms).domains.linux-desktop.outPath;
    };
    expected = {
      failed = [ ];
      domains = [
        {
          name = "linux-desktop";
          disk = "/dev/disk/by-id/nvme-Example_SSD_2TB";
        }
        {
          name = "win11";
          disk = "/var/lib/libvirt/images/win11.qcow2";
        }
      ];
      kvmfr = [
        1
        0
      ];
      swtpm = true;
      distinctXml = true;
    };
  };

  testHostTopologyIsHandedToTheHelper = {
    expr =
      let
        h = evalHost {
          imports = [ topologyOption ];
          modules.vfio.hostTopology = topology;
          virtualisation.vms.w = { };
        };
        script = (vmsOf h).domains.w.buildScript;
        file = (vmsOf h).topologyFile;
      in
      {
        arg = lib.hasInfix "--topology ${file}" script;
        content = builtins.fromJSON file.text;
      };
    expected = {
      arg = true;
      content = topology;
    };
  };

  testSpecialisationSeesTheVms = {
    expr =
      let
        h = evalHost {
          imports = [ ../../hosts/example/vm.nix ];
          specialisation.other.configuration.system.nixos.tags = [ "other" ];
        };
        s = h.specialisation.other.configuration;
      in
      {
        memory = s.virtualisation.vms.win11.memory;
        tags = s.system.nixos.tags;
        nested = s.specialisation;
        parentTags = h.system.nixos.tags;
      };
    expected = {
      memory = 32768;
      tags = [ "other" ];
      nested = { };
      parentTags = [ ];
    };
  };

  testMissingHelperPackageIsAClearError = {
    expr =
      (builtins.tryEval (
        (import ../eval-host.nix {
          inherit lib;
          host = ../../hosts/example;
          pkgs = removeAttrs (import ../stub-pkgs.nix { inherit lib; }) [ "vfio-helper" ];
        }).virtualisation.vfioHelper.package.outPath
      )).success;
    expected = false;
  };
}
