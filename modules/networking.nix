# modules.networking.bridge: a host bridge for VMs with network.type = "bridge",
# so they appear on the LAN and can reach the host. The physical interface is
# enslaved to the bridge and the host's address moves to the bridge (DHCP by
# default).
{
  config,
  lib,
  ...
}:
let
  cfg = config.modules.networking.bridge;

  ifaceType = (import ./lib/types.nix { inherit lib; }).interfaceName;
  inherit (import ./lib/options.nix { inherit lib; }) mkNullOption;

  vms = config.virtualisation.vms or { };
  # VMs that attach to a bridge no one declares in this configuration.
  undeclared = lib.filter (
    n: vms.${n}.network.type == "bridge" && !(config.networking.bridges ? ${vms.${n}.network.bridge})
  ) (lib.attrNames vms);
in
{
  options.modules.networking.bridge = {
    enable = lib.mkEnableOption ''
      the host bridge `name` with the physical NIC `interface` in it, for
      VMs with `network.type = "bridge"`'';

    name = lib.mkOption {
      type = ifaceType;
      default = "br0";
      description = "Name of the bridge (the VMs' `network.bridge`).";
    };

    interface = mkNullOption ifaceType {
      example = "enp6s0";
      description = "Physical NIC to put into the bridge (see `ip link`).";
    };
  };

  config = lib.mkMerge [
    (lib.mkIf cfg.enable {
      assertions = [
        {
          assertion = cfg.interface != null;
          message = "modules.networking.bridge.enable = true needs modules.networking.bridge.interface, the physical NIC to put into ${cfg.name} (e.g. \"enp6s0\", see `ip link`)";
        }
        {
          assertion = cfg.interface != cfg.name;
          message = "modules.networking.bridge.interface = \"${toString cfg.interface}\" is the bridge itself; set it to the physical NIC (e.g. \"enp6s0\")";
        }
      ];

      networking.bridges.${cfg.name}.interfaces = lib.optional (cfg.interface != null) cfg.interface;
      networking.interfaces = {
        ${cfg.name}.useDHCP = lib.mkDefault true;
      }
      // lib.optionalAttrs (cfg.interface != null) {
        ${cfg.interface}.useDHCP = lib.mkDefault false;
      };
      # qemu-bridge-helper (qemu:///session) may use the bridge too.
      virtualisation.libvirtd.allowedBridges = [
        "virbr0"
        cfg.name
      ];
    })

    {
      warnings = map (
        n:
        "virtualisation.vms.${n}: network.bridge = \"${vms.${n}.network.bridge}\" is not declared in this configuration; "
        + "it must exist when the VM starts (e.g. created with nmcli), or set modules.networking.bridge = { enable = true; interface = \"<your NIC>\"; }"
      ) undeclared;
    }
  ];
}
