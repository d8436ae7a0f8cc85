# Stand-in for (nixpkgs, nixos-25.11):
#   nixos/modules/system/boot/kernel.nix    boot.kernelPackages (raw, `.extend`ed
#                                           by its apply), kernelParams (the
#                                           kernelParam type), kernelModules,
#                                           initrd.{kernelModules,availableKernelModules},
#                                           extraModulePackages, kernelPatches,
#                                           kernel.{enable,features,randstructSeed};
#                                           /etc/modules-load.d/nixos.conf
#   nixos/modules/system/boot/modprobe.nix  blacklistedKernelModules,
#                                           extraModprobeConfig,
#                                           modprobeConfig.enable;
#                                           /etc/modprobe.d/nixos.conf
#   nixos/modules/config/sysctl.nix         boot.kernel.sysctl (submodule with
#                                           a freeform "sysctl option value"
#                                           and the two max-merging options);
#                                           /etc/sysctl.d/60-nixos.conf
#
# Read from faukah/nixpkgs@3b20077c (25.05-25.11 era); the stub pkgs kernel
# package set is extensible like nixpkgs linuxPackages.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  inherit (config.boot) kernelPatches;
  inherit (config.boot.kernel) features randstructSeed;

  kernelModulesConf = pkgs.writeText "nixos.conf" ''
    ${lib.concatStringsSep "\n" config.boot.kernelModules}
  '';

  # sysctl.nix
  sysctlOption = lib.mkOptionType {
    name = "sysctl option value";
    check =
      val:
      let
        checkType = x: lib.isBool x || lib.isString x || lib.isInt x || x == null;
      in
      checkType val || (val._type or "" == "override" && checkType val.content);
    merge = loc: defs: lib.mergeOneOption loc defs;
  };
  highestValueType = types.ints.unsigned // {
    merge = loc: defs: lib.foldl (a: b: if b.value == null then null else lib.max a b.value) 0 defs;
  };
in
{
  options = {
    boot.kernel.enable = lib.mkEnableOption "the Linux kernel" // {
      default = true;
    };

    boot.kernel.features = mkOption {
      default = { };
      internal = true;
      description = "Kernel feature sets (not API).";
    };

    boot.kernelPackages = mkOption {
      default = pkgs.linuxPackages;
      type = types.raw;
      apply =
        kernelPackages:
        kernelPackages.extend (
          self: super: {
            kernel = super.kernel.override (originalArgs: {
              inherit randstructSeed;
              kernelPatches = (originalArgs.kernelPatches or [ ]) ++ kernelPatches;
              features = lib.recursiveUpdate super.kernel.features features;
            });
          }
        );
      defaultText = lib.literalExpression "pkgs.linuxPackages";
      description = "The Linux kernel package set (must contain at least `kernel`).";
    };

    boot.kernelPatches = mkOption {
      type = types.listOf types.attrs;
      default = [ ];
      description = "A list of additional patches to apply to the kernel.";
    };

    boot.kernel.randstructSeed = mkOption {
      type = types.str;
      default = "";
      description = "Seed for the RANDSTRUCT kernel option.";
    };

    boot.kernelParams = mkOption {
      type = types.listOf (
        types.strMatching ''([^"[:space:]]|"[^"]*")+''
        // {
          name = "kernelParam";
          description = "string, with spaces inside double quotes";
        }
      );
      default = [ ];
      description = "Parameters added to the kernel command line.";
    };

    boot.extraModulePackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      description = "A list of additional packages supplying kernel modules.";
    };

    boot.kernelModules = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "The set of kernel modules to be loaded in the second stage of the boot process.";
    };

    boot.initrd.availableKernelModules = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "The set of kernel modules in the initial ramdisk used during the boot process.";
    };

    boot.initrd.kernelModules = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "List of modules that are always loaded by the initrd.";
    };

    boot.modprobeConfig.enable = lib.mkEnableOption "modprobe config" // {
      default = true;
    };

    boot.blacklistedKernelModules = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "List of names of kernel modules that should not be loaded automatically by the hardware probing code.";
    };

    boot.extraModprobeConfig = mkOption {
      default = "";
      type = types.lines;
      description = "Any additional configuration to be appended to the generated {file}`modprobe.conf`.";
    };

    boot.kernel.sysctl = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf sysctlOption;
        options = {
          "net.core.rmem_max" = mkOption {
            type = types.nullOr highestValueType;
            default = null;
            description = "The maximum receive socket buffer size in bytes. In case of conflicting values, the highest will be used.";
          };
          "net.core.wmem_max" = mkOption {
            type = types.nullOr highestValueType;
            default = null;
            description = "The maximum send socket buffer size in bytes. In case of conflicting values, the highest will be used.";
          };
        };
      };
      default = { };
      description = "Runtime parameters of the Linux kernel, as set by {manpage}`sysctl(8)`.";
    };
  };

  config = lib.mkMerge [
    (lib.mkIf config.boot.kernel.enable {
      environment.etc."modules-load.d/nixos.conf".source = kernelModulesConf;
    })

    (lib.mkIf config.boot.modprobeConfig.enable {
      environment.etc."modprobe.d/nixos.conf".text = ''
        ${lib.flip lib.concatMapStrings config.boot.blacklistedKernelModules (name: ''
          blacklist ${name}
        '')}
        ${config.boot.extraModprobeConfig}
      '';
    })

    {
      environment.etc."sysctl.d/60-nixos.conf".text = lib.concatStrings (
        lib.mapAttrsToList (
          n: v: lib.optionalString (v != null) "${n}=${if v == false then "0" else toString v}\n"
        ) config.boot.kernel.sysctl
      );
    }
  ];
}
