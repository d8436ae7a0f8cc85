# The unit option types and unit text of NixOS's systemd modules, reproduced
# for the stand-in (not a module itself):
#
#   nixos/lib/systemd-lib.nix           unitNameType, assertValueOneOf,
#                                       checkUnitConfig, toOption,
#                                       attrsToSection, makeJobScript, makeUnit,
#                                       the unitConfig/serviceConfig/... modules,
#                                       commonUnitText and the *ToUnit functions
#   nixos/lib/systemd-unit-options.nix  unitOption, sharedOptions,
#                                       commonUnitOptions, stage2 service,
#                                       socket, timer and slice options,
#                                       checkService (Type, Restart)
#   nixos/lib/systemd-types.nix         units, services, slices, sockets, timers
#
# Read from nixpkgs copies with `name`, `upheldBy`/`upholds`, `onSuccess` and
# `enableStrictShellChecks` (25.05-25.11 era): systemd-lib.nix of
# SuperSandro2000/nixpkgs@06bf2ae6, systemd-types.nix of
# faukah/nixpkgs@3b20077c, systemd-unit-options.nix of jonasc-ant/nixpkgs@b699b360
# (its fork-only `record` refactoring ignored). Left out: mount, automount,
# path and target units, the initrd (stage 1) variants, and two service
# options whose presence in 25.11 could not be confirmed
# (`enableDefaultPath`, `notSocketActivated`): our modules must not set them.
#
#   systemdLib = import ./systemd-lib.nix { inherit config lib pkgs; };
{
  config,
  lib,
  pkgs,
}:
let
  inherit (lib)
    mkOption
    mkIf
    mkMerge
    types
    optional
    optionalAttrs
    optionalString
    concatMap
    concatStrings
    concatStringsSep
    concatMapStrings
    ;

  cfg = config.systemd;

  # --- systemd-lib.nix --------------------------------------------------------

  shellEscape = s: lib.replaceStrings [ "\\" ] [ "\\\\" ] s;
  mkPathSafeName = lib.replaceStrings [ "@" ":" "\\" "[" "]" ] [ "-" "-" "-" "" "" ];

  unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";

  assertValueOneOf =
    name: values: group: attr:
    optional (
      attr ? ${name} && !lib.elem attr.${name} values
    ) "Systemd ${group} field `${name}' cannot have value `${toString attr.${name}}'.";

  # Applied to the whole attrsOf value, so definitions may still be wrapped in
  # mkOverride/mkIf; unwrap them before checking. A failed check traces its
  # errors and makes the type check fail.
  checkUnitConfig =
    group: checks: attrs:
    let
      defs = lib.mapAttrs (
        _: v:
        if v._type or "" == "override" then
          v.content
        else if v._type or "" == "if" then
          v.content
        else
          v
      ) attrs;
      errors = concatMap (c: c group defs) checks;
    in
    if errors == [ ] then true else builtins.trace (concatStringsSep "\n" errors) false;

  toOption =
    x:
    if x == true then
      "true"
    else if x == false then
      "false"
    else
      toString x;

  # Upstream writes each value with toString, so a set without outPath or a
  # function fails the build ("cannot coerce a set to a string"); the
  # stand-in fails there too, with a catchable error naming the option.
  writable =
    name: x:
    if lib.isFunction x || (lib.isAttrs x && !(x ? outPath) && !(x ? __toString)) then
      throw "systemd unit option `${name}': a ${builtins.typeOf x} cannot be written into a unit file (NixOS: cannot coerce a ${builtins.typeOf x} to a string)"
    else
      x;

  attrsToSection =
    as:
    concatStrings (
      lib.concatLists (
        lib.mapAttrsToList (
          name: value:
          map (x: ''
            ${name}=${toOption (writable name x)}
          '') (if lib.isList value then value else [ value ])
        ) as
      )
    );

  makeUnit =
    name: unit:
    if unit.enable then
      pkgs.runCommand "unit-${mkPathSafeName name}" {
        text = optionalString (unit.text != null) unit.text;
      } "name=${shellEscape name}"
    else
      pkgs.runCommand "unit-${mkPathSafeName name}-disabled" { } "name=${shellEscape name}";

  makeJobScript =
    {
      name,
      text,
      enableStrictShellChecks,
    }:
    let
      scriptName = lib.replaceStrings [ "\\" "@" ] [ "-" "_" ] (shellEscape name);
      out =
        (
          if !enableStrictShellChecks then
            pkgs.writeShellScriptBin scriptName ''
              set -e

              ${text}
            ''
          else
            pkgs.writeShellApplication {
              name = scriptName;
              inherit text;
            }
        ).overrideAttrs
          (_: {
            name = "unit-script-${scriptName}";
          });
    in
    lib.getExe out;

  # --- systemd-unit-options.nix ---------------------------------------------

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

  # --- systemd-lib.nix: the modules that fill in the unit ---------------------

  unitConfig =
    {
      config,
      name,
      options,
      ...
    }:
    {
      config.unitConfig =
        let
          list = attr: key: optionalAttrs (config.${attr} != [ ]) { ${key} = toString config.${attr}; };
          triggers =
            key: items:
            optionalAttrs (items != [ ]) {
              ${key} = "${pkgs.writeText "${key}-${name}" (
                toString (map (x: if lib.isPath x then "${x}" else x) (lib.flatten items))
              )}";
            };
        in
        list "requires" "Requires"
        // list "wants" "Wants"
        // list "upholds" "Upholds"
        // list "after" "After"
        // list "before" "Before"
        // list "bindsTo" "BindsTo"
        // list "partOf" "PartOf"
        // list "conflicts" "Conflicts"
        // list "requisite" "Requisite"
        // triggers "X-Restart-Triggers" (config.restartTriggers or [ ])
        // triggers "X-Reload-Triggers" (config.reloadTriggers or [ ])
        // optionalAttrs (config.description != "") { Description = config.description; }
        // list "documentation" "Documentation"
        // list "onFailure" "OnFailure"
        // list "onSuccess" "OnSuccess"
        // optionalAttrs options.startLimitIntervalSec.isDefined {
          StartLimitIntervalSec = toString config.startLimitIntervalSec;
        }
        // optionalAttrs options.startLimitBurst.isDefined {
          StartLimitBurst = toString config.startLimitBurst;
        };
    };

  serviceConfig =
    { name, config, ... }:
    {
      config = {
        name = "${name}.service";
        environment.PATH = mkIf (
          config.path != [ ]
        ) "${lib.makeBinPath config.path}:${lib.makeSearchPathOutput "bin" "sbin" config.path}";
        enableStrictShellChecks = lib.mkOptionDefault cfg.enableStrictShellChecks;
      };
    };

  stage2ServiceConfig = {
    imports = [ serviceConfig ];
    # Default path for systemd services.
    config.path = lib.mkAfter [
      pkgs.coreutils
      pkgs.findutils
      pkgs.gnugrep
      pkgs.gnused
      cfg.package
    ];
  };

  named = suffix: { name, ... }: { config.name = "${name}.${suffix}"; };

  commonUnitText =
    def: lines:
    ''
      [Unit]
      ${attrsToSection def.unitConfig}
    ''
    + lines
    + optionalString (def.wantedBy != [ ]) ''

      [Install]
      WantedBy=${concatStringsSep " " def.wantedBy}
    '';

  unitFields = def: {
    inherit (def)
      name
      aliases
      wantedBy
      requiredBy
      upheldBy
      enable
      overrideStrategy
      ;
  };

  sectionToUnit =
    section: attr: def:
    unitFields def
    // {
      text = commonUnitText def ''
        [${section}]
        ${attrsToSection def.${attr}}
      '';
    };
