# Tests of modules.vfio.lookingGlass (modules/vfio/looking-glass.nix), in
# lib.runTests format.
{ lib, evalHost }:
let
  f = import ./vfio-fixtures.nix { inherit lib evalHost; };
  inherit (f) host failedMessages;
  stub = import ../stub-pkgs.nix { inherit lib; };

  lgOn = users: {
    modules.vfio.enable = true;
    modules.vfio.lookingGlass = {
      enable = true;
      inherit users;
    };
  };

  shm = host [
    { virtualisation.vms.win11 = f.win11; }
    (lgOn [
      "draxel"
      "guest"
    ])
  ];

  kvmfrVm = size: index: {
    memory = 8192;
    gpu = f.gpu4070;
    lookingGlass = {
      inherit size;
      backend = "kvmfr";
      kvmfrIndex = index;
    };
  };

  kvmfr = host [
    { virtualisation.vms.win11 = kvmfrVm 64 0; }
    (lgOn [ "draxel" ])
  ];

  twoKvmfr = host [
    {
      virtualisation.vms.win11 = kvmfrVm 128 0;
      virtualisation.vms.turing = kvmfrVm 32 1 // {
        gpu = f.gpu2080ti;
      };
      modules.vfio.scream.enable = false;
    }
    (lgOn [ "draxel" ])
  ];

  defaultAcl = [
    "/dev/null"
    "/dev/full"
    "/dev/zero"
    "/dev/random"
    "/dev/urandom"
    "/dev/ptmx"
    "/dev/kvm"
    "/dev/userfaultfd"
  ];
  qemuConf = devices: ''
    namespaces = []
    cgroup_device_acl = [
    ${lib.concatMapStringsSep ",\n" (d: "  \"${d}\"") (defaultAcl ++ devices)}
    ]
  '';
