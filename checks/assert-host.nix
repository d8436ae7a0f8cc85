# Like eval-host.nix, but fails exactly as a NixOS build does when an assertion
# of the host (or of one of its specialisations) does not hold:
#
#   error: Failed assertions:
#   - <message>
#
# Warnings are printed with builtins.trace, as NixOS does.
{
  lib,
  host,
  pkgs ? import ./stub-pkgs.nix { inherit lib; },
  testVendor ? "amd",
}:
let
  config = import ./eval-host.nix {
    inherit
      lib
      host
      pkgs
      testVendor
      ;
  };

  check =
    cfg:
    let
      failed = map (a: a.message) (lib.filter (a: !a.assertion) cfg.assertions);
      shown = lib.foldr (w: acc: builtins.trace "evaluation warning: ${w}" acc) cfg cfg.warnings;
    in
    if failed != [ ] then
      throw "\nFailed assertions:\n${lib.concatMapStringsSep "\n" (m: "- ${m}") failed}"
    else
      shown;

  specialisations = lib.mapAttrsToList (_: s: check s.configuration) config.specialisation;
in
builtins.deepSeq (map (s: s.assertions) specialisations) (check config)
