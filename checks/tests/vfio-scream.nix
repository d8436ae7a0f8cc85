# Tests of modules.vfio.scream (modules/vfio/scream.nix) and
# modules.networking.bridge (modules/networking.nix), in lib.runTests format.
{ lib, evalHost }:
let
  f = import ./vfio-fixtures.nix { inherit lib evalHost; };
  inherit (f) host failedMessages;
  stub = import ../stub-pkgs.nix { inherit lib; };

  withNetwork =
    network: extra:
    host [
      {
        virtualisation.vms.win11 = f.win11 // {
          inherit network;
          secureBoot = false;
        };
        modules.vfio.enable = true;
        modules.vfio.lookingGlass = {
          enable = true;
          users = [ "draxel" ];
        };
        users.users.draxel.isNormalUser = true;
      }
      extra
    ];

  nat = withNetwork { type = "nat"; } { };
  bridge = withNetwork {
    type = "bridge";
    bridge = "br0";
  } { modules.networking.bridge = {
    enable = true;
    interface = "enp6s0";
  }; };
  macvtap = withNetwork {
    type = "macvtap";
    interface = "enp6s0";
  } { };

  exec = cfg: cfg.systemd.user.services.scream.serviceConfig.ExecStart;
in
{
  # --- NAT -------------------------------------------------------------------------

  testNatService = {
    expr = {
      exec = exec nat;
      inherit (nat.systemd.user.services.scream) wantedBy;
      condition = nat.systemd.user.services.scream.unitConfig.ConditionUser;
      restart = nat.systemd.user.services.scream.serviceConfig.Restart;
    };
    expected = {
      exec = "${stub.scream}/bin/scream -o pulse -i virbr0";
      wantedBy = [ "default.target" ];
      condition = [ "|draxel" ];
      restart = "always";
    };
  };

  testNatFirewallOnVirbr0Only = {
    expr = nat.networking.firewall.interfaces;
    expected = {
      virbr0 = {
        allowedUDPPorts = [ 4010 ];
        allowedTCPPorts = [ ];
      };
    };
  };

  testNatNoWarningsNoFailures = {
    expr = {
      warnings = nat.warnings;
      failed = failedMessages nat;
    };
    expected = {
      warnings = [ ];
      failed = [ ];
    };
  };

  testWithoutLookingGlassUsersAnyNonSystemUser = {
    expr =
      (host [
        {
          virtualisation.vms.win11 = f.win11 // {
            secureBoot = false;
          };
          modules.vfio.enable = true;
        }
      ]).systemd.user.services.scream.unitConfig.ConditionUser;
    expected = "!@system";
  };

  # --- bridge ----------------------------------------------------------------------

  testBridgeService = {
    expr = {
      exec = exec bridge;
      firewall = lib.attrNames bridge.networking.firewall.interfaces;
      ports = bridge.networking.firewall.interfaces.br0.allowedUDPPorts;
    };
    expected = {
      exec = "${stub.scream}/bin/scream -o pulse -i br0";
      firewall = [ "br0" ];
      ports = [ 4010 ];
    };
  };

  testBridgeDeclared = {
    expr = {
      inherit (bridge.networking) bridges;
      dhcp = lib.mapAttrs (_: i: i.useDHCP) bridge.networking.interfaces;
      inherit (bridge.virtualisation.libvirtd) allowedBridges;
      inherit (bridge) warnings;
    };
    expected = {
      bridges.br0 = {
        interfaces = [ "enp6s0" ];
        rstp = false;
      };
      dhcp = {
        br0 = true;
        enp6s0 = false;
      };
      allowedBridges = [
        "virbr0"
        "br0"
      ];
      warnings = [ ];
    };
  };

  testUndeclaredBridgeWarns = {
    expr = (withNetwork { type = "bridge"; } { }).warnings;
    expected = [
      "virtualisation.vms.win11: network.bridge = \"br0\" is not declared in this configuration; it must exist when the VM starts (e.g. created with nmcli), or set modules.networking.bridge = { enable = true; interface = \"<your NIC>\"; }"
    ];
  };

  testBridgeWithoutVfio = {
    expr =
      (evalHost {
        modules.networking.bridge = {
          enable = true;
          name = "br1";
          interface = "eno1";
        };
      }).networking.bridges;
    expected = {
      br1 = {
        interfaces = [ "eno1" ];
        rstp = false;
      };
    };
  };

  # --- macvtap ---------------------------------------------------------------------

  testMacvtapWarnsAndRunsNoReceiver = {
    expr = {
      services = macvtap.systemd.user.services;
      firewall = macvtap.networking.firewall.interfaces;
      inherit (macvtap) warnings;
      failed = failedMessages macvtap;
    };
    expected = {
      services = { };
      firewall = { };
      warnings = [
        "modules.vfio.scream: virtualisation.vms.win11 uses network.type = \"macvtap\"; the host cannot receive a macvtap guest's traffic, so Scream gets no audio from it. Use network.type = \"nat\" or \"bridge\", or set modules.vfio.scream.enable = false"
      ];
      failed = [ ];
    };
  };

  # --- Secure Boot, several networks, off ---------------------------------------------

  testSecureBootWarns = {
    expr =
      (host [
        { virtualisation.vms.win11 = f.win11; }
        f.guideVfio
      ]).specialisation.vfio.configuration.warnings;
    expected = [
      "modules.vfio.scream: virtualisation.vms.win11 has secureBoot = true, but the Scream driver is not signed for Secure Boot: Windows only installs it with Secure Boot off (`bcdedit /set testsigning on`); set secureBoot = false on the VM to use Scream, or modules.vfio.scream.enable = false"
    ];
  };

  testTwoNetworksWarnsAndUsesFirst = {
    expr =
      let
        cfg = host [
          {
            virtualisation.vms.a = f.win11 // {
              network.type = "nat";
              secureBoot = false;
            };
            virtualisation.vms.b = {
              gpu = f.gpu2080ti;
              secureBoot = false;
              lookingGlass.enable = false;
              network = {
                type = "bridge";
                bridge = "br5";
              };
            };
            modules.vfio.enable = true;
            modules.vfio.lookingGlass = {
              enable = true;
              users = [ "draxel" ];
            };
            users.users.draxel.isNormalUser = true;
            networking.bridges.br5.interfaces = [ "eno2" ];
          }
        ];
      in
      {
        exec = exec cfg;
        warnings = lib.filter (lib.hasPrefix "modules.vfio.scream") cfg.warnings;
      };
    expected = {
      exec = "${stub.scream}/bin/scream -o pulse -i virbr0";
      warnings = [
        "modules.vfio.scream: the GPU VMs reach the host on [ \"virbr0\" \"br5\" ], but the receiver listens on \"virbr0\" only; put the VMs on one network or set modules.vfio.scream.interface"
      ];
    };
  };

  testScreamOff = {
    expr =
      let
        cfg = withNetwork { type = "nat"; } { modules.vfio.scream.enable = false; };
      in
      {
        services = cfg.systemd.user.services;
        firewall = cfg.networking.firewall.interfaces;
      };
    expected = {
      services = { };
      firewall = { };
    };
  };

  testUserNetworkingFails = {
    expr = failedMessages (withNetwork { type = "user"; } { });
    expected = [
      "modules.vfio.scream.enable = true but the host cannot receive Scream from any GPU VM: virtualisation.vms.win11 uses network.type = \"user\", which does not forward the guest's multicast to the host; set network.type = \"nat\" (or \"bridge\") on the VM, or modules.vfio.scream.enable = false"
    ];
  };

  testUserNetworkingWithExplicitInterfaceIsAccepted = {
    expr =
      let
        cfg = withNetwork { type = "user"; } { modules.vfio.scream.interface = "virbr1"; };
      in
      {
        failed = failedMessages cfg;
        exec = exec cfg;
      };
    expected = {
      failed = [ ];
      exec = "${stub.scream}/bin/scream -o pulse -i virbr1";
    };
  };
}
