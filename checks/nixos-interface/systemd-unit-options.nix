# Stand-in for (nixpkgs, nixos-25.11):
#   nixos/lib/systemd-unit-options.nix  unitOption, sharedOptions,
#                                       commonUnitOptions, stage2 service,
#                                       socket, timer and slice options,
#                                       checkService (Type, Restart)
# (not a module itself), with the functions of ./systemd-lib.nix.
#
# Read from jonasc-ant/nixpkgs@b699b360 (25.05-25.11 era: `name`,
# `upheldBy`/`upholds`, `onSuccess`, `enableStrictShellChecks`; its fork-only
# `record` refactoring ignored). Left out: mount, automount, path and target
# units, the initrd (stage 1) variants, and two service options whose
# presence in 25.11 could not be confirmed (`enableDefaultPath`,
# `notSocketActivated`): our modules must not set them.
#
#   unitOptions = import ./systemd-unit-options.nix { inherit lib systemdLib; };
{ lib, systemdLib }:
let
  inherit (lib)
    mkOption
    mkIf
    mkMerge
    types
    concatMap
    ;
  inherit (systemdLib)
    unitNameType
    assertValueOneOf
    checkUnitConfig
    makeJobScript
    ;

  checkService = checkUnitConfig "Service" [
    (assertValueOneOf "Type" [
      "exec"
      "simple"
      "forking"
      "oneshot"
      "dbus"
      "notify"
      "notify-reload"
      "idle"
    ])
    (assertValueOneOf "Restart" [
      "no"
      "on-success"
      "on-failure"
      "on-abnormal"
      "on-abort"
      "always"
    ])
  ];

  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      if lib.any (def: lib.isList def.value) defs then
        concatMap (def: lib.toList def.value) defs
      else
        lib.mergeEqualOption loc defs;
  };

  unitNames =
    description:
    mkOption {
      default = [ ];
      type = types.listOf unitNameType;
      inherit description;
    };

  sharedOptions = {
    enable = mkOption {
      default = true;
      type = types.bool;
      description = "If set to false, this unit will be a symlink to /dev/null.";
    };
    name = mkOption {
      type = types.str;
      description = "The name of this systemd unit, including its extension.";
    };
    overrideStrategy = mkOption {
      default = "asDropinIfExists";
      type = types.enum [
        "asDropinIfExists"
        "asDropin"
      ];
      description = "Defines how unit configuration is provided for systemd.";
    };
    requiredBy = unitNames "Units that require (i.e. depend on and need to go down with) this unit.";
    upheldBy = unitNames "Keep this unit running as long as the listed units are running.";
    wantedBy = unitNames "Units that want (i.e. depend on) this unit.";
    aliases = unitNames "Aliases of that unit.";
  };

  concreteUnitOptions = sharedOptions // {
    text = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "Text of this systemd unit.";
    };
    unit = mkOption {
      internal = true;
      description = "The generated unit.";
    };
  };

  commonUnitOptions = {
    options = sharedOptions // {
      description = mkOption {
        default = "";
        type = types.singleLineStr;
        description = "Description of this unit used in systemd messages and progress indicators.";
      };
      documentation = mkOption {
        default = [ ];
        type = types.listOf types.str;
        description = "A list of URIs referencing documentation for this unit or its configuration.";
      };
      requires = unitNames "Start the specified units when this unit is started, and stop this unit when the specified units are stopped or fail.";
      wants = unitNames "Start the specified units when this unit is started.";
      upholds = unitNames "Keeps the specified running while this unit is running.";
      after = unitNames "If the specified units are started at the same time as this unit, delay this unit until they have started.";
      before = unitNames "If the specified units are started at the same time as this unit, delay them until this unit has started.";
      bindsTo = unitNames "Like `requires`, but also stop this unit when the specified units disappear.";
      partOf = unitNames "If the specified units are stopped or restarted, then this unit is stopped or restarted as well.";
      conflicts = unitNames "If the specified units are started, then this unit is stopped and vice versa.";
      requisite = unitNames "Similar to requires, but the listed units are not started.";
      unitConfig = mkOption {
        default = { };
        type = types.attrsOf unitOption;
        description = "Each attribute in this set specifies an option in the `[Unit]` section of the unit.";
      };
      onFailure = unitNames "Units activated when this unit enters the \"failed\" state.";
      onSuccess = unitNames "Units activated when this unit enters the \"inactive\" state.";
      startLimitBurst = mkOption {
        type = types.int;
        description = "Configure unit start rate limiting.";
      };
      startLimitIntervalSec = mkOption {
        type = types.int;
        description = "Configure unit start rate limiting.";
      };
    };
  };

  stage2CommonUnitOptions = {
    imports = [ commonUnitOptions ];
    options = {
      restartTriggers = mkOption {
        default = [ ];
        type = types.listOf types.unspecified;
        description = "If any item in the list changes between reconfigurations, the service will be restarted.";
      };
      reloadTriggers = mkOption {
        default = [ ];
        type = types.listOf unitOption;
        description = "If any item in the list changes between reconfigurations, the service will be reloaded.";
      };
    };
  };

  scriptOption =
    description:
    mkOption {
      type = types.lines;
      default = "";
      inherit description;
    };

  serviceOptions =
    { name, config, ... }:
    {
      options = {
        environment = mkOption {
          default = { };
          type =
            with types;
            attrsOf (
              nullOr (oneOf [
                str
                path
                package
              ])
            );
          description = "Environment variables passed to the service's processes.";
        };
        path = mkOption {
          default = [ ];
          type =
            with types;
            listOf (oneOf [
              package
              str
            ]);
          description = "Packages added to the service's {env}`PATH` environment variable.";
        };
        serviceConfig = mkOption {
          default = { };
          type = types.addCheck (types.attrsOf unitOption) checkService;
          description = "Each attribute in this set specifies an option in the `[Service]` section of the unit.";
        };
        enableStrictShellChecks = mkOption {
          type = types.bool;
          description = "Enable running `shellcheck` on the generated scripts for this unit.";
        };
        script = scriptOption "Shell commands executed as the service's main process.";
        scriptArgs = mkOption {
          type = types.str;
          default = "";
          description = "Arguments passed to the main process script.";
        };
        preStart = scriptOption "Shell commands executed before the service's main process is started.";
        postStart = scriptOption "Shell commands executed after the service's main process is started.";
        reload = scriptOption "Shell commands executed when the service's main process is reloaded.";
        preStop = scriptOption "Shell commands executed to stop the service.";
        postStop = scriptOption "Shell commands executed after the service's main process has exited.";
        jobScripts = mkOption {
          type = with types; coercedTo path lib.singleton (listOf path);
          internal = true;
          description = "A list of all job script derivations of this unit.";
          default = [ ];
        };
      };

      config =
        let
          job =
            suffix: text:
            makeJobScript {
              name = "${name}-${suffix}";
              inherit text;
              inherit (config) enableStrictShellChecks;
            };
        in
        mkMerge [
          (mkIf (config.preStart != "") rec {
            jobScripts = job "pre-start" config.preStart;
            serviceConfig.ExecStartPre = [ jobScripts ];
          })
          (mkIf (config.script != "") rec {
            jobScripts = job "start" config.script;
            serviceConfig.ExecStart = jobScripts + " " + config.scriptArgs;
          })
          (mkIf (config.postStart != "") rec {
            jobScripts = job "post-start" config.postStart;
            serviceConfig.ExecStartPost = [ jobScripts ];
          })
          (mkIf (config.reload != "") rec {
            jobScripts = job "reload" config.reload;
            serviceConfig.ExecReload = jobScripts;
          })
          (mkIf (config.preStop != "") rec {
            jobScripts = job "pre-stop" config.preStop;
            serviceConfig.ExecStop = jobScripts;
          })
          (mkIf (config.postStop != "") rec {
            jobScripts = job "post-stop" config.postStop;
            serviceConfig.ExecStopPost = jobScripts;
          })
        ];
    };

  stage2ServiceOptions = {
    imports = [
      stage2CommonUnitOptions
      serviceOptions
    ];
    options = {
      restartIfChanged = mkOption {
        type = types.bool;
        default = true;
        description = "Whether the service should be restarted during a NixOS configuration switch if its definition has changed.";
      };
      reloadIfChanged = mkOption {
        type = types.bool;
        default = false;
        description = "Whether the service should be reloaded during a NixOS configuration switch if its definition has changed.";
      };
      stopIfChanged = mkOption {
        type = types.bool;
        default = true;
        description = "If set, a changed unit is restarted by stopping it in the old configuration and starting it in the new one.";
      };
      startAt = mkOption {
        type = with types; either str (listOf str);
        default = [ ];
        example = "Sun 14:00:00";
        description = "Automatically start this unit at the given date/time.";
        apply = v: if lib.isList v then v else [ v ];
      };
    };
  };

  sectionOptions =
    attr: section:
    {
      options.${attr} = mkOption {
        default = { };
        type = types.attrsOf unitOption;
        description = "Each attribute in this set specifies an option in the `[${section}]` section of the unit.";
      };
    };

  socketOptions = {
    imports = [ (sectionOptions "socketConfig" "Socket") ];
    options = {
      listenStreams = mkOption {
        default = [ ];
        type = types.listOf types.str;
        description = "For each item in this list, a `ListenStream` option in the `[Socket]` section will be created.";
      };
      listenDatagrams = mkOption {
        default = [ ];
        type = types.listOf types.str;
        description = "For each item in this list, a `ListenDatagram` option in the `[Socket]` section will be created.";
      };
    };
  };
in
{
  inherit
    unitOption
    concreteUnitOptions
    stage2CommonUnitOptions
    stage2ServiceOptions
    sectionOptions
    socketOptions
    ;
}
