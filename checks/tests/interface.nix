# Tests of the NixOS stand-in itself (checks/nixos-interface.nix), in
# lib.runTests format: it must reject what NixOS 25.11 rejects, with
# upstream's assertion messages, and accept what NixOS accepts.
#
# The stand-in is evaluated on its own here (without this flake's modules), so
# these tests say what the stand-in does, whatever the modules do. A
# definition NixOS rejects with a type error is tested against the same
# configuration without the mistake: the good one builds, the bad one does
# not (Nix cannot catch an error's text, only that it failed).
{ lib, ... }:
let
  pkgs = import ../stub-pkgs.nix { inherit lib; };

  eval =
    module:
    (lib.evalModules {
      modules = [
        ../nixos-interface.nix
        { _module.args.pkgs = pkgs; }
        { system.stateVersion = "25.11"; }
        module
      ];
    }).config;

  # Whether forcing a value succeeds (a type error or a failed `throw`
  # inside it makes it fail).
  succeeds = value: (builtins.tryEval (builtins.deepSeq value true)).success;

  # Whether the system builds: assertions hold and every unit, /etc entry
  # and user can be built (system.build.toplevel).
  builds = module: succeeds (eval module).system.build.toplevel;

  failedMessages = cfg: map (a: a.message) (lib.filter (a: !a.assertion) cfg.assertions);

  # The failed assertions that mention `word`.
  failedAbout = word: module: lib.filter (lib.hasInfix word) (failedMessages (eval module));

  service = extra: {
    systemd.services.demo = lib.recursiveUpdate {
      wantedBy = [ "multi-user.target" ];
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "/run/current-system/sw/bin/true";
      };
    } extra;
  };

  libvirtd = extra: lib.recursiveUpdate { virtualisation.libvirtd.enable = true; } extra;

  nixosTest = import ../nixos-test.nix {
    inherit pkgs;
    self = {
      nixosModules.default = ../../modules/default.nix;
    };
  };
