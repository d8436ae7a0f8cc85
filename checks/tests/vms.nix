# Tests of virtualisation.vms (modules/vms.nix), in lib.runTests format.
{ lib, evalHost }:
let
  example = evalHost ../../hosts/example;
  server = evalHost ../../hosts/server;
  twoVms = evalHost ../../hosts/two-vms;

  vmsOf = host: host.virtualisation.vmsInternal;
  jsonOf = host: name: builtins.fromJSON (vmsOf host).configJson.${name};

  # A host with one VM, given as the VM's options.
  oneVm = name: vm: evalHost { virtualisation.vms.${name} = vm; };

  failedMessages = cfg: map (a: a.message) (lib.filter (a: !a.assertion) cfg.assertions);

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
      pinning = {
        enable = true;
        startCpu = 4;
        prefer = "auto";
        numaNode = null;
      };
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

  # --- paths are never copied into the store ----------------------------------

  # The ISOs below do not exist: if Nix tried to copy them into the store,
  # evaluation would fail. The JSON must hold the plain paths.
  testIsoPathLiteralsAreNotCopied = {
    expr =
      let
        host = oneVm "w" {
          storage = {
            disk = /nonexistent-vfio-test/images/w.qcow2;
            windowsIso = /nonexistent-vfio-test/images/Win11.iso;
            virtioIso = /nonexistent-vfio-test/images/virtio-win.iso;
          };
          gpu.romFile = /nonexistent-vfio-test/vbios.rom;
        };
        json = (vmsOf host).configJson.w;
      in
      {
        inherit (builtins.fromJSON json) storage;
        rom = (builtins.fromJSON json).gpu.romFile;
        context = builtins.hasContext json;
        manifestContext = builtins.hasContext (builtins.toJSON (builtins.fromJSON (vmsOf host).manifestFile.text));
      };
    expected = {
      storage = {
        disk = "/nonexistent-vfio-test/images/w.qcow2";
        windowsIso = "/nonexistent-vfio-test/images/Win11.iso";
        virtioIso = "/nonexistent-vfio-test/images/virtio-win.iso";
        size = 128;
        io = "io_uring";
      };
      rom = "/nonexistent-vfio-test/vbios.rom";
      context = false;
      manifestContext = false;
    };
  };

  testEvdevPathLiteralsAreStrings = {
    expr =
      (jsonOf (oneVm "w" {
        evdev.keyboard = /dev/input/by-id/usb-kbd-event-kbd;
        evdev.mouse = "/dev/input/by-id/usb-mouse-event-mouse";
        evdev.grabToggle = "scrolllock";
      }) "w").evdev;
    expected = {
      keyboard = "/dev/input/by-id/usb-kbd-event-kbd";
      mouse = "/dev/input/by-id/usb-mouse-event-mouse";
      grabToggle = "scrolllock";
    };
  };

  # --- defaults ------------------------------------------------------------------

  testMinimalVmDefaults = {
    expr = jsonOf (oneVm "x" { }) "x";
    expected = {
      name = "x";
      type = "windows-gaming";
      memory = 8192;
      vcpus = 8;
      cpu = {
        cores = 4;
        threads = 2;
        pinning = {
          enable = true;
          startCpu = 4;
          prefer = "auto";
          numaNode = null;
        };
        isolate = true;
        vendor = "amd";
        evmcs = false;
        avic = null;
        maxPhysAddr = null;
      };
      gpu = {
        enable = false;
        pciId = null;
        audioPciId = null;
        address = null;
        audioAddress = null;
        extraPciIds = [ ];
        extraAddresses = [ ];
        romFile = null;
        romBar = true;
      };
      hugepages = {
        enable = false;
        count = 32;
        preallocThreads = null;
      };
      storage = {
        disk = "/var/lib/libvirt/images/x.qcow2";
        size = 128;
        windowsIso = null;
        virtioIso = null;
        io = "io_uring";
      };
      network = {
        type = "nat";
        bridge = "br0";
        interface = "";
        macvtapMode = "bridge";
        mac = null;
      };
      graphics = "spice";
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
      lookingGlass = {
        enable = false;
        size = 128;
        backend = "shm";
        kvmfrIndex = 0;
      };
      autostart = false;
      secureBoot = true;
      secureBootKeys = "microsoft";
      tpm.enable = true;
      uuid = null;
      evdev = {
        keyboard = null;
        mouse = null;
        grabToggle = "ctrl-ctrl";
      };
      audio = {
        backend = "spice";
        pipewireUser = null;
        pipewireRuntimeDir = null;
      };
      usb = {
        devices = [ ];
        controllers = [ ];
      };
      pci.devices = [ ];
      extraDevicesXml = "";
      extraCpuXml = "";
      extraFeaturesXml = "";
      extraOsXml = "";
      qemuArgs = [ ];
    };
  };

  testLinuxServerTemplateDefaults = {
    expr =
      let
        j = jsonOf (oneVm "s" { type = "linux-server"; }) "s";
      in
      [
        j.secureBoot
        j.tpm.enable
        j.cpu.isolate
      ];
    expected = [
      false
      false
      false
    ];
  };

  testTemplateDefaultsCanBeOverridden = {
    expr =
      let
        j = jsonOf (oneVm "s" {
          type = "linux-server";
          secureBoot = true;
          tpm.enable = true;
          cpu.isolate = true;
          gpu = {
            enable = true;
            pciId = "10de:2782";
            address = "0000:01:00.0";
          };
          lookingGlass.enable = false;
        }) "s";
      in
      [
        j.secureBoot
        j.tpm.enable
        j.cpu.isolate
        j.lookingGlass.enable
      ];
    expected = [
      true
      true
      true
      false
    ];
  };

  testUuidAndMacArePassedThrough = {
    expr =
      let
        j = jsonOf (oneVm "w" {
          uuid = "4f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42";
          network.mac = "52:54:00:12:34:56";
        }) "w";
      in
      [
        j.uuid
        j.network.mac
      ];
    expected = [
      "4f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42"
      "52:54:00:12:34:56"
    ];
  };

  testEscapeHatchesArePassedThrough = {
    expr =
      let
        j = jsonOf (oneVm "w" {
          extraDevicesXml = "<watchdog model='itco' action='reset'/>";
          qemuArgs = [
            "-fw_cfg"
            "opt/ovmf/X-PciMmio64Mb,string=65536"
          ];
        }) "w";
      in
      [
        j.extraDevicesXml
        j.qemuArgs
      ];
    expected = [
      "<watchdog model='itco' action='reset'/>"
      [
        "-fw_cfg"
        "opt/ovmf/X-PciMmio64Mb,string=65536"
      ]
    ];
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

  # --- cross-option assertions (messages name the option and the fix) -----------

  testVcpusMismatchMessage = {
    expr = failedMessages (oneVm "win11" {
      vcpus = 12;
      cpu.cores = 4;
    });
    expected = [
      "virtualisation.vms.win11: vcpus = 12 but cpu.cores * cpu.threads = 4 * 2 = 8; set vcpus = 8 or change cpu.cores/cpu.threads"
    ];
  };

  testHugepagesMismatchMessage = {
    expr = failedMessages (oneVm "win11" {
      memory = 16384;
      hugepages.enable = true;
    });
    expected = [
      "virtualisation.vms.win11: hugepages.count = 32 (32 GiB) but memory = 16384 MiB needs 16; set hugepages.count = 16 or memory = 32768"
    ];
  };

  testHugepagesOffIgnoresCount = {
    expr = failedMessages (oneVm "win11" { memory = 16384; });
    expected = [ ];
  };

  testLookingGlassSizeSuggestsNextPowerOfTwo = {
    expr = failedMessages (oneVm "w" { lookingGlass.size = 100; });
    expected = [
      "virtualisation.vms.w: lookingGlass.size = 100 is not a power of two; set lookingGlass.size = 128 (32 for 1080p, 64 for 1440p, 128 for 4K)"
    ];
  };

  testPowerOfTwoSizesPass = {
    expr = map (size: failedMessages (oneVm "w" { lookingGlass.size = size; })) [
      1
      32
      64
      512
    ];
    expected = [
      [ ]
      [ ]
      [ ]
      [ ]
    ];
  };

  testSharedGpuAcrossVmsFails = {
    expr = failedMessages (evalHost {
      virtualisation.vms.a.gpu = {
        enable = true;
        pciId = "10de:2782";
        address = "0000:01:00.0";
      };
      virtualisation.vms.b.gpu = {
        enable = true;
        pciId = "10de:2782";
        address = "0000:01:00.0";
      };
    });
    expected = [
      "virtualisation.vms: PCI device 0000:01:00.0 is passed through to a and b; a device can belong to one VM only: remove it from all but one of them"
    ];
  };

  testSharedKvmfrDeviceFails = {
    expr = failedMessages (evalHost {
      virtualisation.vms.a.lookingGlass = {
        enable = true;
        backend = "kvmfr";
      };
      virtualisation.vms.b.lookingGlass = {
        enable = true;
        backend = "kvmfr";
      };
    });
    expected = [
      "virtualisation.vms: /dev/kvmfr0 is used by a and b; give each VM its own lookingGlass.kvmfrIndex"
    ];
  };
}
