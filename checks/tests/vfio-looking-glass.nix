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
    users.users = lib.genAttrs users (_: {
      isNormalUser = true;
    });
  };

  shmService = cfg: cfg.systemd.services.looking-glass-shm;

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
  # No `namespaces = []`: QEMU keeps its private /dev.
  qemuConf = devices: ''
    cgroup_device_acl = [
    ${lib.concatMapStringsSep ",\n" (d: "  \"${d}\"") (defaultAcl ++ devices)}
    ]
  '';
in
{
  # --- /dev/shm/looking-glass ---------------------------------------------------

  # tmpfiles skips /dev after boot (systemd-tmpfiles-resetup runs with
  # --exclude-prefix=/dev): the service creates the file instead.
  testShmNoTmpfilesRule = {
    expr = lib.filter (lib.hasInfix "/dev/") shm.systemd.tmpfiles.rules;
    expected = [ ];
  };

  testShmServiceRunsBeforeLibvirtdAndOnEverySwitch = {
    expr = {
      inherit (shmService shm) wantedBy before;
      type = (shmService shm).serviceConfig.Type;
      # Not RemainAfterExit: an inactive unit wanted by multi-user.target is
      # started again by every switch.
      remains = (shmService shm).serviceConfig.RemainAfterExit or false;
      mounts = (shmService shm).unitConfig.RequiresMountsFor;
      tmpfilesOrdering = lib.any (lib.hasPrefix "systemd-tmpfiles") ((shmService shm).after or [ ]);
    };
    expected = {
      wantedBy = [
        "multi-user.target"
        "libvirtd.service"
      ];
      before = [ "libvirtd.service" ];
      type = "oneshot";
      remains = false;
      mounts = "/dev/shm";
      tmpfilesOrdering = false;
    };
  };

  # Same owner, group and mode the tmpfiles rule had (the script sets 0660).
  testShmServiceCreatesTheFileForTheFirstUser = {
    expr = builtins.match "exec [^ ]*/bin/bash [^ ]*-looking-glass-shm.sh (.*)" (shmService shm).script;
    expected = [
      (lib.escapeShellArgs [
        "/dev/shm/looking-glass"
        "134217728"
        "draxel"
        "looking-glass"
      ])
    ];
  };

  testShmGroupHasTheUsersOnly = {
    expr = {
      groups = lib.attrNames (f.ourGroups shm);
      users = lib.mapAttrs (_: u: u.extraGroups) (f.ourUsers shm);
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
    expr =
      let
        cfg = host [
          { virtualisation.vms.win11 = f.win11 // { lookingGlass.size = 32; }; }
          (lgOn [ "draxel" ])
        ];
      in
      {
        inherit (cfg.modules.vfio.lookingGlass) shmSize;
        args = builtins.match ".*-looking-glass-shm.sh '?/dev/shm/looking-glass'? '?([0-9]+)'? .*" (shmService cfg).script;
        # NixOS appends its default PATH entries after the service's own.
        path = lib.take 1 (map (p: p.name) (shmService cfg).path);
      };
    expected = {
      shmSize = 32;
      args = [ "33554432" ];
      path = [ "coreutils" ];
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
      # types.lines joins the definitions with a newline.
      extraModprobeConfig = "options kvmfr static_size_mb=64\n\n" + f.kvmOptions + "\n" + f.nvidiaSoftdeps;
    };
  };

  # A group of its own: `kvm` would also open /dev/kvm (and, with a non-root
  # QEMU, /dev/vfio/N); uaccess would give the nodes to whoever is at the
  # seat.
  testKvmfrUdevRulePackage = {
    expr = map (p: { inherit (p) destination text; }) (f.ourUdevPackages kvmfr);
    expected = [
      {
        destination = "/lib/udev/rules.d/70-kvmfr.rules";
        text = ''
          SUBSYSTEM=="kvmfr", GROUP="kvmfr", MODE="0660"
        '';
      }
    ];
  };

  testKvmfrRuleHasNoUaccessNorKvmGroup = {
    expr = lib.any (p: lib.hasInfix "uaccess" p.text || lib.hasInfix "\"kvm\"" p.text) kvmfr.services.udev.packages;
    expected = false;
  };

  testKvmfrUdevRuleHasNoOwner = {
    expr = lib.any (p: lib.hasInfix "OWNER" p.text) kvmfr.services.udev.packages;
    expected = false;
  };

  testKvmfrQemuConf = {
    expr = kvmfr.virtualisation.libvirtd.qemu.verbatimConfig;
    expected = qemuConf [ "/dev/kvmfr0" ];
  };

  testKvmfrUsersInKvmfrGroupNoShm = {
    expr = {
      users = lib.mapAttrs (_: u: u.extraGroups) (f.ourUsers kvmfr);
      groups = lib.attrNames (f.ourGroups kvmfr);
      tmpfiles = lib.filter (lib.hasInfix "looking-glass") kvmfr.systemd.tmpfiles.rules;
      services = lib.filter (lib.hasPrefix "looking-glass") (lib.attrNames kvmfr.systemd.services);
    };
    expected = {
      users.draxel = [ "kvmfr" ];
      groups = [ "kvmfr" ];
      tmpfiles = [ ];
      services = [ ];
    };
  };

  testKvmfrNonRootQemuJoinsKvmfr = {
    expr =
      (host [
        { virtualisation.vms.win11 = kvmfrVm 64 0; }
        (lgOn [ "draxel" ])
        { virtualisation.libvirtd.qemu.runAsRoot = false; }
      ]).users.users.qemu-libvirtd.extraGroups;
    expected = [ "kvmfr" ];
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

  # A node that appears only while a VM runs is not copied into QEMU's
  # private /dev: listing one turns it off.
  testHotplugDeviceTurnsTheNamespaceOff = {
    expr =
      (host [
        { virtualisation.vms.win11 = kvmfrVm 64 0; }
        (lgOn [ "draxel" ])
        { modules.vfio.deviceAclHotplug = [ "/dev/input/by-id/pad-event-joystick" ]; }
      ]).virtualisation.libvirtd.qemu.verbatimConfig;
    expected = "namespaces = []\n" + qemuConf [
      "/dev/input/by-id/pad-event-joystick"
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
        (host [ f.win11Vfio ]).warnings;
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

  testUsersMustBeAccounts = {
    expr = failedMessages (host [
      { virtualisation.vms.win11 = f.win11; }
      (lgOn [ "draxel" ])
      {
        modules.vfio.lookingGlass.users = lib.mkForce [
          "draxel"
          "alice"
        ];
      }
    ]);
    # Ours first; NixOS's own (users-groups.nix) follow, since the group
    # membership declares users.users.alice without an account type.
    expected = [
      "modules.vfio.lookingGlass.users contains \"alice\", which is not a user of this system: NixOS creates an account only for users.users.<name> with isNormalUser or isSystemUser set; put your own user name in modules.vfio.lookingGlass.users, or declare the user, e.g. users.users.alice.isNormalUser = true"
      "Exactly one of users.users.alice.isSystemUser and users.users.alice.isNormalUser must be set.\n"
      "users.users.alice.group is unset. This used to default to\nnogroup, but this is unsafe. For example you can create a group\nfor this user with:\nusers.users.alice.group = \"alice\";\nusers.groups.alice = {};\n"
    ];
  };

  testSystemUsersAreAccounts = {
    expr = failedMessages (host [
      { virtualisation.vms.win11 = f.win11; }
      (lgOn [ "draxel" ])
      {
        modules.vfio.lookingGlass.users = lib.mkForce [
          "draxel"
          "lgbot"
          "root"
        ];
        users.users.lgbot = {
          isSystemUser = true;
          group = "lgbot";
        };
        users.groups.lgbot = { };
      }
    ]);
    expected = [ ];
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
