# Stand-in for (nixpkgs, nixos-25.11):
#   nixos/modules/misc/assertions.nix                 assertions, warnings
#   nixos/modules/system/build.nix                    system.build
#   nixos/modules/system/activation/top-level.nix     the toplevel's assertion
#                                                     check ("Failed assertions:")
#   nixos/modules/misc/version.nix                    system.nixos.*, stateVersion
#                                                     (apply + format assertion),
#                                                     configurationRevision
#   nixos/modules/misc/label.nix                      system.nixos.{label,tags}
#   nixos/modules/system/activation/specialisation.nix
#     + no-clone.nix                                  specialisation, isSpecialisation
#   nixos/modules/security/polkit.nix                 security.polkit.enable
#   nixos/modules/hardware/cpu/{intel,amd}-microcode.nix
#
# Read from nixpkgs copies: version.nix, label.nix and specialisation.nix of
# faukah/nixpkgs@3b20077c (25.05-25.11 era; stateVersion apply and format
# assertion, isSpecialisation, noUserModules for inheritParentConfig = false).
# The release is pinned to "25.11" (version suffix empty).
{
  config,
  options,
  lib,
  pkgs,
  extendModules,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.system.nixos;

  # no-clone.nix: a specialisation has no specialisations of its own.
  noClone = {
    specialisation = lib.mkOverride 0 { };
    isSpecialisation = true;
  };

  # What NixOS's `noUserModules` is to a real system: the base modules
  # without the user's. Here the stand-in itself is the base.
  noUserModules = lib.evalModules {
    modules = [
      ../nixos-interface.nix
      { _module.args.pkgs = pkgs; }
    ];
  };

  stateVersionFormat = "[0-9]{2}\\.[0-9]{2}";

  # What building the system evaluates (top-level.nix and the builders it
  # depends on): every enabled unit's text, every /etc entry (and so the
  # files' contents: a stub's path depends on them), the users' table, the
  # kernel command line, modules and packages, the udev rules packages, the
  # network setup and the specialisations.
  built = {
    units = lib.mapAttrs (_: u: u.text) (lib.filterAttrs (_: u: u.enable) config.systemd.units);
    userUnits = lib.mapAttrs (_: u: u.text) (lib.filterAttrs (_: u: u.enable) config.systemd.user.units);
    etc = map (e: {
      inherit (e) target mode user group;
      source = "${e.source}";
    }) (lib.filter (e: e.enable) (lib.attrValues config.environment.etc));
    users = lib.mapAttrsToList (_: u: {
      inherit (u)
        name
        uid
        group
        extraGroups
        home
        isSystemUser
        ;
    }) (lib.filterAttrs (_: u: u.enable) config.users.users);
    groups = lib.mapAttrsToList (_: g: { inherit (g) name gid members; }) config.users.groups;
    kernel = {
      inherit (config.boot) kernelParams kernelModules blacklistedKernelModules;
      initrd = { inherit (config.boot.initrd) kernelModules availableKernelModules; };
      extraModulePackages = map toString config.boot.extraModulePackages;
      version = config.boot.kernelPackages.kernel.version;
    };
    udev = map toString config.services.udev.packages;
    networking = {
      inherit (config.networking) hostName bridges;
      # What the network setup reads of each interface (not the renamed and
      # removed options, which fail only when used).
      interfaces = lib.mapAttrs (_: i: {
        inherit (i)
          name
          useDHCP
          ipv4
          ipv6
          macAddress
          mtu
          virtual
          virtualOwner
          virtualType
          proxyARP
          wakeOnLan
          tempAddress
          ;
      }) config.networking.interfaces;
      firewall = {
        inherit (config.networking.firewall) interfaces allowedTCPPorts allowedUDPPorts;
      };
    };
    tmpfiles = config.systemd.tmpfiles.rules;
    packages = map toString config.environment.systemPackages;
    specialisations = lib.mapAttrs (_: s: s.configuration.system.build.toplevel) config.specialisation;
  };

  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      internal = true;
      default = [ ];
      example = [
        {
          assertion = false;
          message = "you can't enable this for that reason";
        }
      ];
      description = ''
        This option allows modules to express conditions that must
        hold for the evaluation of the system configuration to
        succeed, along with associated error messages for the user.
      '';
    };

    warnings = mkOption {
      internal = true;
      default = [ ];
      type = types.listOf types.str;
      example = [ "The `foo' service is deprecated and will go away soon!" ];
      description = "This option allows modules to show warnings to users during the evaluation of the system configuration.";
    };

    system.build = mkOption {
      internal = true;
      default = { };
      type = types.submoduleWith {
        modules = [ { freeformType = with types; lazyAttrsOf (uniq unspecified); } ];
      };
      description = "Attribute set of derivations used to set up the system.";
    };

    system.nixos = {
      version = mkOption {
        internal = true;
        type = types.str;
        description = "The full NixOS version (e.g. `16.03.1160.f2d4ee1`).";
      };
      release = mkOption {
        readOnly = true;
        type = types.str;
        default = "25.11";
        description = "The NixOS release (e.g. `16.03`).";
      };
      versionSuffix = mkOption {
        internal = true;
        type = types.str;
        # Empty here, so the stand-in's labels do not depend on a revision.
        default = "";
        description = "The NixOS version suffix (e.g. `1160.f2d4ee1`).";
      };
      codeName = mkOption {
        readOnly = true;
        type = types.str;
        default = "Xantusia";
        description = "The NixOS release code name (e.g. `Emu`).";
      };
      distroId = mkOption {
        internal = true;
        type = types.str;
        default = "nixos";
        description = "The id of the operating system";
      };
      distroName = mkOption {
        internal = true;
        type = types.str;
        default = "NixOS";
        description = "The name of the operating system";
      };
      label = mkOption {
        type = types.strMatching "[a-zA-Z0-9:_\\.-]*";
        description = "NixOS version name to be used in the names of generated outputs and boot labels.";
      };
      tags = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "with-xen" ];
        description = "Strings to prefix to the default {option}`system.nixos.label`.";
      };
    };

    system.stateVersion = mkOption {
      type = types.str;
      apply =
        v:
        lib.warnIf (options.system.stateVersion.highestPrio == (lib.mkOptionDefault { }).priority)
          "system.stateVersion is not set, defaulting to ${v}. Read why this matters on https://nixos.org/manual/nixos/stable/options.html#opt-system.stateVersion."
          v;
      default = cfg.release;
      defaultText = lib.literalExpression "config.system.nixos.release";
      description = "The first version of NixOS installed on this machine.";
    };

    system.configurationRevision = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "The Git revision of the top-level flake from which this configuration was built.";
    };

    isSpecialisation = mkOption {
      type = types.bool;
      internal = true;
      default = false;
      description = "Whether this system is a specialisation of another.";
    };

    specialisation = mkOption {
      default = { };
      description = ''
        Additional configurations to build. If `inheritParentConfig` is
        true, the system will be based on the overall system configuration.
      '';
      type = types.attrsOf (
        types.submodule (
          local:
          let
            extend = if local.config.inheritParentConfig then extendModules else noUserModules.extendModules;
          in
          {
            options.inheritParentConfig = mkOption {
              type = types.bool;
              default = true;
              description = "Include the entire system's configuration. Set to false to make a completely differently configured system.";
            };
            options.configuration = mkOption {
              default = { };
              description = "Arbitrary NixOS configuration.";
              visible = "shallow";
              inherit (extend { modules = [ noClone ]; }) type;
            };
          }
        )
      );
    };

    security.polkit.enable = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to enable PolKit.";
    };

    hardware.cpu = {
      intel.updateMicrocode = mkOption {
        default = false;
        type = types.bool;
        description = "Update the CPU microcode for Intel processors.";
      };
      amd.updateMicrocode = mkOption {
        default = false;
        type = types.bool;
        description = "Update the CPU microcode for AMD processors.";
      };
    };
  };

  config = {
    system.nixos.version = lib.mkDefault (cfg.release + cfg.versionSuffix);
    system.nixos.label = lib.mkDefault (
      lib.concatStringsSep "-" ((lib.sort (x: y: x < y) cfg.tags) ++ [ cfg.version ])
    );

    assertions = [
      {
        assertion = builtins.match stateVersionFormat config.system.stateVersion != null;
        message = ''
          ${config.system.stateVersion} is an invalid value for 'system.stateVersion'; it must be in the format "YY.MM",
          which corresponds to a prior release of NixOS.
        '';
      }
    ]
    ++ lib.mapAttrsToList (name: _: {
      assertion = !lib.hasInfix "/" name;
      message = ''
        Specialisation names must not contain forward slashes.
        Invalid specialisation name: ${name}
      '';
    }) config.specialisation;

    system.build.toplevel =
      if failedAssertions != [ ] then
        throw "\nFailed assertions:\n${lib.concatMapStringsSep "\n" (m: "- ${m}") failedAssertions}"
      else
        lib.foldr lib.warn (builtins.deepSeq built (
          pkgs.runCommand "nixos-system-${config.system.nixos.label}" { } "# stand-in"
          // {
            inherit built;
          }
        )) config.warnings;
  };
}
