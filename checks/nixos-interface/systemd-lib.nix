# Stand-in for (nixpkgs, nixos-25.11):
#   nixos/lib/systemd-lib.nix  unitNameType, assertValueOneOf,
#                              checkUnitConfig, toOption, attrsToSection,
#                              makeJobScript, makeUnit, the unitConfig/
#                              serviceConfig/... modules, commonUnitText
#                              and the *ToUnit functions
# (not a module itself). The option modules are in ./systemd-unit-options.nix,
# the unit types in ./systemd-types.nix; ./systemd.nix puts the three
# together as upstream's utils.systemdUtils.{lib,unitOptions,types}
# (nixos/lib/utils.nix).
#
# Read from SuperSandro2000/nixpkgs@06bf2ae6 (25.05-25.11 era: units with
# `upholds`, `onSuccess`, and `enableStrictShellChecks` for job scripts).
#
#   systemdLib = import ./systemd-lib.nix { inherit config lib pkgs; };
{
  config,
  lib,
  pkgs,
}:
let
  inherit (lib)
    mkIf
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
  inherit
    unitNameType
    assertValueOneOf
    checkUnitConfig
    attrsToSection
    makeUnit
    makeJobScript
    unitConfig
    stage2ServiceConfig
    named
    ;

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
