# Stand-in for (nixpkgs, nixos-25.11):
#   nixos/modules/config/users-groups.nix  users.{users,groups,mutableUsers,
#                                          enforceIdUniqueness,manageLingering,
#                                          defaultUserHome}: the user and group
#                                          submodules with their defaults and
#                                          `apply`s, the default users (root,
#                                          nobody) and groups, and the
#                                          assertions (a user needs exactly one
#                                          of isNormalUser/isSystemUser and a
#                                          `group` that exists, ...)
#   nixos/modules/programs/shadow.nix      users.defaultUserShell
#   nixos/modules/misc/ids.nix             ids.{uids,gids} (the ids used here)
#
# Read from the NixOS/nixpkgs copy of users-groups.nix with `linger` and
# `manageLingering` (25.11: "the default provided system.stateVersion is at
# least 25.11") and an ids.nix copy of the 25.11/26.05 era.
#
# Not reproduced: the check that some wheel user can log in when
# mutableUsers = false (it needs the SSH module's authorizedKeys), the
# shell-program check (programs.zsh etc.), the password-hash warnings and
# the initrd users.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption mkDefault mkIf types;
  cfg = config.users;
  ids = config.ids;

  userOpts =
    { name, config, ... }:
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "If set to false, the user account will not be created.";
        };
        name = mkOption {
          type = types.passwdEntry types.str;
          apply =
            x:
            assert (
              lib.stringLength x < 32 || abort "Username '${x}' is longer than 31 characters which is not allowed!"
            );
            x;
          description = "The name of the user account. If undefined, the name of the attribute set will be used.";
        };
        description = mkOption {
          type = types.passwdEntry types.str;
          default = "";
          description = "A short description of the user account (GECOS).";
        };
        uid = mkOption {
          type = with types; nullOr int;
          default = null;
          description = "The account UID. If null, a free UID is picked on activation.";
        };
        isSystemUser = mkOption {
          type = types.bool;
          default = false;
          description = "Indicates if the user is a system user or not. Exactly one of `isNormalUser` and `isSystemUser` must be true.";
        };
        isNormalUser = mkOption {
          type = types.bool;
          default = false;
          description = "Indicates whether this is an account for a “real” user. Exactly one of `isNormalUser` and `isSystemUser` must be true.";
        };
        group = mkOption {
          type = types.str;
          apply =
            x:
            assert (
              lib.stringLength x < 32 || abort "Group name '${x}' is longer than 31 characters which is not allowed!"
            );
            x;
          default = "";
          description = "The user's primary group.";
        };
        extraGroups = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "The user's auxiliary groups.";
        };
        home = mkOption {
          type = types.passwdEntry types.path;
          default = "/var/empty";
          description = "The user's home directory.";
        };
        homeMode = mkOption {
          type = types.strMatching "[0-7]{1,5}";
          default = "700";
          description = "The user's home directory mode in numeric format.";
        };
        cryptHomeLuks = mkOption {
          type = with types; nullOr str;
          default = null;
          description = "Path to encrypted luks device that contains the user's home directory.";
        };
        pamMount = mkOption {
          type = with types; attrsOf str;
          default = { };
          description = "Attributes for user's entry in {file}`pam_mount.conf.xml`.";
        };
        shell = mkOption {
          type = types.nullOr (types.either types.shellPackage (types.passwdEntry types.path));
          default = pkgs.shadow;
          defaultText = lib.literalExpression "pkgs.shadow";
          description = "The path to the user's shell.";
        };
        ignoreShellProgramCheck = mkOption {
          type = types.bool;
          default = false;
          description = "Whether to skip the check that programs.SHELL.enable is set.";
        };
        subUidRanges = mkOption {
          type = with types; listOf (submodule subordinateUidRange);
          default = [ ];
          description = "Subordinate user ids that user is allowed to use.";
        };
        subGidRanges = mkOption {
          type = with types; listOf (submodule subordinateGidRange);
          default = [ ];
          description = "Subordinate group ids that user is allowed to use.";
        };
        autoSubUidGidRange = mkOption {
          type = types.bool;
          default = false;
          description = "Automatically allocate subordinate user and group ids for this user.";
        };
        createHome = mkOption {
          type = types.bool;
          default = false;
          description = "Whether to create the home directory and ensure ownership as well as permissions to match the user.";
        };
        useDefaultShell = mkOption {
          type = types.bool;
          default = false;
          description = "If true, the user's shell will be set to {option}`users.defaultUserShell`.";
        };
        hashedPassword = mkOption {
          type = with types; nullOr (passwdEntry str);
          default = null;
          description = "Specifies the hashed password for the user.";
        };
        password = mkOption {
          type = with types; nullOr str;
          default = null;
          description = "Specifies the (clear text) password for the user.";
        };
        hashedPasswordFile = mkOption {
          type = with types; nullOr str;
          default = config.passwordFile;
          defaultText = lib.literalExpression "null";
          description = "The full path to a file that contains the hash of the user's password.";
        };
        passwordFile = mkOption {
          type = with types; nullOr str;
          default = null;
          visible = false;
          description = "Deprecated alias of hashedPasswordFile";
        };
        initialHashedPassword = mkOption {
          type = with types; nullOr (passwdEntry str);
          default = null;
          description = "Specifies the initial hashed password for the user.";
        };
        initialPassword = mkOption {
          type = with types; nullOr str;
          default = null;
          description = "Specifies the initial password for the user.";
        };
        packages = mkOption {
          type = types.listOf types.package;
          default = [ ];
          description = "The set of packages that should be made available to the user.";
        };
        expires = mkOption {
          type = types.nullOr (types.strMatching "[[:digit:]]{4}-[[:digit:]]{2}-[[:digit:]]{2}");
          default = null;
          description = "The date (YYYY-MM-DD) on which the user's account will no longer be accessible.";
        };
        linger = mkOption {
          type = types.nullOr types.bool;
          default = null;
          description = "Whether to enable or disable lingering for this user.";
        };
      };

      config = lib.mkMerge [
        {
          name = mkDefault name;
          shell = mkIf config.useDefaultShell (mkDefault cfg.defaultUserShell);
        }
        (mkIf config.isNormalUser {
          group = mkDefault "users";
          createHome = mkDefault true;
          home = mkDefault "${cfg.defaultUserHome}/${config.name}";
          homeMode = mkDefault "700";
          useDefaultShell = mkDefault true;
          isSystemUser = mkDefault false;
        })
        (mkIf (!cfg.mutableUsers && config.initialPassword != null) {
          password = mkDefault config.initialPassword;
        })
        (mkIf (!cfg.mutableUsers && config.initialHashedPassword != null) {
          hashedPassword = mkDefault config.initialHashedPassword;
        })
        (mkIf (config.isNormalUser && config.subUidRanges == [ ] && config.subGidRanges == [ ]) {
          autoSubUidGidRange = mkDefault true;
        })
      ];
    };

  groupOpts =
    { name, config, ... }:
    {
      options = {
        name = mkOption {
          type = types.passwdEntry types.str;
          description = "The name of the group. If undefined, the name of the attribute set will be used.";
        };
        gid = mkOption {
          type = with types; nullOr int;
          default = null;
          description = "The group GID. If the GID is null, a free GID is picked on activation.";
        };
        members = mkOption {
          type = with types; listOf (passwdEntry str);
          default = [ ];
          description = "The user names of the group members, added to the `/etc/group` file.";
        };
      };
      config = {
        name = mkDefault name;
        members = lib.mapAttrsToList (n: u: u.name) (
          lib.filterAttrs (n: u: u.enable && lib.elem config.name u.extraGroups) cfg.users
        );
      };
    };

  subordinateRange = idName: {
    options = {
      ${idName} = mkOption {
        type = types.int;
        description = "Start of the range of subordinate ids.";
      };
      count = mkOption {
        type = types.int;
        default = 1;
        description = "Count of subordinate ids";
      };
    };
  };
  subordinateUidRange = subordinateRange "startUid";
  subordinateGidRange = subordinateRange "startGid";

  # True when two entries share an id (upstream traces the duplicate).
  idsAreUnique =
    set: idAttr:
    let
      idsOf = map (name: toString set.${name}.${idAttr}) (lib.attrNames set);
    in
    lib.length idsOf == lib.length (lib.unique idsOf);

  uidsAreUnique = idsAreUnique (lib.filterAttrs (n: u: u.uid != null) cfg.users) "uid";
  gidsAreUnique = idsAreUnique (lib.filterAttrs (n: g: g.gid != null) cfg.groups) "gid";
  groupNames = lib.mapAttrsToList (n: g: g.name) cfg.groups;
  usersWithoutExistingGroup = lib.filterAttrs (n: u: u.group != "" && !lib.elem u.group groupNames) cfg.users;
  usersWithNullShells = lib.attrNames (lib.filterAttrs (name: u: u.shell == null) cfg.users);

  userAssertions =
    name: user:
    let
      # shadow's is_valid_name, without the trailing $.
      nameRegex = "[a-zA-Z0-9_.][a-zA-Z0-9_.-]*";
      isEffectivelySystemUser = user.isSystemUser || (user.uid != null && user.uid < 1000 && !user.isNormalUser);
    in
    [
      {
        assertion = builtins.match nameRegex user.name != null;
        message = "The username \"${user.name}\" is not valid, it does not match the regex \"${nameRegex}\".";
      }
      {
        assertion = (user.hashedPassword != null) -> (builtins.match ".*:.*" user.hashedPassword == null);
        message = ''
          The password hash of user "${user.name}" contains a ":" character.
          This is invalid and would break the login system because the fields
          of /etc/shadow (file where hashes are stored) are colon-separated.
          Please check the value of option `users.users."${user.name}".hashedPassword`.'';
      }
      {
        assertion = user.isNormalUser && user.uid != null -> user.uid >= 1000;
        message = ''
          A user cannot have a users.users.${user.name}.uid set below 1000 and set users.users.${user.name}.isNormalUser.
          Either users.users.${user.name}.isSystemUser must be set to true instead of users.users.${user.name}.isNormalUser
          or users.users.${user.name}.uid must be changed to 1000 or above.
        '';
      }
      {
        assertion = lib.xor isEffectivelySystemUser user.isNormalUser;
        message = ''
          Exactly one of users.users.${user.name}.isSystemUser and users.users.${user.name}.isNormalUser must be set.
        '';
      }
      {
        assertion = user.group != "";
        message = ''
          users.users.${user.name}.group is unset. This used to default to
          nogroup, but this is unsafe. For example you can create a group
          for this user with:
          users.users.${user.name}.group = "${user.name}";
          users.groups.${user.name} = {};
        '';
      }
      {
        assertion = user.linger != null -> cfg.manageLingering;
        message = ''
          users.manageLingering is set to false, but
          users.users.${user.name}.linger is configured.
        '';
      }
    ];