in
{
  inherit unitNameType unitOption attrsToSection;

  types = {
    units = types.attrsOf (
      types.submodule (
        { name, config, ... }:
        {
          options = concreteUnitOptions;
          config = {
            name = lib.mkDefault name;
            unit = lib.mkDefault (makeUnit name config);
          };
        }
      )
    );
    services = types.attrsOf (
      types.submodule [
        stage2ServiceOptions
        unitConfig
        stage2ServiceConfig
      ]
    );
    sockets = types.attrsOf (
      types.submodule [
        stage2CommonUnitOptions
        socketOptions
        unitConfig
        (named "socket")
      ]
    );
    timers = types.attrsOf (
      types.submodule [
        stage2CommonUnitOptions
        (sectionOptions "timerConfig" "Timer")
        unitConfig
        (named "timer")
      ]
    );
    slices = types.attrsOf (
      types.submodule [
        stage2CommonUnitOptions
        (sectionOptions "sliceConfig" "Slice")
        unitConfig
        (named "slice")
      ]
    );
  };

  serviceToUnit =
    def:
    unitFields def
    // {
      text = commonUnitText def (
        ''
          [Service]
        ''
        + (
          let
            env = cfg.globalEnvironment // def.environment;
          in
          concatMapStrings (
            n:
            let
              s = optionalString (env.${n} != null) "Environment=${builtins.toJSON "${n}=${env.${n}}"}\n";
            in
            if lib.stringLength s >= 1048576 then
              throw "The value of the environment variable ‘${n}’ in systemd service ‘${def.name}.service’ is too long."
            else
              s
          ) (lib.attrNames env)
        )
        + (
          if def ? reloadIfChanged && def.reloadIfChanged then
            ''
              X-ReloadIfChanged=true
            ''
          else if def ? restartIfChanged && !def.restartIfChanged then
            ''
              X-RestartIfChanged=false
            ''
          else
            ""
        )
        + optionalString (def ? stopIfChanged && !def.stopIfChanged) ''
          X-StopIfChanged=false
        ''
        + attrsToSection def.serviceConfig
      );
    };

  socketToUnit =
    def:
    unitFields def
    // {
      text = commonUnitText def ''
        [Socket]
        ${attrsToSection def.socketConfig}
        ${concatStringsSep "\n" (map (s: "ListenStream=${s}") def.listenStreams)}
        ${concatStringsSep "\n" (map (s: "ListenDatagram=${s}") def.listenDatagrams)}
      '';
    };

  timerToUnit = sectionToUnit "Timer" "timerConfig";
  sliceToUnit = sectionToUnit "Slice" "sliceConfig";
}