in
{
  # --- users.users / users.groups (users-groups.nix) --------------------------

  testUserWithoutKindFailsWithUpstreamMessages = {
    expr = failedAbout "alice" { users.users.alice = { }; };
    expected = [
      "Exactly one of users.users.alice.isSystemUser and users.users.alice.isNormalUser must be set.\n"
      ''
        users.users.alice.group is unset. This used to default to
        nogroup, but this is unsafe. For example you can create a group
        for this user with:
        users.users.alice.group = "alice";
        users.groups.alice = {};
      ''
    ];
  };

  # extraGroups alone (what a module adds for a listed user) does not make a user.
  testExtraGroupsAloneIsNotAUser = {
    expr = lib.length (failedAbout "alice" { users.users.alice.extraGroups = [ "kvm" ]; });
    expected = 2;
  };

  testNormalUserIsComplete = {
    expr =
      let
        cfg = eval { users.users.alice.isNormalUser = true; };
      in
      {
        failed = failedMessages cfg;
        inherit (cfg.users.users.alice) group home createHome;
        builds = builds { users.users.alice.isNormalUser = true; };
      };
    expected = {
      failed = [ ];
      group = "users";
      home = "/home/alice";
      createHome = true;
      builds = true;
    };
  };

  testBothKindsFail = {
    expr = failedAbout "Exactly one" {
      users.users.svc = {
        isNormalUser = true;
        isSystemUser = true;
      };
    };
    expected = [ "Exactly one of users.users.svc.isSystemUser and users.users.svc.isNormalUser must be set.\n" ];
  };

  testSystemUserNeedsAnExistingGroup = {
    expr = {
      noGroup = failedAbout "svc" { users.users.svc.isSystemUser = true; };
      undefinedGroup = failedAbout "svc" {
        users.users.svc = {
          isSystemUser = true;
          group = "svc";
        };
      };
      defined = failedAbout "svc" {
        users.users.svc = {
          isSystemUser = true;
          group = "svc";
        };
        users.groups.svc = { };
      };
    };
    expected = {
      noGroup = [
        ''
          users.users.svc.group is unset. This used to default to
          nogroup, but this is unsafe. For example you can create a group
          for this user with:
          users.users.svc.group = "svc";
          users.groups.svc = {};
        ''
      ];
      undefinedGroup = [
        ''
          The following users have a primary group that is undefined: svc
          Hint: Add this to your NixOS configuration:
            users.groups.svc = {};
        ''
      ];
      defined = [ ];
    };
  };

  testNormalUserUidBelow1000Fails = {
    expr = failedAbout "below 1000" {
      users.users.alice = {
        isNormalUser = true;
        uid = 999;
      };
    };
    expected = [
      ''
        A user cannot have a users.users.alice.uid set below 1000 and set users.users.alice.isNormalUser.
        Either users.users.alice.isSystemUser must be set to true instead of users.users.alice.isNormalUser
        or users.users.alice.uid must be changed to 1000 or above.
      ''
    ];
  };

  testUserTypoOrWrongTypeFails = {
    expr = {
      good = builds { users.users.alice.isNormalUser = true; };
      typo = builds { users.users.alice.isNormalUsr = true; };
      groupsNotAList = builds {
        users.users.alice = {
          isNormalUser = true;
          extraGroups = "kvm";
        };
      };
      groupTypo = builds { users.groups.kvm.gidd = 1; };
    };
    expected = {
      good = true;
      typo = false;
      groupsNotAList = false;
      groupTypo = false;
    };
  };

  testGroupMembersFromExtraGroups = {
    expr =
      (eval {
        users.users.alice = {
          isNormalUser = true;
          extraGroups = [ "kvm" ];
        };
      }).users.groups.kvm.members;
    expected = [ "alice" ];
  };

  testDuplicateUidFails = {
    expr = failedAbout "unique" {
      users.users.a = {
        isNormalUser = true;
        uid = 1000;
      };
      users.users.b = {
        isNormalUser = true;
        uid = 1000;
      };
    };
    expected = [ "UIDs and GIDs must be unique!" ];
  };

  # --- systemd (systemd.nix, systemd-lib.nix, systemd-unit-options.nix) ---------

  testServiceBuildsWithItsUnit = {
    expr =
      let
        lines = lib.splitString "\n" (eval (service { })).systemd.units."demo.service".text;
      in
      {
        builds = builds (service { });
        sections = lib.filter (lib.hasPrefix "[") lines;
        service = lib.filter (l: lib.elem l [
          "ExecStart=/run/current-system/sw/bin/true"
          "Type=oneshot"
          "WantedBy=multi-user.target"
        ]) lines;
        # The default PATH of a service (coreutils, findutils, grep, sed, systemd).
        path = lib.any (lib.hasPrefix "Environment=\"PATH=/nix/store/") lines;
      };
    expected = {
      builds = true;
      sections = [
        "[Unit]"
        "[Service]"
        "[Install]"
      ];
      service = [
        "ExecStart=/run/current-system/sw/bin/true"
        "Type=oneshot"
        "WantedBy=multi-user.target"
      ];
      path = true;
    };
  };

  # checkService: Type and Restart must be values systemd knows.
  testServiceConfigTypeAndRestartChecked = {
    expr = {
      badType = builds (service { serviceConfig.Type = "oneshott"; });
      badRestart = builds (service { serviceConfig.Restart = "sometimes"; });
      goodRestart = builds (service { serviceConfig.Restart = "on-failure"; });
    };
    expected = {
      badType = false;
      badRestart = false;
      goodRestart = true;
    };
  };

  # A value systemd cannot be given (a set) is accepted by the option but
  # fails when the unit is written, as on NixOS.
  testServiceConfigValueMustBeWritable = {
    expr = {
      optionAccepts = succeeds (eval (service { serviceConfig.Environment = { A = "1"; }; })).systemd.services.demo.serviceConfig;
      builds = builds (service { serviceConfig.Environment = { A = "1"; }; });
      notASet = builds { systemd.services.demo.serviceConfig = "Type=oneshot"; };
    };
    expected = {
      optionAccepts = true;
      builds = false;
      notASet = false;
    };
  };

  testUnitNamesNeedTheirSuffix = {
    expr = {
      suffix = builds (service { after = [ "libvirtd.service" ]; });
      noSuffix = builds (service { after = [ "libvirtd" ]; });
      wantedByNotAList = builds { systemd.services.demo.wantedBy = "multi-user.target"; };
    };
    expected = {
      suffix = true;
      noSuffix = false;
      wantedByNotAList = false;
    };
  };

  testServiceOptionTypoFails = {
    expr = {
      typo = builds (service { wantedby = [ "multi-user.target" ]; });
      restartTypo = builds (service { restartIfChange = false; });
    };
    expected = {
      typo = false;
      restartTypo = false;
    };
  };

  # Two definitions of one unit option: lists concatenate, other values must agree.
  testUnitOptionMerge = {
    expr = {
      lists =
        (eval {
          imports = [
            { systemd.services.demo.serviceConfig.ExecStartPre = [ "/bin/a" ]; }
            { systemd.services.demo.serviceConfig.ExecStartPre = [ "/bin/b" ]; }
          ];
        }).systemd.services.demo.serviceConfig.ExecStartPre;
      conflict = builds {
        imports = [
          (service { })
          { systemd.services.demo.serviceConfig.ExecStart = "/bin/other"; }
        ];
      };
    };
    expected = {
      lists = [
        "/bin/a"
        "/bin/b"
      ];
      conflict = false;
    };
  };

  # startLimitBurst has no default upstream: unset, it is not written (and
  # the stand-in leaves it out of the unit so the unit can be forced whole);
  # set, it is written and type-checked.
  testStartLimitBurst = {
    expr = {
      unsetForcesWhole = succeeds (eval (service { })).systemd.services.demo;
      unset = (eval (service { })).systemd.services.demo ? startLimitBurst;
      written = lib.hasInfix "StartLimitBurst=3\n" (eval (service { startLimitBurst = 3; })).systemd.units."demo.service".text;
      notAnInt = builds (service { startLimitBurst = "3"; });
    };
    expected = {
      unsetForcesWhole = true;
      unset = false;
      written = true;
      notAnInt = false;
    };
  };

  testScriptBecomesExecStart = {
    expr =
      let
        cfg = eval { systemd.services.demo.script = "echo hi"; };
      in
      lib.hasSuffix "/bin/demo-start " cfg.systemd.services.demo.serviceConfig.ExecStart;
    expected = true;
  };

  testUserServicesAndSlicesTyped = {
    expr = {
      userGood = builds { systemd.user.services.rx.serviceConfig.Restart = "always"; };
      userBad = builds { systemd.user.services.rx.serviceConfig.Restart = "sometimes"; };
      userUnit = (eval { systemd.user.services.rx.wantedBy = [ "default.target" ]; }).systemd.user.units ? "rx.service";
      sliceGood = builds { systemd.slices.vms.sliceConfig.AllowedCPUs = "0-3"; };
      sliceBad = builds { systemd.slices.vms.sliceConfig = "AllowedCPUs=0-3"; };
      sliceTypo = builds { systemd.slices.vms.sliceconfig.AllowedCPUs = "0-3"; };
    };
    expected = {
      userGood = true;
      userBad = false;
      userUnit = true;
      sliceGood = true;
      sliceBad = false;
      sliceTypo = false;
    };
  };

  testTmpfilesRulesAreAList = {
    expr = {
      list = builds { systemd.tmpfiles.rules = [ "d /var/lib/x 0755 root root -" ]; };
      string = builds { systemd.tmpfiles.rules = "d /var/lib/x 0755 root root -"; };
    };
    expected = {
      list = true;
      string = false;
    };
  };

  testOneshotRestartAlwaysWarns = {
    expr = (eval (service { serviceConfig.Restart = "always"; })).warnings;
    expected = [ "Service 'demo.service' with 'Type=oneshot' cannot have 'Restart=always' or 'Restart=on-success'" ];
  };

  # --- environment.etc (etc.nix) ---------------------------------------------

  testEtcEntryDefaults = {
    expr =
      let
        e = (eval { environment.etc."vfio/x.conf".text = "a"; }).environment.etc."vfio/x.conf";
      in
      {
        inherit (e) target mode user group;
        source = e.source.name;
      };
    expected = {
      target = "vfio/x.conf";
      mode = "symlink";
      user = "+0";
      group = "+0";
      source = "etc-vfio-x.conf";
    };
  };

  # mode is a string upstream ("0600"); an integer is a type error.
  testEtcModeMustBeAString = {
    expr = {
      string = builds {
        environment.etc.x = {
          text = "a";
          mode = "0600";
        };
      };
      integer = builds {
        environment.etc.x = {
          text = "a";
          mode = 600;
        };
      };
    };
    expected = {
      string = true;
      integer = false;
    };
  };

  testEtcTypoAndConflictFail = {
    expr = {
      typo = builds { environment.etc.x.txt = "a"; };
      relativeSource = builds { environment.etc.x.source = "relative/file"; };
      twoSources = builds {
        imports = [
          { environment.etc.x.source = "/nix/store/00000000000000000000000000000000-a"; }
          { environment.etc.x.source = "/nix/store/00000000000000000000000000000000-b"; }
        ];
      };
    };
    expected = {
      typo = false;
      relativeSource = false;
      twoSources = false;
    };
  };

  # --- boot (kernel.nix, modprobe.nix, sysctl.nix) ----------------------------

  testKernelParamsType = {
    expr = {
      quoted = builds { boot.kernelParams = [ ''dyndbg="file vfio* +p"'' ]; };
      space = builds { boot.kernelParams = [ "iommu=pt intel_iommu=on" ]; };
    };
    expected = {
      quoted = true;
      space = false;
    };
  };

  # kernelPackages is `.extend`ed by its apply: a package set, not a plain set.
  testKernelPackagesIsAPackageSet = {
    expr =
      let
        kernel = {
          type = "derivation";
          name = "linux-6.1.55";
          version = "6.1.55";
          features = { };
          outPath = "/nix/store/00000000000000000000000000000000-linux-6.1.55";
          override = _: kernel;
        };
        custom = lib.makeExtensible (_: { inherit kernel; });
      in
      {
        default = (eval { }).boot.kernelPackages.kernel.version;
        custom = (eval { boot.kernelPackages = custom; }).boot.kernelPackages.kernel.version;
      };
    expected = {
      default = "6.12.0";
      custom = "6.1.55";
    };
  };

  testModprobeAndSysctlFiles = {
    expr =
      let
        cfg = eval {
          boot.blacklistedKernelModules = [ "nouveau" ];
          boot.extraModprobeConfig = "options kvm ignore_msrs=1";
          boot.kernel.sysctl."vm.nr_hugepages" = 4;
        };
      in
      {
        modprobe = cfg.environment.etc."modprobe.d/nixos.conf".text;
        sysctl = cfg.environment.etc."sysctl.d/60-nixos.conf".text;
      };
    expected = {
      modprobe = "blacklist nouveau\n\noptions kvm ignore_msrs=1\n";
      sysctl = "vm.nr_hugepages=4\n";
    };
  };

  testSysctlValueType = {
    expr = {
      int = builds { boot.kernel.sysctl."vm.nr_hugepages" = 4; };
      list = builds { boot.kernel.sysctl."vm.nr_hugepages" = [ 4 ]; };
    };
    expected = {
      int = true;
      list = false;
    };
  };

  # --- udev (udev.nix) ------------------------------------------------------

  testUdevExtraRulesLandIn99Local = {
    expr =
      let
        cfg = eval { services.udev.extraRules = ''SUBSYSTEM=="vfio", GROUP="kvm"''; };
        local = lib.filter (p: (p.destination or "") == "/etc/udev/rules.d/99-local.rules") cfg.services.udev.packages;
      in
      map (p: p.text) local;
    expected = [ "SUBSYSTEM==\"vfio\", GROUP=\"kvm\"" ];
  };

  testUdevPackagesArePaths = {
    expr = {
      package = builds { services.udev.packages = [ pkgs.kvmfr ]; };
      string = builds { services.udev.packages = [ "rules.d" ]; };
    };
    expected = {
      package = true;
      string = false;
    };
  };

  # --- networking (network-interfaces.nix, firewall.nix) -----------------------

  testInterfacesTyped = {
    expr = {
      good = builds { networking.interfaces.br0.useDHCP = true; };
      typo = builds { networking.interfaces.br0.usedhcp = true; };
      tooLong = failedAbout "too long" { networking.interfaces.enp0s20f0u10u2c2.useDHCP = true; };
      bridgeSlaveWithIp = failedAbout "slave" {
        networking.bridges.br0.interfaces = [ "enp6s0" ];
        networking.interfaces.enp6s0.ipv4.addresses = [
          {
            address = "192.168.1.2";
            prefixLength = 24;
          }
        ];
      };
    };
    expected = {
      good = true;
      typo = false;
      tooLong = [ "The name of networking.interfaces.\"enp0s20f0u10u2c2\" is too long, it needs to be less than 16 characters.\n" ];
      bridgeSlaveWithIp = [ "The networking.interfaces.\"enp6s0\" must not have any defined ips when it is a slave.\n" ];
    };
  };

  testBridgeInterfacesAreAList = {
    expr = {
      list = builds { networking.bridges.br0.interfaces = [ "enp6s0" ]; };
      string = builds { networking.bridges.br0.interfaces = "enp6s0"; };
      typo = builds { networking.bridges.br0.interface = [ "enp6s0" ]; };
    };
    expected = {
      list = true;
      string = false;
      typo = false;
    };
  };

  testHostNameIsADnsLabel = {
    expr = {
      good = builds { networking.hostName = "gaming-rig"; };
      fqdn = succeeds (eval { networking.hostName = "rig.example.org"; }).networking.hostName;
    };
    expected = {
      good = true;
      fqdn = false;
    };
  };

  testFirewallPorts = {
    expr = {
      canonical = (eval { networking.firewall.interfaces.virbr0.allowedUDPPorts = [ 4010 53 4010 ]; }).networking.firewall.interfaces.virbr0.allowedUDPPorts;
      outOfRange = succeeds (eval { networking.firewall.interfaces.virbr0.allowedUDPPorts = [ 70000 ]; }).networking.firewall.interfaces;
      typo = succeeds (eval { networking.firewall.interfaces.virbr0.allowedUdpPorts = [ 4010 ]; }).networking.firewall.interfaces;
    };
    expected = {
      canonical = [
        53
        4010
      ];
      outOfRange = false;
      typo = false;
    };
  };

  # --- virtualisation.libvirtd (libvirtd.nix) --------------------------------

  testLibvirtdBuildsWithItsUsers = {
    expr =
      let
        cfg = eval (libvirtd { });
      in
      {
        builds = builds (libvirtd { });
        failed = failedMessages cfg;
        qemuUser = {
          inherit (cfg.users.users.qemu-libvirtd) uid group isNormalUser;
        };
        groups = lib.filter (g: cfg.users.groups ? ${g}) [
          "libvirtd"
          "qemu-libvirtd"
          "kvm"
        ];
        bridgeConf = cfg.environment.etc."qemu/bridge.conf".text;
        polkit = cfg.security.polkit.enable;
      };
    expected = {
      builds = true;
      failed = [ ];
      qemuUser = {
        uid = 301;
        group = "qemu-libvirtd";
        isNormalUser = false;
      };
      groups = [
        "libvirtd"
        "qemu-libvirtd"
        "kvm"
      ];
      bridgeConf = "allow virbr0";
      polkit = true;
    };
  };

  # A switch never restarts libvirtd: changes to qemu.conf or the hooks apply
  # at its next start.
  testLibvirtdIsNeverRestartedBySwitch = {
    expr =
      let
        cfg = eval (libvirtd { });
      in
      {
        inherit (cfg.systemd.services.libvirtd) restartIfChanged;
        unit = lib.hasInfix "X-RestartIfChanged=false" cfg.systemd.units."libvirtd.service".text;
      };
    expected = {
      restartIfChanged = false;
      unit = true;
    };
  };

  testLibvirtdHooksLinkedAtConfigTime = {
    expr =
      let
        cfg = eval (libvirtd {
          virtualisation.libvirtd.hooks.qemu.isolate = "/nix/store/00000000000000000000000000000000-hook";
        });
      in
      lib.hasInfix "ln -s --force /nix/store/00000000000000000000000000000000-hook /var/lib/libvirt/hooks/qemu.d/isolate" cfg.systemd.services.libvirtd-config.script;
    expected = true;
  };

  # 25.11: /var/lib/qemu/firmware is a symlink to QEMU's descriptors in the store.
  testQemuFirmwareDirIsAStoreSymlink = {
    expr = map (builtins.match "L\\+ /var/lib/qemu/firmware - - - - /nix/store/[0-9a-z]{32}-(.*)") (
      lib.filter (lib.hasInfix " /var/lib/qemu/firmware ") (eval (libvirtd { })).systemd.tmpfiles.rules
    );
    expected = [ [ "qemu-ovmf-metadata" ] ];
  };

  # 25.11 removed qemu.ovmf: setting any of it fails like upstream.
  testQemuOvmfRemoved = {
    expr = {
      enable = failedAbout "ovmf" (libvirtd { virtualisation.libvirtd.qemu.ovmf.enable = true; });
      packages = failedAbout "ovmf" (libvirtd { virtualisation.libvirtd.qemu.ovmf.packages = [ pkgs.OVMFFull.fd ]; });
      oldName = builds (libvirtd { virtualisation.libvirtd.qemuOvmf = true; });
    };
    expected = {
      enable = [ "The 'virtualisation.libvirtd.qemu.ovmf' submodule has been removed. All OVMF images distributed with QEMU are now available by default." ];
      packages = [ "The 'virtualisation.libvirtd.qemu.ovmf' submodule has been removed. All OVMF images distributed with QEMU are now available by default." ];
      oldName = false;
    };
  };

  testLibvirtdOptionsTyped = {
    expr = {
      onShutdown = builds (libvirtd { virtualisation.libvirtd.onShutdown = "poweroff"; });
      relativeHook = builds (libvirtd { virtualisation.libvirtd.hooks.qemu.x = "hook.sh"; });
      swtpmTypo = builds (libvirtd { virtualisation.libvirtd.qemu.swtpm.enabled = true; });
      verbatimNotLines = builds (libvirtd { virtualisation.libvirtd.qemu.verbatimConfig = [ "namespaces = []" ]; });
      bridgesNotAList = builds (libvirtd { virtualisation.libvirtd.allowedBridges = "br0"; });
      packages = builds (libvirtd {
        virtualisation.libvirtd.package = pkgs.libvirt;
        virtualisation.libvirtd.qemu.package = pkgs.qemu_kvm;
      });
    };
    expected = {
      onShutdown = false;
      relativeHook = false;
      swtpmTypo = false;
      verbatimNotLines = false;
      bridgesNotAList = false;
      packages = true;
    };
  };

  # The renamed options still work (with a warning), as upstream.
  testLibvirtdRenamedOption = {
    expr =
      let
        cfg = eval (libvirtd { virtualisation.libvirtd.qemuRunAsRoot = false; });
      in
      {
        inherit (cfg.virtualisation.libvirtd.qemu) runAsRoot;
        warned = lib.any (lib.hasInfix "qemuRunAsRoot") cfg.warnings;
      };
    expected = {
      runAsRoot = false;
      warned = true;
    };
  };

  # --- system, specialisation (version.nix, label.nix, specialisation.nix) -----

  testToplevelFailsOnAFailedAssertion = {
    expr = {
      good = builds { };
      assertion = builds { assertions = [ { assertion = false; message = "no"; } ]; };
      inSpecialisation = builds { specialisation.x.configuration.users.users.bob = { }; };
    };
    expected = {
      good = true;
      assertion = false;
      inSpecialisation = false;
    };
  };

  testStateVersionFormat = {
    expr = map (lib.hasInfix "is an invalid value for 'system.stateVersion'") (failedMessages (eval { system.stateVersion = lib.mkForce "25.11.1"; }));
    expected = [ true ];
  };

  testLabelFromTags = {
    expr = (eval { system.nixos.tags = [ "vfio" ]; }).system.nixos.label;
    expected = "vfio-25.11";
  };

  testSpecialisation = {
    expr =
      let
        cfg = eval {
          networking.hostName = "parent";
          specialisation.inherits.configuration.system.nixos.tags = [ "x" ];
          specialisation.bare = {
            inheritParentConfig = false;
            configuration = { };
          };
        };
      in
      {
        inherited = cfg.specialisation.inherits.configuration.networking.hostName;
        isSpecialisation = cfg.specialisation.inherits.configuration.isSpecialisation;
        nested = cfg.specialisation.inherits.configuration.specialisation;
        # Without the parent, only NixOS's own modules: not the parent's settings.
        bare = cfg.specialisation.bare.configuration.networking.hostName;
        slash = failedAbout "forward slashes" { specialisation."a/b".configuration = { }; } != [ ];
      };
    expected = {
      inherited = "parent";
      isSpecialisation = true;
      nested = { };
      bare = "nixos";
      slash = true;
    };
  };

  # --- checks/nixos-test.nix, as far as the stub pkgs go ------------------------

  # Its host, with this flake's modules on the stand-in, has no failed
  # assertion and builds (with its specialisation).
  testNixosTestHostBuilds = {
    expr =
      let
        cfg =
          (lib.evalModules {
            modules = [
              ../../modules/default.nix
              ../nixos-interface.nix
              { _module.args.pkgs = pkgs; }
              nixosTest.test.passthru.hostModule
            ];
          }).config;
      in
      {
        failed = failedMessages cfg ++ failedMessages cfg.specialisation.changed.configuration;
        builds = succeeds cfg.system.build.toplevel;
        vms = lib.attrNames cfg.virtualisation.vms;
        changedMemory = cfg.specialisation.changed.configuration.virtualisation.vms.server.memory;
      };
    expected = {
      failed = [ ];
      builds = true;
      vms = [
        "gaming"
        "server"
      ];
      changedMemory = 1536;
    };
  };

  testNixosTestShape = {
    expr = {
      inherit (nixosTest.test) name;
      nodes = lib.attrNames nixosTest.test.nodes;
      script = builtins.isFunction nixosTest.test.testScript;
    };
    expected = {
      name = "vfio-vms";
      nodes = [ "host" ];
      script = true;
    };
  };
}