in
{
  options = {
    ids.uids = mkOption {
      internal = true;
      type = types.attrsOf types.ints.u32;
      description = "The user IDs used in NixOS.";
    };
    ids.gids = mkOption {
      internal = true;
      type = types.attrsOf types.ints.u32;
      description = "The group IDs used in NixOS.";
    };

    users.mutableUsers = mkOption {
      type = types.bool;
      default = true;
      description = "If set to `true`, you are free to add new users and groups to the system with the ordinary `useradd` and `groupadd` commands.";
    };
    users.enforceIdUniqueness = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to require that no two users/groups share the same uid/gid.";
    };
    users.manageLingering = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to manage whether users linger or not.";
    };
    users.users = mkOption {
      default = { };
      type = with types; attrsOf (submodule userOpts);
      description = "Additional user accounts to be created automatically by the system.";
    };
    users.groups = mkOption {
      default = { };
      type = with types; attrsOf (submodule groupOpts);
      description = "Additional groups to be created automatically by the system.";
    };
    users.defaultUserHome = mkOption {
      type = types.str;
      default = "/home";
      description = "The default home directory for normal users.";
    };
    users.defaultUserShell = mkOption {
      type = types.either types.path types.shellPackage;
      default = pkgs.bashInteractive;
      defaultText = lib.literalExpression "pkgs.bashInteractive";
      description = "This option defines the default shell assigned to user accounts.";
    };
  };

  config = {
    # ids.nix (only the ids used by the stand-in's modules).
    ids.uids = {
      root = 0;
      nobody = 65534;
      qemu-libvirtd = 301;
    };
    ids.gids = {
      root = 0;
      wheel = 1;
      kmem = 2;
      tty = 3;
      disk = 6;
      audio = 17;
      floppy = 18;
      uucp = 19;
      lp = 20;
      cdrom = 24;
      tape = 25;
      video = 26;
      dialout = 27;
      utmp = 29;
      adm = 55;
      libvirtd = 67;
      users = 100;
      input = 174;
      qemu-libvirtd = 301;
      kvm = 302;
      render = 303;
      sgx = 304;
      shadow = 318;
      clock = 327;
      nixbld = 30000;
      nogroup = 65534;
    };

    users.users = {
      root = {
        uid = ids.uids.root;
        description = "System administrator";
        home = "/root";
        shell = mkDefault cfg.defaultUserShell;
        group = "root";
      };
      nobody = {
        uid = ids.uids.nobody;
        isSystemUser = true;
        description = "Unprivileged account (don't use!)";
        group = "nogroup";
      };
    };

    users.groups = lib.genAttrs [
      "root"
      "wheel"
      "disk"
      "kmem"
      "tty"
      "floppy"
      "uucp"
      "lp"
      "cdrom"
      "tape"
      "audio"
      "video"
      "dialout"
      "nogroup"
      "users"
      "nixbld"
      "utmp"
      "adm"
      "input"
      "kvm"
      "render"
      "sgx"
      "shadow"
      "clock"
    ] (name: { gid = ids.gids.${name}; });

    assertions = [
      {
        assertion = !cfg.enforceIdUniqueness || (uidsAreUnique && gidsAreUnique);
        message = "UIDs and GIDs must be unique!";
      }
      {
        assertion = usersWithoutExistingGroup == { };
        message =
          let
            errUsers = lib.attrNames usersWithoutExistingGroup;
            missingGroups = lib.unique (lib.mapAttrsToList (n: u: u.group) usersWithoutExistingGroup);
            mkConfigHint = group: "users.groups.${group} = {};";
          in
          ''
            The following users have a primary group that is undefined: ${lib.concatStringsSep " " errUsers}
            Hint: Add this to your NixOS configuration:
              ${lib.concatStringsSep "\n  " (map mkConfigHint missingGroups)}
          '';
      }
      {
        assertion = !cfg.mutableUsers -> lib.length usersWithNullShells == 0;
        message = ''
          users.mutableUsers = false has been set,
          but found users that have their shell set to null.
          If you wish to disable login, set their shell to pkgs.shadow (the default).
          Misconfigured users: ${lib.concatStringsSep " " usersWithNullShells}
        '';
      }
    ]
    ++ lib.concatLists (lib.mapAttrsToList userAssertions cfg.users);
  };
}
