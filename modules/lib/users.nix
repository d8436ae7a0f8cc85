# The accounts the modules' user options name (not a module itself):
#   vfioUsers = import ./lib/users.nix { inherit lib; };
{ lib }:
rec {
  # Whether NixOS creates an account for `name`, given config.users.users:
  # the same test as the assertion of nixos/modules/config/users-groups.nix
  # (isSystemUser, or a uid below 1000, or isNormalUser).
  isAccount =
    users: name:
    let
      u = users.${name} or { };
      uid = u.uid or null;
    in
    (u.isNormalUser or false) || (u.isSystemUser or false) || (uid != null && uid < 1000);

  # The assertion that `notAccounts`, the names of the user list `option`
  # (e.g. "modules.vfio.lookingGlass.users") that are not accounts (see
  # isAccount), is empty.
  accountsAssertion = option: notAccounts: {
    assertion = notAccounts == [ ];
    message =
      "${option} contains ${lib.concatMapStringsSep " and " (n: "\"${n}\"") notAccounts}, "
      + "which ${if lib.length notAccounts == 1 then "is not a user" else "are not users"} of this system: NixOS creates an account only for users.users.<name> with isNormalUser or isSystemUser set; "
      + "put your own user name in ${option}, or declare the user, e.g. users.users.${lib.head (notAccounts ++ [ "<name>" ])}.isNormalUser = true";
  };
}
