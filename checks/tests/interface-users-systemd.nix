# Tests of the NixOS stand-in (checks/nixos-interface.nix) for users.users,
# users.groups (nixos-interface/users.nix) and systemd
# (nixos-interface/systemd.nix and its systemd-*.nix), in lib.runTests
# format: it must reject what NixOS 25.11 rejects, with upstream's assertion
# messages, and accept what NixOS accepts (how: ./interface-fixtures.nix).
{ lib, ... }:
let
  f = import ./interface-fixtures.nix { inherit lib; };
  inherit (f) eval succeeds builds failedMessages failedAbout;

  service = extra: {
    systemd.services.demo = lib.recursiveUpdate {
      wantedBy = [ "multi-user.target" ];
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "/run/current-system/sw/bin/true";
      };
    } extra;
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
}
