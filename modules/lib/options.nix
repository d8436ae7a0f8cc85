# Option constructors shared by the modules (not a module itself):
#   vfioOptions = import ./lib/options.nix { inherit lib; };
# Each takes the option's type and the rest of its declaration
# (description, example, …), which may override what the constructor sets.
{ lib }:
let
  inherit (import ./types.nix { inherit lib; }) keepPath;
in
rec {
  # Optional: null (not set) by default.
  mkNullOption =
    type: attrs:
    lib.mkOption (
      {
        type = lib.types.nullOr type;
        default = null;
      }
      // attrs
    );

  # A list, empty by default.
  mkListOption =
    type: attrs:
    lib.mkOption (
      {
        type = lib.types.listOf type;
        default = [ ];
      }
      // attrs
    );

  # An optional path of a path type of types.nix (hostPath, evdevPath): a
  # string or a path literal, kept in place as a string (keepPath), never
  # copied into the Nix store.
  mkPathOption = type: attrs: mkNullOption type ({ apply = keepPath; } // attrs);

  # An escape hatch: raw libvirt XML, empty by default.
  mkXmlOption =
    attrs:
    lib.mkOption (
      {
        type = lib.types.lines;
        default = "";
      }
      // attrs
    );
}
