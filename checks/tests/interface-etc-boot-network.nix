# Tests of the NixOS stand-in (checks/nixos-interface.nix) for
# environment.etc (nixos-interface/etc.nix), boot (boot.nix), services.udev
# (udev.nix) and networking (networking.nix), in lib.runTests format: it
# must reject what NixOS 25.11 rejects, with upstream's assertion messages,
# and accept what NixOS accepts (how: ./interface-fixtures.nix).
{ lib, ... }:
let
  f = import ./interface-fixtures.nix { inherit lib; };
  inherit (f) pkgs eval succeeds builds failedAbout;
in
{
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
}
