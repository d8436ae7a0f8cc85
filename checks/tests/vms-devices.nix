# Tests of the devices of virtualisation.vms besides the GPU: audio.*,
# usb.* and pci.devices (modules/vms/options.nix, modules/vms/assertions.nix,
# modules/vfio/derive.nix), in lib.runTests format.
{ lib, evalHost }:
let
  f = import ./vfio-fixtures.nix { inherit lib evalHost; };
  inherit (f) host failedMessages oneVm jsonOf;

  # Whether the VM's JSON evaluates (option types are checked when it is).
  evaluates = vm: (builtins.tryEval (builtins.deepSeq (jsonOf (oneVm "w" vm) "w") true)).success;

  alice = {
    isNormalUser = true;
    uid = 1000;
  };

  # A VM playing into alice's PipeWire session, with `extra` host settings.
  pipewireHost =
    vm: extra:
    evalHost (
      lib.recursiveUpdate {
        virtualisation.vms.w = lib.recursiveUpdate {
          audio = {
            backend = "pipewire";
            pipewireUser = "alice";
          };
        } vm;
        users.users.alice = alice;
      } extra
    );

  nvme = {
    address = "0000:04:00.0";
    pciId = "144d:a80a";
  };

  # The guide's VM with an NVMe drive, a NIC (no ID) and a USB controller.
  withDevices = f.win11 // {
    pci.devices = [
      nvme
      "0000:05:00.0"
    ];
    usb.controllers = [ "0000:0a:00.3" ];
  };

  # What modules.vfio binds of the guide's GPU and the NVMe drive.
  gpuAndNvmeIds = [
    "10de:2782"
    "10de:22bc"
    "144d:a80a"
  ];
  gpuAndNvmeAddresses = [
    "0000:01:00.0"
    "0000:01:00.1"
    "0000:04:00.0"
  ];

  hookDevices =
    cfg: builtins.match ".*VFIO_GPU_DEVICES='([^']*)'.*" cfg.virtualisation.libvirtd.hooks.qemu.vfio-gpu-detach.text;