in
{
  # --- /dev/shm/looking-glass ---------------------------------------------------

  testShmTmpfiles = {
    expr = lib.filter (lib.hasInfix "/dev/") shm.systemd.tmpfiles.rules;
    expected = [ "f /dev/shm/looking-glass 0660 draxel looking-glass -" ];
  };

  testShmGroupHasTheUsersOnly = {
    expr = {
      groups = lib.attrNames shm.users.groups;
      users = lib.mapAttrs (_: u: u.extraGroups) shm.users.users;
    };
    expected = {
      groups = [ "looking-glass" ];
      users = {
        draxel = [ "looking-glass" ];
        guest = [ "looking-glass" ];
      };
    };
  };

  testShmSizedToShmSize = {
    expr = {
      inherit (shm.modules.vfio.lookingGlass) shmSize;
      exec = shm.systemd.services.looking-glass-shm.serviceConfig.ExecStart;
      before = shm.systemd.services.looking-glass-shm.before;
    };
    expected = {
      shmSize = 128;
      exec = "${stub.coreutils}/bin/truncate --no-create --size=>134217728 /dev/shm/looking-glass";
      before = [ "libvirtd.service" ];
    };
  };

  testShmSizeIsLargestVm = {
    expr =
      (host [
        {
          virtualisation.vms.a = f.win11 // {
            lookingGlass.size = 64;
          };
          virtualisation.vms.b = {
            memory = 8192;
            gpu = f.gpu2080ti;
            lookingGlass.size = 256;
          };
        }
        (lgOn [ "draxel" ])
      ]).modules.vfio.lookingGlass.shmSize;
    expected = 256;
  };

  testShmSizeDefaultWithoutVms = {
    expr = (evalHost { }).modules.vfio.lookingGlass.shmSize;
    expected = 128;
  };

  testShmKeepsQemuConf = {
    expr = shm.virtualisation.libvirtd.qemu.verbatimConfig;
    expected = "namespaces = []\n";
  };

  testClientInstalled = {
    expr = lib.elem "looking-glass-client" (map (p: p.name) shm.environment.systemPackages);
    expected = true;
  };

  testShmNonRootQemuJoinsGroup = {
    expr =
      (host [
        { virtualisation.vms.win11 = f.win11; }
        (lgOn [ "draxel" ])
        { virtualisation.libvirtd.qemu.runAsRoot = false; }
      ]).users.users.qemu-libvirtd.extraGroups;
    expected = [ "looking-glass" ];
  };

  testShmNoFailedAssertions = {
    expr = failedMessages shm;
    expected = [ ];
  };

  # --- kvmfr ----------------------------------------------------------------------

  testKvmfrModule = {
    expr = {
      packages = map (p: p.name) kvmfr.boot.extraModulePackages;
      inherit (kvmfr.boot) kernelModules extraModprobeConfig;
    };
    expected = {
      packages = [ stub.kvmfr.name ];
      kernelModules = [ "kvmfr" ];
      extraModprobeConfig = ''
        options kvmfr static_size_mb=64

        options kvm ignore_msrs=1 report_ignored_msrs=0

        softdep nvidia pre: vfio-pci
        softdep nouveau pre: vfio-pci
        softdep snd_hda_intel pre: vfio-pci
        softdep xhci_pci pre: vfio-pci
        softdep i2c_nvidia_gpu pre: vfio-pci
      '';
    };
  };

  testKvmfrUdevRulePackage = {
    expr = map (p: { inherit (p) destination text; }) kvmfr.services.udev.packages;
    expected = [
      {
        destination = "/lib/udev/rules.d/70-kvmfr.rules";
        text = ''
          SUBSYSTEM=="kvmfr", GROUP="kvm", MODE="0660", TAG+="uaccess"
        '';
      }
    ];
  };

  testKvmfrUdevRuleHasNoOwner = {
    expr = lib.any (p: lib.hasInfix "OWNER" p.text) kvmfr.services.udev.packages;
    expected = false;
  };

  testKvmfrQemuConf = {
    expr = kvmfr.virtualisation.libvirtd.qemu.verbatimConfig;
    expected = qemuConf [ "/dev/kvmfr0" ];
  };

  testKvmfrUsersInKvmNoShm = {
    expr = {
      users = lib.mapAttrs (_: u: u.extraGroups) kvmfr.users.users;
      tmpfiles = lib.filter (lib.hasInfix "looking-glass") kvmfr.systemd.tmpfiles.rules;
      services = lib.filter (lib.hasPrefix "looking-glass") (lib.attrNames kvmfr.systemd.services);
    };
    expected = {
      users.draxel = [ "kvm" ];
      tmpfiles = [ ];
      services = [ ];
    };
  };

  testTwoKvmfrDevicesInIndexOrder = {
    expr = {
      options = lib.filter (lib.hasPrefix "options kvmfr") (lib.splitString "\n" twoKvmfr.boot.extraModprobeConfig);
      conf = twoKvmfr.virtualisation.libvirtd.qemu.verbatimConfig;
      failed = failedMessages twoKvmfr;
    };
    expected = {
      options = [ "options kvmfr static_size_mb=128,32" ];
      conf = qemuConf [
        "/dev/kvmfr0"
        "/dev/kvmfr1"
      ];
      failed = [ ];
    };
  };

  testDeviceAclKeepsNamespacesAndDefaults = {
    expr =
      (host [
        { virtualisation.vms.win11 = kvmfrVm 64 0; }
        (lgOn [ "draxel" ])
        { modules.vfio.deviceAcl = [ "/dev/input/by-id/kbd-event-kbd" ]; }
      ]).virtualisation.libvirtd.qemu.verbatimConfig;
    expected = qemuConf [
      "/dev/input/by-id/kbd-event-kbd"
      "/dev/kvmfr0"
    ];
  };

  testKvmfrNotInHostEntry = {
    expr =
      let
        cfg = host [
          { virtualisation.vms.win11 = kvmfrVm 64 0; }
          {
            modules.vfio.dualBoot.enable = true;
            modules.vfio.lookingGlass = {
              enable = true;
              users = [ "draxel" ];
            };
          }
        ];
      in
      {
        host = [
          cfg.boot.kernelModules
          cfg.virtualisation.libvirtd.qemu.verbatimConfig
        ];
        vfio = cfg.specialisation.vfio.configuration.boot.kernelModules;
      };
    expected = {
      host = [
        [ ]
        "namespaces = []\n"
      ];
      vfio = [ "kvmfr" ];
    };
  };

  # --- misuse ---------------------------------------------------------------------

  testShmWithoutModuleWarns = {
    expr =
      lib.any (lib.hasInfix "modules.vfio.lookingGlass.enable = false")
        (host [
          {
            virtualisation.vms.win11 = f.win11;
            modules.vfio.enable = true;
          }
        ]).warnings;
    expected = true;
  };

  testNoUsersFails = {
    expr = failedMessages (host [
      { virtualisation.vms.win11 = f.win11; }
      (lgOn [ ])
    ]);
    expected = [
      "modules.vfio.lookingGlass.enable = true but modules.vfio.lookingGlass.users is empty, so nobody could read the shared memory; set modules.vfio.lookingGlass.users = [ \"<your user name>\" ]"
    ];
  };

  testShmSizeSmallerThanVmFails = {
    expr = failedMessages (host [
      { virtualisation.vms.win11 = f.win11; }
      (lgOn [ "draxel" ])
      { modules.vfio.lookingGlass.shmSize = 64; }
    ]);
    expected = [
      "modules.vfio.lookingGlass.shmSize = 64 is smaller than lookingGlass.size of virtualisation.vms.win11 (128); remove the shmSize setting (it defaults to the largest VM size) or raise it"
    ];
  };
}
