# Shared fixtures of the interface-*.nix tests, the tests of the NixOS
# stand-in (checks/nixos-interface.nix); no tests of its own.
#
# The stand-in is evaluated on its own here (without this flake's modules), so
# these tests say what the stand-in does, whatever the modules do. A
# definition NixOS rejects with a type error is tested against the same
# configuration without the mistake: the good one builds, the bad one does
# not (Nix cannot catch an error's text, only that it failed).
{ lib, ... }:
rec {
  pkgs = import ../stub-pkgs.nix { inherit lib; };

  eval =
    module:
    (lib.evalModules {
      modules = [
        ../nixos-interface.nix
        { _module.args.pkgs = pkgs; }
        { system.stateVersion = "25.11"; }
        module
      ];
    }).config;

  # Whether forcing a value succeeds (a type error or a failed `throw`
  # inside it makes it fail).
  succeeds = value: (builtins.tryEval (builtins.deepSeq value true)).success;

  # Whether the system builds: assertions hold and every unit, /etc entry
  # and user can be built (system.build.toplevel).
  builds = module: succeeds (eval module).system.build.toplevel;

  failedMessages = cfg: map (a: a.message) (lib.filter (a: !a.assertion) cfg.assertions);

  # The failed assertions that mention `word`.
  failedAbout = word: module: lib.filter (lib.hasInfix word) (failedMessages (eval module));
}
