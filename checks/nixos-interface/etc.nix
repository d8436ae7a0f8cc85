# Stand-in for (nixpkgs, nixos-25.11):
#   nixos/modules/system/etc/etc.nix       environment.etc: the submodule
#                                          (enable, target, text, source, mode,
#                                          uid, gid, user, group); `source`
#                                          derived from `text` with
#                                          mkDerivedConfig
#   nixos/modules/config/system-path.nix   environment.systemPackages
#
# Read from faukah/nixpkgs@3b20077c and Moraxyc/nixpkgs@3a8181b7 (newer than
# 25.11): the submodule is the same in both.
#
# `mode` is a plain string upstream too ("symlink", "direct-symlink" or an
# octal mode such as "0440"): nixos-25.11 has no evaluation-time check of its
# value, only of its type (an integer such as 0440 is rejected). A bad string
# fails only when /etc is set up (setup-etc.pl) or built as an overlay.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
in
{
  options.environment = {
    etc = mkOption {
      default = { };
      description = "Set of files that have to be linked in {file}`/etc`.";
      type = types.attrsOf (
        types.submodule (
          {
            name,
            config,
            options,
            ...
          }:
          {
            options = {
              enable = mkOption {
                type = types.bool;
                default = true;
                description = "Whether this /etc file should be generated.";
              };
              target = mkOption {
                type = types.str;
                description = "Name of symlink (relative to {file}`/etc`). Defaults to the attribute name.";
              };
              text = mkOption {
                default = null;
                type = types.nullOr types.lines;
                description = "Text of the file.";
              };
              source = mkOption {
                type = types.path;
                description = "Path of the source file.";
              };
              mode = mkOption {
                type = types.str;
                default = "symlink";
                example = "0600";
                description = "If set to something else than `symlink`, the file is copied instead of symlinked, with the given file mode.";
              };
              uid = mkOption {
                default = 0;
                type = types.int;
                description = "UID of created file. Only takes effect when the file is copied.";
              };
              gid = mkOption {
                default = 0;
                type = types.int;
                description = "GID of created file. Only takes effect when the file is copied.";
              };
              user = mkOption {
                default = "+${toString config.uid}";
                type = types.str;
                description = "User name of file owner. Only takes effect when the file is copied.";
              };
              group = mkOption {
                default = "+${toString config.gid}";
                type = types.str;
                description = "Group name of file owner. Only takes effect when the file is copied.";
              };
            };
            config = {
              target = lib.mkDefault name;
              source = lib.mkIf (config.text != null) (
                let
                  name' = "etc-" + lib.replaceStrings [ "/" ] [ "-" ] name;
                in
                lib.mkDerivedConfig options.text (pkgs.writeText name')
              );
            };
          }
        )
      );
    };

    systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      description = "The set of packages that appear in /run/current-system/sw.";
    };
  };
}
