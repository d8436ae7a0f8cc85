# Scream (virtual sound card of the Windows guest, sent as UDP multicast to
# 239.255.77.77:4010) received on the host in the boot entry where
# modules.vfio.enable is set: a user service (the receiver must reach the
# user's PulseAudio/PipeWire server) listening on the interface the GPU VMs'
# network reaches the host on, with UDP 4010 opened on that interface only.
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
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkOption
    mkIf
    types
    ;

  cfg = config.modules.vfio;
  sc = cfg.scream;
  derived = import ./derive.nix { inherit lib config; };
  inherit (derived) vms gpuVmNames;

  interfaces = lib.unique (
    lib.filter (i: i != null) (map (n: derived.screamInterface vms.${n}) gpuVmNames)
  );
  byType = type: lib.filter (n: vms.${n}.network.type == type) gpuVmNames;
  macvtapVms = byType "macvtap";
  userNetVms = byType "user";
  secureBootVms = lib.filter (n: vms.${n}.secureBoot) gpuVmNames;

  # The users of lookingGlass.users get the receiver; without any, every
  # non-system user does.
  users = cfg.lookingGlass.users;

  active = cfg.enable && sc.enable;
  vmList = names: lib.concatMapStringsSep ", " (n: "virtualisation.vms.${n}") names;
in
{
  options.modules.vfio.scream = {
    enable = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Receive the VMs' Scream audio in the VFIO boot entry: a user service
        `scream` playing to PulseAudio/PipeWire, listening on `interface`,
        with UDP port 4010 open on that interface.
      '';
    };

    interface = mkOption {
      type = types.nullOr (types.strMatching "[A-Za-z0-9_.:-]{1,15}");
      default = if interfaces == [ ] then null else lib.head interfaces;
      defaultText = lib.literalMD "`virbr0` for `network.type = \"nat\"`, the VM's `network.bridge` for `\"bridge\"`: of the first GPU VM that has either, else null";
      description = ''
        Host interface Scream receives on (`scream -i`). Derived from the GPU
        VMs' network: `virbr0` for NAT, the bridge for bridge mode.
      '';
    };
  };

  config = mkIf active {
    assertions = [
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
      ++ lib.optional (secureBootVms != [ ]) (
        "modules.vfio.scream: ${vmList secureBootVms} ha${if lib.length secureBootVms == 1 then "s" else "ve"} secureBoot = true, "
        + "but the Scream driver is not signed for Secure Boot: Windows only installs it with Secure Boot off "
        + "(`bcdedit /set testsigning on`); set secureBoot = false on the VM to use Scream, or modules.vfio.scream.enable = false"
      );

    systemd.user.services = mkIf (sc.interface != null) {
      scream = {
        description = "Scream audio receiver for the VMs (${sc.interface})";
        wantedBy = [ "default.target" ];
        after = [
          "pipewire-pulse.service"
          "pulseaudio.service"
        ];
        unitConfig.ConditionUser = if users != [ ] then map (u: "|${u}") users else "!@system";
        serviceConfig = {
          ExecStart = "${pkgs.scream}/bin/scream -o pulse -i ${sc.interface}";
          # The interface (virbr0) only exists while libvirt's network is up.
          Restart = "always";
          RestartSec = 5;
        };
      };
    };

    networking.firewall.interfaces = mkIf (sc.interface != null) {
      ${sc.interface}.allowedUDPPorts = [ 4010 ];
    };
  };
}
