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

  testTemplateHasAFlake = {
    expr = builtins.pathExists (outputs.templates.default.path + "/flake.nix");
    expected = true;
  };

  testOverlayAddsTheHelper = {
    expr = lib.attrNames (outputs.overlays.default { callPackage = _: _: "helper"; } { });
    expected = [ "vfio-helper" ];
  };
}
