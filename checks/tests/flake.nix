# The flake's outputs, evaluated with nixpkgs-lib and stand-ins for nixpkgs and
# for the flake's own package: what another flake gets from
# `inputs.<this flake>.nixosModules.default`.
{ lib, evalHost }:
let
  stubPkgs = import ../stub-pkgs.nix { inherit lib; };
  # nixpkgs as the outputs use it: its lib, with nixosSystem returning its arguments.
  nixpkgs = {
    lib = lib // {
      nixosSystem = args: args;
    };
  };
  outputs = (import ../../flake.nix).outputs {
    inherit self nixpkgs;
    nixpkgs-lib = { inherit lib; };
  };
  self = outputs // {
    outPath = ../..;
    rev = "0123456789abcdef0123456789abcdef01234567";
    packages.x86_64-linux.vfio-helper = stubPkgs.vfio-helper;
  };

  evalWith =
    module: host:
    (lib.evalModules {
      modules = [
        module
        ../nixos-interface.nix
        host
        { _module.args.pkgs = stubPkgs; }
      ];
    }).config;
  failed = c: map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);

  viaDefault = evalWith outputs.nixosModules.default ../../hosts/example;
in
{
  testDefaultModuleUsesTheFlakesHelper = {
    expr = viaDefault.virtualisation.vfioHelper.package.outPath;
    expected = stubPkgs.vfio-helper.outPath;
  };

  # The flake's revision reaches both boot entries (guide: "Each entry includes
  # … git revision").
  testRevisionInBothBootEntries = {
    expr = [
      viaDefault.system.configurationRevision
      viaDefault.specialisation.vfio.configuration.system.configurationRevision
    ];
    expected = [
      self.rev
      self.rev
    ];
  };

  testDefaultModuleEvaluatesTheExample = {
    expr = failed viaDefault;
    expected = [ ];
  };

  testVmsModuleAlone = {
    expr =
      let
        c = evalWith outputs.nixosModules.vms {
          imports = [ ../../hosts/example/vm.nix ];
          # Without the vfio module there is no modules.vfio.cpuVendor.
          virtualisation.vms.win11.cpu.vendor = "amd";
        };
      in
      {
        failed = failed c;
        helper = c.virtualisation.vfioHelper.package.outPath;
      };
    expected = {
      failed = [ ];
      helper = stubPkgs.vfio-helper.outPath;
    };
  };

  testVfioModuleAlone = {
    expr = failed (evalWith outputs.nixosModules.vfio { modules.vfio.scream.enable = false; });
    expected = [ ];
  };

  testEveryHostIsANixosConfiguration = {
    expr = lib.attrNames outputs.nixosConfigurations;
    expected = lib.attrNames (lib.filterAttrs (_: t: t == "directory") (builtins.readDir ../../hosts));
  };

  # Each host's modules: the flake's default module (a function, so it is
  # compared by evaluating it) and the host directory.
  testHostConfigurationsUseTheDefaultModule = {
    expr = lib.mapAttrs (name: c: {
      host = builtins.elem (../../hosts + "/${name}") c.modules;
      helper =
        (evalWith (lib.head c.modules) (../../hosts + "/${name}")).virtualisation.vfioHelper.package.outPath;
    }) outputs.nixosConfigurations;
    expected = lib.mapAttrs (_: _: {
      host = true;
      helper = stubPkgs.vfio-helper.outPath;
    }) outputs.nixosConfigurations;
  };

  # Every pair of the flake's modules can be imported together (each wrapper
  # brings the same keyed defaults module, so the helper package is defined
  # once), with the example host's VM.
  testEveryPairOfModulesCombines =
    let
      names = lib.attrNames outputs.nixosModules;
      pairs = lib.concatMap (a: map (b: [ a b ]) names) names;
      evalPair =
        pair:
        let
          withVms = lib.elem "default" pair || lib.elem "vms" pair;
          c =
            (lib.evalModules {
              modules =
                map (n: outputs.nixosModules.${n}) pair
                ++ [
                  ../nixos-interface.nix
                  { _module.args.pkgs = stubPkgs; }
                ]
                ++ lib.optional withVms {
                  imports = [ ../../hosts/example/vm.nix ];
                  virtualisation.vms.win11.cpu.vendor = "amd";
                };
            }).config;
          r = builtins.tryEval (builtins.deepSeq c.virtualisation.vfioHelper.package.outPath c.virtualisation.vfioHelper.package.outPath);
        in
        # Pairs without the vms module have no helper option: they only
        # need to evaluate their assertions.
        if withVms then
          r.success && r.value == stubPkgs.vfio-helper.outPath
        else
          (builtins.tryEval (builtins.deepSeq c.assertions true)).success;
    in
    {
      expr = lib.filter (pair: !(evalPair pair)) pairs;
      expected = [ ];
    };

  # The helper's source holds what its build and tests read and nothing else,
  # so editing the README or a module does not rebuild it (and restart every
  # VM's sync through new domain store paths).
  testHelperSourceIsLimited =
    let
      pkg = (outputs.overlays.default final { }).vfio-helper;
      final = {
        callPackage = f: _: f {
          inherit lib;
          rustPlatform.buildRustPackage = args: args;
          libvirt = null;
          libxml2 = null;
          util-linux = null;
        };
      };
      # The source's filter, as builtins.path applies it to each entry
      # (evaluation here is read-only, so the tree is not copied).
      has =
        rel:
        let
          path = toString ../.. + "/${rel}";
          type = (builtins.readDir (dirOf path)).${baseNameOf path};
        in
        pkg.src.filter path type;
      # What the build and the tests read ...
      kept = [
        "rust/Cargo.toml"
        "rust/src/lib.rs"
        "checks/options.json"
        "checks/check-hosts.sh"
        "modules/hooks/gpu-detach.sh"
        "checks/bad-inputs"
        "hosts/example/default.nix"
      ];
      # ... and what they do not.
      leftOut = [
        "README.md"
        "flake.nix"
        "modules/vms/options.nix"
        "docs"
        "checks/gen-options-doc.nix"
      ];
    in
    {
      expr = lib.partition has (kept ++ leftOut);
      expected = {
        right = kept;
        wrong = leftOut;
      };
    };

  testTemplateHasAFlake = {
    expr = builtins.pathExists (outputs.templates.default.path + "/flake.nix");
    expected = true;
  };

  testOverlayAddsTheHelper = {
    expr = lib.attrNames (outputs.overlays.default { callPackage = _: _: "helper"; } { });
    expected = [ "vfio-helper" ];
  };
}
