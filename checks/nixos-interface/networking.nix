# Stand-in for (nixpkgs, nixos-25.11):
#   nixos/modules/tasks/network-interfaces.nix   networking.{hostName, domain,
#                                                hostId, enableIPv6,
#                                                tempAddresses, useDHCP,
#                                                interfaces, bridges}: the
#                                                interface submodule (with its
#                                                renamed/removed options) and
#                                                the assertions on interfaces,
#                                                bridge slaves and hostId
#   nixos/modules/services/networking/firewall.nix  networking.firewall.*
#                                                (ports are canonicalised by
#                                                their `apply`), its assertions
#   nixos/modules/services/networking/nftables.nix  networking.nftables.enable
#
# Read from faukah/nixpkgs@3b20077c (25.05-25.11 era). Options our modules
# never set (bonds, vlans, wlanInterfaces, most firewall knobs) are left out.
{
  config,
  options,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.networking;
  interfaces = lib.attrValues cfg.interfaces;

  tempaddrValues = {
    disabled.sysctl = "0";
    enabled.sysctl = "1";
    default.sysctl = "2";
  };

  addrOpts = v: {
    options = {
      address = mkOption {
        type = types.str;
        description = "IPv${toString v} address of the interface.";
      };
      prefixLength = mkOption {
        type = types.addCheck types.int (n: n >= 0 && n <= (if v == 4 then 32 else 128));
        description = "Subnet mask of the interface, as the number of bits in the prefix.";
      };
    };
  };

  routeOpts = v: {
    options = {
      address = mkOption {
        type = types.str;
        description = "IPv${toString v} address of the network.";
      };
      prefixLength = mkOption {
        type = types.addCheck types.int (n: n >= 0 && n <= (if v == 4 then 32 else 128));
        description = "Subnet mask of the network, as the number of bits in the prefix.";
      };
      type = mkOption {
        type = types.nullOr (
          types.enum [
            "unicast"
            "local"
            "broadcast"
            "multicast"
          ]
        );
        default = null;
        description = "Type of the route.";
      };
      via = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "IPv${toString v} address of the next hop.";
      };
      options = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Other route options.";
      };
    };
  };

  interfaceOpts =
    { name, ... }:
    {
      options = {
        name = mkOption {
          example = "eth0";
          type = types.str;
          description = "Name of the interface.";
        };
        tempAddress = mkOption {
          type = types.enum (lib.attrNames tempaddrValues);
          default = cfg.tempAddresses;
          defaultText = lib.literalExpression "config.networking.tempAddresses";
          description = "Use of IPv6 temporary addresses on this interface.";
        };
        useDHCP = mkOption {
          type = types.nullOr types.bool;
          default = null;
          description = "Whether this interface should be configured with DHCP.";
        };
        ipv4.addresses = mkOption {
          default = [ ];
          type = with types; listOf (submodule (addrOpts 4));
          description = "List of IPv4 addresses that will be statically assigned to the interface.";
        };
        ipv6.addresses = mkOption {
          default = [ ];
          type = with types; listOf (submodule (addrOpts 6));
          description = "List of IPv6 addresses that will be statically assigned to the interface.";
        };
        ipv4.routes = mkOption {
          default = [ ];
          type = with types; listOf (submodule (routeOpts 4));
          description = "List of extra IPv4 static routes that will be assigned to the interface.";
        };
        ipv6.routes = mkOption {
          default = [ ];
          type = with types; listOf (submodule (routeOpts 6));
          description = "List of extra IPv6 static routes that will be assigned to the interface.";
        };
        macAddress = mkOption {
          default = null;
          type = types.nullOr types.str;
          description = "MAC address of the interface. Leave empty to use the default.";
        };
        mtu = mkOption {
          default = null;
          type = types.nullOr types.int;
          description = "MTU size for packets leaving the interface.";
        };
        virtual = mkOption {
          default = false;
          type = types.bool;
          description = "Whether this interface is virtual and should be created by tunctl.";
        };
        virtualOwner = mkOption {
          default = "root";
          type = types.str;
          description = "In case of a virtual device, the user who owns it.";
        };
        virtualType = mkOption {
          default = if lib.hasPrefix "tun" name then "tun" else "tap";
          type = types.enum [
            "tun"
            "tap"
          ];
          description = "The type of interface to create.";
        };
        proxyARP = mkOption {
          default = false;
          type = types.bool;
          description = "Turn on proxy_arp for this device.";
        };
        wakeOnLan = {
          enable = mkOption {
            type = types.bool;
            default = false;
            description = "Whether to enable wol on this interface.";
          };
          policy = mkOption {
            type =
              with types;
              listOf (enum [
                "phy"
                "unicast"
                "multicast"
                "broadcast"
                "arp"
                "magic"
                "secureon"
              ]);
            default = [ "magic" ];
            description = "The Wake-on-LAN policy to set for the device.";
          };
        };
      };

      config.name = lib.mkDefault name;

      # Renamed or removed options (they warn or fail inside the submodule).
      imports = [
        (lib.mkRenamedOptionModule [ "ip4" ] [ "ipv4" "addresses" ])
        (lib.mkRenamedOptionModule [ "ip6" ] [ "ipv6" "addresses" ])
        (lib.mkRemovedOptionModule [ "subnetMask" ] ''
          Supply a prefix length instead; use option
          networking.interfaces.<name>.ipv{4,6}.addresses'')
        {
          options.warnings = options.warnings;
          options.assertions = options.assertions;
        }
      ];
    };

  slaves = lib.concatMap (i: i.interfaces) (lib.attrValues cfg.bridges);
  slaveIfs = map (i: cfg.interfaces.${i}) (lib.filter (i: cfg.interfaces ? ${i}) slaves);
  isHexString = s: lib.all (c: lib.elem c (lib.stringToCharacters "0123456789abcdef")) (lib.stringToCharacters (lib.toLower s));

  # firewall.nix
  canonicalizePortList = ports: lib.unique (builtins.sort builtins.lessThan ports);
  portOptions = {
    allowedTCPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
      apply = canonicalizePortList;
      description = "List of TCP ports on which incoming connections are accepted.";
    };
    allowedTCPPortRanges = mkOption {
      type = types.listOf (types.attrsOf types.port);
      default = [ ];
      description = "A range of TCP ports on which incoming connections are accepted.";
    };
    allowedUDPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
      apply = canonicalizePortList;
      description = "List of open UDP ports.";
    };
    allowedUDPPortRanges = mkOption {
      type = types.listOf (types.attrsOf types.port);
      default = [ ];
      description = "Range of open UDP ports.";
    };
  };
  fw = cfg.firewall;
