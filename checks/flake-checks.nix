# The flake's `checks`: the helper's own tests (cargo test in its build), the
# module tests evaluated at evaluation time, the full test runner (bad-input
# corpus, helper integration) in the sandbox, and the example hosts' domains
# built and schema-validated with the real helper.
{
  lib,
  pkgs,
  src,
  nixpkgsLib,
  helper,
  nixosConfigurations,
}:
let
  evalHost = host: import ./eval-host.nix { inherit lib host; };

  testFiles = lib.attrNames (
    lib.filterAttrs (name: type: type == "regular" && lib.hasSuffix ".nix" name) (builtins.readDir ./tests)
  );
  testSets = map (file: {
    inherit file;
    tests = import (./tests + "/${file}") { inherit lib evalHost; };
  }) testFiles;
  testCount = lib.foldl' (n: t: n + lib.length (lib.filter (lib.hasPrefix "test") (lib.attrNames t.tests))) 0 testSets;
  failures = lib.concatMap (t: map (f: f // { inherit (t) file; }) (lib.runTests t.tests)) testSets;

  hostChecks = lib.mapAttrs' (
    name: system:
    let
      inherit (system.config.virtualisation) vmsInternal;
      toplevel = builtins.unsafeDiscardStringContext system.config.system.build.toplevel.drvPath;
    in
    lib.nameValuePair "host-${name}" (
      builtins.seq toplevel (
        pkgs.runCommand "host-${name}-domains" { } ''
          mkdir -p $out
          ${lib.concatStrings (
            lib.mapAttrsToList (vm: xml: ''
              ln -s ${xml} $out/${vm}.xml
            '') vmsInternal.domains
          )}
          ln -s ${vmsInternal.manifestFile} $out/manifest.json
        ''
      )
    )
  ) nixosConfigurations;
in
{
  vfio-helper = helper;

  # Builds only if every test of checks/tests/*.nix passed (lib.runTests == []).
  module-tests =
    if failures == [ ] then
      pkgs.runCommand "module-tests" { } ''
        echo "module-tests: ${toString testCount} passed, 0 failed" | tee $out
      ''
    else
      pkgs.runCommand "module-tests" { } ''
        cat ${pkgs.writeText "failures.json" (builtins.toJSON failures)}
        echo
        echo "module-tests: ${toString (testCount - lib.length failures)} passed, ${toString (lib.length failures)} failed"
        exit 1
      '';

  # checks/run-nix-tests.sh in the sandbox, with a private Nix store.
  nix-tests =
    pkgs.runCommand "nix-tests"
      {
        nativeBuildInputs = [
          pkgs.nix
          pkgs.python3
          pkgs.libvirt
          pkgs.libxml2
        ];
      }
      ''
        export HOME=$TMPDIR
        export NIX_STORE_DIR=$TMPDIR/store NIX_STATE_DIR=$TMPDIR/var/nix
        export NIX_LOG_DIR=$TMPDIR/var/log/nix NIX_CONF_DIR=$TMPDIR/etc
        export NIX_LOCALSTATE_DIR=$TMPDIR/var PAGER=cat
        nix-store --init
        if bash ${src}/checks/run-nix-tests.sh ${nixpkgsLib} ${lib.getExe helper} >log 2>&1; then
          cat log
          cp log $out
        else
          cat log
          exit 1
        fi
      '';

  # `vfio-helper check` over every host file in hosts/.
  check-hosts = pkgs.runCommand "check-hosts" { } ''
    bash ${src}/checks/check-hosts.sh ${lib.getExe helper} >$out
    cat $out
  '';
}
// hostChecks