in
{
  # --- audio -------------------------------------------------------------------

  testAudioDefaultsFollowGraphics = {
    expr = map (g: (jsonOf (oneVm "w" { graphics = g; }) "w").audio) [
      "spice"
      "vnc"
      "none"
    ];
    expected = [
      {
        backend = "spice";
        pipewireUser = null;
        pipewireRuntimeDir = null;
      }
      {
        backend = "none";
        pipewireUser = null;
        pipewireRuntimeDir = null;
      }
      {
        backend = "none";
        pipewireUser = null;
        pipewireRuntimeDir = null;
      }
    ];
  };

  testGuideExampleGetsSpiceSound = {
    expr = (jsonOf (evalHost ../../hosts/example) "win11").audio.backend;
    expected = "spice";
  };

  testPipewireRuntimeDirComesFromTheUid = {
    expr = (jsonOf (pipewireHost { } { }) "w").audio;
    expected = {
      backend = "pipewire";
      pipewireUser = "alice";
      pipewireRuntimeDir = "/run/user/1000";
    };
  };

  testPipewireHostAssertionsHold = {
    expr = failedMessages (pipewireHost { } { });
    expected = [ ];
  };

  testPipewireNeedsAUser = {
    expr = failedMessages (oneVm "w" { audio.backend = "pipewire"; });
    expected = [
      "virtualisation.vms.w: audio.backend = \"pipewire\" needs audio.pipewireUser, the user whose PipeWire session plays the guest's sound (e.g. audio.pipewireUser = \"alice\")"
    ];
  };

  testPipewireNeedsAKnownUid = {
    expr = failedMessages (pipewireHost { } { users.users.alice.uid = null; });
    expected = [
      "virtualisation.vms.w: audio.backend = \"pipewire\" plays into the session of audio.pipewireUser = \"alice\", whose runtime directory /run/user/<uid> must be known at build time, but users.users.alice.uid is null (NixOS picks it at activation); set users.users.alice.uid = 1000 (the number `id -u alice` prints), or audio.pipewireRuntimeDir = \"/run/user/1000\""
    ];
  };

  testPipewireRuntimeDirCanBeGivenInstead = {
    expr =
      let
        cfg = pipewireHost { audio.pipewireRuntimeDir = "/run/user/1001"; } { users.users.alice.uid = null; };
      in
      {
        failed = failedMessages cfg;
        dir = (jsonOf cfg "w").audio.pipewireRuntimeDir;
      };
    expected = {
      failed = [ ];
      dir = "/run/user/1001";
    };
  };

  testPipewireUserMustExist = {
    expr = failedMessages (pipewireHost { audio.pipewireUser = "bob"; } { });
    expected = [
      "virtualisation.vms.w: audio.backend = \"pipewire\" plays into the session of audio.pipewireUser = \"bob\", whose runtime directory /run/user/<uid> must be known at build time, but users.users.bob.uid is null (NixOS picks it at activation); set users.users.bob.uid = 1000 (the number `id -u bob` prints), or audio.pipewireRuntimeDir = \"/run/user/1000\""
      "virtualisation.vms.w: audio.pipewireUser = \"bob\" is not a user of this system (NixOS creates an account only for users.users.<name> with isNormalUser or isSystemUser set); name your own user, or declare it, e.g. users.users.bob.isNormalUser = true"
    ];
  };

  testPipewireNeedsRootQemu = {
    expr = failedMessages (pipewireHost { } { virtualisation.libvirtd.qemu.runAsRoot = false; });
    expected = [
      "virtualisation.vms.w: audio.backend = \"pipewire\" needs QEMU to run as root (virtualisation.libvirtd.qemu.runAsRoot = true, NixOS's default): as qemu-libvirtd it cannot open the PipeWire socket in /run/user/1000, a directory only its owner may enter; set virtualisation.libvirtd.qemu.runAsRoot = true, or audio.backend = \"spice\""
    ];
  };

  testPipewireAutostartWarnsWithoutLinger = {
    expr = {
      noLinger = (pipewireHost { autostart = true; } { }).warnings;
      linger = (pipewireHost { autostart = true; } { users.users.alice.linger = true; }).warnings;
      noAutostart = (pipewireHost { } { }).warnings;
    };
    expected = {
      noLinger = [
        "virtualisation.vms.w: autostart = true starts the VM at boot, before alice logs in; without alice's PipeWire to connect to, QEMU refuses to start (\"Failed to connect to PipeWire instance\"). Set users.users.alice.linger = true (the user's session, PipeWire included, then runs from boot), or autostart = false"
      ];
      linger = [ ];
      noAutostart = [ ];
    };
  };

  testSpiceSoundNeedsSpiceGraphics = {
    expr = failedMessages (oneVm "w" {
      graphics = "vnc";
      audio.backend = "spice";
    });
    expected = [
      "virtualisation.vms.w: audio.backend = \"spice\" plays the guest's sound through the SPICE display, but graphics = \"vnc\"; set graphics = \"spice\", or audio.backend = \"pipewire\" (the host's PipeWire session) or \"none\""
    ];
  };

  testScreamBackendWarnsWithoutReceiver = {
    expr = {
      without = (oneVm "w" { audio.backend = "scream"; }).warnings;
      withReceiver =
        (evalHost {
          virtualisation.vms.w.audio.backend = "scream";
          modules.vfio.scream = {
            enable = true;
            users = [ "alice" ];
          };
          users.users.alice = alice;
        }).warnings;
    };
    expected = {
      without = [
        "virtualisation.vms.w: audio.backend = \"scream\" leaves the guest without an emulated sound card for its Scream driver, but modules.vfio.scream.enable = false, so nothing on the host plays what it sends; set modules.vfio.scream.enable = true (and modules.vfio.scream.users), or audio.backend = \"spice\" or \"pipewire\""
      ];
      withReceiver = [ ];
    };
  };

  testAudioTypesAreStrict = {
    expr = map evaluates [
      { audio.backend = "pulseaudio"; }
      { audio.pipewireUser = "a b"; }
      { audio.pipewireRuntimeDir = "run/user/1000"; }
      { audio.pipewireRuntimeDir = "/run/user/1000"; }
    ];
    expected = [
      false
      false
      false
      true
    ];
  };

  # --- usb.devices, usb.controllers, pci.devices -------------------------------

  testDeviceListsInTheJson = {
    expr =
      let
        j = jsonOf (oneVm "w" (
          withDevices
          // {
            usb = withDevices.usb // {
              devices = [
                {
                  vendorId = "046d";
                  productId = "c52b";
                }
              ];
            };
          }
        )) "w";
      in
      {
        inherit (j) pci usb;
      };
    expected = {
      pci.devices = [
        nvme
        {
          address = "0000:05:00.0";
          pciId = null;
        }
      ];
      usb = {
        devices = [
          {
            vendorId = "046d";
            productId = "c52b";
          }
        ];
        controllers = [
          {
            address = "0000:0a:00.3";
            pciId = null;
          }
        ];
      };
    };
  };

  testDeviceTypesAreStrict = {
    expr = map evaluates [
      {
        usb.devices = [
          {
            vendorId = "046D";
            productId = "c52b";
          }
        ];
      }
      { usb.devices = [ { vendorId = "046d"; } ]; }
      { usb.devices = [ "046d:c52b" ]; }
      { pci.devices = [ "03:00.0" ]; }
      {
        pci.devices = [
          {
            address = "0000:03:00.0";
            pciId = "144D:A80A";
          }
        ];
      }
      { usb.controllers = [ { address = "0000:0a:00.3"; } ]; }
    ];
    expected = [
      false
      false
      false
      false
      false
      true
    ];
  };

  testUsbDevicesCountAsInputWithoutGraphics = {
    expr =
      let
        headless = extra: failedMessages (oneVm "w" ({ graphics = "none"; } // extra));
      in
      {
        nothing = lib.length (headless { });
        device = headless {
          usb.devices = [
            {
              vendorId = "046d";
              productId = "c52b";
            }
          ];
        };
        controller = headless { usb.controllers = [ "0000:0a:00.3" ]; };
      };
    expected = {
      nothing = 1;
      device = [ ];
      controller = [ ];
    };
  };

  testUsbDeviceRules = {
    expr = {
      twice = failedMessages (oneVm "w" {
        usb.devices = [
          {
            vendorId = "046d";
            productId = "c52b";
          }
          {
            vendorId = "046d";
            productId = "c52b";
          }
        ];
      });
      vendorZero = failedMessages (oneVm "w" {
        usb.devices = [
          {
            vendorId = "0000";
            productId = "0001";
          }
        ];
      });
      tooMany = failedMessages (oneVm "w" {
        usb.devices = lib.genList (i: {
          vendorId = "046d";
          productId = lib.fixedWidthString 4 "0" (toString i);
        }) 16;
      });
    };
    expected = {
      twice = [
        "virtualisation.vms.w: usb.devices lists 046d:c52b more than once; libvirt hands a device to the guest once: remove the duplicate"
      ];
      vendorZero = [
        "virtualisation.vms.w: usb.devices has vendorId = \"0000\", which libvirt reads as \"no vendor\" (the device would silently never be passed); use the vendor ID `lsusb` prints before the colon, e.g. \"046d\""
      ];
      tooMany = [
        "virtualisation.vms.w: usb.devices lists 16 devices, but the VM's USB controller has 15 ports; pass at most 15, or pass a whole USB controller through (usb.controllers)"
      ];
    };
  };

  testPciDeviceListedTwice = {
    expr = {
      inVm = failedMessages (oneVm "w" {
        pci.devices = [ "0000:0a:00.3" ];
        usb.controllers = [ "0000:0a:00.3" ];
      });
      gpuFunction = failedMessages (oneVm "w" (f.win11 // { pci.devices = [ "0000:01:00.1" ]; }));
      acrossVms = failedMessages (evalHost {
        virtualisation.vms.a.pci.devices = [ nvme ];
        virtualisation.vms.b.usb.controllers = [ "0000:04:00.0" ];
      });
      tooMany = failedMessages (oneVm "w" {
        pci.devices = lib.genList (i: "0000:${lib.fixedWidthString 2 "0" (lib.toLower (lib.toHexString (i + 16)))}:00.0") 17;
      });
    };
    expected = {
      inVm = [
        "virtualisation.vms.w: PCI device 0000:0a:00.3 is listed more than once (in pci.devices and usb.controllers); list each device once"
      ];
      gpuFunction = [
        "virtualisation.vms.w: PCI device 0000:01:00.1 is listed more than once (in gpu.* and pci.devices); list each device once"
      ];
      acrossVms = [
        "virtualisation.vms: PCI device 0000:04:00.0 is passed through to a and b; a device can belong to one VM only: remove it from all but one of them"
      ];
      tooMany = [
        "virtualisation.vms.w: usb.controllers (0) or pci.devices (17) lists more than 8 controllers or 16 devices; pass only the devices the guest needs"
      ];
    };
  };

  # --- bound like the GPU (modules.vfio) ----------------------------------------

  testDevicesAreBoundLikeTheGpu = {
    expr =
      let
        cfg = host [
          f.intel
          {
            virtualisation.vms.win11 = withDevices;
            modules.vfio.enable = true;
          }
        ];
      in
      {
        inherit (cfg.modules.vfio) gpuPciIds gpuPciAddresses;
        param = lib.filter (lib.hasPrefix "vfio-pci.ids=") cfg.boot.kernelParams;
      };
    expected = {
      # Only the entries that name their ID are bound by ID at boot.
      gpuPciIds = gpuAndNvmeIds;
      # The NIC and the USB controller by address only.
      gpuPciAddresses = gpuAndNvmeAddresses ++ [
        "0000:05:00.0"
        "0000:0a:00.3"
      ];
      param = [ "vfio-pci.ids=10de:2782,10de:22bc,144d:a80a" ];
    };
  };

  testDetachHookHandsOverTheDevicesWithTheGpu = {
    expr = hookDevices (host [
      f.intel
      {
        virtualisation.vms.win11 = withDevices;
        modules.vfio = {
          enable = true;
          primaryMode = false;
        };
      }
    ]);
    expected = [ "win11 0000:01:00.0 0000:01:00.1 0000:04:00.0 0000:05:00.0 0000:0a:00.3" ];
  };

  testDevicesOfAVmWithoutGpuAreBoundByIdOnly = {
    expr =
      let
        cfg = host [
          f.intel
          {
            virtualisation.vms.win11 = f.win11;
            virtualisation.vms.nas = {
              type = "linux-server";
              pci.devices = [ nvme ];
            };
            modules.vfio.enable = true;
          }
        ];
      in
      {
        inherit (cfg.modules.vfio) gpuPciIds gpuPciAddresses;
      };
    expected = {
      gpuPciIds = gpuAndNvmeIds;
      gpuPciAddresses = gpuAndNvmeAddresses;
    };
  };
}
