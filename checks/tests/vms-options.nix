# Tests of a VM's options in virtualisation.vms (modules/vms.nix): paths
# kept out of the store, the defaults and the cross-option assertions, in
# lib.runTests format. The example hosts: ./vms.nix.
{ lib, evalHost }:
let
  f = import ./vfio-fixtures.nix { inherit lib evalHost; };
  inherit (f) failedMessages vmsOf jsonOf oneVm;
in
{
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
    expected = f.tuningDefaults // {
      name = "x";
      type = "windows-gaming";
      memory = 8192;
      vcpus = 8;
      cpu = {
        cores = 4;
        threads = 2;
        pinning = f.defaultPinning;
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

  # Two VMs on the same kvmfr device, the host of the bad-input corpus: its
  # one failed assertion.
  testSharedKvmfrDeviceFails = {
    expr = failedMessages (evalHost ../bad-inputs/vm-shared-kvmfr.nix);
    expected = [
      "virtualisation.vms: /dev/kvmfr0 is used by a and b; give each VM its own lookingGlass.kvmfrIndex"
    ];
  };
}
