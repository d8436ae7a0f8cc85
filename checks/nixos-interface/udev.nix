# Stand-in for (nixpkgs, nixos-25.11):
#   nixos/modules/services/hardware/udev.nix  services.udev.{enable, packages
#                                             (apply: map lib.getBin), path,
#                                             extraRules, extraHwdb}; extraRules
#                                             and extraHwdb become packages
#                                             carrying 99-local.rules and
#                                             99-local.hwdb
#
# Read from faukah/nixpkgs@3b20077c (25.05-25.11 era).
#
# Not reproduced: the build of the rules directory, which also runs
# `udevadm verify` on every rule and fails on programs that do not exist.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.udev;
in
{
  options.services.udev = {
    enable = lib.mkEnableOption "udev, a device manager for the Linux kernel" // {
      default = true;
    };
    packages = mkOption {
      type = types.listOf types.path;
      default = [ ];
      description = "List of packages containing {command}`udev` rules.";
      apply = map lib.getBin;
    };
    path = mkOption {
      type = types.listOf types.path;
      default = [ ];
      description = "Packages added to the {env}`PATH` environment variable when executing programs from Udev rules.";
    };
    extraRules = mkOption {
      default = "";
      type = types.lines;
      description = "Additional {command}`udev` rules, written into {file}`99-local.rules`.";
    };
    extraHwdb = mkOption {
      default = "";
      type = types.lines;
      description = "Additional {command}`hwdb` files, written into {file}`99-local.hwdb`.";
    };
  };

  config = lib.mkIf cfg.enable {
    services.udev.packages = [
      (pkgs.writeTextFile {
        name = "extra-udev-rules";
        text = cfg.extraRules;
        destination = "/etc/udev/rules.d/99-local.rules";
      })
      (pkgs.writeTextFile {
        name = "extra-hwdb-file";
        text = cfg.extraHwdb;
        destination = "/etc/udev/hwdb.d/99-local.hwdb";
      })
    ];
  };
}