in
{
  options.networking = {
    hostName = mkOption {
      default = config.system.nixos.distroId;
      defaultText = lib.literalExpression "config.system.nixos.distroId";
      type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
      description = "The name of the machine (a valid DNS label, no domain part).";
    };
    domain = mkOption {
      default = null;
      type = types.nullOr types.str;
      description = "The domain.";
    };
    hostId = mkOption {
      default = null;
      type = types.nullOr types.str;
      description = "The 32-bit host ID of the machine, formatted as 8 hexadecimal characters.";
    };
    enableIPv6 = mkOption {
      default = true;
      type = types.bool;
      description = "Whether to enable support for IPv6.";
    };
    useDHCP = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to use DHCP on interfaces without manually configured IPv4 addresses.";
    };
    tempAddresses = mkOption {
      default = if cfg.enableIPv6 then "default" else "disabled";
      type = types.enum (lib.attrNames tempaddrValues);
      description = "Whether to enable IPv6 Privacy Extensions for interfaces not configured explicitly.";
    };
    interfaces = mkOption {
      default = { };
      type = with types; attrsOf (submodule interfaceOpts);
      description = "The configuration for each network interface.";
    };
    bridges = mkOption {
      default = { };
      description = "Ethernet bridge devices, by name.";
      type = types.attrsOf (
        types.submodule {
          options = {
            interfaces = mkOption {
              example = [
                "eth0"
                "eth1"
              ];
              type = types.listOf types.str;
              description = "The physical network interfaces connected by the bridge.";
            };
            rstp = mkOption {
              default = false;
              type = types.bool;
              description = "Whether the bridge interface should enable rstp.";
            };
          };
        }
      );
    };

    nftables.enable = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to enable nftables.";
    };

    firewall = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Whether to enable the firewall.";
      };
      package = mkOption {
        type = types.package;
        default = if cfg.nftables.enable then pkgs.nftables else pkgs.iptables;
        description = "The package to use for running the firewall service.";
      };
      trustedInterfaces = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Traffic coming in from these interfaces will be accepted unconditionally.";
      };
      filterForward = mkOption {
        type = types.bool;
        default = false;
        description = "Enable filtering in IP forwarding (nftables firewall only).";
      };
      autoLoadConntrackHelpers = mkOption {
        type = types.bool;
        default = false;
        description = "Whether to auto-load connection-tracking helpers.";
      };
      # nixos/modules/services/networking/firewall-iptables.nix
      extraCommands = mkOption {
        type = types.lines;
        default = "";
        description = "Additional shell commands executed as part of the firewall initialisation script.";
      };
      extraStopCommands = mkOption {
        type = types.lines;
        default = "";
        description = "Additional shell commands executed as part of the firewall shutdown script.";
      };
      # nixos/modules/services/networking/firewall-nftables.nix
      extraInputRules = mkOption {
        type = types.lines;
        default = "";
        description = "Additional nftables rules to be appended to the input-allow chain.";
      };
      interfaces = mkOption {
        default = { };
        type = with types; attrsOf (submodule [ { options = portOptions; } ]);
        description = "Interface-specific open ports.";
      };
    }
    // portOptions;
  };

  config = {
    warnings = lib.concatMap (i: i.warnings) interfaces;

    assertions =
      map (i: {
        # IFNAMSIZ is 16 bytes, with the trailing null byte.
        assertion = lib.stringLength i.name < 16;
        message = ''
          The name of networking.interfaces."${i.name}" is too long, it needs to be less than 16 characters.
        '';
      }) interfaces
      ++ map (i: {
        assertion = i.ipv4.addresses == [ ] && i.ipv6.addresses == [ ];
        message = ''
          The networking.interfaces."${i.name}" must not have any defined ips when it is a slave.
        '';
      }) slaveIfs
      ++ map (i: {
        assertion = i.tempAddress != "disabled" -> cfg.enableIPv6;
        message = ''
          Temporary addresses are only needed when IPv6 is enabled.
        '';
      }) interfaces
      ++ map (i: {
        assertion = (i.virtual && i.virtualType == "tun") -> i.macAddress == null;
        message = ''
          Setting a MAC Address for tun device ${i.name} isn't supported.
        '';
      }) interfaces
      ++ [
        {
          assertion = cfg.hostId == null || (lib.stringLength cfg.hostId == 8 && isHexString cfg.hostId);
          message = "Invalid value given to the networking.hostId option.";
        }
      ]
      ++ lib.optionals fw.enable [
        {
          assertion = fw.filterForward -> cfg.nftables.enable;
          message = "filterForward only works with the nftables based firewall";
        }
        # nixos/modules/services/networking/firewall-nftables.nix
        {
          assertion = cfg.nftables.enable -> fw.extraCommands == "";
          message = "extraCommands is incompatible with the nftables based firewall: ${fw.extraCommands}";
        }
        {
          assertion = fw.autoLoadConntrackHelpers -> lib.versionOlder config.boot.kernelPackages.kernel.version "6";
          message = "conntrack helper autoloading has been removed from kernel 6.0 and newer";
        }
      ];

    networking.firewall.trustedInterfaces = lib.mkIf fw.enable [ "lo" ];
  };
}
