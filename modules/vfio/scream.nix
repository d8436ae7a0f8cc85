# Scream (virtual sound card of the Windows guest, sent as UDP multicast to
# 239.255.77.77:4010) received on the host in the boot entry where
# modules.vfio.enable is set: a user service (the receiver must reach the
# user's PulseAudio/PipeWire server) for the listed users only, listening on
# the interface the GPU VMs' network reaches the host on. The firewall
# accepts UDP 4010 on that interface only from the GPU VMs' own NICs (by
# source MAC: network.mac, or the one vfio-helper derives, see nic-mac.nix),
# not from the rest of a LAN bridge: iptables `-m mac --mac-source` or
# nftables `ether saddr`, per networking.firewall.backend
# (nixos/modules/services/networking/firewall-{iptables,nftables}.nix).
#
#   network.type = "nat"     -> virbr0 (libvirt's default network)
#   network.type = "bridge"  -> the VM's network.bridge
#   network.type = "macvtap" -> none: the host cannot see a macvtap guest's
#                               traffic (a warning)
#   network.type = "user"    -> none: QEMU user networking does not forward
#                               multicast (an error unless another VM or
#                               scream.interface gives one)
{
  config,
  options,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.modules.vfio;
  sc = cfg.scream;
  derived = import ./derive.nix { inherit lib config; };
  inherit (derived) vms gpuVmNames vmList;
  vfioTypes = import ../lib/types.nix { inherit lib; };
  vfioUsers = import ../lib/users.nix { inherit lib; };

  interfaces = lib.unique (
    lib.filter (i: i != null) (map (n: derived.screamInterface vms.${n}) gpuVmNames)
  );
  byType = type: lib.filter (n: vms.${n}.network.type == type) gpuVmNames;
  macvtapVms = byType "macvtap";
  userNetVms = byType "user";
  secureBootVms = lib.filter (n: vms.${n}.secureBoot) gpuVmNames;

  lg = cfg.lookingGlass;
  # Users lookingGlass.users does not already report.
  notAccounts = lib.filter (
    n: !vfioUsers.isAccount config.users.users n && !(lg.enable && lib.elem n lg.users)
  ) sc.users;

  nicMac = import ./nic-mac.nix;

  # The GPU VMs whose Scream packets reach the receiver, with the MAC of the
  # NIC they come from.
  sources = lib.filter (s: s.interface == sc.interface) (
    map (name: {
      inherit name;
      interface = derived.screamInterface vms.${name};
      mac = if vms.${name}.network.mac != null then vms.${name}.network.mac else nicMac name 0;
    }) gpuVmNames
  );

  firewall = config.networking.firewall;
  firewallOn = firewall.enable or true;
  # networking.firewall.backend came with NixOS's firewalld module; before
  # it, networking.nftables.enable chose the nftables firewall, as it still
  # chooses backend's default.
  backend =
    firewall.backend or (if config.networking.nftables.enable or false then "nftables" else "iptables");
  # Rules in the syntax of each backend: appended to the nixos-fw chain by
  # the iptables firewall's start script (after the ports it opens, before
  # the final refuse), or to the input-allow chain of the nftables one.
  iptablesRules = lib.concatMapStrings (s: ''
    iptables -w -A nixos-fw -i ${s.interface} -p udp --dport 4010 -m mac --mac-source ${s.mac} -j nixos-fw-accept
  '') sources;
  nftablesRules = lib.concatMapStrings (s: ''
    iifname "${s.interface}" ether saddr ${s.mac} udp dport 4010 accept comment "Scream audio from a VFIO VM"
  '') sources;
  rulesWanted = firewallOn && sc.interface != null && sources != [ ];

  active = cfg.enable && sc.enable;
in
{
  options.modules.vfio.scream = {
    enable =
      lib.mkEnableOption ''
        receiving the VMs' Scream audio in the VFIO boot entry: a user
        service `scream` for each of `users`, playing to PulseAudio/PipeWire
        and listening on `interface`, where the firewall accepts UDP port
        4010 from the GPU VMs' NICs''
      // {
        default = sc.users != [ ];
        defaultText = lib.literalMD "`true` when `users` (by default `modules.vfio.lookingGlass.users`) names someone";
      };

    interface = lib.mkOption {
      type = lib.types.nullOr vfioTypes.interfaceName;
      default = if interfaces == [ ] then null else lib.head interfaces;
      defaultText = lib.literalMD "`virbr0` for `network.type = \"nat\"`, the VM's `network.bridge` for `\"bridge\"`: of the first GPU VM that has either, else null";
      description = ''
        Host interface Scream receives on (`scream -i`). Derived from the GPU
        VMs' network: `virbr0` for NAT, the bridge for bridge mode. The
        firewall accepts Scream's UDP port 4010 there only from the GPU VMs
        on that interface, by their NIC's MAC address.
      '';
    };

    users = lib.mkOption {
      type = lib.types.listOf vfioTypes.userName;
      default = lg.users;
      defaultText = lib.literalExpression "config.modules.vfio.lookingGlass.users";
      example = [ "draxel" ];
      description = ''
        Users whose sessions run the Scream receiver (a systemd user
        service playing to their PulseAudio/PipeWire server). At least one
        is needed: a receiver for every user who logs in would play the
        guest's audio into every session.
      '';
    };
  };

  config = lib.mkIf active {
    assertions = [
      {
        assertion = sc.interface == null || sc.users != [ ];
        message =
          "modules.vfio.scream.enable = true but modules.vfio.scream.users is empty (it defaults to modules.vfio.lookingGlass.users), "
          + "so the receiver would run in every user's session; set modules.vfio.scream.users = [ \"<your user name>\" ], or modules.vfio.scream.enable = false";
      }
      (vfioUsers.accountsAssertion "modules.vfio.scream.users" notAccounts)
      {
        assertion = sc.interface != null || macvtapVms != [ ] || gpuVmNames == [ ];
        message =
          "modules.vfio.scream.enable = true but the host cannot receive Scream from any GPU VM: "
          + "${vmList userNetVms} use${lib.optionalString (lib.length userNetVms == 1) "s"} network.type = \"user\", which does not forward the guest's multicast to the host; "
          + "set network.type = \"nat\" (or \"bridge\") on the VM, or modules.vfio.scream.enable = false";
      }
    ];

    warnings =
      lib.optional (macvtapVms != [ ]) (
        "modules.vfio.scream: ${vmList macvtapVms} use${lib.optionalString (lib.length macvtapVms == 1) "s"} network.type = \"macvtap\"; "
        + "the host cannot receive a macvtap guest's traffic, so Scream gets no audio from it. "
        + "Use network.type = \"nat\" or \"bridge\", or set modules.vfio.scream.enable = false"
      )
      ++ lib.optional (lib.length interfaces > 1 && sc.interface != null) (
        "modules.vfio.scream: the GPU VMs reach the host on ${derived.showList interfaces}, but the receiver listens on \"${sc.interface}\" only; "
        + "put the VMs on one network or set modules.vfio.scream.interface"
      )
      ++ lib.optional (firewallOn && sc.interface != null && sources == [ ]) (
        "modules.vfio.scream: no GPU VM reaches the host on \"${sc.interface}\" (modules.vfio.scream.interface), so the firewall accepts Scream's UDP port 4010 from none; "
        + "open it for your VM's MAC address yourself (networking.firewall.extraCommands or extraInputRules), or use network.type = \"nat\" or \"bridge\" on the VM"
      )
      ++ lib.optional (rulesWanted && backend != "iptables" && backend != "nftables") (
        "modules.vfio.scream: networking.firewall.backend = \"${backend}\" takes no rules from this module, so Scream's UDP port 4010 stays closed; "
        + "accept UDP 4010 on ${sc.interface} from ${lib.concatMapStringsSep ", " (s: s.mac) sources} in your firewall yourself"
      )
      ++ lib.optional (secureBootVms != [ ]) (
        "modules.vfio.scream: ${vmList secureBootVms} ha${if lib.length secureBootVms == 1 then "s" else "ve"} secureBoot = true, "
        + "but the Scream driver is not signed for Secure Boot: Windows only installs it with Secure Boot off "
        + "(`bcdedit /set testsigning on`); set secureBoot = false on the VM to use Scream, or modules.vfio.scream.enable = false"
      );

    systemd.user.services = lib.mkIf (sc.interface != null) {
      scream = {
        description = "Scream audio receiver for the VMs (${sc.interface})";
        wantedBy = [ "default.target" ];
        after = [
          "pipewire-pulse.service"
          "pulseaudio.service"
        ];
        unitConfig.ConditionUser = map (u: "|${u}") sc.users;
        serviceConfig = {
          ExecStart = "${pkgs.scream}/bin/scream -o pulse -i ${sc.interface}";
          # The interface (virbr0) only exists while libvirt's network is up.
          Restart = "always";
          RestartSec = 5;
        };
      };
    };

    # Guarded by `options ?`: a system without NixOS's firewall modules has
    # no such options (and no firewall to open).
    networking.firewall =
      lib.optionalAttrs (options ? networking.firewall.extraCommands) {
        extraCommands = lib.mkIf (rulesWanted && backend == "iptables") iptablesRules;
      }
      // lib.optionalAttrs (options ? networking.firewall.extraInputRules) {
        extraInputRules = lib.mkIf (rulesWanted && backend == "nftables") nftablesRules;
      };
  };
}
