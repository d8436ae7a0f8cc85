# Stand-in for (nixpkgs, nixos-25.11):
#   nixos/modules/system/boot/systemd.nix          systemd.{package,
#                                                  enableStrictShellChecks,
#                                                  globalEnvironment, units,
#                                                  services, sockets, timers,
#                                                  slices}; the units generated
#                                                  from them (named by each
#                                                  unit's `name`); its warnings
#                                                  and assertions about services
#   nixos/modules/system/boot/systemd/user.nix     systemd.user.{units,services,
#                                                  timers,slices}
#   nixos/modules/system/boot/systemd/tmpfiles.nix systemd.tmpfiles.rules
# with the unit options and types of ./systemd-lib.nix,
# ./systemd-unit-options.nix and ./systemd-types.nix.
#
# Read from faukah/nixpkgs@3b20077c (systemd.nix, user.nix; 25.05-25.11 era)
# and the tmpfiles.nix options (unchanged since 23.x).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.systemd;
  # Upstream's utils.systemdUtils.{lib,unitOptions,types} (nixos/lib/utils.nix).
  systemdLib = import ./systemd-lib.nix { inherit config lib pkgs; };
  unitOptions = import ./systemd-unit-options.nix { inherit lib systemdLib; };
  unitTypes = import ./systemd-types.nix { inherit lib systemdLib unitOptions; };
  inherit (systemdLib)
    serviceToUnit
    socketToUnit
    timerToUnit
    sliceToUnit
    ;

  environmentType =
    with types;
    attrsOf (
      nullOr (oneOf [
        str
        path
        package
      ])
    );

  withName = toUnit: unit: lib.nameValuePair unit.name (toUnit unit);

  # Upstream's startLimitBurst and startLimitIntervalSec have no default: in
  # a unit that leaves them unset, reading them fails ("was accessed but has
  # no value defined"), so a whole unit cannot be forced. The stand-in drops
  # them from such units (its only deviation here), so that tests may force
  # every unit as building the system does; set, they are kept and checked.
  dropUnsetLimits = lib.mapAttrs (
    _: unit:
    lib.filterAttrs (
      n: v:
      !(lib.elem n [
        "startLimitBurst"
        "startLimitIntervalSec"
      ])
      || (builtins.tryEval v).success
    ) unit
  );

  unitsOption =
    type: description:
    mkOption {
      default = { };
      inherit type description;
      apply = dropUnsetLimits;
    };

  # startAt of a service becomes a timer (systemd.nix for enabled system
  # services, user.nix for every user service).
  timersOf =
    keep: services:
    lib.mapAttrs (_: service: {
      wantedBy = [ "timers.target" ];
      timerConfig.OnCalendar = service.startAt;
    }) (lib.filterAttrs (_: service: keep service && service.startAt != [ ]) services);

  netOnlineWarnings =
    typeStr: defs:
    lib.concatLists (
      lib.mapAttrsToList (
        name: def:
        lib.optional (
          lib.elem "network-online.target" def.after
          && !(lib.elem "network-online.target" (def.wants ++ def.requires ++ def.bindsTo))
        ) "${name}.${typeStr} is ordered after 'network-online.target' but doesn't depend on it"
      ) defs
    );
in
{
  options.systemd = {
    package = lib.mkPackageOption pkgs "systemd" { };

    enableStrictShellChecks = lib.mkEnableOption "" // {
      description = "Whether to run `shellcheck` on the generated scripts for systemd units.";
    };

    globalEnvironment = mkOption {
      type = environmentType;
      default = { };
      description = "Environment variables passed to *all* systemd units.";
    };

    units = mkOption {
      description = "Definition of systemd units; see {manpage}`systemd.unit(5)`.";
      default = { };
      type = unitTypes.units;
    };

    services = unitsOption unitTypes.services "Definition of systemd service units; see {manpage}`systemd.service(5)`.";

    sockets = unitsOption unitTypes.sockets "Definition of systemd socket units; see {manpage}`systemd.socket(5)`.";

    timers = unitsOption unitTypes.timers "Definition of systemd timer units; see {manpage}`systemd.timer(5)`.";

    slices = unitsOption unitTypes.slices "Definition of slice configurations; see {manpage}`systemd.slice(5)`.";

    user = {
      units = mkOption {
        description = "Definition of systemd per-user units.";
        default = { };
        type = unitTypes.units;
      };
      services = unitsOption unitTypes.services "Definition of systemd per-user service units.";
      timers = unitsOption unitTypes.timers "Definition of systemd per-user timer units.";
      slices = unitsOption unitTypes.slices "Definition of systemd per-user slice units.";
    };

    tmpfiles.rules = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "d /tmp 1777 root root 10d" ];
      description = "Rules for creation, deletion and cleaning of volatile and temporary files automatically.";
    };
  };

  config = {
    warnings =
      lib.concatLists (
        lib.mapAttrsToList (
          name: service:
          let
            type = service.serviceConfig.Type or "";
            restart = service.serviceConfig.Restart or "no";
          in
          lib.optional (
            type == "oneshot" && (restart == "always" || restart == "on-success")
          ) "Service '${name}.service' with 'Type=oneshot' cannot have 'Restart=always' or 'Restart=on-success'"
          ++ lib.optional (service.serviceConfig ? StartLimitInterval) "Service '${name}.service' uses the attribute 'StartLimitInterval' in the Service section, which is deprecated. See https://github.com/NixOS/nixpkgs/issues/45786."
          ++ lib.optional (
            service.reloadIfChanged && service.reloadTriggers != [ ]
          ) "Service '${name}.service' has both 'reloadIfChanged' and 'reloadTriggers' set. This is probably not what you want, because 'reloadTriggers' behave the same whay as 'restartTriggers' if 'reloadIfChanged' is set."
        ) cfg.services
      )
      ++ netOnlineWarnings "service" cfg.services
      ++ netOnlineWarnings "socket" cfg.sockets
      ++ netOnlineWarnings "timer" cfg.timers
      ++ netOnlineWarnings "slice" cfg.slices;

    assertions = lib.concatLists (
      lib.mapAttrsToList (
        name: service:
        lib.optional (lib.elem "network-interfaces.target" service.after || lib.elem "network-interfaces.target" service.wants) {
          assertion = false;
          message = "Service '${name}.service' is using the deprecated target network-interfaces.target, which no longer exists. Using network.target is recommended instead.";
        }
      ) cfg.services
    );

    systemd.units =
      lib.mapAttrs' (_: withName serviceToUnit) cfg.services
      // lib.mapAttrs' (_: withName sliceToUnit) cfg.slices
      // lib.mapAttrs' (_: withName socketToUnit) cfg.sockets
      // lib.mapAttrs' (_: withName timerToUnit) cfg.timers;

    systemd.timers = timersOf (service: service.enable) cfg.services;

    systemd.user.units =
      lib.mapAttrs' (n: v: lib.nameValuePair "${n}.service" (serviceToUnit v)) cfg.user.services
      // lib.mapAttrs' (n: v: lib.nameValuePair "${n}.slice" (sliceToUnit v)) cfg.user.slices
      // lib.mapAttrs' (n: v: lib.nameValuePair "${n}.timer" (timerToUnit v)) cfg.user.timers;

    systemd.user.timers = timersOf (_: true) cfg.user.services;
  };
}
