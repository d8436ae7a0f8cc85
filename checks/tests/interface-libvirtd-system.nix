# Tests of the NixOS stand-in (checks/nixos-interface.nix) for
# virtualisation.libvirtd (nixos-interface/libvirtd.nix), system.* and
# specialisation (misc.nix), and of checks/nixos-test.nix as far as the stub
# pkgs go, in lib.runTests format: the stand-in must reject what NixOS 25.11
# rejects, with upstream's assertion messages, and accept what NixOS accepts
# (how: ./interface-fixtures.nix).
{ lib, ... }:
let
  f = import ./interface-fixtures.nix { inherit lib; };
  inherit (f) pkgs eval succeeds builds failedMessages failedAbout;

  libvirtd = extra: lib.recursiveUpdate { virtualisation.libvirtd.enable = true; } extra;

  nixosTest = import ../nixos-test.nix {
    inherit pkgs;
    self = {
      nixosModules.default = ../../modules/default.nix;
    };
  };
in
{
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
