# Tests of modules.vfio.scream (modules/vfio/scream.nix) and
# modules.networking.bridge (modules/networking.nix), in lib.runTests format.
{ lib, evalHost }:
let
  f = import ./vfio-fixtures.nix { inherit lib evalHost; };
  inherit (f) failedMessages;
  stub = import ../stub-pkgs.nix { inherit lib; };

  # NixOS's firewall options the module sets or reads, with their upstream
  # types and defaults: networking.firewall.{enable,backend} from
  # nixos/modules/services/networking/firewall.nix (backend only in NixOS
  # with the firewalld module), extraCommands from firewall-iptables.nix,
  # extraInputRules from firewall-nftables.nix, networking.nftables.enable
  # from nftables.nix. Each is declared here only while
  # checks/nixos-interface.nix does not declare it itself.
  plain = evalHost { };
  missing = set: name: !(set ? ${name});
  option =
    type: default: description:
    lib.mkOption { inherit type default description; };
  firewallOptions = firewallOptionsWith { withBackend = true; };
  firewallOptionsWith =
    { withBackend }:
    [
      (
        { config, ... }:
        {
          options.networking.firewall =
            lib.optionalAttrs (missing plain.networking.firewall "enable") {
              enable = option lib.types.bool true "Whether to enable the firewall.";
            }
            // lib.optionalAttrs (withBackend && missing plain.networking.firewall "backend") {
              backend = option (lib.types.enum [
                "iptables"
                "nftables"
                "firewalld"
              ]) (if config.networking.nftables.enable then "nftables" else "iptables") "Underlying implementation for the firewall service.";
            }
            // lib.optionalAttrs (missing plain.networking.firewall "extraCommands") {
              extraCommands = option lib.types.lines "" "Shell commands run by the iptables firewall's start script.";
            }
            // lib.optionalAttrs (missing plain.networking.firewall "extraInputRules") {
              extraInputRules = option lib.types.lines "" "nftables rules appended to the input-allow chain.";
            };
        }
      )
      {
        options.networking = lib.optionalAttrs (missing plain.networking "nftables") {
          nftables.enable = option lib.types.bool false "Whether to use nftables (and the nftables firewall).";
        };
      }
    ];

  host = modules: f.host (modules ++ firewallOptions);

  # The MAC vfio-helper derives for win11's NIC (rust/tests/golden/win11.xml).
  win11Mac = "52:54:00:24:76:83";
  iptablesRule = iface: mac: "iptables -w -A nixos-fw -i ${iface} -p udp --dport 4010 -m mac --mac-source ${mac} -j nixos-fw-accept\n";

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

  # Port 4010 is not opened for the whole interface, only for the VM's NIC.
  testNatFirewallAcceptsTheVmOnly = {
    expr = {
      inherit (nat.networking.firewall) interfaces extraCommands extraInputRules;
    };
    expected = {
      interfaces = { };
      extraCommands = iptablesRule "virbr0" win11Mac;
      extraInputRules = "";
    };
  };

  testNftablesBackend = {
    expr =
      let
        cfg = withNetwork { type = "nat"; } { networking.nftables.enable = true; };
      in
      {
        inherit (cfg.networking.firewall) extraCommands extraInputRules;
      };
    expected = {
      # The nftables firewall asserts extraCommands == "".
      extraCommands = "";
      extraInputRules = ''
        iifname "virbr0" ether saddr ${win11Mac} udp dport 4010 accept comment "Scream audio from a VFIO VM"
      '';
    };
  };

  # NixOS without networking.firewall.backend (before the firewalld module):
  # networking.nftables.enable chooses the nftables firewall.
  testNftablesWithoutABackendOption = {
    expr =
      let
        cfg = f.host (
          [
            {
              virtualisation.vms.win11 = f.win11 // {
                secureBoot = false;
              };
              modules.vfio.enable = true;
              modules.vfio.scream.users = [ "draxel" ];
              users.users.draxel.isNormalUser = true;
              networking.nftables.enable = true;
            }
          ]
          ++ firewallOptionsWith { withBackend = false; }
        );
      in
      {
        backendDeclared = cfg.networking.firewall ? backend;
        inherit (cfg.networking.firewall) extraCommands;
        nftables = lib.hasInfix "ether saddr ${win11Mac}" cfg.networking.firewall.extraInputRules;
      };
    expected = {
      backendDeclared = false;
      extraCommands = "";
      nftables = true;
    };
  };

  testFirewallOffAddsNoRules = {
    expr =
      let
        cfg = withNetwork { type = "nat"; } { networking.firewall.enable = false; };
      in
      {
        inherit (cfg.networking.firewall) extraCommands extraInputRules;
        inherit (cfg) warnings;
      };
    expected = {
      extraCommands = "";
      extraInputRules = "";
      warnings = [ ];
    };
  };

  testOtherFirewallBackendWarns = {
    expr = (withNetwork { type = "nat"; } { networking.firewall.backend = "firewalld"; }).warnings;
    expected = [
      "modules.vfio.scream: networking.firewall.backend = \"firewalld\" takes no rules from this module, so Scream's UDP port 4010 stays closed; accept UDP 4010 on virbr0 from ${win11Mac} in your firewall yourself"
    ];
  };

  testGivenMacIsUsed = {
    expr =
      (withNetwork {
        type = "nat";
        mac = "52:54:00:ab:cd:ef";
      } { }).networking.firewall.extraCommands;
    expected = iptablesRule "virbr0" "52:54:00:ab:cd:ef";
  };

  # Every GPU VM on the receiver's interface gets a rule; one on another
  # network does not (the receiver does not listen there).
  testRulesForTheVmsOnTheReceiversInterface = {
    expr =
      (host [
        {
          virtualisation.vms.a = f.win11 // {
            secureBoot = false;
          };
          virtualisation.vms.b = {
            gpu = f.gpu2080ti;
            lookingGlass.enable = false;
            network.mac = "52:54:00:00:00:0b";
          };
          virtualisation.vms.c = {
            gpu = f.gpu2080ti // {
              address = "0000:03:00.0";
              audioAddress = "0000:03:00.1";
              extraAddresses = [ ];
            };
            lookingGlass.enable = false;
            network = {
              type = "bridge";
              bridge = "br5";
            };
          };
          modules.vfio.enable = true;
          modules.vfio.scream.users = [ "draxel" ];
          users.users.draxel.isNormalUser = true;
          networking.bridges.br5.interfaces = [ "eno2" ];
        }
      ]).networking.firewall.extraCommands;
    expected =
      iptablesRule "virbr0" ((import ../../modules/vfio/nic-mac.nix) "a" 0)
      + iptablesRule "virbr0" "52:54:00:00:00:0b";
  };

  # The module derives the MACs exactly as vfio-helper does: every golden
  # domain without network.mac in its JSON has the MAC nic-mac.nix computes.
  testDerivedMacsMatchTheHelper = {
    expr =
      let
        dir = ../../rust/tests/golden;
        names = lib.filter (lib.hasSuffix ".json") (lib.attrNames (builtins.readDir dir));
        check =
          file:
          let
            json = builtins.fromJSON (builtins.readFile (dir + "/${file}"));
            xml = builtins.readFile (dir + "/${lib.removeSuffix ".json" file}.xml");
            name = lib.head (builtins.match ".*<name>([^<]*)</name>.*" xml);
            mac = lib.head (builtins.match ''.*<mac address="([0-9a-f:]*)"/>.*'' xml);
          in
          {
            inherit file;
            ok = mac == (import ../../modules/vfio/nic-mac.nix) name 0;
          };
        derived = lib.filter (file: ((builtins.fromJSON (builtins.readFile (dir + "/${file}"))).network.mac or null) == null) names;
      in
      {
        checked = lib.length derived >= 8;
        wrong = map (c: c.file) (lib.filter (c: !c.ok) (map check derived));
      };
    expected = {
      checked = true;
      wrong = [ ];
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

  # Without users the receiver would run in every session: by default it is
  # then off, and turned on by hand it is an error.
  testWithoutUsersNoReceiverByDefault = {
    expr =
      let
        cfg = host [
          {
            virtualisation.vms.win11 = f.win11 // {
              secureBoot = false;
            };
            modules.vfio.enable = true;
          }
        ];
      in
      {
        inherit (cfg.modules.vfio.scream) enable;
        services = cfg.systemd.user.services;
        rules = cfg.networking.firewall.extraCommands;
        failed = failedMessages cfg;
      };
    expected = {
      enable = false;
      services = { };
      rules = "";
      failed = [ ];
    };
  };

  testEnabledWithoutUsersFails = {
    expr = failedMessages (host [
      {
        virtualisation.vms.win11 = f.win11 // {
          secureBoot = false;
        };
        modules.vfio.enable = true;
        modules.vfio.scream.enable = true;
      }
    ]);
    expected = [
      "modules.vfio.scream.enable = true but modules.vfio.scream.users is empty (it defaults to modules.vfio.lookingGlass.users), so the receiver would run in every user's session; set modules.vfio.scream.users = [ \"<your user name>\" ], or modules.vfio.scream.enable = false"
    ];
  };

  testScreamUsersWithoutLookingGlass = {
    expr =
      let
        cfg = host [
          {
            virtualisation.vms.win11 = f.win11 // {
              secureBoot = false;
              lookingGlass.enable = false;
            };
            modules.vfio.enable = true;
            modules.vfio.scream.users = [
              "draxel"
              "guest"
            ];
            users.users.draxel.isNormalUser = true;
            users.users.guest.isNormalUser = true;
          }
        ];
      in
      {
        condition = cfg.systemd.user.services.scream.unitConfig.ConditionUser;
        failed = failedMessages cfg;
      };
    expected = {
      condition = [
        "|draxel"
        "|guest"
      ];
      failed = [ ];
    };
  };

  testScreamUsersMustBeAccounts = {
    expr = failedMessages (host [
      {
        virtualisation.vms.win11 = f.win11 // {
          secureBoot = false;
          lookingGlass.enable = false;
        };
        modules.vfio.enable = true;
        modules.vfio.scream.users = [ "alice" ];
      }
    ]);
    expected = [
      "modules.vfio.scream.users contains \"alice\", which is not a user of this system: NixOS creates an account only for users.users.<name> with isNormalUser or isSystemUser set; put your own user name in modules.vfio.scream.users, or declare the user, e.g. users.users.alice.isNormalUser = true"
    ];
  };

  # --- bridge ----------------------------------------------------------------------

  # On a LAN bridge only the VM may send to 4010, not every host of the LAN.
  testBridgeService = {
    expr = {
      exec = exec bridge;
      interfaces = bridge.networking.firewall.interfaces;
      rules = bridge.networking.firewall.extraCommands;
    };
    expected = {
      exec = "${stub.scream}/bin/scream -o pulse -i br0";
      interfaces = { };
      rules = iptablesRule "br0" win11Mac;
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
        rules = cfg.networking.firewall.extraCommands;
        inherit (cfg) warnings;
      };
    expected = {
      failed = [ ];
      exec = "${stub.scream}/bin/scream -o pulse -i virbr1";
      rules = "";
      warnings = [
        "modules.vfio.scream: no GPU VM reaches the host on \"virbr1\" (modules.vfio.scream.interface), so the firewall accepts Scream's UDP port 4010 from none; open it for your VM's MAC address yourself (networking.firewall.extraCommands or extraInputRules), or use network.type = \"nat\" or \"bridge\" on the VM"
      ];
    };
  };
}
